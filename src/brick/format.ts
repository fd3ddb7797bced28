// Making and mounting a brick filesystem: mkfs with brickd's label and UUID, mount(2)
// with brick options, and verification of the result against /proc/self/mountinfo.
//
// Label: "brickd-" + the first 5 hex digits of the brick id (XFS labels hold at most 12
// characters). UUID: the brick id itself, so the filesystem names its brick.
import { mkdir, stat } from 'node:fs/promises';
import { BrickdError } from '../errors.js';
import { run } from '../exec.js';
import { native, UmountFlags } from '../native.js';
import { BRICK_LABEL_PREFIX } from './discover.js';
import { mountAt } from './mountinfo.js';
import { BRICK_MOUNT_OPTIONS, parseMountOptions } from './mountopts.js';

export type BrickFsType = 'xfs' | 'ext4';

export function brickLabel(brickId: string): string {
  return BRICK_LABEL_PREFIX + brickId.replace(/-/g, '').slice(0, 5);
}

/** The mkfs command line for a brick (exported so tests and docs show exactly what runs). */
export function mkfsCommand(fsType: BrickFsType, device: string, brickId: string): { tool: string; args: string[] } {
  const label = brickLabel(brickId);
  if (fsType === 'xfs') {
    // -i size=512: room for Gluster-style xattrs (brickd's file ids, checksum metadata) in
    // the inode; -n size=8192: larger directory blocks for big directories. Both are the
    // brick settings Heketi uses. No -f: mkfs.xfs itself refuses a device with a filesystem,
    // a second guard behind brickd's own signature check and wipe.
    return { tool: 'mkfs.xfs', args: ['-q', '-i', 'size=512', '-n', 'size=8192', '-L', label, '-m', `uuid=${brickId}`, device] };
  }
  // -E lazy_itable_init=0,lazy_journal_init=0: initialise now rather than in the background
  // under the first workload; -m 0: a brick reserves no blocks for root.
  return {
    tool: 'mkfs.ext4',
    args: ['-q', '-F', '-L', label, '-U', brickId, '-m', '0', '-E', 'lazy_itable_init=0,lazy_journal_init=0', device],
  };
}

export async function makeBrickFilesystem(fsType: BrickFsType, device: string, brickId: string): Promise<void> {
  const { tool, args } = mkfsCommand(fsType, device, brickId);
  await run(tool, args, { timeoutMs: 600_000 });
}

/** "major:minor" of a block device node. */
export async function devNumberOf(device: string): Promise<string> {
  const s = await stat(device, { bigint: true });
  if (!s.isBlockDevice()) throw new BrickdError('DEVICE_NOT_FOUND', `${device} is not a block device`, { device });
  // Linux dev_t (glibc's major()/minor()): major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31.
  const rdev = s.rdev;
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}

/**
 * Mount `device` at `target` with the brick options for `fsType`, then check in mountinfo
 * that exactly that device is mounted there. Idempotent: an existing correct mount is kept.
 */
export async function mountBrick(device: string, target: string, fsType: BrickFsType): Promise<void> {
  const devNumber = await devNumberOf(device);
  const existing = await mountAt(target);
  if (existing?.devNumber === devNumber) return;
  await mkdir(target, { recursive: true, mode: 0o755 });
  const { flags, data } = parseMountOptions(BRICK_MOUNT_OPTIONS[fsType]);
  try {
    await native.mount(device, target, fsType, flags, data);
  } catch (err) {
    throw new BrickdError('MOUNT_FAILED', `mount ${device} at ${target}: ${(err as Error).message}`, { device, target }, err);
  }
  const entry = await mountAt(target);
  if (!entry || entry.devNumber !== devNumber || entry.fsType !== fsType) {
    throw new BrickdError('MOUNT_FAILED', `mountinfo does not show ${device} (${devNumber}) as ${fsType} at ${target}`, {
      device,
      target,
      found: entry,
    });
  }
}

/** Unmount a brick; `lazy` detaches it even if busy or its device is gone (MNT_DETACH). */
export async function unmountBrick(target: string, lazy = false): Promise<void> {
  await native.umount(target, lazy ? UmountFlags.MNT_DETACH : 0);
}
