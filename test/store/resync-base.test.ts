// The base seq of an incremental resync (ReplicaManifest.resyncBase, docs/replication.md
// "Resuming an incremental resync"): kept with the resyncing flag across a reopen, replaced
// or dropped by the next BEGIN, gone with the flag at the end; a bad one is refused by
// beginResync (nothing changes) and by open (a damaged manifest).
import { readFile, writeFile } from 'node:fs/promises';
import t from 'tap';
import { replicaManifestPath } from '../../src/store/manifest.js';
import { ReplicaStore } from '../../src/store/store.js';
import { needsRoot } from '../helpers/loop.js';
import { replicaDir, testBrick, testStore } from '../helpers/store.js';

const OPEN = { checkpointIntervalMs: 0 };

t.test('the resync base: kept while flagged, replaced, dropped, refused when bad', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  let store = await testStore(t, brick, { volumeId: 'vol1', generation: 4 });
  const dir = replicaDir(brick, 'vol1');
  const manifest = async () => JSON.parse(await readFile(replicaManifestPath(dir), 'utf8')) as Record<string, unknown>;
  await store.create('a');
  t.equal(store.resyncBase, undefined, 'not resyncing: no base');

  await t.rejects(store.beginResync(10n, [], { seq: 11n, generation: 4 }), RangeError, 'a base past s0 is refused');
  await t.rejects(store.beginResync(10n, [], { seq: 5n, generation: -1 }), RangeError, 'a negative generation is refused');
  t.equal(store.resyncing, false, 'and nothing changed');
  t.equal((await manifest()).resyncing, undefined);

  await store.beginResync(10n, [], { seq: 7n, generation: 4 });
  t.same(store.resyncBase, { seq: 7n, generation: 4 });
  t.same((await manifest()).resyncBase, { seq: '7', generation: 4 }, 'in the manifest, the seq as a decimal string');
  await store.close();
  store = await ReplicaStore.open(dir, OPEN);
  t.equal(store.resyncing, true);
  t.same(store.resyncBase, { seq: 7n, generation: 4 }, 'kept across a reopen (a crash mid-resync)');

  await store.beginResync(12n, [], { seq: 7n, generation: 5 });
  t.same(store.resyncBase, { seq: 7n, generation: 5 }, 'a BEGIN with another base replaces it');
  await store.beginResync(13n);
  t.equal(store.resyncBase, undefined, 'a BEGIN without a base (a full comparison) drops it');
  t.notOk('resyncBase' in (await manifest()));
  await store.beginResync(14n, [], { seq: 14n, generation: 5 });
  t.same(store.resyncBase, { seq: 14n, generation: 5 }, 'a base at s0 itself is fine');
  await store.endResync(new Map());
  t.equal(store.resyncBase, undefined, 'gone with the flag');
  const ended = await manifest();
  t.notOk('resyncBase' in ended || 'resyncing' in ended, 'neither is in the manifest');
  await store.close();

  const damaged: Array<[string, Record<string, unknown>]> = [
    ['a base without the flag', { ...ended, resyncBase: { seq: '3', generation: 1 } }],
    ['a seq that is not a decimal string', { ...ended, resyncing: true, resyncBase: { seq: 3, generation: 1 } }],
    ['a seq beyond 64 bits', { ...ended, resyncing: true, resyncBase: { seq: '18446744073709551616', generation: 1 } }],
    ['a fractional generation', { ...ended, resyncing: true, resyncBase: { seq: '3', generation: 1.5 } }],
    ['not an object', { ...ended, resyncing: true, resyncBase: 'seq 3' }],
  ];
  for (const [name, bad] of damaged) {
    await writeFile(replicaManifestPath(dir), JSON.stringify(bad));
    await t.rejects(ReplicaStore.open(dir, OPEN), { code: 'VOLUME_NOT_FOUND', message: /resyncBase/ }, `${name}: refused, naming the field`);
  }
  await writeFile(replicaManifestPath(dir), JSON.stringify(ended));
  store = await ReplicaStore.open(dir, OPEN);
  t.equal(store.resyncing, false, 'the good manifest opens again');
  await store.close();
});
