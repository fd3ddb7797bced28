// The resync's cost proof: a replica of a large volume is down while ~1% of the volume
// changes in scattered places, and the primary restarts (a fresh retained queue, so only a
// resync can bring the replica back). The bytes sent must track the bytes changed, not the
// volume: the test prints the ratios and bounds them.
import t from 'tap';
import { native } from '../../src/native.js';
import { ReplicaStore } from '../../src/store/store.js';
import { needsRoot } from '../helpers/loop.js';
import { startPrimary, startReplica, treeOf, until } from '../helpers/replication.js';
import { replicaDir, testBrick, testStore } from '../helpers/store.js';
import { xorshift } from '../helpers/random.js';

const MiB = 2 ** 20;
const FILES = 16;
const FILE_BYTES = 16 * MiB;
const VOLUME_BYTES = FILES * FILE_BYTES; // 256 MiB of file data

function randomData(random: () => number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i += 4) b.writeUInt32LE((random() * 2 ** 32) >>> 0, i);
  return b.subarray(0, length);
}

t.test('resync of a 256 MiB volume with ~1% changed sends about the changed bytes', { skip: needsRoot(), timeout: 170_000 }, async (t) => {
  const random = xorshift(42);
  const sizeLimitBytes = 512 * MiB;
  const replicaBrick = await testBrick(t, 1024);
  const replicaStore = await testStore(t, replicaBrick, { sizeLimitBytes }, { directWriteBytes: 64 * 1024 });
  let r1 = await startReplica(t, { nodeId: 'r1', brick: replicaBrick, store: replicaStore });
  const primaryBrick = await testBrick(t, 1024);
  const p1 = await startPrimary(t, { brick: primaryBrick, sizeLimitBytes, replicas: [{ port: r1.port, name: 'r1' }], writeQuorum: 2 });

  let started = Date.now();
  await p1.replicated(p1.store.mkdir('data'));
  for (let f = 0; f < FILES; f++) {
    await p1.replicated(p1.store.create(`data/file${f}`));
    const writes: Array<Promise<unknown>> = [];
    for (let off = 0; off < FILE_BYTES; off += MiB) writes.push(p1.replicated(p1.store.write(`data/file${f}`, off, randomData(random, MiB))));
    await Promise.all(writes);
  }
  t.comment(`filled ${VOLUME_BYTES / MiB} MiB, replicated, in ${Date.now() - started} ms`);
  await until(() => p1.links[0]!.ackedSeq === p1.queue.lastSeq, 'r1 caught up');

  // r1 goes away; ~1% of the volume changes in scattered places: most writes 16 KiB on
  // 4 KiB boundaries, some 5000 bytes at odd offsets (they touch 2-3 blocks each).
  await r1.server.close();
  await r1.store.close();
  let changed = 0;
  for (let i = 0; i < 200; i++) {
    const f = Math.floor(random() * FILES);
    const aligned = i % 4 !== 0;
    const length = aligned ? 16 * 1024 : 5000;
    const offset = aligned ? Math.floor(random() * (FILE_BYTES / 4096 - 4)) * 4096 : Math.floor(random() * (FILE_BYTES - length));
    // Durable on the primary only (r1 is down: these never reach a quorum of 2).
    await p1.store.write(`data/file${f}`, offset, randomData(random, length));
    changed += length;
  }
  t.comment(`changed ${changed} bytes (${((changed / VOLUME_BYTES) * 100).toFixed(2)}% of the volume) while r1 was down`);

  // The primary restarts: its new queue starts at its last seq, so r1 needs a resync.
  await Promise.all(p1.links.map((l) => l.close()));
  p1.quorum.close();
  await p1.store.close();
  const store = await ReplicaStore.open(replicaDir(replicaBrick, 'vol1'), { directWriteBytes: 64 * 1024, checkpointIntervalMs: 0 });
  t.teardown(() => store.close().catch(() => {}));
  r1 = await startReplica(t, { nodeId: 'r1', brick: replicaBrick, store, port: r1.port });
  started = Date.now();
  const p = await startPrimary(t, { brick: primaryBrick, reopen: true, replicas: [{ port: r1.port, name: 'r1' }], writeQuorum: 2, resync: true });
  const link = p.links[0]!;
  await until(() => link.state === 'streaming' && link.ackedSeq === p.queue.lastSeq, 'r1 resynced and streaming', 120_000);
  const elapsed = Date.now() - started;
  const progress = link.resyncProgress!;
  const dataRatio = link.stats.resyncDataBytes / changed;
  const totalRatio = link.stats.resyncBytesSent / changed;
  t.comment(`resync: ${progress.entries} entries, ${progress.bytesCompared} bytes compared by CRC, ${progress.blocksWanted} blocks wanted, ${elapsed} ms`);
  t.comment(`data bytes sent ${link.stats.resyncDataBytes} / bytes changed ${changed} = ${dataRatio.toFixed(3)}`);
  t.comment(`all resync bytes sent ${link.stats.resyncBytesSent} / bytes changed = ${totalRatio.toFixed(3)}; / volume = ${((link.stats.resyncBytesSent / VOLUME_BYTES) * 100).toFixed(3)}%`);
  t.equal(link.stats.resyncs, 1);
  t.ok(dataRatio >= 1 && dataRatio <= 1.5, `data sent is ${dataRatio.toFixed(3)}× the bytes changed (block granularity: 4 KiB)`);
  t.ok(totalRatio <= 3, `everything sent (CRCs, metadata, frame headers) is ${totalRatio.toFixed(3)}× the bytes changed`);
  t.ok(link.stats.resyncBytesSent < VOLUME_BYTES * 0.02, 'and under 2% of the volume');

  const primaryTree = await treeOf(p.store);
  t.same(await treeOf(r1.store), primaryTree, 'r1 equals the primary, byte for byte');
  // Spot check through verified reads that the changed blocks came across with their CRCs.
  const a = await p.store.read('data/file0', 0, 4 * MiB);
  const b = await r1.store.read('data/file0', 0, 4 * MiB);
  t.equal(native.crc32c(b) >>> 0, native.crc32c(a) >>> 0);
});
