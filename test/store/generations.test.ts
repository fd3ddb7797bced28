// The generation history (src/store/generations.ts): the pure rules, then a real store on a
// loop-device brick recording, persisting, refusing and replacing it.
import { readFile, writeFile } from 'node:fs/promises';
import t from 'tap';
import { generationAt, historyProblem, MAX_GENERATION_STARTS, withGenerationStart, type GenerationStart } from '../../src/store/generations.js';
import { replicaManifestPath } from '../../src/store/manifest.js';
import { ReplicaStore } from '../../src/store/store.js';
import { needsRoot } from '../helpers/loop.js';
import { replicaDir, testBrick, testStore } from '../helpers/store.js';

const starts = (...pairs: Array<[number, number]>): GenerationStart[] => pairs.map(([fromSeq, generation]) => ({ fromSeq: BigInt(fromSeq), generation }));

t.test('generationAt, withGenerationStart and historyProblem', async (t) => {
  const h = starts([1, 1], [10, 3], [20, 4]);
  t.same([0n, 1n, 9n, 10n, 19n, 20n, 999n].map((s) => generationAt(h, s)), [undefined, 1, 1, 3, 3, 4, 4]);
  t.equal(generationAt([], 5n), undefined, 'no history: unknown');
  t.equal(withGenerationStart(h, 25n, 4), h, 'the same generation again: unchanged (no manifest write)');
  t.same(withGenerationStart(h, 25n, 6), starts([1, 1], [10, 3], [20, 4], [25, 6]), 'a new generation starts at the next seq');
  t.same(withGenerationStart(h, 20n, 5), starts([1, 1], [10, 3], [20, 5]), 'a start no seq used (left by a crash) is replaced');
  t.same(withGenerationStart(h, 15n, 3), starts([1, 1], [10, 3]), 'a later start no seq used is dropped, the covering one stays');
  const long = Array.from({ length: MAX_GENERATION_STARTS }, (_, i) => ({ fromSeq: BigInt(i + 1), generation: i }));
  const longer = withGenerationStart(long, 1000n, 1000);
  t.equal(longer.length, MAX_GENERATION_STARTS, 'capped');
  t.equal(generationAt(longer, 1n), undefined, 'the oldest start dropped: its seqs are unknown now, not misattributed');
  t.equal(generationAt(longer, 2n), 1);
  t.equal(historyProblem(h), undefined);
  t.match(historyProblem(starts([1, 2], [5, 2])), /does not follow/);
  t.match(historyProblem(starts([5, 1], [5, 2])), /does not follow/);
  t.match(historyProblem(starts([0, 1])), /out of range/);
  t.match(historyProblem([...long, { fromSeq: 1000n, generation: 1000 }]), /more than 64/);
});

t.test('a store records the generation of every seq it makes, durably, and a resync replaces it', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const dir = replicaDir(brick, 'vol1');
  const resyncs: bigint[] = [];
  let store = await testStore(t, brick, { generation: 2 }, { onResyncBegin: (s0) => void resyncs.push(s0) });
  t.same(store.generationHistory, [], 'a new store holds no seq and no history');
  await store.create('a');
  await store.write('a', 0, Buffer.alloc(5000, 1));
  t.same(store.generationHistory, starts([1, 2]));
  await store.raiseGeneration(5);
  t.same(store.generationHistory, starts([1, 2]), 'raising the generation alone makes no start');
  await store.write('a', 100, Buffer.alloc(100, 2));
  await store.mkdir('d');
  t.same(store.generationHistory, starts([1, 2], [3, 5]), 'the first mutation at generation 5 starts it, the next adds nothing');
  await store.close();

  store = await ReplicaStore.open(dir, { checkpointIntervalMs: 0, onResyncBegin: (s0) => void resyncs.push(s0) });
  t.teardown(() => store.close().catch(() => {}));
  t.same(store.generationHistory, starts([1, 2], [3, 5]), 'kept across a reopen');
  t.same([2n, 3n, 4n].map((s) => store.generationAt(s)), [2, 5, 5]);
  const manifest = JSON.parse(await readFile(replicaManifestPath(dir), 'utf8')) as { generations: unknown };
  t.same(manifest.generations, [{ fromSeq: '1', generation: 2 }, { fromSeq: '3', generation: 5 }], 'in the manifest, seqs as decimal strings');

  // A resync makes this replica a copy of another primary's tree at s0: its history too.
  t.same(resyncs, [], 'onResyncBegin: not yet');
  await store.beginResync(40n, starts([1, 2], [30, 6], [41, 7]));
  t.same(resyncs, [40n], 'onResyncBegin told of the resync at s0 (the tree changes outside the mutations)');
  t.same(store.generationHistory, starts([1, 2], [30, 6]), 'the primary\'s starts up to s0 replace ours');
  await store.endResync(new Map());
  await store.raiseGeneration(7);
  await store.applyReplicated(41n, { op: 'mkdir', path: 'e', fid: 'abababababababab', mode: 0o755 });
  t.same(store.generationHistory, starts([1, 2], [30, 6], [41, 7]));
  await t.rejects(store.beginResync(50n, starts([1, 3], [5, 3])), RangeError, 'a malformed history is refused');
  t.same(store.generationHistory, starts([1, 2], [30, 6], [41, 7]), 'and changes nothing');
  await store.close();

  // A manifest without the list (an older agent's) opens with no history.
  const text = JSON.parse(await readFile(replicaManifestPath(dir), 'utf8')) as Record<string, unknown>;
  delete text.generations;
  await writeFile(replicaManifestPath(dir), JSON.stringify(text));
  store = await ReplicaStore.open(dir, { checkpointIntervalMs: 0 });
  t.same(store.generationHistory, [], 'an older manifest: no history');
  t.equal(store.generationAt(store.appliedSeq), undefined, 'its seqs have no known generation');
  await store.create('after-upgrade');
  t.same(store.generationHistory, starts([42, 7]), 'the first mutation afterwards starts one');
  await store.close();

  for (const bad of ['not a list', [{ fromSeq: 1, generation: 1 }], [{ fromSeq: '5', generation: 2 }, { fromSeq: '5', generation: 3 }]]) {
    await writeFile(replicaManifestPath(dir), JSON.stringify({ ...text, generations: bad }));
    await t.rejects(ReplicaStore.open(dir, { checkpointIntervalMs: 0 }), { code: 'VOLUME_NOT_FOUND', message: /generations/ }, `refused: ${JSON.stringify(bad)}`);
  }
});
