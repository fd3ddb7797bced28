// A replica store on a real brick: a loop device formatted XFS by the brick layer, with the
// store created under <brick>/volumes/<volumeId>. Closed and unmounted at teardown.
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { ACTIVITY_FILE, ActivityLog, type Suspects } from '../../src/store/activity.js';
import { ReplicaStore, type CreateReplicaOptions, type StoreOptions } from '../../src/store/store.js';
import { brickManager } from './bricks.js';
import { loopDevice } from './loop.js';

export interface TestBrick {
  root: string;
  device: string;
}

/** One mounted XFS brick (320 MiB unless told otherwise). */
export async function testBrick(t: Test, sizeMiB = 320, fsType: 'xfs' | 'ext4' = 'xfs'): Promise<TestBrick> {
  const device = await loopDevice(t, sizeMiB);
  const bricks = await brickManager(t, { allow: [device], fsType, minSizeBytes: 0 });
  const brick = await bricks.adopt(device);
  return { root: brick.mountPath, device };
}

export function replicaDir(brick: TestBrick, volumeId = 'vol1'): string {
  return path.join(brick.root, 'volumes', volumeId);
}

/**
 * What the activity log of the replica in `dir` names now, as an unclean stop would leave
 * it (the store may be open and writing). Read from a copy: opening a log writes to it.
 */
export async function suspectsNow(dir: string): Promise<Suspects> {
  const copyDir = await mkdtemp(path.join(tmpdir(), 'brickd-activity-'));
  try {
    const copy = path.join(copyDir, ACTIVITY_FILE);
    await copyFile(path.join(dir, '.brickd', ACTIVITY_FILE), copy);
    const { log, suspects } = await ActivityLog.open(copy);
    await log.close(false);
    return suspects;
  } finally {
    await rm(copyDir, { recursive: true, force: true });
  }
}

/** Create a store on `brick`; closed at teardown (if the test did not close it). */
export async function testStore(
  t: Test,
  brick: TestBrick,
  replica: Partial<CreateReplicaOptions> = {},
  options: StoreOptions = {},
): Promise<ReplicaStore> {
  const volumeId = replica.volumeId ?? 'vol1';
  const store = await ReplicaStore.create(
    replicaDir(brick, volumeId),
    { volumeId, sizeLimitBytes: replica.sizeLimitBytes ?? 256 * 2 ** 20, ...replica },
    { segmentBytes: 4 * 2 ** 20, checkpointIntervalMs: 0, ...options },
  );
  t.teardown(() => store.close().catch(() => {}));
  return store;
}
