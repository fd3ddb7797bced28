// A volume served through a real FUSE mount in the test process: a real brick (loop
// device, XFS), a real ReplicaStore on it, a FuseMount on a fresh mount point. Torn down
// (unmounted, then the mount point removed, the store closed, the brick unmounted and its
// loop device detached) even when the test fails.
//
// FUSE ops run on this process's event loop: never make blocking (sync) fs calls on the
// mount from the test, they would wait for the loop they block. Use fs/promises one call
// at a time, or child processes (cp, tar, dd, sqlite3).
import { existsSync } from 'node:fs';
import type { Test } from 'tap';
import { FuseMount, type FuseMountOptions } from '../../src/fuse/mount.js';
import type { ReplicaStore } from '../../src/store/store.js';
import { storeBackend, type VolumeBackend } from '../../src/volume/backend.js';
import { needsRoot } from './loop.js';
import { mountInfoAt, mountPoint } from './mount.js';
import { testBrick, testStore, type TestBrick } from './store.js';

/** Why a FUSE test is skipped, or false to run it. */
export function needsFuse(): string | false {
  const root = needsRoot();
  if (root) return `${root}; and needs root for FUSE allow_other mounts`;
  return existsSync('/dev/fuse') ? false : 'needs /dev/fuse (FUSE kernel module) to mount volumes';
}

export interface FuseVolume {
  brick: TestBrick;
  store: ReplicaStore;
  backend: VolumeBackend;
  mnt: string;
  fuse: FuseMount;
}

export interface FuseVolumeOptions extends FuseMountOptions {
  sizeLimitBytes?: number;
  brickMiB?: number;
  /** Serve it in write-back mode (coalesced writes, fsync as the barrier), as the agent serves a primary. */
  writeBack?: boolean;
  /** Wrap the store's backend (e.g. to make it hang). */
  wrap?: (backend: VolumeBackend) => VolumeBackend;
}

export async function fuseVolume(t: Test, options: FuseVolumeOptions = {}): Promise<FuseVolume> {
  const brick = await testBrick(t, options.brickMiB ?? 320);
  const store = await testStore(t, brick, options.sizeLimitBytes ? { sizeLimitBytes: options.sizeLimitBytes } : {});
  const base = storeBackend(store, options.writeBack ? { writeBack: { maxUnsyncedBytes: 32 * 2 ** 20 } } : {});
  const backend = options.wrap ? options.wrap(base) : base;
  const mnt = await mountPoint(t, 'brickd-fuse-');
  const fuse = new FuseMount();
  await fuse.mount(backend, mnt, options);
  t.teardown(async () => {
    await fuse.unmount().catch(() => {});
    if (await mountInfoAt(mnt)) throw new Error(`a mount is left at ${mnt} after unmount`);
  });
  return { brick, store, backend, mnt, fuse };
}
