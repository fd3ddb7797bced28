// The volume's incarnation on the wire (AUTH.volume_uid, feature volume-uid): a replica
// adopts its primary's uid once, refuses a primary of another incarnation before it looks at
// or records anything else, and still accepts a primary that sends none (an older agent, or
// a replica promoted before it had one). Then the case it exists for: a volume deleted and
// created again under the same id, at the same generation numbers, meets a replica of the
// old one whose seq its retained queue covers: without the uid the seq and generation rules
// would stream on top of the old tree; with it the replica is refused and keeps its data.
//
// Last, the operator's view through two agents: the primary reports the refused peer and
// why (PeerStatus.reason), and rebuilding the stale replica then re-attaching the primary
// (docs/operations.md) brings it back.
//
// Real replica servers and primary links on loopback, real stores on loop-device bricks,
// real agent processes for the last test.
import t from 'tap';
import type { ReplicationMessage } from '../../src/wire/replication.js';
import { needsRoot } from '../helpers/loop.js';
import { testBrick } from '../helpers/store.js';
import { RawPeer, startPrimary, startReplica, stopReplica, restartReplica, treeOf, until } from '../helpers/replication.js';

const skip = needsRoot();
const U1 = 'c3a1f0d2-5b7e-4e19-8f0a-2d6b9c4e7a13';
const U2 = 'c3a1f0d2-5b7e-4e19-8f0a-000000000002';

type ErrorFrame = Extract<ReplicationMessage, { type: 'ERROR' }>;

/** The handshake of a raw primary that the replica refuses: its ERROR. */
async function refusedWith(peer: RawPeer, options: Parameters<RawPeer['authenticate']>[0]): Promise<ErrorFrame> {
  await peer.authenticate(options).then(
    () => {
      throw new Error('the replica welcomed it');
    },
    () => undefined,
  );
  return peer.next('ERROR');
}

t.test('a replica adopts the first uid, refuses another before the generation, accepts none', { skip }, async (t) => {
  const r = await startReplica(t, { nodeId: 'r1' });
  const refused = () => r.server.stats.refused.VOLUME_MISMATCH ?? 0;
  t.equal(r.store.volumeUid, undefined, 'a replica created without one');

  const first = await RawPeer.connect(r.port);
  await first.authenticate({ generation: 2, features: ['volume-uid'], volumeUid: U1 });
  t.ok(first.challenge?.features?.includes('volume-uid'), 'the replica offers volume-uid in CHALLENGE');
  t.equal(r.store.volumeUid, U1, 'adopted before WELCOME');
  first.send({ type: 'MUTATION', seq: 1n, generation: 2, mutation: { op: 'mkdir', path: 'd', fid: 'aaaaaaaaaaaaaaaa', mode: 0o755 } });
  t.equal((await first.next('ACK')).durableSeq, 1n);
  first.destroy();
  await first.closed;

  // Another incarnation at a higher generation: refused, and the generation is not raised
  // (a foreign volume's numbers must not fence this one's primary).
  const foreign = await RawPeer.connect(r.port);
  const error = await refusedWith(foreign, { generation: 9, features: ['volume-uid'], volumeUid: U2 });
  t.equal(error.code, 'VOLUME_MISMATCH');
  t.match(error.message, new RegExp(`incarnation ${U1}.*incarnation ${U2}`), error.message);
  await foreign.closed;
  t.equal(refused(), 1, 'counted in stats.refused.VOLUME_MISMATCH');
  t.equal(r.store.manifest.generation, 2, 'generation not raised');
  t.equal(r.store.volumeUid, U1, 'uid kept');
  t.equal(r.store.durableSeq, 1n, 'nothing applied');

  // A refused uid at a stale generation is refused as a mismatch too (checked first).
  const staleForeign = await RawPeer.connect(r.port);
  t.equal((await refusedWith(staleForeign, { generation: 1, features: ['volume-uid'], volumeUid: U2 })).code, 'VOLUME_MISMATCH');
  await staleForeign.closed;

  // A primary that sends none (an older agent): the replica cannot tell, and accepts it.
  const older = await RawPeer.connect(r.port);
  const welcome = await older.authenticate({ generation: 2 });
  t.equal(welcome.appliedSeq, 1n, 'a primary without a uid is welcomed');
  older.destroy();
  await older.closed;
  t.equal(r.store.volumeUid, U1);

  // The same incarnation again: welcomed.
  const same = await RawPeer.connect(r.port);
  t.equal((await same.authenticate({ generation: 2, features: ['volume-uid'], volumeUid: U1 })).appliedSeq, 1n);
  same.destroy();
  await same.closed;
});

t.test('a uid-less replica never adopts the uid of a primary it refuses', { skip }, async (t) => {
  const r = await startReplica(t, { nodeId: 'r1' });
  const current = await RawPeer.connect(r.port);
  await current.authenticate({ generation: 5 });
  current.destroy();
  await current.closed;
  t.equal(r.store.manifest.generation, 5, 'a primary without a uid raised the generation to 5');
  const stale = await RawPeer.connect(r.port);
  t.equal((await refusedWith(stale, { generation: 3, features: ['volume-uid'], volumeUid: U2 })).code, 'GENERATION_STALE');
  await stale.closed;
  t.equal(r.store.volumeUid, undefined, 'a fenced primary leaves no uid behind');
  const next = await RawPeer.connect(r.port);
  await next.authenticate({ generation: 5, features: ['volume-uid'], volumeUid: U1 });
  t.equal(r.store.volumeUid, U1, 'the current primary\'s is adopted');
  next.destroy();
  await next.closed;
});

