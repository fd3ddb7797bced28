// A throwaway XFS brick for benchmarks that need a real filesystem on a real block device,
// adopted by a BrickManager whose allowlist is exactly that device. The device is either
//   - a sparse file under the temp dir (or under `parentDir`, e.g. a tmpfs from
//     `withTmpfs`), attached as a loop device: the default; or
//   - one of the real devices the runner was given (`--device`, see useBenchDevices), for
//     every brick whose caller did not place its backing file itself (no `parentDir`):
//     the first device no other live temp brick holds, so nested bricks take the devices
//     in the order given.
// `withTempBrick` always tears it down, whatever the body did: unmount, then for a loop
// file detach the loop device it attached and remove the temp dir; for a real device
// release the brick as the agent does (unmount, erase the filesystem signature: the
// device is blank again). It never touches any device but the one it adopted.
//
// The loop device is attached as the agent attaches its embedded disks (src/brick/loop.ts
// attachLoop: direct I/O on the backing file where its filesystem allows), so the brick is
// cached once, in its own filesystem's page cache, and a flush of the brick is a flush of
// the backing file, for the baseline and the store alike.
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_CONFIG } from '../src/agent/config.js';
import { unmountBrick } from '../src/brick/format.js';
import { attachLoop, createSparseFile, detachLoop } from '../src/brick/loop.js';
import { BrickManager, type BrickStatus } from '../src/brick/manager.js';
import { assessDevice, mountpointsByDevice } from '../src/brick/discover.js';
import { findBlockDevice } from '../src/brick/sysfs.js';
import { run } from '../src/exec.js';
import { silentLogger } from '../src/log.js';
import { native, UmountFlags } from '../src/native.js';

export interface TempBrick {
  /** Where the brick's filesystem is mounted. */
  root: string;
  device: string;
  /** The loop file's size, or the whole real device's. */
  sizeBytes: number;
}

/**
 * The real devices of this run (`--device`), checked eligible and confirmed for
 * destruction by the runner (bench/run.ts); empty: loop files. Set once, before any case.
 */
let benchDevices: readonly string[] = [];
/** The devices a live temp brick holds now. */
const devicesInUse = new Set<string>();

export function useBenchDevices(devices: readonly string[]): void {
  benchDevices = [...devices];
}

