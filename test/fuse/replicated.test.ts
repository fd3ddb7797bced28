// A 3-replica volume mounted through the agent (MountVolume), used by real tools in other
// processes: three brickd processes on loopback with replication on, configured only
// through their control sockets.
//
// 1. A tree copied in with `cp -a` and synced is byte-identical on every replica's brick
//    (read straight from <brick>/volumes/<id>/data, as an admin would, without brickd).
// 2. sqlite3 in WAL mode commits batches of rows; the primary agent is SIGKILLed mid-batch
//    (its mount dies with it); the orchestrator promotes the replica with the highest
//    (generation, durable seq) at a higher generation, fences the other, and mounts it there:
//    PRAGMA integrity_check is ok and every committed row is present.
// 3. The same with a power loss of the primary's node (its brick shut down without flushing,
//    its agent SIGKILLed); then the machine comes back, the old primary is made a replica
//    of the new one at generation 2 and catches up: the same database files on every brick.
//
// Needs root (loop devices, mkfs, mount) and /dev/fuse; skipped otherwise.
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { run } from '../../src/exec.js';
import { brickOf, caughtUp, dataDirOf, replicatedCluster, sh } from '../helpers/cluster.js';
import type { ControlAgent } from '../helpers/control.js';
import { needsFuse } from '../helpers/fuse.js';
import { tempDir } from '../helpers/loop.js';
import { cutPower, mountInfoAt, mountPoint } from '../helpers/mount.js';

const VOLUME = 'pvdb';


t.test('a 3-replica volume through FUSE: identical bricks, sqlite survives losing its primary', { skip: needsFuse(), timeout: 240_000 }, async (t) => {
  const { agents } = await replicatedCluster(t, { volumeId: VOLUME, sizeLimitBytes: 512 * 2 ** 20, args: ['--quorum-timeout-ms', '3000'] });
  const [a, b, c] = agents;
  const mntA = await mountPoint(t, 'brickd-pv-a-');
  t.same(await a.api.mountVolume({ volumeId: VOLUME, hostPath: mntA }), { mountPath: mntA });

  await t.test('cp -a into the mount: the same bytes on every brick', async (t) => {
    const src = await tempDir(t, 'brickd-pv-src-');
    await mkdir(path.join(src, 'tree', 'deep', 'er'), { recursive: true });
    for (const [i, size] of [0, 1, 4096, 70_000, 1_300_000, 3_000_000].entries()) {
      await writeFile(path.join(src, 'tree', i % 2 ? 'deep/er' : '', `f${i}`), randomBytes(size));
    }
    await sh(`cp -a ${src}/tree ${mntA}/ && sync -f ${mntA}/tree`);
    const sums = (dir: string) => sh(`cd ${dir}/tree && find . -type f -print0 | sort -z | xargs -0 sha256sum`);
    const expected = await sums(src);
    t.equal(await sums(mntA), expected, 'read back through the mount');
    for (const agent of agents) t.equal(await sums(await dataDirOf(agent, VOLUME)), expected, `on the brick of ${agent.stateDir}`);
  });

  await t.test('sqlite3 in WAL mode: primary SIGKILLed, replica promoted, no committed row lost', async (t) => {
    const writer = await sqliteWriter(`${mntA}/app.db`);
    a.proc.child.kill('SIGKILL');
    await a.proc.exited;
    const { committed, failedBatches } = await writer.stop();
    t.ok(committed >= 15, `${committed} batches committed before the primary died (${failedBatches} failed with it)`);
    t.teardown(() => run('umount', ['--lazy', mntA]).catch(() => {}));
    const { promoted, mntP } = await failOver(t, b, c, committed);
    const status = await promoted.api.getVolumeStatus({ volumeId: VOLUME });
    t.same(status.peers.map((p) => p.state), ['streaming'], 'the survivor is streamed to');
    t.ok(await mountInfoAt(mntP), 'served from the promoted node');
  });
});

t.test("sqlite3 in WAL mode: a power loss of the primary's node, replica promoted, the old primary back as a replica", { skip: needsFuse(), timeout: 240_000 }, async (t) => {
  const { agents, peer } = await replicatedCluster(t, { volumeId: VOLUME, sizeLimitBytes: 512 * 2 ** 20, args: ['--quorum-timeout-ms', '3000'] });
  const [a, b, c] = agents;
  const mntA = await mountPoint(t, 'brickd-pl-a-');
  await a.api.mountVolume({ volumeId: VOLUME, hostPath: mntA });
  const writer = await sqliteWriter(`${mntA}/app.db`);
  // The power goes: the brick loses what it had not flushed (xfs shutdown without a log
  // flush, as xfstests' godown), and the agent dies with the machine.
  const restore = await cutPower(await brickOf(a, VOLUME));
  a.proc.child.kill('SIGKILL');
  await a.proc.exited;
  const { committed, failedBatches } = await writer.stop();
  await run('umount', ['--lazy', mntA]).catch(() => {});
  t.ok(committed >= 15, `${committed} batches committed before the power loss (${failedBatches} failed with it)`);
  const { promoted, other, mntP } = await failOver(t, b, c, committed);

  // The machine comes back (the brick's journal replays at mount), its agent restarts with
  // its old role and remounts its volume; the orchestrator unmounts it, makes it a replica
  // at generation 2 and gives it to the new primary as a peer again.
  await restore();
  await a.restart();
  await a.api.unmountVolume({ volumeId: VOLUME });
  await a.api.updateVolume({ volumeId: VOLUME, generation: 2, role: 'replica' });
  const peers = [agents.indexOf(other), 0].map((i) => peer(i));
  await promoted.api.updateVolume({ volumeId: VOLUME, generation: 2, setPeers: true, peers, writeQuorum: 2 });
  await sh(`sqlite3 ${mntP}/app.db "INSERT INTO t(batch, v) VALUES (100001, 'with three again');"`);
  await sh(`sync -f ${mntP}/app.db`);
  await caughtUp(() => promoted.api.getVolumeStatus({ volumeId: VOLUME }));
  const back = (await promoted.api.getVolumeStatus({ volumeId: VOLUME })).peers.find((p) => p.nodeId === peer(0).nodeId)!;
  t.comment(`the old primary came back: ${back.resync ? `resynced (${back.resync.incremental ? 'incremental' : 'full'}, ${(Number(back.resync.bytesCompared) / 2 ** 20).toFixed(1)} MiB compared)` : 'caught up from the queue'}`);
  // Every brick holds the same database files, read without brickd.
  const sums = async (agent: ControlAgent) => sh(`cd ${await dataDirOf(agent, VOLUME)} && sha256sum app.db*`);
  const expected = await sums(promoted);
  for (const agent of [a, other]) t.equal(await sums(agent), expected, `${agent === a ? 'the old primary' : 'the other replica'} holds the promoted primary's files`);
});

