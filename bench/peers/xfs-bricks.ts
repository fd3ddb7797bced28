// Bricks for a GlusterFS peer, made the way Heketi makes them: XFS with 512-byte inodes
// (room for Gluster's xattrs) and 8 KiB directory blocks, mounted rw,inode64,noatime,nouuid,
// the brick itself a subdirectory of the mount (so an unmounted brick is an empty mount
// point, not a brick). Heketi puts them on LVM thin volumes; here each is a loop device
// over a sparse file on disk, like brickd's embedded bricks in the same case, so both sides
// sit on the same kind of device. May touch: only the files, loop devices and mounts it
// makes under `dir`; every one is registered on the caller's undo stack as it is made.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { attachLoop, createSparseFile, detachLoop } from '../../src/brick/loop.js';
import { parseMountOptions } from '../../src/brick/mountopts.js';
import { run } from '../../src/exec.js';
import { native, UmountFlags } from '../../src/native.js';
import type { UndoStack } from './undo.js';

export const XFS_BRICK_MKFS = ['-q', '-i', 'size=512', '-n', 'size=8192'] as const;
export const XFS_BRICK_MOUNT_OPTIONS = 'rw,inode64,noatime,nouuid';

export interface XfsBrick {
  device: string;
  mountPath: string;
  /** The directory handed to the peer as its brick. */
  brickDir: string;
}

export async function makeXfsBricks(dir: string, count: number, sizeBytes: number, undo: UndoStack): Promise<XfsBrick[]> {
  const { flags, data } = parseMountOptions(XFS_BRICK_MOUNT_OPTIONS);
  const bricks: XfsBrick[] = [];
  for (let i = 0; i < count; i++) {
    const image = path.join(dir, `brick-${i}.img`);
    await createSparseFile(image, sizeBytes);
    const device = await attachLoop(image);
    undo.push(`detach ${device}`, () => detachLoop(device));
    await run('mkfs.xfs', [...XFS_BRICK_MKFS, device], { timeoutMs: 600_000 });
    const mountPath = path.join(dir, `brick-${i}`);
    await mkdir(mountPath);
    await native.mount(device, mountPath, 'xfs', flags, data);
    // A brick process killed late may still hold files open: detach lazily then, so the
    // loop device can still go.
    undo.push(`unmount ${mountPath}`, () => native.umount(mountPath, 0).catch(() => native.umount(mountPath, UmountFlags.MNT_DETACH)));
    const brickDir = path.join(mountPath, 'brick');
    await mkdir(brickDir);
    bricks.push({ device, mountPath, brickDir });
  }
  return bricks;
}
