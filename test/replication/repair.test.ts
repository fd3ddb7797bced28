// Repair reads over replication, on real loop-device bricks and loopback TCP: a block damaged
// on the primary is rewritten from a replica (on read and on scrub), one damaged on a replica
// from the primary (scrub); a damaged or lagging copy is never used, but a peer lagging the
// applied seq repairs a block last changed before its seq; hostile repair frames are
// refused, counted, and change nothing.
import net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { sessionMac } from '../../src/replication/session.js';
import { encodeFrame, FrameDecoder, FrameType } from '../../src/wire/frames.js';
import { decodeMessage, encodeMessage, replicationProto as pb, type ReplicationMessage } from '../../src/wire/replication.js';
import { rejectsWithCode } from '../helpers/assert.js';
import { flipByte } from '../helpers/corrupt.js';
import { needsRoot } from '../helpers/loop.js';
import { pattern } from '../helpers/random.js';
import { CLUSTER, RawPeer, SECRET, startPrimary, startReplica, treeOf, until, type PrimaryNode, type ReplicaNode } from '../helpers/replication.js';
import { replicaDir } from '../helpers/store.js';

const skip = needsRoot();
// Not a multiple of 4096: the last block is short, and its repair must keep the file's size.
const SIZE = 200_000;

interface Cluster {
  p: PrimaryNode;
  r1: ReplicaNode;
  r2: ReplicaNode;
  content: Buffer;
  fid: string;
  checksumErrors: Array<{ block: number; repaired: boolean }>;
}

/** Primary and two replicas with repair wired both ways, one file of SIZE bytes held by all three. */
async function cluster(t: Test): Promise<Cluster> {
  const r1 = await startReplica(t, { nodeId: 'r1', repair: true });
  const r2 = await startReplica(t, { nodeId: 'r2', repair: true });
  const checksumErrors: Cluster['checksumErrors'] = [];
  const p = await startPrimary(t, {
    replicas: [
      { port: r1.port, name: 'r1' },
      { port: r2.port, name: 'r2' },
    ],
    writeQuorum: 3,
    repair: true,
    store: { onChecksumError: ({ block, repaired }) => checksumErrors.push({ block, repaired }) },
  });
  await until(() => p.links.every((l) => l.state === 'streaming'), 'both links streaming');
  const content = pattern(SIZE, 7);
  const { fid } = await p.replicated(p.store.create('f'));
  await p.replicated(p.store.write('f', 0, content));
  return { p, r1, r2, content, fid, checksumErrors };
}

const dataFile = (node: ReplicaNode) => path.join(replicaDir(node.brick), 'data', 'f');
const served = (c: Cluster) => c.r1.server.stats.blockReadsServed + c.r2.server.stats.blockReadsServed;

/**
 * A fake replica listening on loopback: it proves itself to the primary's link (WELCOME at
 * seq 0) and hands every later message to `onMessage` with a send function. Returns its
 * port, the messages it received and its latest socket; sockets and server close at teardown.
 */
