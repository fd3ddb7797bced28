// Resync over real TCP (loopback) between stores on their own loop-device bricks: a replica
// that the retained queue cannot catch up, one that holds another primary's mutations, one
// resynced while writes go on, and one whose resync is cut (connection, crash) and resumed.
import t, { type Test } from 'tap';
import { native } from '../../src/native.js';
import { ReplicaStore } from '../../src/store/store.js';
import { needsRoot } from '../helpers/loop.js';
import { startPrimary, startReplica, treeOf, until, type PrimaryNode, type ReplicaNode } from '../helpers/replication.js';
import { replicaDir } from '../helpers/store.js';

/** Deterministic bytes. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
}

/** A replica agent stops: server closed, store closed. Returns what is needed to bring it back. */
async function stopReplica(r: ReplicaNode): Promise<void> {
  await r.server.close();
  await r.store.close();
}

/** The same replica agent starts again on its brick and port (log replay included). */
async function restartReplica(t: Test, r: ReplicaNode): Promise<ReplicaNode> {
  const store = await ReplicaStore.open(replicaDir(r.brick, 'vol1'), { directWriteBytes: 64 * 1024, checkpointIntervalMs: 0 });
  t.teardown(() => store.close().catch(() => {}));
  return startReplica(t, { nodeId: r.nodeId, brick: r.brick, store, port: r.port });
}

async function caughtUp(p: PrimaryNode, timeoutMs = 30_000): Promise<void> {
  await until(() => p.links.every((l) => l.state === 'streaming' && l.ackedSeq >= p.queue.lastSeq), `every link streaming and acked at ${p.queue.lastSeq}`, timeoutMs);
}

interface Acked {
  path: string;
  offset: number;
  crc: number;
  length: number;
}

/** Every acked write that nothing later overwrote reads back on `store` with its CRC. */
async function checkAcked(t: Test, store: ReplicaStore, acked: Acked[], name: string): Promise<void> {
  let bad = 0;
  for (const a of acked) {
    const data = await store.read(a.path, a.offset, a.length);
    if (data.length !== a.length || native.crc32c(data) >>> 0 !== a.crc) bad++;
  }
  t.equal(bad, 0, `${name}: all ${acked.length} acked writes read back with their CRC`);
}

t.test('a replica down while the primary outruns a small retained queue is resynced, then streams', { skip: needsRoot() }, async (t) => {
  let r1 = await startReplica(t, { nodeId: 'r1' });
  const p = await startPrimary(t, { replicas: [{ port: r1.port, name: 'r1' }], writeQuorum: 1, resync: true, queue: { maxBytes: 1 * 2 ** 20 } });
  const states: string[] = [];
  p.links[0]!.on('state', (s) => states.push(s));
  await until(() => p.links[0]!.state === 'streaming', 'link streaming');
  const acked: Acked[] = [];
  const write = async (path: string, offset: number, data: Buffer) => {
    await p.replicated(p.store.write(path, offset, data));
    acked.push({ path, offset, crc: native.crc32c(data) >>> 0, length: data.length });
  };
  await p.replicated(p.store.mkdir('d'));
  for (let i = 0; i < 8; i++) {
    await p.replicated(p.store.create(`d/f${i}`));
    await write(`d/f${i}`, 0, pattern(256 * 1024, i + 1));
  }
  await p.replicated(p.store.create('moved-away'));
  await p.replicated(p.store.create('doomed'));
  await caughtUp(p);

  await stopReplica(r1);
  // Far more than the 1 MiB queue: 16 MiB of writes, plus namespace changes.
  for (let i = 0; i < 8; i++) {
    // Overwrites the middle of the first write: that one is checked from what it still holds.
    acked.splice(0, acked.length, ...acked.filter((a) => a.path !== `d/f${i}`));
    await write(`d/f${i}`, 128 * 1024, pattern(64 * 1024, 100 + i));
  }
  for (let i = 0; i < 16; i++) {
    await p.replicated(p.store.create(`new${i}`));
    await write(`new${i}`, 0, pattern(1024 * 1024, 200 + i));
  }
  await p.replicated(p.store.rename('moved-away', 'd/moved-here'));
  await p.replicated(p.store.unlink('doomed'));
  await p.replicated(p.store.symlink('d/f0', 'link'));
  await p.replicated(p.store.link('d/f1', 'hard'));
  await p.replicated(p.store.truncate('d/f2', 100_000));
  acked.splice(0, acked.length, ...acked.filter((a) => a.path !== 'd/f2'));
  t.ok(p.queue.firstSeq > 2n, `the queue dropped what r1 missed (it starts at ${p.queue.firstSeq})`);

  r1 = await restartReplica(t, r1);
  await caughtUp(p);
  t.ok(states.includes('resyncing'), `link went ${states.join(' → ')}`);
  const progress = p.links[0]!.resyncProgress!;
  t.equal(progress.phase, 'done');
  t.same(await treeOf(r1.store), await treeOf(p.store), 'r1 holds exactly the primary tree');
  await checkAcked(t, r1.store, acked, 'r1');
  t.equal(r1.store.resyncing, false, 'r1 no longer flagged');
  t.equal(r1.server.stats.resyncsCompleted, 1);
  t.same(r1.server.stats.refused, {}, 'nothing refused');

  // Streaming resumed: a new write reaches r1.
  await p.replicated(p.store.create('after'));
  await write('after', 0, Buffer.from('after the resync'));
  await caughtUp(p);
  t.same(await treeOf(r1.store), await treeOf(p.store), 'r1 follows the stream after the resync');
});
