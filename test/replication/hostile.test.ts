// Hostile peers against a real ReplicaServer: each bad input gets the right ERROR code, is
// counted, changes nothing in the store, and closes only its own connection, while a real
// primary keeps replicating another volume through the same server.
import t from 'tap';
import { encodeFrame, FRAME_HEADER_BYTES, FRAME_MAGIC, FrameType } from '../../src/wire/frames.js';
import { encodeMessage, type ReplicationMessage } from '../../src/wire/replication.js';
import { native } from '../../src/native.js';
import { needsRoot } from '../helpers/loop.js';
import { CLUSTER, RawPeer, startPrimary, startReplica, until } from '../helpers/replication.js';
import { testStore } from '../helpers/store.js';

function header(type: number, bodyLength: number, payloadLength: number): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32LE(FRAME_MAGIC, 0);
  h.writeUInt8(1, 4);
  h.writeUInt8(type, 5);
  h.writeUInt32LE(bodyLength, 8);
  h.writeUInt32LE(payloadLength, 12);
  h.writeUInt32LE(native.crc32c(h.subarray(0, 24)) >>> 0, 24);
  return h;
}

const hello = (fields: Partial<Extract<ReplicationMessage, { type: 'HELLO' }>> = {}): ReplicationMessage => ({
  type: 'HELLO',
  clusterId: CLUSTER,
  nodeId: 'mallory',
  volumeId: 'vol1',
  generation: 1,
  nonce: Buffer.alloc(32, 1),
  ...fields,
});

