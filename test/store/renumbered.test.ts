// Seq reservations and renumbered ranges (src/store/renumbered.ts): the pure rules, then a
// real store on a loop-device brick reserving before it numbers, dropping the reservation
// at a clean close, and recording the range an unclean one leaves.
import { readFile, writeFile } from 'node:fs/promises';
import t from 'tap';
import { replicaManifestPath } from '../../src/store/manifest.js';
import { afterRecovery, isRenumbered, MAX_RENUMBERED_RANGES, parseRanges, parseReservation, SEQ_RESERVATION } from '../../src/store/renumbered.js';
import { ReplicaStore } from '../../src/store/store.js';
import { needsRoot } from '../helpers/loop.js';
import { replicaDir, testBrick, testStore } from '../helpers/store.js';

t.test('afterRecovery, isRenumbered and the parsers', async (t) => {
  t.same(afterRecovery([], undefined, 9n), [], 'no reservation: nothing to record');
  t.same(afterRecovery([], { generation: 1, throughSeq: 9n }, 9n), [], 'a reservation the log reaches: nothing lost');
  const ranges = afterRecovery([], { generation: 3, throughSeq: 100n }, 9n);
  t.same(ranges, [{ generation: 3, fromSeq: 10n, toSeq: 100n }]);
  t.ok(isRenumbered(ranges, 10n, 3) && isRenumbered(ranges, 100n, 3));
  t.notOk(isRenumbered(ranges, 9n, 3) || isRenumbered(ranges, 101n, 3), 'outside the range');
  t.notOk(isRenumbered(ranges, 50n, 2), 'another generation\'s seq');
  t.ok(isRenumbered(ranges, 50n, undefined), 'a seq of unknown generation: suspect');
  let many: ReturnType<typeof afterRecovery> = [];
  for (let i = 0; i < MAX_RENUMBERED_RANGES + 3; i++) many = afterRecovery(many, { generation: 1, throughSeq: BigInt(i * 10 + 5) }, BigInt(i * 10));
  t.equal(many.length, MAX_RENUMBERED_RANGES, 'bounded');
  t.equal(many[0]!.fromSeq, 31n, 'the oldest dropped');
  t.same(parseReservation({ generation: 2, throughSeq: '77' }, 'm'), { generation: 2, throughSeq: 77n });
  t.same(parseRanges([{ generation: 2, fromSeq: '5', toSeq: '9' }], 'm'), [{ generation: 2, fromSeq: 5n, toSeq: 9n }]);
  for (const bad of [null, { generation: -1, throughSeq: '1' }, { generation: 1, throughSeq: 5 }, { generation: 1, throughSeq: '-5' }]) {
    t.throws(() => parseReservation(bad, 'm'), { code: 'VOLUME_NOT_FOUND' }, `reservation ${JSON.stringify(bad)}`);
  }
  for (const bad of ['x', [{ generation: 1, fromSeq: '9', toSeq: '5' }], [{ generation: 1, fromSeq: '0', toSeq: '5' }], [{ generation: 1.5, fromSeq: '1', toSeq: '5' }]]) {
    t.throws(() => parseRanges(bad, 'm'), { code: 'VOLUME_NOT_FOUND' }, `ranges ${JSON.stringify(bad)}`);
  }
});

t.test('a store reserves before it numbers, drops the reservation at a clean close, records the range after a crash', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const dir = replicaDir(brick, 'vol1');
  const manifest = async () => JSON.parse(await readFile(replicaManifestPath(dir), 'utf8')) as Record<string, unknown>;
  let store = await testStore(t, brick, { generation: 2 });
  t.equal((await manifest()).seqReservation, undefined, 'nothing numbered yet: no reservation');
  await store.create('a');
  t.same((await manifest()).seqReservation, { generation: 2, throughSeq: String(SEQ_RESERVATION) }, 'the first local mutation reserves seqs 1..SEQ_RESERVATION');
  await store.raiseGeneration(3);
  await store.write('a', 0, Buffer.from('x'));
  t.same((await manifest()).seqReservation, { generation: 3, throughSeq: String(1n + SEQ_RESERVATION) }, 'a new generation reserves anew from its first seq');
  await store.close();
  t.equal((await manifest()).seqReservation, undefined, 'a clean close drops it');
  store = await ReplicaStore.open(dir, { checkpointIntervalMs: 0 });
  t.notOk(store.renumbered(3n, 3), 'and the next open records nothing');
  await store.close();

  // An unclean stop: the manifest still holds the reservation the crash left.
  await writeFile(replicaManifestPath(dir), JSON.stringify({ ...(await manifest()), seqReservation: { generation: 3, throughSeq: '500' } }));
  store = await ReplicaStore.open(dir, { checkpointIntervalMs: 0 });
  t.teardown(() => store.close().catch(() => {}));
  t.equal(store.appliedSeq, 2n);
  t.ok(store.renumbered(3n, 3) && store.renumbered(500n, 3), 'seqs 3..500 of generation 3 are recorded as renumbered');
  t.notOk(store.renumbered(2n, 3) || store.renumbered(501n, 3) || store.renumbered(3n, 2));
  const after = await manifest();
  t.same(after.renumbered, [{ generation: 3, fromSeq: '3', toSeq: '500' }], 'durably, in the manifest');
  t.equal(after.seqReservation, undefined, 'the old reservation is gone');

  // A replica's store numbers nothing itself: it reserves nothing.
  const replica = await testStore(t, brick, { volumeId: 'vol2', generation: 3 });
  await replica.applyReplicated(1n, { op: 'mkdir', path: 'd', fid: 'abababababababab', mode: 0o755 });
  t.equal((JSON.parse(await readFile(replicaManifestPath(replicaDir(brick, 'vol2')), 'utf8')) as Record<string, unknown>).seqReservation, undefined, 'replicated mutations reserve nothing');

  for (const [field, bad] of [['seqReservation', { generation: 1 }], ['renumbered', [{ generation: 1, fromSeq: '3', toSeq: '2' }]]] as const) {
    await store.close();
    await writeFile(replicaManifestPath(dir), JSON.stringify({ ...after, [field]: bad }));
    await t.rejects(ReplicaStore.open(dir, { checkpointIntervalMs: 0 }), { code: 'VOLUME_NOT_FOUND', message: new RegExp(field) }, `a malformed ${field} is refused`);
  }
});