async function fakeReplica(
  t: Test,
  nodeId: string,
  onMessage: (m: ReplicationMessage, send: (m: ReplicationMessage) => void) => void = () => {},
): Promise<{ port: number; received: ReplicationMessage[]; socket: () => net.Socket | undefined }> {
  const received: ReplicationMessage[] = [];
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    const decoder = new FrameDecoder();
    const send = (m: ReplicationMessage) => {
      for (const part of encodeMessage(m)) s.write(part);
    };
    let hello: Extract<ReplicationMessage, { type: 'HELLO' }> | undefined;
    const nonce = Buffer.alloc(32, 9);
    s.on('error', () => {});
    s.on('data', (chunk: Buffer) => {
      for (const frame of decoder.push(chunk)) {
        const m = decodeMessage(frame);
        received.push(m);
        if (m.type === 'HELLO') {
          hello = m;
          send({ type: 'CHALLENGE', nodeId, nonce });
        } else if (m.type === 'AUTH') {
          const transcript = { clusterId: CLUSTER, primaryNodeId: hello!.nodeId, replicaNodeId: nodeId, volumeId: hello!.volumeId, generation: hello!.generation, primaryNonce: hello!.nonce, replicaNonce: nonce };
          send({ type: 'WELCOME', mac: sessionMac(SECRET, 'replica', transcript), appliedSeq: 0n, durableSeq: 0n, generation: 1 });
        } else onMessage(m, send);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as net.AddressInfo).port, received, socket: () => sockets.at(-1) };
}

t.test('a block damaged on the primary is repaired from a replica, on read and on scrub', { skip }, async (t) => {
  const c = await cluster(t);
  const { p } = c;
  // Flipped through the page cache: the store's next read of the block sees the damage.
  await flipByte(path.join(p.store.dir, 'data', 'f'), 45_000);
  t.same(await p.store.read('f', 0, SIZE), c.content, 'the read returns the right bytes');
  t.equal(p.store.stats.repaired, 1, 'stats.repaired');
  t.same(c.checksumErrors, [{ block: 10, repaired: true }], 'onChecksumError reports the block repaired');
  t.equal(served(c), 1, 'one repair read served by a replica');
  t.same(await p.store.read('f', 0, SIZE), c.content, 'a second read needs no repair');
  t.equal(served(c), 1);
  t.equal(p.store.stats.repaired, 1);

  // The short last block (48: bytes 196608..199999) via scrub.
  await flipByte(path.join(p.store.dir, 'data', 'f'), 199_000);
  const scrub = await p.store.scrubBlocks(c.fid, 0, 1000);
  t.same(scrub, { blocks: 49, bad: [48], repaired: [48] }, 'the scrub found and repaired the last block');
  t.equal(p.store.stats.repaired, 2);
  t.equal((await p.store.stat('f')).size, SIZE, 'the size did not change');
  t.same(await p.store.read('f', 0, SIZE), c.content);
  t.same(await p.store.scrubBlocks(c.fid, 0, 1000), { blocks: 49, bad: [], repaired: [] }, 'a second scrub finds nothing');
});

t.test('a block damaged on a replica is repaired from the primary by its scrub', { skip }, async (t) => {
  const c = await cluster(t);
  const { p, r1 } = c;
  await flipByte(dataFile(r1), 100_000);
  await flipByte(dataFile(r1), 199_999);
  const scrub = await r1.store.scrubBlocks(c.fid, 0, 1000);
  t.same(scrub, { blocks: 49, bad: [24, 48], repaired: [24, 48] }, 'both blocks repaired');
  t.equal(r1.server.stats.blockReadsRequested, 2, 'asked the primary twice');
  t.equal(p.links[0]!.stats.blockReadsServed, 2, 'the primary answered');
  t.equal(r1.store.stats.repaired, 2);
  t.same(await treeOf(r1.store), await treeOf(p.store), "the replica's tree equals the primary's");
  // Replication goes on over the same session.
  await p.replicated(p.store.write('f', 4096, Buffer.from('after the repair')));
  t.equal(p.links[0]!.state, 'streaming');
});

t.test('a damaged or lagging copy is never used: the next peer is, or the block stays unrepaired', { skip }, async (t) => {
  const c = await cluster(t);
  const { p, r1, r2 } = c;
  const primaryData = path.join(p.store.dir, 'data', 'f');

  // The same block damaged on the primary and on r1 (asked first): r1 says so, r2 answers.
  await flipByte(primaryData, 8192);
  await flipByte(dataFile(r1), 8193);
  t.same(await p.store.read('f', 8192, 4096), c.content.subarray(8192, 12288), 'repaired from r2');
  t.equal(r1.server.stats.blockReadsServed, 1, 'r1 was asked (and answered CHECKSUM_MISMATCH)');
  t.equal(r2.server.stats.blockReadsServed, 1, 'r2 supplied the bytes');
  t.same(await r1.store.scrubBlocks(c.fid, 2, 1), { blocks: 49, bad: [2], repaired: [2] }, "r1's own scrub then heals its copy from the primary");

  // A replica asked for a seq it does not hold durably answers SEQ_BEHIND, never bytes; the
  // link does not even ask a replica that has not acknowledged min_seq.
  await rejectsWithCode(t, p.links[0]!.fetchBlocks(c.fid, 0, 4096, p.store.appliedSeq + 100n), 'REPAIR_UNAVAILABLE', /acknowledged seq \d+, below/);

  // Damaged everywhere: CHECKSUM_MISMATCH as without replication, reported unrepaired.
  await flipByte(primaryData, 30_000);
  await flipByte(dataFile(r1), 30_000);
  await flipByte(dataFile(r2), 30_000);
  await rejectsWithCode(t, p.store.read('f', 28_672, 4096), 'CHECKSUM_MISMATCH');
  t.same(c.checksumErrors.at(-1), { block: 7, repaired: false });

  // Last, as it supersedes the primary's session with r2: a raw primary asks r2 directly.
  const peer = await RawPeer.connect(r2.port);
  await peer.authenticate({ nodeId: 'raw-primary' });
  peer.send({ type: 'READ_BLOCKS', requestId: 1, fid: c.fid, offset: 0, length: 4096, minSeq: r2.store.durableSeq + 1n });
  const behind = await peer.next('BLOCKS');
  t.match(behind, { requestId: 1, code: 'SEQ_BEHIND' }, `a lagging replica says so: ${behind.message}`);
  t.equal(behind.data.length, 0, 'with no bytes');
  peer.send({ type: 'READ_BLOCKS', requestId: 2, fid: c.fid, offset: 0, length: 8192, minSeq: r2.store.durableSeq });
  const fresh = await peer.next('BLOCKS');
  t.same(fresh.data, c.content.subarray(0, 8192), 'at its durable seq it answers with the bytes');
  peer.send({ type: 'READ_BLOCKS', requestId: 3, fid: 'fedcba9876543210', offset: 0, length: 4096, minSeq: 0n });
  t.match(await peer.next('BLOCKS'), { requestId: 3, code: 'NOT_FOUND' }, 'an unknown file: NOT_FOUND');
  peer.destroy();
});

t.test('hostile repair frames are refused, counted, and change nothing', { skip }, async (t) => {
  const r = await startReplica(t, { nodeId: 'r1' });
  const refused = (code: string) => r.server.stats.refused[code as keyof typeof r.server.stats.refused] ?? 0;
  const frameOf = (type: number, body: Uint8Array, payload?: Buffer) => encodeFrame(type as (typeof FrameType)[keyof typeof FrameType], body, payload);
  const attacks: Array<{ name: string; code: string; auth: boolean; send(peer: RawPeer): void }> = [
    { name: 'READ_BLOCKS before auth', code: 'PROTOCOL_VIOLATION', auth: false, send: (peer) => peer.send({ type: 'READ_BLOCKS', requestId: 1, fid: '0123456789abcdef', offset: 0, length: 4096, minSeq: 0n }) },
    {
      name: 'a length over 1 MiB',
      code: 'BAD_FRAME',
      auth: true,
      send: (peer) => peer.write(frameOf(FrameType.READ_BLOCKS, pb.ReadBlocks.encode({ requestId: 1, fid: '0123456789abcdef', offset: 0, length: 2 ** 20 + 4096 }).finish())),
    },
    { name: 'a length that is not whole blocks', code: 'PROTOCOL_VIOLATION', auth: true, send: (peer) => peer.send({ type: 'READ_BLOCKS', requestId: 1, fid: '0123456789abcdef', offset: 0, length: 1000, minSeq: 0n }) },
    {
      name: 'a traversal-shaped fid',
      code: 'BAD_FRAME',
      auth: true,
      send: (peer) => peer.write(frameOf(FrameType.READ_BLOCKS, pb.ReadBlocks.encode({ requestId: 1, fid: '../../../etc/pas', offset: 0, length: 4096 }).finish())),
    },
    { name: 'BLOCKS for a request never made', code: 'PROTOCOL_VIOLATION', auth: true, send: (peer) => peer.send({ type: 'BLOCKS', requestId: 77, code: '', message: '', data: Buffer.alloc(4096, 1) }) },
    { name: 'request id 0', code: 'BAD_FRAME', auth: true, send: (peer) => peer.write(frameOf(FrameType.READ_BLOCKS, pb.ReadBlocks.encode({ requestId: 0, fid: '0123456789abcdef', offset: 0, length: 4096 }).finish())) },
    {
      name: 'BLOCKS with bytes and an error code',
      code: 'BAD_FRAME',
      auth: true,
      send: (peer) => peer.write(frameOf(FrameType.BLOCKS, pb.Blocks.encode({ requestId: 1, code: 'NOT_FOUND' }).finish(), Buffer.alloc(10))),
    },
  ];
  for (const attack of attacks) {
    await t.test(attack.name, async (t) => {
      const before = refused(attack.code);
      const peer = await RawPeer.connect(r.port);
      if (attack.auth) await peer.authenticate();
      else {
        peer.send({ type: 'HELLO', clusterId: 'test-cluster', nodeId: 'mallory', volumeId: 'vol1', generation: 1, nonce: Buffer.alloc(32, 1) });
        await peer.next('CHALLENGE');
      }
      attack.send(peer);
      const error = await peer.next('ERROR');
      t.equal(error.code, attack.code, `ERROR ${attack.code}: ${error.message}`);
      await peer.closed;
      t.equal(refused(attack.code), before + 1, 'counted');
      t.equal(r.server.stats.blockReadsServed, 0, 'nothing answered');
      t.equal(r.store.appliedSeq, 0n, 'nothing written');
      t.equal(r.store.stats.repaired, 0);
    });
  }
  // More than 16 unanswered: the 17th is refused (they are answered fast, so send them at once).
  const before = refused('PROTOCOL_VIOLATION');
  const peer = await RawPeer.connect(r.port);
  await peer.authenticate();
  for (let i = 1; i <= 40; i++) peer.send({ type: 'READ_BLOCKS', requestId: i, fid: '0123456789abcdef', offset: 0, length: 4096, minSeq: 0n });
  const error = await peer.next('ERROR');
  t.equal(error.code, 'PROTOCOL_VIOLATION', error.message);
  t.match(error.message, /more than 16 READ_BLOCKS unanswered/);
  t.equal(refused('PROTOCOL_VIOLATION'), before + 1);
});

t.test("a primary's link answers a proven replica's repair reads and refuses a BLOCKS it never asked for", { skip }, async (t) => {
  // A fake replica: it proves itself, takes the stream in without applying it, and asks.
  const fake = await fakeReplica(t, 'fake');
  const received = fake.received;
  const content = pattern(10_000, 3);
  const p = await startPrimary(t, { replicas: [{ port: fake.port, name: 'fake' }], writeQuorum: 1, repair: true });
  const { fid } = await p.store.create('f');
  await p.store.write('f', 0, content);
  await until(() => p.links[0]!.state === 'streaming' && received.some((m) => m.type === 'MUTATION'), 'the link streaming to the fake replica');

  const write = (m: ReplicationMessage) => {
    for (const part of encodeMessage(m)) fake.socket()!.write(part);
  };
  write({ type: 'READ_BLOCKS', requestId: 1, fid, offset: 8192, length: 4096, minSeq: 0n });
  await until(() => received.some((m) => m.type === 'BLOCKS'), 'an answer');
  const answer = received.find((m) => m.type === 'BLOCKS') as Extract<ReplicationMessage, { type: 'BLOCKS' }>;
  t.match(answer, { requestId: 1, code: '' });
  t.same(answer.data, content.subarray(8192), 'the verified bytes, short at the end of the file');
  t.equal(p.links[0]!.stats.blockReadsServed, 1);

  write({ type: 'BLOCKS', requestId: 99, code: '', message: '', data: Buffer.alloc(4096) });
  await until(() => received.some((m) => m.type === 'ERROR'), 'the link refuses');
  const error = received.find((m) => m.type === 'ERROR') as Extract<ReplicationMessage, { type: 'ERROR' }>;
  t.equal(error.code, 'PROTOCOL_VIOLATION', error.message);
  t.match(error.message, /request 99, which is not waiting/);
  t.equal(p.store.stats.repaired, 0, 'nothing written');
});

t.test('a peer lagging behind the applied seq still repairs a block last changed before its seq', { skip }, async (t) => {
  // A fake replica that acknowledges up to `ackUpTo` only, then keeps taking the stream in
  // without acknowledging (a replica falling behind under load), and answers repair reads
  // from what it holds: the content as of the seq it acknowledged.
  const content = pattern(64 * 1024, 5);
  let ackUpTo = 0n;
  const asked: bigint[] = [];
  const fake = await fakeReplica(t, 'lagging', (m, send) => {
    if (m.type === 'MUTATION' && m.seq <= ackUpTo) send({ type: 'ACK', durableSeq: m.seq });
    else if (m.type === 'READ_BLOCKS') {
      asked.push(m.minSeq);
      if (m.minSeq > ackUpTo) send({ type: 'BLOCKS', requestId: m.requestId, code: 'SEQ_BEHIND', message: `durable at ${ackUpTo}`, data: Buffer.alloc(0) });
      else send({ type: 'BLOCKS', requestId: m.requestId, code: '', message: '', data: content.subarray(m.offset, m.offset + m.length) });
    }
  });
  const p = await startPrimary(t, { replicas: [{ port: fake.port, name: 'lagging' }], writeQuorum: 1, repair: true, changes: true });
  await until(() => p.links[0]!.state === 'streaming', 'the link streaming to the fake replica');
  const created = await p.store.create('cold');
  ackUpTo = created.seq + 1n; // the write's seq: acknowledged as it arrives
  const { seq } = await p.store.write('cold', 0, content);
  t.equal(seq, ackUpTo);
  await until(() => p.links[0]!.ackedSeq === seq, 'the replica acknowledged the cold file');
  // The write load goes on elsewhere; the replica acknowledges none of it.
  await p.store.create('hot');
  for (let i = 0; i < 20; i++) await p.store.write('hot', i * 4096, pattern(4096, 100 + i));
  t.ok(p.store.appliedSeq > p.links[0]!.ackedSeq + 20n, `the replica lags: acked ${p.links[0]!.ackedSeq}, applied ${p.store.appliedSeq}`);

  await p.store.flush();
  await flipByte(path.join(p.store.dir, 'data', 'cold'), 8192 + 17);
  const read = await p.store.read('cold', 0, content.length);
  t.ok(read.equals(content), 'the damaged block reads back right');
  t.equal(p.store.stats.repaired, 1, 'repaired from the lagging replica');
  t.same(asked, [seq], `asked with min_seq ${seq} (the cold block's last change), not the applied seq ${p.store.appliedSeq}`);
  t.ok((await p.store.read({ fid: created.fid }, 0, content.length)).equals(content), 'and again, with nothing to repair');
  t.equal(p.store.stats.repaired, 1);
});
