// The volume's incarnation (manifest `volumeUid`, docs/replication.md "Volume incarnation"):
// set at creation or adopted once, durably; never replaced; a malformed one refused.
import { readFile, writeFile } from 'node:fs/promises';
import t from 'tap';
import { replicaManifestPath } from '../../src/store/manifest.js';
import { ReplicaStore } from '../../src/store/store.js';
import { needsRoot } from '../helpers/loop.js';
import { replicaDir, testBrick, testStore } from '../helpers/store.js';

const U1 = '0b6f3c1e-7a52-4d8e-9c11-5e2a7f90d3b4';
const U2 = 'pvc-2b9d1e47-61aa-4f0c-8d3e-a07c5b6e2f19';

t.test('a replica without an incarnation adopts one, durably, and then refuses any other', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const dir = replicaDir(brick, 'vol1');
  let store = await testStore(t, brick);
  t.equal(store.volumeUid, undefined, 'created without one: none');
  await store.create('a');
  await store.adoptVolumeUid(U1);
  t.equal(store.volumeUid, U1);
  await store.adoptVolumeUid(U1);
  t.equal(store.volumeUid, U1, 'the same one again: nothing to do');
  const before = await readFile(replicaManifestPath(dir), 'utf8');
  await t.rejects(store.adoptVolumeUid(U2), { code: 'VOLUME_MISMATCH', message: new RegExp(`incarnation ${U1}, not ${U2}`) });
  t.equal(store.volumeUid, U1, 'a refused uid changes nothing in memory');
  t.equal(await readFile(replicaManifestPath(dir), 'utf8'), before, 'nor on disk');
  await t.rejects(store.adoptVolumeUid('../x'), RangeError, 'a malformed uid is misuse');

  // Kept by a resync (the tree is replaced, the volume is the same) and across a reopen.
  await store.beginResync(5n, []);
  await store.endResync(new Map());
  await store.close();
  store = await ReplicaStore.open(dir, { checkpointIntervalMs: 0 });
  t.teardown(() => store.close().catch(() => {}));
  t.equal(store.volumeUid, U1, 'kept across a resync and a reopen');
  t.equal((JSON.parse(await readFile(replicaManifestPath(dir), 'utf8')) as { volumeUid: string }).volumeUid, U1, 'in the manifest');
  await store.close();

  // A damaged manifest value is not taken for "none".
  const text = JSON.parse(await readFile(replicaManifestPath(dir), 'utf8')) as Record<string, unknown>;
  for (const bad of ['', 'a|b', 42, '../v']) {
    await writeFile(replicaManifestPath(dir), JSON.stringify({ ...text, volumeUid: bad }));
    await t.rejects(ReplicaStore.open(dir, { checkpointIntervalMs: 0 }), { code: 'VOLUME_NOT_FOUND' }, `refused: ${JSON.stringify(bad)}`);
  }
});

t.test('two uids racing for a replica without one: exactly one is adopted', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  const results = await Promise.allSettled([store.adoptVolumeUid(U1), store.adoptVolumeUid(U2)]);
  t.same(
    results.map((r) => r.status),
    ['fulfilled', 'rejected'],
    'the first to take the store mutex wins',
  );
  t.equal(store.volumeUid, U1);
  t.match((results[1] as PromiseRejectedResult).reason, { code: 'VOLUME_MISMATCH' });
});

t.test('a replica created with an incarnation holds it; a create naming another is refused', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick, { volumeUid: U2 });
  t.equal(store.volumeUid, U2);
  await store.close();
  const dir = replicaDir(brick, 'vol1');
  const again = await ReplicaStore.create(dir, { volumeId: 'vol1', sizeLimitBytes: 256 * 2 ** 20 }, { checkpointIntervalMs: 0 });
  t.equal(again.volumeUid, U2, 'a create that names none opens the replica as it is');
  await again.close();
  const same = await ReplicaStore.create(dir, { volumeId: 'vol1', sizeLimitBytes: 256 * 2 ** 20, volumeUid: U2 }, { checkpointIntervalMs: 0 });
  await same.close();
  await t.rejects(ReplicaStore.create(dir, { volumeId: 'vol1', sizeLimitBytes: 256 * 2 ** 20, volumeUid: U1 }, { checkpointIntervalMs: 0 }), { code: 'VOLUME_EXISTS' });
  await t.rejects(ReplicaStore.create(replicaDir(brick, 'vol2'), { volumeId: 'vol2', sizeLimitBytes: 2 ** 20, volumeUid: 'a/b' }), RangeError);
});
