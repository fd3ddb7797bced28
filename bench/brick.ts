// A throwaway XFS brick for benchmarks that need a real filesystem on a real block device:
// a sparse file under the temp dir (or under `parentDir`, e.g. a tmpfs from `withTmpfs`),
// attached as a loop device, adopted by a BrickManager
// whose allowlist is exactly that device. `withTempBrick` always tears it down (unmount,
// detach the loop device it attached, remove the temp dir), whatever the body did.
//
// The loop device keeps the helper's default (buffered backing file), like the embedded
// default's disks: direct I/O on the brick reaches the backing file's page cache and a
// flush of the brick is an fsync of the backing file, for the baseline and the store alike.
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { unmountBrick } from '../src/brick/format.js';
import { attachLoop, createSparseFile, detachLoop } from '../src/brick/loop.js';
import { BrickManager } from '../src/brick/manager.js';
import { run } from '../src/exec.js';
import { silentLogger } from '../src/log.js';
import { native, UmountFlags } from '../src/native.js';

export interface TempBrick {
  /** Where the brick's filesystem is mounted. */
  root: string;
  device: string;
  sizeBytes: number;
}

/** Why a brick cannot be made here, or undefined when it can. */
export function tempBrickUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (loop devices, mkfs, mount, drop_caches)';
  return undefined;
}

export async function withTempBrick<T>(
  sizeBytes: number,
  body: (brick: TempBrick) => Promise<T>,
  options: { parentDir?: string } = {},
): Promise<T> {
  const dir = await mkdtemp(path.join(options.parentDir ?? os.tmpdir(), 'brickd-bench-'));
  let device: string | undefined;
  let mountPath: string | undefined;
  let bodyFailed = true;
  try {
    const image = path.join(dir, 'brick.img');
    await createSparseFile(image, sizeBytes);
    device = await attachLoop(image);
    const manager = new BrickManager({
      stateDir: path.join(dir, 'state'),
      nodeId: randomUUID(),
      allow: [device],
      minSizeBytes: 0,
      fsType: 'xfs',
      log: silentLogger,
    });
    const brick = await manager.adopt(device);
    mountPath = brick.mountPath;
    const result = await body({ root: brick.mountPath, device, sizeBytes });
    bodyFailed = false;
    return result;
  } finally {
    // Every step runs even if an earlier one failed. A file left open by a failed body
    // keeps the mount busy: detach it lazily then, so the loop device still goes.
    const failures: string[] = [];
    if (mountPath) {
      const target = mountPath;
      await unmountBrick(target).catch(() => unmountBrick(target, true).catch((err) => failures.push(`unmount ${target}: ${(err as Error).message}`)));
    }
    if (device) await detachLoop(device).catch((err) => failures.push(`detach ${device}: ${(err as Error).message}`));
    await rm(dir, { recursive: true, force: true }).catch((err) => failures.push(`remove ${dir}: ${(err as Error).message}`));
    if (failures.length > 0) {
      const message = `temp brick teardown failed: ${failures.join('; ')}`;
      // The body's own error matters more; a teardown failure after a good run fails the case.
      if (bodyFailed) process.stderr.write(`[bench] ${message}\n`);
      else throw new Error(message);
    }
  }
}

/**
 * Write back dirty pages, then drop the page cache (and dentries/inodes), so the next
 * read comes from the device. Global to the machine: only for benchmarks.
 */
export async function dropCaches(): Promise<void> {
  await run('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3');
}

/** `count` temp bricks at once (nested, so each is torn down whatever happens to the others). */
export async function withTempBricks<T>(
  count: number,
  sizeBytes: number,
  body: (bricks: TempBrick[]) => Promise<T>,
  options: { parentDir?: string } = {},
): Promise<T> {
  const made: TempBrick[] = [];
  const next = (): Promise<T> =>
    made.length === count
      ? body([...made])
      : withTempBrick(sizeBytes, (brick) => {
          made.push(brick);
          return next();
        }, options);
  return next();
}

/**
 * A tmpfs of `sizeBytes` mounted on a fresh temp dir for the body's lifetime: backing files
 * of loop devices there take the disk out of a measurement. Unmounted (lazily if still
 * busy) and its dir removed whatever the body did.
 */
export async function withTmpfs<T>(sizeBytes: number, body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'brickd-bench-tmpfs-'));
  let mounted = false;
  try {
    await native.mount('tmpfs', dir, 'tmpfs', 0, `size=${sizeBytes},mode=0700`);
    mounted = true;
    return await body(dir);
  } finally {
    if (mounted) await native.umount(dir, 0).catch(() => native.umount(dir, UmountFlags.MNT_DETACH));
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Give a brick's free blocks back to its loop device's backing file (fstrim): on a tmpfs
 * the freed blocks of deleted files would otherwise keep using memory.
 */
export async function trimBrick(brick: TempBrick): Promise<void> {
  await run('fstrim', [brick.root]);
}
