// QuorumTracker: W replicas (local included) durable at ≥ seq, never the local one alone
// when W > 1, QUORUM_LOST after the timeout.
import t from 'tap';
import { QuorumTracker } from '../../src/replication/quorum.js';
import { rejectsWithCode } from '../helpers/assert.js';

t.test('W=2 of 3: resolves on the first replica ack past the seq, local included', async (t) => {
  const q = new QuorumTracker({ writeQuorum: 2, timeoutMs: 5000 });
  let done = false;
  const waiting = q.waitFor(5n, true).then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  t.notOk(done, 'the local replica alone does not make W=2');
  q.setReplica('r1', 4n);
  await new Promise((r) => setImmediate(r));
  t.notOk(done, 'a replica durable below the seq does not count');
  q.setReplica('r1', 6n);
  await waiting;
  t.ok(done);
  t.equal(q.pending, 0);
  await q.waitFor(6n, true);
  t.pass('already durable on enough replicas: resolves at once');
});

t.test('without the local replica, two replicas are needed; setLocal counts the local one', async (t) => {
  const q = new QuorumTracker({ writeQuorum: 2, timeoutMs: 5000 });
  const a = q.waitFor(3n);
  q.setReplica('r1', 3n);
  q.setReplica('r1', 2n); // never lowers
  let settled = false;
  void a.then(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  t.notOk(settled);
  q.setLocal(3n);
  await a;
  t.same([...q.durable], [['r1', 3n]]);
});

t.test('W not reached in time: QUORUM_LOST, with what was reached', async (t) => {
  const q = new QuorumTracker({ writeQuorum: 3, timeoutMs: 150 });
  q.setReplica('r1', 10n);
  const started = Date.now();
  const err = await rejectsWithCode(t, q.waitFor(10n, true), 'QUORUM_LOST');
  const elapsed = Date.now() - started;
  t.ok(elapsed >= 140 && elapsed < 1000, `rejected after ${elapsed} ms`);
  t.match((err as unknown as { details: Record<string, unknown> }).details, { durableOn: 2, writeQuorum: 3 });
  t.equal(q.pending, 0);
});

t.test('W=1 acks on the local replica alone; close rejects everything pending', async (t) => {
  const one = new QuorumTracker({ writeQuorum: 1, timeoutMs: 1000 });
  await one.waitFor(99n, true);
  const q = new QuorumTracker({ writeQuorum: 2, timeoutMs: 10_000 });
  const pending = q.waitFor(1n, true);
  q.close();
  await rejectsWithCode(t, pending, 'QUORUM_LOST');
  await rejectsWithCode(t, q.waitFor(1n, true), 'QUORUM_LOST', undefined, 'after close');
  t.throws(() => new QuorumTracker({ writeQuorum: 0, timeoutMs: 1 }), RangeError);
});