/** The next device for a brick, or a clear error when every one is already a live brick. */
function claimDevice(): string {
  const device = benchDevices.find((d) => !devicesInUse.has(d));
  if (device === undefined) {
    throw new Error(
      `this case needs more bricks at once than the ${benchDevices.length} device(s) given with --device ` +
        `(${benchDevices.join(', ')}): give one more --device per brick`,
    );
  }
  devicesInUse.add(device);
  return device;
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
  if (options.parentDir === undefined && benchDevices.length > 0) return withDeviceBrick(sizeBytes, body);
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
 * A brick on the next real device: adopted as the agent adopts a disk (its own checks run
 * again, so a device that changed since the runner looked is refused), released as the
 * agent releases one. Bricks smaller than the case asks for are refused before anything
 * is written.
 */
async function withDeviceBrick<T>(sizeBytes: number, body: (brick: TempBrick) => Promise<T>): Promise<T> {
  const device = claimDevice();
  let dir: string | undefined;
  let manager: BrickManager | undefined;
  let brick: BrickStatus | undefined;
  let bodyFailed = true;
  try {
    const found = await findBlockDevice(device);
    if (!found) throw new Error(`--device ${device} is gone`);
    if (found.sizeBytes < sizeBytes) {
      throw new Error(`--device ${device} holds ${found.sizeBytes} bytes; this case needs a brick of at least ${sizeBytes}`);
    }
    dir = await mkdtemp(path.join(os.tmpdir(), 'brickd-bench-'));
    manager = new BrickManager({
      stateDir: path.join(dir, 'state'),
      nodeId: randomUUID(),
      allow: [device],
      minSizeBytes: DEFAULT_CONFIG.minSizeBytes,
      fsType: 'xfs',
      log: silentLogger,
    });
    brick = await manager.adopt(device);
    const result = await body({ root: brick.mountPath, device, sizeBytes: found.sizeBytes });
    bodyFailed = false;
    return result;
  } finally {
    const failures: string[] = [];
    // An adoption that failed after mkfs still left its brick in the manager's table.
    const made = brick ?? manager?.list().find((b) => b.devicePath === device);
    if (manager && made) await releaseBenchBrick(manager, made).catch((err) => failures.push((err as Error).message));
    if (dir) await rm(dir, { recursive: true, force: true }).catch((err) => failures.push(`remove ${dir}: ${(err as Error).message}`));
    devicesInUse.delete(device);
    if (failures.length > 0) {
      const message = `temp brick teardown failed: ${failures.join('; ')}`;
      if (bodyFailed) process.stderr.write(`[bench] ${message}\n`);
      else throw new Error(message);
    }
  }
}

/**
 * Release a bench brick the way the agent does (BrickManager.release: unmount, erase the
 * signature, forget it). The agent refuses while replicas remain; a benchmark's are
 * throwaway, so they are removed first. A brick still busy (a file left open) is detached
 * lazily and reported: its device then still carries the brick's filesystem.
 */
async function releaseBenchBrick(manager: BrickManager, brick: BrickStatus): Promise<void> {
  await rm(path.join(brick.mountPath, 'volumes'), { recursive: true, force: true });
  try {
    await manager.release(brick.brickId);
  } catch (err) {
    // Not mounted any more (the wipe failed): the lazy unmount fails, which is fine.
    await unmountBrick(brick.mountPath, true).catch(() => undefined);
    throw new Error(
      `release ${brick.devicePath}: ${(err as Error).message}; the device still carries brick ${brick.brickId} ` +
        `(erase it with wipefs -a ${brick.devicePath} once nothing holds it)`,
    );
  }
}

/** The command-line flags that give a brickd agent (bench child process) its brick. */
export interface AgentBrickFlags {
  args: string[];
  /**
   * The real device the agent is allowed to adopt, when the run has --device: the agent
   * adopts a real disk only when asked, so the case calls AdoptDevice(adopt) on its control
   * socket once it is up, and after the agent exited calls eraseAgentBrick(adopt).
   */
  adopt?: string;
}

/**
 * The brickd flags for agent `k`'s one brick: the embedded default (one loop-file disk of
 * `sizeBytes` under its state dir) without --device, else an allowlist of exactly the k-th
 * device (and no embedded disks). Agents and temp bricks of one case must not run at the
 * same time on the same device.
 */
export function agentBrickFlags(k: number, sizeBytes: number): AgentBrickFlags {
  if (benchDevices.length === 0) {
    return { args: ['--embedded', '--embedded-count', '1', '--embedded-size-bytes', String(sizeBytes)] };
  }
  const device = benchDevices[k];
  if (device === undefined) {
    throw new Error(`agent ${k + 1} needs a device of its own, and ${benchDevices.length} were given with --device (${benchDevices.join(', ')})`);
  }
  return { args: ['--no-embedded', '--allow', device], adopt: device };
}

/**
 * After an agent adopted `device` and exited (with --unmount-on-exit, so its brick is
 * unmounted), make the device blank again as BrickManager.release does: erase its
 * signatures. Only a device of this run that carries a brickd brick and is not in use;
 * anything else is refused untouched.
 */
export async function eraseAgentBrick(device: string): Promise<void> {
  if (!benchDevices.includes(device)) throw new Error(`${device} is not a --device of this run`);
  const found = await findBlockDevice(device);
  if (!found) throw new Error(`--device ${device} is gone`);
  const report = await assessDevice(found, { allow: [found.path], minSizeBytes: 0 }, await mountpointsByDevice());
  if (!report.brick) return; // nothing of ours on it (never adopted, or already released)
  const busy = report.reasons.filter((r) => r.code === 'MOUNTED' || r.code === 'HELD' || r.code === 'IN_USE');
  if (busy.length > 0) throw new Error(`${device} still holds brick ${report.brick.brickId}: ${busy.map((r) => r.message).join('; ')}`);
  await native.wipeSignatures(found.path);
}

/**
 * Write back every dirty page of the machine (the loop bricks' backing files included) and
 * wait for it, keeping the page cache: a phase that follows starts without the writeback
 * of the one before going on underneath it. Global to the machine: only for benchmarks.
 */
export async function writeBackAll(): Promise<void> {
  await run('sync', []);
}

/**
 * Write back dirty pages, then drop the page cache (and dentries/inodes), so the next
 * read comes from the device. Global to the machine: only for benchmarks.
 */
export async function dropCaches(): Promise<void> {
  await writeBackAll();
  await writeFile('/proc/sys/vm/drop_caches', '3');
}

/**
 * Read requests the block device has completed so far (the first field of its sysfs stat):
 * the difference over a phase, divided by the MiB it read, says how the I/O reached the
 * device (1 per MiB: each 1 MiB read whole; 2: each split in two).
 */
export async function deviceReadRequests(device: string): Promise<number> {
  const stat = await readFile(`/sys/class/block/${path.basename(device)}/stat`, 'utf8');
  return Number(stat.trim().split(/\s+/)[0]);
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
