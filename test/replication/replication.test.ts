// Replication on real TCP (loopback) between stores on their own loop-device bricks:
// a primary and two replicas with write quorum 2 of 3, a replica that goes away and
// resumes, a quorum that cannot be reached, and a retained queue that a replica outruns.
import t, { type Test } from 'tap';
import { ReplicaStore } from '../../src/store/store.js';
import { rejectsWithCode } from '../helpers/assert.js';
import { needsRoot } from '../helpers/loop.js';
import { pattern } from '../helpers/random.js';
import { startPrimary, startReplica, treeOf, until, type PrimaryNode, type ReplicaNode } from '../helpers/replication.js';
import { replicaDir } from '../helpers/store.js';


/** A mixed workload through the primary, every step waiting for its quorum. */
async function workload(p: PrimaryNode, tag: string): Promise<void> {
  const { store, replicated } = p;
  await replicated(store.mkdir(tag));
  await replicated(store.create(`${tag}/small`));
  await replicated(store.create(`${tag}/big`));
  // Concurrent writes, small (logged) and large (direct on every store), to two files.
  await Promise.all([
    ...Array.from({ length: 16 }, (_, i) => replicated(store.write(`${tag}/small`, i * 1000, pattern(1000, i + 1)))),
    ...Array.from({ length: 4 }, (_, i) => replicated(store.write(`${tag}/big`, i * 2 ** 20, pattern(2 ** 20, 100 + i)))),
  ]);
  await replicated(store.write(`${tag}/big`, 100, Buffer.from('overwrite in the middle')));
  await replicated(store.symlink('small', `${tag}/link`));
  await replicated(store.link(`${tag}/small`, `${tag}/hard`));
  await replicated(store.rename(`${tag}/hard`, `${tag}/renamed`));
  await replicated(store.truncate(`${tag}/big`, 3 * 2 ** 20 + 17));
  await replicated(store.setattr(`${tag}/small`, { mode: 0o600, mtimeMs: 1_700_000_000_000 }));
  await replicated(store.create(`${tag}/gone`));
  await replicated(store.unlink(`${tag}/gone`));
  await replicated(store.mkdir(`${tag}/empty`));
  await replicated(store.rmdir(`${tag}/empty`));
}

async function allCaughtUp(t: Test, p: PrimaryNode, replicas: ReplicaNode[]): Promise<void> {
  const last = p.queue.lastSeq;
  await until(() => p.links.every((l) => l.ackedSeq >= last), `every link acked ${last}`);
  for (const r of replicas) t.equal(r.store.durableSeq, last, `${r.nodeId} durable at ${last}`);
}

t.test('a primary and two replicas over TCP: every mutation replicated, replicas identical, W=2 of 3', { skip: needsRoot() }, async (t) => {
  // Small per-connection windows on one replica, so its reads pause (backpressure) under 1 MiB writes.
  const r1 = await startReplica(t, { nodeId: 'r1', server: { maxInFlightBytes: 512 * 1024, maxInFlightMutations: 8 } });
  const r2 = await startReplica(t, { nodeId: 'r2' });
  const p = await startPrimary(t, { replicas: [{ port: r1.port, name: 'r1' }, { port: r2.port, name: 'r2' }], writeQuorum: 2, link: { maxInFlightBytes: 2 * 2 ** 20 } });
  await until(() => p.links.every((l) => l.state === 'streaming'), 'both links streaming');

  await workload(p, 'a');
  await workload(p, 'b');
  await allCaughtUp(t, p, [r1, r2]);

  const primaryTree = await treeOf(p.store);
  t.ok(primaryTree.length >= 10, `${primaryTree.length} entries`);
  t.same(await treeOf(r1.store), primaryTree, 'r1 holds the same tree: names, fids, types, modes, sizes, bytes');
  t.same(await treeOf(r2.store), primaryTree, 'r2 holds the same tree');
  // Times travel only through setattr (each store stamps its own otherwise).
  for (const r of [r1, r2]) t.equal((await r.store.stat('a/small')).mtimeMs, 1_700_000_000_000, `${r.nodeId}: setattr mtime replicated`);
  t.equal(r1.server.stats.mutations, Number(p.queue.lastSeq), 'r1 took in each mutation once');
  t.same(r1.server.stats.refused, {}, 'nothing refused');
  t.ok(r1.server.stats.pauses > 0, `r1 paused reading ${r1.server.stats.pauses} times (backpressure)`);
  t.ok(r1.server.stats.acks <= r1.server.stats.mutations, `acks coalesced or one per mutation, never more: ${r1.server.stats.acks} for ${r1.server.stats.mutations} mutations`);
  t.equal(p.queue.size, 0, 'the retained queue drops what both replicas hold');
  t.equal(p.quorum.pending, 0);
  t.same(r1.server.volumeStatus('vol1'), { appliedSeq: p.queue.lastSeq, durableSeq: p.queue.lastSeq, generation: 1, connected: true });
});

