// Loop devices over sparse files: the embedded default's "disks", and the tests' disks.
//
// The agent only ever detaches loop devices whose backing file it owns (a file under its
// own state dir): other loop devices on the machine may belong to something else.
import { open, stat } from 'node:fs/promises';
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

/** Attach `file` to a free loop device (direct I/O off: the page cache is the fast path here). */
export async function attachLoop(file: string): Promise<string> {
  const { stdout } = await run('losetup', ['--find', '--show', file]);
  return stdout.trim();
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
