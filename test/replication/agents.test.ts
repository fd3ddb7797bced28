// Replication wired through real agents: two replica agents are brickd processes on
// loopback, configured only through their control sockets; the primary is an agent in this
// process (its data path is the volume backend a FUSE mount uses). Shows that the
// configuration reaches the wire (NodeInfo's replication address, CreateVolume with peers),
// that writes acknowledged with W=2 of 3 are on every replica, that a SIGKILLed replica
// catches up on return, that a replica down across a primary re-attach is resynced
// incrementally (status reports it), and so is one that lagged a replica promoted after a
// failover, that a volume's resync rate is set in place (without
// re-attaching) and holds for the next resync, that a replica down while more than the
// queue was written, or across a clean restart of the primary, is resynced incrementally,
// that a damaged block is repaired across agents both ways (the primary's on read, a
// replica's by its scrub), that status reports per-peer state and lag, and that raising the
// generation on the replicas fences the primary (it stops acknowledging: QUORUM_LOST).
//
// Needs root (loop devices, mkfs, mount); skipped otherwise.
import { chmod, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { Agent } from '../../src/agent/agent.js';
import { loadConfig } from '../../src/agent/config.js';
import { silentLogger } from '../../src/log.js';
import { ReplicaStore } from '../../src/store/store.js';
import { controlClient } from '../../src/wire/control.js';
import { operationDone, startControlAgent, promisify, type ControlAgent } from '../helpers/control.js';
import { flipByte } from '../helpers/corrupt.js';
import { cleanupAgentState, replicationFlags, testSecretFile } from '../helpers/agent.js';
import { needsRoot, tempDir } from '../helpers/loop.js';
import { sample } from '../helpers/http.js';
import { xorshift } from '../helpers/random.js';
import { treeOf, until } from '../helpers/replication.js';
import { suspectsNow } from '../helpers/store.js';

const skip = needsRoot();
const VOLUME = 'pv-1';

t.test('three agents replicate a volume configured through the control API', { skip }, async (t) => {
  const secretFile = await testSecretFile(t);

  const replicas: ControlAgent[] = [];
  for (let i = 0; i < 2; i++) replicas.push(await startControlAgent(t, { embeddedCount: 1, embeddedSizeMiB: 1024, secretFile }));
  const peers: Array<{ nodeId: string; address: string }> = [];
  for (const r of replicas) {
    const info = await r.api.getNodeInfo({});
    t.match(info.replicationAddress, /^127\.0\.0\.1:\d+$/, 'NodeInfo reports the replication address');
    t.ok(info.capabilities.includes('replication'), 'and the replication capability');
    peers.push({ nodeId: info.nodeId, address: info.replicationAddress });
    await r.api.createVolume({ volumeId: VOLUME, sizeLimitBytes: 512 * 2 ** 20, role: 'replica', generation: 1 });
  }

  // The primary: an agent in this process, with its own state dir, socket and loop device.
  const stateDir = await tempDir(t, 'brickd-primary-');
  const socketDir = await tempDir(t, 'brickd-primary-sock-');
  cleanupAgentState(t, stateDir);
  const config = await loadConfig({
    argv: [
      '--state-dir', stateDir, '--control-socket', path.join(socketDir, 'control.sock'), '--metrics-address', 'off',
      '--embedded', '--embedded-count', '1', '--embedded-size-bytes', '1GiB', '--quorum-timeout-ms', '3000',
      ...(await replicationFlags(secretFile)),
    ],
  });
  await chmod(socketDir, 0o755);
  let primary = new Agent(config, silentLogger);
  const events: Array<{ kind: string; volumeId?: string }> = [];
  primary.events.subscribe((e) => events.push(e));
  await primary.start();
  t.teardown(() => primary.stop());
  let api = promisify(controlClient(config.controlSocket));
  await api.createVolume({ volumeId: VOLUME, sizeLimitBytes: 512 * 2 ** 20, role: 'primary', generation: 1, peers, writeQuorum: 2 });
  let backend = primary.volumes.backend(VOLUME);

  // A workload: namespace operations and writes of several sizes, every ack recorded.
  const acked = new Map<string, Buffer>();
  const random = xorshift(20261126);
  await backend.mkdir('dir');
  const writeFile_ = async (name: string, size: number) => {
    const data = Buffer.alloc(size);
    for (let i = 0; i < size; i += 4) data.writeUInt32LE(random() >>> 0, i);
    await backend.create(name).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    await backend.write(name, 0, data);
    // Data writes are write-back: acknowledged (durable on W replicas) by the fsync.
    await backend.sync();
    acked.set(name, data);
  };
  for (let i = 0; i < 20; i++) await writeFile_(`dir/f${i}`, i % 3 === 0 ? 1 << 20 : 4096 * (1 + (i % 5)));
  await backend.rename('dir/f1', 'dir/renamed');
  acked.set('dir/renamed', acked.get('dir/f1')!);
  acked.delete('dir/f1');

  await until(() => primary.volumes.peerStates(VOLUME).every((p) => p.state === 'streaming' && p.lagSeq === 0n), 'both peers streaming with no lag');
  const status = await api.getVolumeStatus({ volumeId: VOLUME });
  t.equal(status.health, 'healthy');
  t.same(status.peers.map((p) => p.state).sort(), ['streaming', 'streaming'], 'status shows both links streaming');
  t.ok(status.peers.every((p) => p.lagSeq === 0 && p.ackedSeq === status.appliedSeq), 'and no lag');
  const scrape = async () => (await primary.metrics.render()).body;
  let text = await scrape();
  for (const { nodeId } of peers) {
    t.equal(sample(text, 'brickd_replication_peer_state', { volume: VOLUME, peer: nodeId, state: 'streaming' }), 1, `metrics: ${nodeId} streaming`);
    t.equal(sample(text, 'brickd_replication_peer_lag_seqs', { volume: VOLUME, peer: nodeId }), 0, 'metrics: no lag');
    t.ok(sample(text, 'brickd_replication_sent_bytes_total', { volume: VOLUME, peer: nodeId })! > 20 * 4096, 'metrics: bytes sent');
  }
  t.equal(sample(text, 'brickd_volume_replicas', { volume: VOLUME }), 3, 'metrics: three replicas');
  t.equal(sample(text, 'brickd_volume_replicas_in_sync', { volume: VOLUME }), 3, 'metrics: all three in sync');
  t.equal(sample(text, 'brickd_volume_write_quorum', { volume: VOLUME }), 2, 'metrics: W = 2 (majority)');
  t.equal(sample(text, 'brickd_volume_quorum_met', { volume: VOLUME }), 1, 'metrics: quorum met');

  // Repair through the agents' own wiring (VolumeManager.storeOptions): a block damaged on
  // the primary's brick reads back right (fetched from a replica agent), and one damaged on a
  // replica agent's brick is healed from the primary by that agent's scrub (StartScrub).
  await flipByte(path.join(await replicaDirOf(stateDir, VOLUME), 'data', 'dir', 'f2'), 5000);
  t.ok((await backend.read('dir/f2', 0, acked.get('dir/f2')!.length)).equals(acked.get('dir/f2')!), 'a block damaged on the primary reads back right');
  t.equal(primary.volumes.get(VOLUME).store.stats.repaired, 1, 'repaired from a replica agent');
  await flipByte(path.join(await replicaDirOf(replicas[0]!.stateDir, VOLUME), 'data', 'dir', 'f3'), 100);
  const scrubOp = await replicas[0]!.api.startScrub({ volumeId: VOLUME });
  t.equal((await operationDone(replicas[0]!.api, scrubOp.operationId)).state, 'succeeded', 'the scrub ran');
  const replicaStatus = await replicas[0]!.api.getVolumeStatus({ volumeId: VOLUME });
  t.equal(Number(replicaStatus.checksumErrors), 1, 'the replica agent found one damaged block');
  t.equal(Number(replicaStatus.repairedBlocks), 1, "and its scrub repaired it from the primary");
  // (The end of this test reads every acknowledged file on every replica, verified.)

  // SIGKILL a replica while writers run: W=2 of 3 keeps acknowledging.
  let stop = false;
  let n = 0;
  const writer = (async () => {
    while (!stop) await writeFile_(`dir/w${n++ % 40}`, 64 * 1024);
  })();
  await until(() => n > 20, 'writes flowing');
  replicas[0]!.proc.child.kill('SIGKILL');
  await replicas[0]!.proc.exited;
  const before = n;
  await until(() => n > before + 30, 'writes acknowledged with a replica down');
  await until(() => primary.volumes.peerStates(VOLUME).some((p) => p.state === 'connecting'), 'the link to the killed replica reconnecting');
  const down = await api.getVolumeStatus({ volumeId: VOLUME });
  t.equal(down.health, 'degraded', 'a peer down makes the volume degraded');
  await replicas[0]!.restart();
  await until(() => primary.volumes.peerStates(VOLUME).every((p) => p.state === 'streaming'), 'the restarted replica streaming again');
  stop = true;
  await writer;
  await until(() => primary.volumes.peerStates(VOLUME).every((p) => p.lagSeq === 0n), 'both replicas caught up');

  // Protocol A: an async volume's primary acknowledges on its own durability, even with
  // both replicas stalled (SIGSTOP), and the replicas catch up once they run again.
  const ASYNC = 'pv-async';
  for (const r of replicas) await r.api.createVolume({ volumeId: ASYNC, sizeLimitBytes: 64 * 2 ** 20, role: 'replica', generation: 1 });
  const asyncVolume = await api.createVolume({ volumeId: ASYNC, sizeLimitBytes: 64 * 2 ** 20, role: 'primary', generation: 1, peers, writeQuorum: 2, replicationMode: 'async' });
  t.equal(asyncVolume.replicationMode, 'async');
  t.equal((await api.getVolumeStatus({ volumeId: VOLUME })).volume?.replicationMode, 'sync', 'sync is the default');
  const asyncBackend = primary.volumes.backend(ASYNC);
  await until(() => primary.volumes.peerStates(ASYNC).every((p) => p.state === 'streaming'), 'async links streaming');
  for (const r of replicas) r.proc.child.kill('SIGSTOP');
  const asyncStart = Date.now();
  await asyncBackend.create('a');
  await asyncBackend.write('a', 0, Buffer.alloc(200_000, 7));
  await asyncBackend.sync();
  t.ok(Date.now() - asyncStart < 2500, `acknowledged with both replicas stalled, in ${Date.now() - asyncStart} ms (the quorum timeout is 3000)`);
  t.ok(primary.volumes.peerStates(ASYNC).every((p) => p.lagSeq > 0n), 'the replicas lag behind');
  const lagging = await scrape();
  for (const { nodeId } of peers) {
    t.ok(sample(lagging, 'brickd_replication_peer_lag_bytes', { volume: ASYNC, peer: nodeId })! >= 200_000, `metrics: ${nodeId} lacks the 200 kB written`);
  }
  for (const r of replicas) r.proc.child.kill('SIGCONT');
  await until(() => primary.volumes.peerStates(ASYNC).every((p) => p.lagSeq === 0n), 'the replicas caught up');
  // The primary re-attaches (UpdateVolume: a fresh queue starting at its last seq) while a
  // replica is down: back, that replica cannot be caught up from the queue and is resynced.
  replicas[1]!.proc.child.kill('SIGKILL');
  await replicas[1]!.proc.exited;
  for (let i = 0; i < 10; i++) await writeFile_(`dir/r${i}`, 256 * 1024);
  await api.updateVolume({ volumeId: VOLUME, generation: 1, writeQuorum: 2 });
  for (let i = 0; i < 5; i++) await writeFile_(`dir/s${i}`, 64 * 1024);
  await replicas[1]!.restart();
  await until(() => primary.volumes.peerStates(VOLUME).every((p) => p.state === 'streaming' && p.lagSeq === 0n), 'the returned replica resynced and caught up', 30_000);
  const resynced = (await api.getVolumeStatus({ volumeId: VOLUME })).peers.find((p) => p.resync);
  t.ok(events.some((e) => e.kind === 'replica-behind' && e.volumeId === VOLUME), 'a replica-behind event for the resync');
  t.ok(events.some((e) => e.kind === 'replica-caught-up' && e.volumeId === VOLUME), 'and a replica-caught-up event after it');
  t.equal(resynced?.resync?.phase, 'done', 'GetVolumeStatus reports the finished resync');
  const sent = Number(resynced?.resync?.dataBytesSent);
  // The record of changed regions outlived the re-attach (same store, no mutation between):
  // only what was written while the replica was down was compared, not the whole volume.
  t.equal(resynced?.resync?.incremental, true, 'incremental across the re-attach');
  const used = Number((await api.getVolumeStatus({ volumeId: VOLUME })).usedBytes);
  t.ok(sent >= 10 * 256 * 1024 && sent <= Number(resynced?.resync?.bytesCompared) && Number(resynced?.resync?.bytesCompared) < used / 2, `it sent ${sent} data bytes of ${Number(resynced?.resync?.bytesCompared)} compared (${used} in use)`);

  // The resync throttle: the agent's default, a volume's own set in place (streaming and the
  // last resync's report undisturbed: no re-attach), then in force for the next resync.
  t.equal(Number((await api.getVolumeStatus({ volumeId: VOLUME })).volume?.resyncRateBytesPerSec), 100 * 2 ** 20, "the agent's default rate");
  const beforeRate = await api.getVolumeStatus({ volumeId: VOLUME });
  const badRate = await api.updateVolume({ volumeId: VOLUME, generation: 1, resyncRateBytesPerSec: 2 ** 53 }).then(
    () => undefined,
    (err: Error) => err,
  );
  t.match(badRate?.message, /INVALID_ARGUMENT|resync rate/, 'a rate beyond 2^53-1 is refused');
  const rated = await api.updateVolume({ volumeId: VOLUME, generation: 1, resyncRateBytesPerSec: 2 * 2 ** 20 });
  t.equal(Number(rated.resyncRateBytesPerSec), 2 * 2 ** 20, 'the volume rate is in force');
  const afterRate = await api.getVolumeStatus({ volumeId: VOLUME });
  t.same(
    afterRate.peers.map((p) => [p.nodeId, p.state, p.resync]),
    beforeRate.peers.map((p) => [p.nodeId, p.state, p.resync]),
    'a rate-only update keeps the links (same counters, the last resync still reported)',
  );
  replicas[1]!.proc.child.kill('SIGKILL');
  await replicas[1]!.proc.exited;
  for (let i = 0; i < 12; i++) await writeFile_(`dir/t${i}`, 512 * 1024);
  await api.updateVolume({ volumeId: VOLUME, generation: 1, writeQuorum: 2 }); // re-attach: a fresh queue
  await replicas[1]!.restart();
  // Mid-way, the progress metric measures against what this (incremental) resync compares.
  const running = () => primary.volumes.peerStates(VOLUME).find((p) => p.resync?.phase === 'comparing' && p.resync.bytesDone > 0)?.resync;
  await until(() => running() !== undefined, 'the throttled resync under way', 30_000);
  const live = running()!;
  const low = live.bytesDone / live.bytesToCompare;
  const ratio = sample(await scrape(), 'brickd_replication_resync_progress_ratio', { volume: VOLUME, peer: peers[1]!.nodeId });
  const high = live.bytesDone / live.bytesToCompare;
  t.ok(ratio !== undefined && ratio >= low && ratio <= high && ratio < 1, `metrics: progress ${ratio} of ${live.bytesToCompare} bytes to compare (done ${live.bytesDone})`);
  await until(() => primary.volumes.peerStates(VOLUME).every((p) => p.state === 'streaming' && p.lagSeq === 0n), 'the replica resynced at 2 MiB/s', 30_000);
  const slow = primary.volumes.peerStates(VOLUME).find((p) => p.resync)!.resync!;
  const seconds = (slow.finishedAt! - slow.startedAt) / 1000;
  // The first 1 MiB chunk may go at once; the rest is paced.
  t.ok(seconds >= (slow.dataBytesSent - 2 ** 20) / (2 * 2 ** 20) * 0.9, `${slow.dataBytesSent} data bytes took ${seconds.toFixed(2)} s at 2 MiB/s`);
  t.equal(Number((await api.updateVolume({ volumeId: VOLUME, generation: 1, resyncRateBytesPerSec: 0 })).resyncRateBytesPerSec), 0, '0: unthrottled');

  // A replica that merely fell behind (down while more than the 64 MiB queue was written,
  // the primary running throughout): its resync compares only the regions changed since
  // its seq, not the whole volume.
  replicas[0]!.proc.child.kill('SIGKILL');
  await replicas[0]!.proc.exited;
  const bulk = Buffer.alloc(2 ** 20, 0x5a);
  await backend.create('bulk');
  for (let i = 0; i < 72; i++) {
    await backend.write('bulk', i * 2 ** 20, bulk);
    if (i % 8 === 7) await backend.sync();
  }
  await backend.sync();
  await replicas[0]!.restart();
  await until(() => primary.volumes.peerStates(VOLUME).every((p) => p.state === 'streaming' && p.lagSeq === 0n), 'the replica behind the queue resynced', 60_000);
  const behind = (await api.getVolumeStatus({ volumeId: VOLUME })).peers.find((p) => p.nodeId === peers[0]!.nodeId)!.resync!;
  t.equal(behind.incremental, true, 'an incremental resync');
  const usedMiB = Number((await api.getVolumeStatus({ volumeId: VOLUME })).usedBytes) / 2 ** 20;
  t.ok(Number(behind.bytesCompared) <= 73 * 2 ** 20 && usedMiB > 80, `it compared ${(Number(behind.bytesCompared) / 2 ** 20).toFixed(1)} MiB (the 72 MiB written) of ${usedMiB.toFixed(1)} MiB in use`);

  // A clean restart of the primary's agent keeps its record of changed regions
  // (.brickd/changes.json, taken at start): a replica down across the restart is still
  // resynced comparing only what changed while it was down.
  replicas[0]!.proc.child.kill('SIGKILL');
  await replicas[0]!.proc.exited;
  // It was SIGKILLed: what its activity log names is compared too, by a primary process
  // that never sent it anything (link.ts withSuspects).
  const suspectAtKill = await suspectBytes(await replicaDirOf(replicas[0]!.stateDir, VOLUME));
  for (let i = 0; i < 4; i++) await writeFile_(`dir/u${i}`, 512 * 1024);
  await primary.stop();
  primary = new Agent(config, silentLogger);
  primary.events.subscribe((e) => events.push(e));
  await primary.start();
  api = promisify(controlClient(config.controlSocket));
  backend = primary.volumes.backend(VOLUME);
  await replicas[0]!.restart();
  await until(() => primary.volumes.peerStates(VOLUME).every((p) => p.state === 'streaming' && p.lagSeq === 0n), 'the replica down across the restart resynced', 60_000);
  const acrossRestart = (await api.getVolumeStatus({ volumeId: VOLUME })).peers.find((p) => p.nodeId === peers[0]!.nodeId)!.resync!;
  t.equal(acrossRestart.incremental, true, 'incremental across a clean restart of the primary');
  t.ok(
    Number(acrossRestart.bytesCompared) <= 2 * 2 ** 20 + suspectAtKill,
    `it compared ${Number(acrossRestart.bytesCompared)} bytes (2 MiB written while it was down, ${(suspectAtKill / 2 ** 20).toFixed(1)} MiB its activity log names after its crash)`,
  );
  const afterRestart = await scrape();
  t.equal(sample(afterRestart, 'brickd_replication_resyncs_total', { volume: VOLUME, peer: peers[0]!.nodeId, kind: 'incremental' }), 1, 'metrics: one incremental resync since the restart');
  t.equal(sample(afterRestart, 'brickd_replication_resyncs_total', { volume: VOLUME, peer: peers[0]!.nodeId, kind: 'full' }), 0, 'metrics: no full one');

  // A replica falls behind: down while the primary writes on with the other (W=2 of 3).
  replicas[1]!.proc.child.kill('SIGKILL');
  await replicas[1]!.proc.exited;
  for (let i = 0; i < 8; i++) await writeFile_(`dir/v${i}`, 512 * 1024);

  // Fencing: the orchestrator raises the generation on the live replica (to promote it).
  // The primary, still at generation 1, must stop acknowledging.
  await replicas[0]!.api.updateVolume({ volumeId: VOLUME, generation: 2 });
  const t0 = Date.now();
  const fenced = await backend
    .write('dir/f0', 0, Buffer.alloc(4096, 1))
    .then(() => backend.sync())
    .then(
      () => undefined,
      (err: Error & { code?: string }) => err,
    );
  t.equal(fenced?.code, 'QUORUM_LOST', 'a fenced primary does not acknowledge');
  t.ok(Date.now() - t0 < 10_000, 'within the quorum timeout');
  await until(() => primary.volumes.peerStates(VOLUME).find((p) => p.nodeId === peers[0]!.nodeId)?.state === 'failed', 'the link to the raised replica failed (fenced)');
  t.equal(events.filter((e) => e.kind === 'replica-fenced' && e.volumeId === VOLUME).length, 1, 'a replica-fenced event for the refusing replica');
  text = await scrape();
  t.equal(sample(text, 'brickd_replication_peer_state', { volume: VOLUME, peer: peers[0]!.nodeId, state: 'failed' }), 1, 'metrics: the link is failed');
  t.ok(sample(text, 'brickd_replication_quorum_lost_total', { volume: VOLUME })! >= 1, 'metrics: the unacknowledged write is counted');
  t.equal(sample(text, 'brickd_volume_replicas_in_sync', { volume: VOLUME }), 1, 'metrics: only the fenced primary itself "in sync"');
  t.equal(sample(text, 'brickd_volume_quorum_met', { volume: VOLUME }), 0, 'metrics: quorum not met');

  // Failover: the old primary is gone; the raised replica is promoted with the lagging one
  // as its peer. Back, the lagging replica is resynced comparing only what it missed: the
  // promoted agent kept, as a replica, a record of the regions its mutations changed, and
  // continues it as primary.
  await primary.stop();
  // Promoted, it settles what its activity log still names from its crash (store.ts
  // settleSuspects): compared too (at most what the log names now).
  const suspectAtPromotion = await suspectBytes(await replicaDirOf(replicas[0]!.stateDir, VOLUME));
  const promoted = await replicas[0]!.api.updateVolume({ volumeId: VOLUME, generation: 2, role: 'primary', setPeers: true, peers: [peers[1]!] });
  t.equal(promoted.role, 'primary');
  await replicas[1]!.restart();
  const lagger = async () => (await replicas[0]!.api.getVolumeStatus({ volumeId: VOLUME })).peers[0];
  for (const deadline = Date.now() + 60_000; ; ) {
    const p = await lagger();
    if (p?.state === 'streaming' && p.resync?.phase === 'done' && Number(p.lagSeq) === 0) break;
    if (Date.now() > deadline) throw new Error(`the lagging replica never caught up with the promoted one: ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const afterFailover = (await lagger())!.resync!;
  const inUse = Number((await replicas[0]!.api.getVolumeStatus({ volumeId: VOLUME })).usedBytes);
  t.equal(afterFailover.incremental, true, 'the replica that lagged the promoted one: an incremental resync');
  t.ok(
    Number(afterFailover.bytesCompared) <= 6 * 2 ** 20 + suspectAtPromotion && inUse > 80 * 2 ** 20,
    `it compared ${(Number(afterFailover.bytesCompared) / 2 ** 20).toFixed(1)} MiB (4 MiB written while it was down, at most ${(suspectAtPromotion / 2 ** 20).toFixed(1)} MiB the promoted agent's activity log names) of ${(inUse / 2 ** 20).toFixed(1)} MiB in use`,
  );

  // Every replica holds exactly the acknowledged data (the fenced write aside: it was never
  // acknowledged and never reached a replica), with valid checksums.
  const trees = [];
  for (const r of replicas) {
    await r.stop('SIGTERM');
    const dir = await replicaDirOf(r.stateDir, VOLUME);
    const store = await ReplicaStore.open(dir);
    for (const [name, data] of acked) {
      const read = await store.read(name, 0, data.length);
      if (!read.equals(data)) t.fail(`replica ${r.stateDir}: ${name} differs`);
    }
    trees.push(await treeOf(store));
    await store.close();
  }
  t.same(trees[0], trees[1], 'both replicas hold the same tree');
  t.ok(trees[0]!.length > 20, 'with the workload in it');
  for (const r of replicas) {
    const store = await ReplicaStore.open(await replicaDirOf(r.stateDir, ASYNC));
    t.ok((await store.read('a', 0, 200_000)).equals(Buffer.alloc(200_000, 7)), 'the async write reached the replica');
    await store.close();
  }
});

/** <stateDir>/bricks/<brick>/volumes/<volumeId>: the replica's directory on the agent's one brick. */
async function replicaDirOf(stateDir: string, volumeId: string): Promise<string> {
  const bricksDir = path.join(stateDir, 'bricks');
  for (const b of await readdir(bricksDir)) {
    const dir = path.join(bricksDir, b, 'volumes', volumeId);
    try {
      await readdir(dir);
      return dir;
    } catch {
      /* not on this brick */
    }
  }
  throw new Error(`no replica of ${volumeId} under ${bricksDir}`);
}

/**
 * The bytes a replica's activity log names (store/activity.ts), whole files at their size:
 * an upper bound of what its suspects add to a comparison.
 */
async function suspectBytes(replicaDir: string): Promise<number> {
  const suspects = await suspectsNow(replicaDir);
  if (suspects.all) return Number.MAX_SAFE_INTEGER;
  let bytes = 0;
  for (const r of suspects.ranges) bytes += r.length ?? (await stat(path.join(replicaDir, '.brickd', 'fids', r.fid.slice(0, 2), r.fid)).catch(() => ({ size: 0 }))).size;
  return bytes;
}