t.test('a replica that goes away mid-stream: writes still ack with W=2; it resumes from its own seq', { skip: needsRoot() }, async (t) => {
  const r1 = await startReplica(t, { nodeId: 'r1' });
  let r2 = await startReplica(t, { nodeId: 'r2' });
  const p = await startPrimary(t, { replicas: [{ port: r1.port, name: 'r1' }, { port: r2.port, name: 'r2' }], writeQuorum: 2 });
  const states: string[] = [];
  p.links[1]!.on('state', (s) => states.push(s));
  await until(() => p.links.every((l) => l.state === 'streaming'), 'both links streaming');

  // Writes in flight while r2's agent stops: its server closes and its store closes.
  for (let i = 0; i < 4; i++) await p.replicated(p.store.create(`f${i}`));
  const writes = Array.from({ length: 200 }, (_, i) => p.replicated(p.store.write(`f${i % 4}`, (i >> 2) * 8192, pattern(8192, i))).catch((err: Error) => err));
  await until(() => r2.server.stats.mutations > 20, 'r2 took in part of the stream');
  t.ok(r2.server.stats.mutations < 204, `r2 stops after ${r2.server.stats.mutations} of 204 mutations`);
  await r2.server.close();
  await r2.store.close();
  const seqAtStop = r2.store.durableSeq;
  const results = await Promise.all(writes);
  t.same(results.filter((r) => r instanceof Error), [], 'every write acked with W=2 while r2 was away');
  await p.replicated(p.store.mkdir('while-away'));
  t.not(p.links[1]!.state, 'streaming', 'r2 link is not streaming');

  // r2's agent comes back on the same port with its store reopened (log replay included).
  const store = await ReplicaStore.open(replicaDir(r2.brick, 'vol1'), { directWriteBytes: 64 * 1024 });
  t.teardown(() => store.close().catch(() => {}));
  t.equal(store.durableSeq, seqAtStop, 'r2 reopened at the seq it had');
  r2 = await startReplica(t, { nodeId: 'r2', brick: r2.brick, store, port: r2.port });
  await allCaughtUp(t, p, [r1, r2]);
  t.equal(r2.server.stats.mutations, Number(p.queue.lastSeq - seqAtStop), `r2 took in only the ${p.queue.lastSeq - seqAtStop} mutations it missed`);
  t.same(await treeOf(r2.store), await treeOf(p.store), 'r2 identical after catch-up');
  t.ok(states.includes('connecting') && states[states.length - 1] === 'streaming', `r2 link went ${states.join(' → ')}`);
});

t.test('W=3 with one replica down: QUORUM_LOST within the timeout and no ack; W=2 with both down: never alone', { skip: needsRoot() }, async (t) => {
  const r1 = await startReplica(t, { nodeId: 'r1' });
  const r2 = await startReplica(t, { nodeId: 'r2' });
  const port2 = r2.port;
  await r2.server.close();
  const p = await startPrimary(t, { replicas: [{ port: r1.port, name: 'r1' }, { port: port2, name: 'r2' }], writeQuorum: 3, timeoutMs: 400 });
  await p.store.create('f');
  const started = Date.now();
  await rejectsWithCode(t, p.replicated(p.store.write('f', 0, Buffer.from('never acked'))), 'QUORUM_LOST');
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 390 && elapsed < 2000, `QUORUM_LOST after ${elapsed} ms (timeout 400)`);
  await until(() => p.links[0]!.ackedSeq === p.queue.lastSeq, 'r1 durable');
  t.equal(p.links[1]!.state, 'connecting', 'the r2 link keeps trying');

  await r1.server.close();
  const q2 = await startPrimary(t, { replicas: [{ port: r1.port, name: 'r1' }, { port: port2, name: 'r2' }], writeQuorum: 2, timeoutMs: 300, volumeId: 'vol2' });
  await q2.store.create('g');
  await rejectsWithCode(t, q2.replicated(q2.store.write('g', 0, Buffer.from('alone'))), 'QUORUM_LOST', undefined, 'the local replica alone never acks W=2');
});

t.test('a replica that falls out of the retained queue is marked behind', { skip: needsRoot() }, async (t) => {
  const r1 = await startReplica(t, { nodeId: 'r1' });
  const port = r1.port;
  await r1.server.close();
  const p = await startPrimary(t, { replicas: [{ port, name: 'r1' }], writeQuorum: 1, queue: { maxEntries: 8 } });
  const states: string[] = [];
  p.links[0]!.on('state', (s) => states.push(s));
  await p.store.create('f');
  for (let i = 0; i < 20; i++) await p.replicated(p.store.write('f', i, Buffer.from('x')));
  t.equal(p.queue.size, 8, 'the queue holds at most 8 mutations');
  t.equal(p.queue.firstSeq, p.queue.lastSeq - 7n);
  const r1again = await startReplica(t, { nodeId: 'r1', brick: r1.brick, store: r1.store, port });
  await until(() => p.links[0]!.state === 'behind', 'link behind');
  t.match(p.links[0]!.lastError?.message ?? states.join(), /./);
  t.equal(r1again.server.stats.mutations, 0, 'nothing was streamed to a replica that cannot be caught up from the queue');
  t.equal(r1again.store.durableSeq, 0n);
});