t.test('hostile peers are refused with the right code, counted, and change nothing', { skip: needsRoot() }, async (t) => {
  const r = await startReplica(t, { nodeId: 'r1', server: { handshakeTimeoutMs: 300 } });
  // A real primary replicating vol2 through the same server the whole time.
  const vol2 = await testStore(t, r.brick, { volumeId: 'vol2' });
  r.server.addVolume(vol2);
  const p = await startPrimary(t, { replicas: [{ port: r.port, name: 'r1' }], writeQuorum: 2, volumeId: 'vol2' });
  await until(() => p.links[0]!.state === 'streaming', 'vol2 link streaming');
  await p.replicated(p.store.create('log'));
  let legitWrites = 0;
  const legitWrite = async () => {
    await p.replicated(p.store.write('log', legitWrites * 10, Buffer.from('0123456789')));
    legitWrites++;
  };

  const refused = (code: string) => r.server.stats.refused[code as keyof typeof r.server.stats.refused] ?? 0;
  const expectRefusal = async (name: string, code: string, attack: (peer: RawPeer) => Promise<void>, check?: (error: Extract<ReplicationMessage, { type: 'ERROR' }>) => void) => {
    await t.test(name, async (t) => {
      const before = refused(code);
      const peer = await RawPeer.connect(r.port);
      await attack(peer);
      const error = await peer.next('ERROR');
      t.equal(error.code, code, `ERROR ${code}: ${error.message}`);
      check?.(error);
      await peer.closed;
      t.pass('the server closed the connection');
      t.equal(refused(code), before + 1, `counted in stats.refused.${code}`);
      t.equal(r.store.durableSeq, 0n, 'vol1: nothing applied');
      t.equal(r.store.appliedSeq, 0n);
      await legitWrite();
      t.equal(p.links[0]!.state, 'streaming', 'the real primary kept streaming and got its ack');
    });
  };

  await expectRefusal('garbage bytes', 'BAD_FRAME', async (peer) => peer.write(Buffer.from('GET / HTTP/1.1\r\nHost: brickd\r\n\r\n')));
  await expectRefusal('a 4 GiB body length', 'BAD_FRAME', async (peer) => peer.write(header(FrameType.HELLO, 0xffffffff, 0)));
  await expectRefusal('a 60 KiB HELLO (over the pre-auth limit)', 'BAD_FRAME', async (peer) => peer.write(header(FrameType.HELLO, 60 * 1024, 0)));
  await expectRefusal('a payload before authentication', 'BAD_FRAME', async (peer) => peer.write(header(FrameType.MUTATION, 10, 8 * 2 ** 20)));
  await expectRefusal('an unknown frame type', 'BAD_FRAME', async (peer) => peer.write(header(42, 0, 0)));
  await expectRefusal('a frame of version 2', 'BAD_FRAME', async (peer) => {
    const h = Buffer.concat(encodeMessage({ type: 'PING', id: 1 }));
    h[4] = 2;
    peer.write(h);
  });
  await expectRefusal('a MUTATION before authentication', 'PROTOCOL_VIOLATION', async (peer) => {
    peer.send(hello());
    await peer.next('CHALLENGE');
    peer.send({ type: 'MUTATION', seq: 1n, generation: 1, mutation: { op: 'mkdir', path: 'evil', fid: 'aaaaaaaaaaaaaaaa', mode: 0o755 } });
  });
  await expectRefusal('another cluster', 'CLUSTER_MISMATCH', async (peer) => peer.send(hello({ clusterId: 'other-cluster' })));
  await expectRefusal('a wrong HMAC', 'UNAUTHENTICATED', async (peer) => {
    peer.send(hello());
    await peer.next('CHALLENGE');
    peer.send({ type: 'AUTH', mac: Buffer.alloc(32, 0xab) });
  });
  await expectRefusal('the right HMAC for another secret', 'UNAUTHENTICATED', async (peer) => {
    await peer.authenticate({ secret: Buffer.from('not-the-cluster-secret-at-all') }).catch(() => {});
  });
  await expectRefusal('an AUTH replayed from another connection', 'UNAUTHENTICATED', async (peer) => {
    // Record a good AUTH on one connection, replay it on another (the replica nonce differs).
    const first = await RawPeer.connect(r.port);
    const sent: Buffer[] = [];
    const original = first.write.bind(first);
    first.write = (bytes) => {
      sent.push(...(Array.isArray(bytes) ? bytes : [bytes]));
      original(bytes);
    };
    await first.authenticate({ volumeId: 'vol1', generation: 1 });
    first.destroy();
    await first.closed;
    const auth = sent.slice(-2); // header + body of the AUTH frame
    peer.send(hello({ nodeId: 'raw-primary', nonce: Buffer.alloc(32, 7) }));
    await peer.next('CHALLENGE');
    peer.write(auth);
  });
  await expectRefusal('an unknown volume (after authentication)', 'VOLUME_NOT_FOUND', async (peer) => {
    await peer.authenticate({ volumeId: 'no-such-volume' }).catch(() => {});
  });
  await expectRefusal('silence during the handshake', 'TIMEOUT', async () => {});

  // Fencing: a session at generation 5 raises vol1's generation durably; 4 is refused after.
  const g5 = await RawPeer.connect(r.port);
  const welcome = await g5.authenticate({ generation: 5 });
  t.equal(welcome.generation, 5, 'WELCOME reports the raised generation');
  t.equal(r.store.manifest.generation, 5, 'recorded in the replica manifest before WELCOME');
  g5.destroy();
  await g5.closed;
  await expectRefusal(
    'a HELLO with a stale generation',
    'GENERATION_STALE',
    async (peer) => {
      await peer.authenticate({ generation: 4 }).catch(() => {});
    },
    (error) => t.equal(error.generation, 5, 'ERROR names the generation seen'),
  );
  await expectRefusal('a MUTATION with a stale generation', 'GENERATION_STALE', async (peer) => {
    await peer.authenticate({ generation: 5 });
    peer.send({ type: 'MUTATION', seq: 1n, generation: 4, mutation: { op: 'mkdir', path: 'old', fid: 'aaaaaaaaaaaaaaaa', mode: 0o755 } });
  });
  await expectRefusal(
    'a seq gap',
    'SEQ_GAP',
    async (peer) => {
      await peer.authenticate({ generation: 5 });
      peer.send({ type: 'MUTATION', seq: 2n, generation: 5, mutation: { op: 'mkdir', path: 'gap', fid: 'aaaaaaaaaaaaaaaa', mode: 0o755 } });
    },
    (error) => t.equal(error.appliedSeq, 0n, 'ERROR says where the replica stands'),
  );
  await expectRefusal('a payload that does not match its CRC', 'CHECKSUM_MISMATCH', async (peer) => {
    await peer.authenticate({ generation: 5 });
    const parts = encodeMessage({ type: 'MUTATION', seq: 1n, generation: 5, mutation: { op: 'write', fid: 'aaaaaaaaaaaaaaaa', offset: 0, data: Buffer.alloc(4096, 1) } });
    const payload = Buffer.from(parts[2]!);
    payload[100]! ^= 0x10;
    peer.write([parts[0]!, parts[1]!, payload]);
  });
  await expectRefusal('a body whose CRC does not match', 'BAD_FRAME', async (peer) => {
    await peer.authenticate({ generation: 5 });
    const parts = encodeMessage({ type: 'MUTATION', seq: 1n, generation: 5, mutation: { op: 'mkdir', path: 'x', fid: 'aaaaaaaaaaaaaaaa', mode: 0o755 } });
    const body = Buffer.from(parts[1]!);
    body[body.length - 1]! ^= 1;
    peer.write([parts[0]!, body]);
  });
  await expectRefusal('a file id that walks out of the metadata tree', 'BAD_FRAME', async (peer) => {
    await peer.authenticate({ generation: 5 });
    const body = Buffer.from(encodeMessage({ type: 'MUTATION', seq: 1n, generation: 5, mutation: { op: 'mkdir', path: 'x', fid: 'aaaaaaaaaaaaaaaa', mode: 0o755 } })[1]!);
    const evil = Buffer.from(body.toString('latin1').replace('aaaaaaaaaaaaaaaa', '../../../../etc/'), 'latin1');
    peer.write(encodeFrame(FrameType.MUTATION, evil));
  });
  await expectRefusal('a path that escapes the volume', 'APPLY_FAILED', async (peer) => {
    await peer.authenticate({ generation: 5 });
    peer.send({ type: 'MUTATION', seq: 1n, generation: 5, mutation: { op: 'mkdir', path: '../escape', fid: 'aaaaaaaaaaaaaaaa', mode: 0o755 } });
  });

  // Resync frames: only after authentication, only in order, fenced like mutations.
  await expectRefusal('a RESYNC_BEGIN before authentication', 'PROTOCOL_VIOLATION', async (peer) => {
    peer.send(hello());
    await peer.next('CHALLENGE');
    peer.send({ type: 'RESYNC_BEGIN', s0: 0n, generation: 1, history: [] });
  });
  await expectRefusal('a RESYNC_ENTRY without RESYNC_BEGIN', 'PROTOCOL_VIOLATION', async (peer) => {
    await peer.authenticate({ generation: 5 });
    peer.send({ type: 'RESYNC_ENTRY', entry: { path: 'x', type: 'directory', fid: 'aaaaaaaaaaaaaaaa', mode: 0o755, uid: 0, gid: 0, mtimeMs: 0, size: 0, target: '' } });
  });
  await expectRefusal('a RESYNC_END without RESYNC_BEGIN', 'PROTOCOL_VIOLATION', async (peer) => {
    await peer.authenticate({ generation: 5 });
    peer.send({ type: 'RESYNC_END', entries: 0 });
  });
  await expectRefusal('a RESYNC_WANT sent to a replica', 'PROTOCOL_VIOLATION', async (peer) => {
    await peer.authenticate({ generation: 5 });
    peer.send({ type: 'RESYNC_WANT', fid: 'aaaaaaaaaaaaaaaa', firstBlock: 0, blocks: Buffer.alloc(0) });
  });
  await expectRefusal('a RESYNC_BEGIN with a stale generation', 'GENERATION_STALE', async (peer) => {
    await peer.authenticate({ generation: 5 });
    peer.send({ type: 'RESYNC_BEGIN', s0: 0n, generation: 4, history: [] });
  });
  await expectRefusal('a RESYNC_ENTRY whose file id walks out of the metadata tree', 'BAD_FRAME', async (peer) => {
    await peer.authenticate({ generation: 5 });
    const body = Buffer.from(encodeMessage({ type: 'RESYNC_ENTRY', entry: { path: 'x', type: 'file', fid: 'aaaaaaaaaaaaaaaa', mode: 0o644, uid: 0, gid: 0, mtimeMs: 0, size: 0, target: '' } })[1]!);
    const evil = Buffer.from(body.toString('latin1').replace('aaaaaaaaaaaaaaaa', '../../../../etc/'), 'latin1');
    peer.write(encodeFrame(FrameType.RESYNC_ENTRY, evil));
  });
  await expectRefusal('a RESYNC_SUMS payload that is not whole CRCs', 'BAD_FRAME', async (peer) => {
    await peer.authenticate({ generation: 5 });
    peer.write(encodeFrame(FrameType.RESYNC_SUMS, Buffer.concat(encodeMessage({ type: 'RESYNC_SUMS', fid: 'aaaaaaaaaaaaaaaa', firstBlock: 0, sums: Buffer.alloc(4) }).slice(1, 2)), Buffer.alloc(6)));
  });
  t.equal(r.store.resyncing, false, 'no refused resync frame flagged the replica');

  // After all that, an honest session applies seq 1 and gets its ACK.
  const honest = await RawPeer.connect(r.port);
  const w = await honest.authenticate({ generation: 5 });
  t.equal(w.appliedSeq, 0n, 'the replica realigned after the failed apply');
  honest.send({ type: 'MUTATION', seq: 1n, generation: 6, mutation: { op: 'mkdir', path: 'honest', fid: 'bbbbbbbbbbbbbbbb', mode: 0o755 } });
  const ack = await honest.next('ACK');
  t.equal(ack.durableSeq, 1n, 'ACK for seq 1');
  t.same(await r.store.readdir(''), ['honest']);
  t.equal(r.store.manifest.generation, 6, 'a mutation with a higher generation raised it');
  honest.send({ type: 'PING', id: 77 });
  t.equal((await honest.next('PONG')).id, 77);
  honest.destroy();
  t.ok(legitWrites >= 20, `the real primary wrote ${legitWrites} times in between`);
  t.same(r.server.stats.refused, {
    BAD_FRAME: 10, // 8 + 2 resync frames
    PROTOCOL_VIOLATION: 5, // 1 + 4 resync frames
    CLUSTER_MISMATCH: 1,
    UNAUTHENTICATED: 3,
    VOLUME_NOT_FOUND: 1,
    TIMEOUT: 1,
    GENERATION_STALE: 3, // 2 + a stale RESYNC_BEGIN
    SEQ_GAP: 1,
    CHECKSUM_MISMATCH: 1,
    APPLY_FAILED: 1,
  });
});