t.test('a volume created again under the same id does not stream onto the old one\'s replica', { skip }, async (t) => {
  // The old volume: primary (U1) and replica r1, ten mutations replicated.
  let r1 = await startReplica(t, { nodeId: 'r1' });
  const old = await startPrimary(t, { replicas: [{ port: r1.port, name: 'r1' }], writeQuorum: 2, link: { volumeUid: U1 } });
  await old.replicated(old.store.create('f'));
  for (let i = 0; i < 9; i++) await old.replicated(old.store.write('f', i * 4096, Buffer.alloc(4096, 0x10 + i)));
  t.equal(r1.store.volumeUid, U1, 'the replica adopted the old volume\'s uid');
  const oldTree = await treeOf(r1.store);
  await stopReplica(r1);

  // The orchestrator deletes the volume (r1's node is down) and creates it again under the
  // same id, on another brick, at the same generation; it takes ten mutations, and its
  // primary restarts, so its retained queue starts at seq 10: exactly r1's seq, made by
  // generation 1 on both sides. Seq and generation rules alone would stream 11... onto r1.
  const brick = await testBrick(t, 1024);
  const first = await startPrimary(t, { brick, replicas: [], writeQuorum: 1 });
  await first.store.create('g');
  for (let i = 0; i < 9; i++) await first.store.write('g', 0, Buffer.alloc(100, i));
  first.quorum.close();
  await first.store.close();
  const renewed = await startPrimary(t, { brick, reopen: true, replicas: [{ port: r1.port, name: 'r1' }], writeQuorum: 2, timeoutMs: 1500, link: { volumeUid: U2 } });
  t.equal(renewed.queue.startSeq, 10n, 'the new volume\'s queue starts at seq 10, r1\'s seq');
  await renewed.store.mkdir('new');

  r1 = await restartReplica(t, r1);
  const link = renewed.links[0]!;
  await until(() => link.state === 'failed', 'the link to r1 to fail', 10_000);
  t.equal(link.lastError && (link.lastError as { code?: string }).code, 'VOLUME_MISMATCH', `link error: ${link.lastError?.message}`);
  t.equal(r1.store.appliedSeq, 10n, 'r1 took nothing of the new volume');
  t.equal(r1.store.volumeUid, U1, 'and keeps its uid');
  t.same(await treeOf(r1.store), oldTree, 'its tree is the old volume\'s, untouched');
  await t.rejects(renewed.replicated(renewed.store.write('g', 0, Buffer.from('w=2'))), { code: 'QUORUM_LOST' }, 'and it never counts toward the quorum');
});

t.test('agents: a replica of a deleted volume refuses its successor until an operator rebuilds it', { skip }, async (t) => {
  const { startControlAgent } = await import('../helpers/control.js');
  const { testSecretFile } = await import('../helpers/agent.js');
  const secretFile = await testSecretFile(t);
  const [a, b] = [await startControlAgent(t, { embeddedCount: 1, secretFile }), await startControlAgent(t, { embeddedCount: 1, secretFile })];
  const peerOf = async (agent: typeof a) => {
    const info = await agent.api.getNodeInfo({});
    return { nodeId: info.nodeId, address: info.replicationAddress };
  };
  const peerB = await peerOf(b);
  const size = 64 * 2 ** 20;
  const peerStatus = async () => (await a.api.getVolumeStatus({ volumeId: 'pv' })).peers[0]!;
  const waitPeer = async (state: string) => {
    const deadline = Date.now() + 20_000;
    while ((await peerStatus()).state !== state) {
      if (Date.now() > deadline) throw new Error(`peer never ${state}: ${JSON.stringify(await peerStatus())}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return peerStatus();
  };

  await b.api.createVolume({ volumeId: 'pv', sizeLimitBytes: size, role: 'replica', generation: 1 });
  const first = await a.api.createVolume({ volumeId: 'pv', sizeLimitBytes: size, role: 'primary', generation: 1, peers: [peerB], writeQuorum: 2 });
  await waitPeer('streaming');
  t.equal((await b.api.getVolumeStatus({ volumeId: 'pv' })).volume?.volumeUid, first.volumeUid, `the replica adopted the primary's uid ${first.volumeUid}`);

  // B is down while the orchestrator deletes pv and creates it again under the same id.
  await b.stop();
  await a.api.deleteVolume({ volumeId: 'pv' });
  const second = await a.api.createVolume({ volumeId: 'pv', sizeLimitBytes: size, role: 'primary', generation: 1, peers: [peerB], writeQuorum: 2 });
  t.not(second.volumeUid, first.volumeUid, 'the new volume has a new uid');
  await b.restart();
  const refused = await waitPeer('failed');
  t.match(refused.reason, /VOLUME_MISMATCH/, `the primary reports why: ${refused.reason}`);
  t.equal((await b.api.getVolumeStatus({ volumeId: 'pv' })).volume?.volumeUid, first.volumeUid, 'the stale replica keeps its uid');

  // The operator's fix (docs/operations.md): rebuild the stale replica, re-attach the primary.
  await b.api.deleteVolume({ volumeId: 'pv' });
  await b.api.createVolume({ volumeId: 'pv', sizeLimitBytes: size, role: 'replica', generation: 1, volumeUid: second.volumeUid });
  await a.api.updateVolume({ volumeId: 'pv', generation: 1 });
  await waitPeer('streaming');
  t.equal((await b.api.getVolumeStatus({ volumeId: 'pv' })).volume?.volumeUid, second.volumeUid, 'the rebuilt replica holds the new uid and streams');
});
