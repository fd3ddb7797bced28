// Loop devices over sparse files: the embedded default's "disks", and the tests' disks.
//
// The agent only ever detaches loop devices whose backing file it owns (a file under its
// own state dir): other loop devices on the machine may belong to something else.
import { open, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { run } from '../exec.js';

/** Create (or grow) a sparse file of `sizeBytes`; existing contents are kept. */
export async function createSparseFile(file: string, sizeBytes: number): Promise<void> {
  const handle = await open(file, 'a');
  try {
    const { size } = await handle.stat();
    if (size < sizeBytes) await handle.truncate(sizeBytes);
  } finally {
    await handle.close();
  }
}

/**
 * Attach `file` to a free loop device, reading and writing its backing file with direct
 * I/O where the backing filesystem allows (else buffered, as any loop device).
 *
 * Why direct I/O: a buffered loop device caches the brick a second time in the host's page
 * cache (the brick's filesystem already caches it), and every flush of the brick becomes an
 * fsync that writes that second copy back first. With several bricks on one disk (the
 * embedded default, the benchmarks' three agents) those fsyncs queue behind each other on
 * the host filesystem's journal. Measured, 3 agents with a W=2 of 3 volume on one disk
 * (bench replication case, 3 rounds): 4 KiB QD1 p99 1390-1512 µs against a local store's
 * 897-907 (buffered loop devices: 1618 against 806), 1 MiB writes 368-409 MiB/s (291).
 *
 * Direct I/O is switched on after the attach, as its own step, so a backing filesystem that
 * refuses it still gets a working (buffered) device; `loopDirectIo` tells which it got.
 */
export async function attachLoop(file: string): Promise<string> {
  const { stdout } = await run('losetup', ['--find', '--show', file]);
  const device = stdout.trim();
  await run('losetup', ['--direct-io=on', device]).catch(() => undefined);
  return device;
}

/** Whether an attached loop device reads and writes its backing file with direct I/O. */
export async function loopDirectIo(device: string): Promise<boolean> {
  const text = await readFile(`/sys/block/${path.basename(device)}/loop/dio`, 'utf8').catch(() => '0');
  return text.trim() === '1';
}

/** Detach one loop device. Callers pass only devices they attached. */
export async function detachLoop(device: string): Promise<void> {
  await run('losetup', ['--detach', device]);
}

export interface LoopInfo {
  device: string;
  backingFile: string;
}

/** Every attached loop device with its backing file (from `losetup --list --json`). */
export async function listLoops(): Promise<LoopInfo[]> {
  const { stdout } = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE']);
  if (!stdout.trim()) return [];
  const parsed = JSON.parse(stdout) as { loopdevices?: Array<{ name: string; 'back-file': string | null }> };
  return (parsed.loopdevices ?? []).map((l) => ({ device: l.name, backingFile: (l['back-file'] ?? '').replace(/ \(deleted\)$/, '') }));
}

/** The loop device already backed by `file`, if any (so a restart reuses it). */
export async function findLoopFor(file: string): Promise<string | undefined> {
  const target = await stat(file);
  for (const loop of await listLoops()) {
    try {
      const s = await stat(loop.backingFile);
      if (s.ino === target.ino && s.dev === target.dev) return loop.device;
    } catch {
      // backing file gone or unreadable: not ours
    }
  }
  return undefined;
}