t.test('a replica that cannot prove the secret is refused by the primary, which stays failed', { skip: needsRoot() }, async (t) => {
  const r = await startReplica(t, { nodeId: 'r1', server: { secret: Buffer.from('an-impostor-secret-0123456789') } });
  const p = await startPrimary(t, { replicas: [{ port: r.port, name: 'r1' }], writeQuorum: 2, timeoutMs: 300 });
  await until(() => p.links[0]!.state === 'failed', 'link failed');
  t.equal((p.links[0]!.lastError as { code?: string }).code, 'UNAUTHENTICATED');
  t.equal(r.server.stats.refused.UNAUTHENTICATED, 1, 'the replica refused our AUTH too (different secrets)');
});

t.test('a primary with a stale generation is fenced: its link fails and nothing is acked', { skip: needsRoot() }, async (t) => {
  const r = await startReplica(t, { nodeId: 'r1' });
  await r.store.raiseGeneration(3);
  // The replica store was opened before the raise: serve it again so the server sees generation 3.
  await r.server.removeVolume('vol1');
  r.server.addVolume(r.store);
  const p = await startPrimary(t, { replicas: [{ port: r.port, name: 'r1' }], writeQuorum: 2, timeoutMs: 300, generation: 2 });
  await until(() => p.links[0]!.state === 'failed', 'link failed');
  t.equal((p.links[0]!.lastError as { code?: string }).code, 'GENERATION_STALE');
  await p.store.create('f');
  await t.rejects(p.replicated(p.store.write('f', 0, Buffer.from('x'))), { code: 'QUORUM_LOST' }, 'a fenced primary does not ack');
});