/** sqlite3 in WAL mode committing batches of 50 rows (one sqlite3 process each) into `db` until stopped; resolves once 15 are committed. */
async function sqliteWriter(db: string): Promise<{ stop(): Promise<{ committed: number; failedBatches: number }> }> {
  await sh(`sqlite3 ${db} "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, batch INTEGER, v TEXT);"`);
  let committed = 0;
  let failedBatches = 0;
  let stop = false;
  const batch = (n: number) => {
    const rows = Array.from({ length: 50 }, (_, i) => `(${n}, '${'x'.repeat(100)}${i}')`).join(',');
    return sh(`sqlite3 ${db} "PRAGMA synchronous=FULL; BEGIN; INSERT INTO t(batch, v) VALUES ${rows}; COMMIT;"`, 30_000);
  };
  const writing = (async () => {
    for (let n = 0; !stop; n++) {
      try {
        await batch(n);
        committed++; // sqlite3 exited 0: the commit (and its fsync) returned
      } catch {
        failedBatches++;
        return;
      }
    }
  })();
  while (committed < 15) await new Promise((r) => setTimeout(r, 20));
  return {
    async stop() {
      stop = true;
      await writing;
      return { committed, failedBatches };
    },
  };
}

/**
 * The orchestrator after losing the primary: the replica with the highest (generation of its
 * durable seq, durable seq) becomes primary at generation 2 (docs/operations.md, Failover),
 * the other is fenced at 2 too (a stale primary can never write to it), and the volume is
 * mounted on the new primary: PRAGMA integrity_check is ok, every committed batch is there
 * and none partly, and a commit after the failover is acknowledged by the new pair.
 */
async function failOver(t: Test, b: ControlAgent, c: ControlAgent, committed: number): Promise<{ promoted: ControlAgent; other: ControlAgent; mntP: string }> {
  const statuses = await Promise.all([b, c].map((r) => r.api.getVolumeStatus({ volumeId: VOLUME })));
  t.same(statuses.map((s) => Number(s.durableGeneration)), [1, 1], 'both replicas hold seqs of generation 1');
  const rank = (s: (typeof statuses)[number]) => Number(s.durableGeneration ?? -1) * 2 ** 32 + Number(s.durableSeq);
  const [promoted, other] = rank(statuses[0]!) >= rank(statuses[1]!) ? [b, c] : [c, b];
  await other.api.updateVolume({ volumeId: VOLUME, generation: 2 });
  const otherInfo = await other.api.getNodeInfo({});
  await promoted.api.updateVolume({ volumeId: VOLUME, generation: 2, role: 'primary', setPeers: true, peers: [{ nodeId: otherInfo.nodeId, address: otherInfo.replicationAddress }], writeQuorum: 2 });
  const mntP = await mountPoint(t, 'brickd-pv-p-');
  await promoted.api.mountVolume({ volumeId: VOLUME, hostPath: mntP });
  t.teardown(() => promoted.api.unmountVolume({ volumeId: VOLUME }).catch(() => {}));
  t.equal((await sh(`sqlite3 ${mntP}/app.db "PRAGMA integrity_check;"`)).trim(), 'ok', 'integrity_check on the promoted replica');
  const batches = Number((await sh(`sqlite3 ${mntP}/app.db "SELECT COUNT(DISTINCT batch) FROM t;"`)).trim());
  const rows = Number((await sh(`sqlite3 ${mntP}/app.db "SELECT COUNT(*) FROM t;"`)).trim());
  t.ok(batches >= committed, `every committed batch is there (${batches} found, ${committed} committed)`);
  t.equal(rows, batches * 50, 'and no batch is partly there');
  // The new primary replicates to the survivor (W=2 of 2): whatever the survivor held
  // that the new primary did not, or lacked, a resync or the queue reconciles.
  await sh(`sqlite3 ${mntP}/app.db "INSERT INTO t(batch, v) VALUES (100000, 'after failover');"`);
  const after = Number((await sh(`sqlite3 ${mntP}/app.db "SELECT COUNT(*) FROM t WHERE batch = 100000;"`)).trim());
  t.equal(after, 1, 'a commit after the failover is acknowledged by the new pair');
  return { promoted, other, mntP };
}
