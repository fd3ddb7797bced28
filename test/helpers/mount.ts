// Test mounts: empty mount points in temp dirs, /proc/self/mountinfo lookups, and a real
// mount(2) of a test device that is undone at teardown.
//
// A mount point's teardown unmounts whatever is still mounted on it (lazily, with the
// system `umount`, so it does not depend on the code under test) and then removes the
// directory with rmdir, never recursively: a recursive delete through a mount that
// survived would empty the filesystem under it. Register a mount point after the loop
// device it mounts, so that (teardowns running in reverse) it is unmounted before the
// device is detached.
import { mkdtemp, rmdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { mountAt, readMountInfo, type MountEntry } from '../../src/brick/mountinfo.js';
import { run } from '../../src/exec.js';
import { native } from '../../src/native.js';

export type MountInfoEntry = MountEntry;
export { readMountInfo };

/** The mount on top at `target`, if any. */
export const mountInfoAt = mountAt;

/** An empty directory to mount on; at teardown anything on it is unmounted, then it is rmdir'd. */
export async function mountPoint(t: Test, prefix = 'brickd-mnt-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(async () => {
    // Bounded: mounts may be stacked, but not without end.
    for (let i = 0; i < 8 && (await mountInfoAt(dir)); i++) await run('umount', ['--lazy', dir]);
    await rmdir(dir);
  });
  return dir;
}

/** Mount `device` (a test loop device) on a fresh mount point with native.mount; undone at teardown. */
export async function mountForTest(t: Test, device: string, fsType: string, flags = 0, data = ''): Promise<string> {
  const dir = await mountPoint(t);
  await native.mount(device, dir, fsType, flags, data);
  return dir;
}

/**
 * The power goes off under the XFS mounted at `target`: it stops at once, dropping its dirty
 * page cache and unflushed journal (`xfs_io -x -c shutdown` without -f, as xfstests' godown);
 * what reached the device survives. Returns how to bring it back: unmount, and mount the
 * same device with the same options again (XFS replays its journal).
 */
export async function cutPower(target: string): Promise<() => Promise<void>> {
  const entry = await mountInfoAt(target);
  if (!entry || entry.fsType !== 'xfs') throw new Error(`no XFS mounted at ${target}`);
  await run('xfs_io', ['-x', '-c', 'shutdown', target]);
  return async () => {
    await run('umount', [target]);
    await run('mount', ['-t', 'xfs', '-o', entry.mountOptions.join(','), entry.source, target]);
  };
}
