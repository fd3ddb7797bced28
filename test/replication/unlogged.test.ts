// A primary's change that reached its data file but not its write log (a power loss in the
// window between them, or the kernel's write-back of a page whose record was lost) must not
// leave the replicas silently different: three brickd processes on loopback, a file written
// through FUSE on the primary and held by both replicas; the primary's agent is SIGKILLed,
// and its brick is given what such a loss leaves: bytes of an unacknowledged write, with
// their checksum, in a block the write log knows nothing of. Restarted, the primary's store
// finds that part of the file named in its activity log (src/store/activity.ts) and notes it
// as changed (store.settleSuspects); both replicas, at the seq the primary recovered, are then
// resynced comparing it, and end holding the primary's bytes.
//
// The same for a replica (feature replica-suspects): one SIGKILLed, its brick given bytes of a
// mutation no primary will send again, its primary restarted meanwhile; restarted, it tells
// its primary in WELCOME where its activity log says it may differ, and is resynced
// comparing there.
//
// Last, a power loss of the primary's brick, then of a replica's, under three writers (XFS
// shut down without flushing, as in test/store/crash.test.ts): every acknowledged write is on
// all three, the replicas equal the primary, and the replica comes back holding every seq it
// acknowledged. (The primary's passed three runs with settleSuspects switched off too: the
// window where a write's bytes are on the disk and its record is not did not show there; the
// crafted block above is what proves the suspects are needed.)
//
// Needs root (loop devices, mkfs, mount) and /dev/fuse; skipped otherwise.
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { run } from '../../src/exec.js';
import { native } from '../../src/native.js';
import { SLOT_BYTES } from '../../src/store/activity.js';
import { brickOf, caughtUp, dataDirOf, replicatedCluster, sh } from '../helpers/cluster.js';
import { needsFuse } from '../helpers/fuse.js';
import { cutPower, mountPoint } from '../helpers/mount.js';
import type { ControlAgent, ControlApi } from '../helpers/control.js';

const VOLUME = 'pv-unlogged';
const MiB = 2 ** 20;

const sha256 = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

/** Give block `block` of `name` in `dataDir` other bytes, with their checksum: what a change whose record was lost leaves. */
async function rewriteBlock(dataDir: string, name: string, block: number): Promise<void> {
  const file = path.join(dataDir, name);
  const fid = (await native.getXattr(file, 'trusted.brickd.fid'))!.toString('utf8');
  const bytes = randomBytes(4096);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(native.crc32c(bytes));
  for (const [target, data, at] of [
    [file, bytes, block * 4096],
    [path.join(dataDir, '..', '.brickd', 'sums', fid.slice(0, 2), fid), crc, block * 4],
  ] as const) {
    const h = await open(target, 'r+');
    await h.write(data, 0, data.length, at);
    await h.sync();
    await h.close();
  }
}

/** A cluster whose primary wrote a 24 MiB file `f` through FUSE, held by both replicas. */
async function writtenCluster(t: Test) {
  const { agents } = await replicatedCluster(t, { volumeId: VOLUME, sizeLimitBytes: 256 * MiB, args: ['--quorum-timeout-ms', '3000'] });
  const [a] = agents;
  const mnt = await mountPoint(t, 'brickd-unlogged-');
  await a.api.mountVolume({ volumeId: VOLUME, hostPath: mnt });
  t.teardown(() => run('umount', ['--lazy', mnt]).catch(() => {}));
  await writeFile(path.join(mnt, 'f'), randomBytes(24 * MiB));
  await sh(`sync -f ${path.join(mnt, 'f')}`);
  const status = () => a.api.getVolumeStatus({ volumeId: VOLUME });
  await caughtUp(status);
  return { agents, mnt, status };
}

/** Wait until the primary's links to `nodes` are streaming after a resync; their resync progress. */
async function resynced(status: () => ReturnType<ControlApi['getVolumeStatus']>, nodes: string[]) {
  for (const deadline = Date.now() + 60_000; ; ) {
    const peers = (await status()).peers.filter((p) => nodes.includes(p.nodeId));
    if (peers.length === nodes.length && peers.every((p) => p.state === 'streaming' && p.resync?.phase === 'done')) return peers;
    if (Date.now() > deadline) throw new Error(`the replicas were never resynced: ${JSON.stringify(peers)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('bytes a crash left in the primary without their record reach every replica', { skip: needsFuse(), timeout: 180_000 }, async (t) => {
  const { agents, mnt, status } = await writtenCluster(t);
  const [a, b, c] = agents;
  a.proc.child.kill('SIGKILL');
  await a.proc.exited;
  await run('umount', ['--lazy', mnt]).catch(() => {});
  // What a power loss can leave: one block of f rewritten in the data file, with a matching
  // checksum, by a write whose record never became durable (so the replicas never got it).
  const dataA = await dataDirOf(a, VOLUME);
  await rewriteBlock(dataA, 'f', (9 * MiB + 8192) / 4096);
  const primaryHash = await sha256(path.join(dataA, 'f'));
  t.not(primaryHash, await sha256(path.join(await dataDirOf(b, VOLUME), 'f')), 'the replicas do not have those bytes');

  await a.restart();
  t.ok(
    a.proc.lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('unclean stop')),
    'the restarted primary finds parts of its tree named in its activity log',
  );
  const nodes = [(await b.api.getNodeInfo({})).nodeId, (await c.api.getNodeInfo({})).nodeId];
  for (const p of await resynced(status, nodes)) {
    t.equal(p.resync!.incremental, true, `${p.nodeId}: resynced incrementally`);
    t.ok(Number(p.resync!.bytesCompared) <= 24 * MiB, `${p.nodeId}: compared ${(Number(p.resync!.bytesCompared) / MiB).toFixed(1)} MiB, within the suspect extents`);
  }
  for (const [i, agent] of [b, c].entries()) t.equal(await sha256(path.join(await dataDirOf(agent, VOLUME), 'f')), primaryHash, `${nodes[i]}: holds the primary's bytes`);
});

t.test('bytes a crash left in a replica without their record are compared and replaced', { skip: needsFuse(), timeout: 180_000 }, async (t) => {
  const { agents, mnt, status } = await writtenCluster(t);
  const [a, b] = agents;
  b.proc.child.kill('SIGKILL');
  await b.proc.exited;
  // What a replica's power loss can leave: a block changed by a mutation it applied whose
  // record was lost, which no primary will send again (one that failed over, or lost it too).
  const dataB = await dataDirOf(b, VOLUME);
  await rewriteBlock(dataB, 'f', (17 * MiB + 4096) / 4096);
  const primaryHash = await sha256(path.join(await dataDirOf(a, VOLUME), 'f'));
  t.not(await sha256(path.join(dataB, 'f')), primaryHash, 'the replica holds bytes the primary does not');
  // The primary that sent it everything it may hold would send it all again (its suspects
  // are then ignored: link.ts withSuspects); a restarted one did not send it anything.
  await run('umount', ['--lazy', mnt]).catch(() => {});
  await a.stop();
  await a.restart();

  await b.restart();
  const nodeB = (await b.api.getNodeInfo({})).nodeId;
  const [p] = await resynced(status, [nodeB]);
  t.equal(p!.resync!.incremental, true, 'its primary, told where, resynced it incrementally');
  t.ok(Number(p!.resync!.bytesCompared) > 0 && Number(p!.resync!.bytesCompared) <= 24 * MiB, `comparing ${(Number(p!.resync!.bytesCompared) / MiB).toFixed(1)} MiB: the suspect extents`);
  t.equal(await sha256(path.join(dataB, 'f')), primaryHash, "the replica holds the primary's bytes again");
});

t.test('a replica whose activity log cannot be read is compared in full', { skip: needsFuse(), timeout: 180_000 }, async (t) => {
  const { agents, status } = await writtenCluster(t);
  const [a, b] = agents;
  b.proc.child.kill('SIGKILL');
  await b.proc.exited;
  const dataB = await dataDirOf(b, VOLUME);
  await rewriteBlock(dataB, 'f', 3);
  // Neither slot of its activity log readable: it cannot tell where it may differ (and even
  // the primary that sent it everything compares every block).
  const h = await open(path.join(dataB, '..', '.brickd', 'activity'), 'r+');
  await h.write(Buffer.alloc(64, 0xee), 0, 64, 0);
  await h.write(Buffer.alloc(64, 0xee), 0, 64, SLOT_BYTES);
  await h.close();
  await b.restart();
  const [p] = await resynced(status, [(await b.api.getNodeInfo({})).nodeId]);
  t.equal(p!.resync!.incremental, false, 'told "anywhere", its primary compares every block');
  t.equal(await sha256(path.join(dataB, 'f')), await sha256(path.join(await dataDirOf(a, VOLUME), 'f')), "and the replica holds the primary's bytes again");
});

/**
 * Writers appending through the mount, each write fsynced (replicated durability) before it
 * counts as acknowledged; each stops at 56 MiB, so that the three stay under the volume's
 * 256 MiB limit beside `f` (past it a write ends short with ENOSPC, as it should).
 */
function startWriters(mnt: string, names: string[]) {
  const acked: Array<{ name: string; offset: number; length: number; sha: string }> = [];
  const shortWrites: Array<{ name: string; offset: number; asked: number; written: number }> = [];
  let stop = false;
  const writer = async (name: string) => {
    const h = await open(path.join(mnt, name), 'w');
    try {
      for (let offset = 0; !stop && offset < 56 * MiB; ) {
        const data = randomBytes(64 * 1024 * (1 + Math.floor(Math.random() * 8)));
        // A write the kernel split into several FUSE requests may end short when one fails:
        // only what it wrote is acknowledged by the fsync, and the writer stops there.
        const { bytesWritten } = await h.write(data, 0, data.length, offset);
        await h.sync();
        if (bytesWritten > 0) acked.push({ name, offset, length: bytesWritten, sha: createHash('sha256').update(data.subarray(0, bytesWritten)).digest('hex') });
        if (bytesWritten < data.length) {
          shortWrites.push({ name, offset, asked: data.length, written: bytesWritten });
          return;
        }
        offset += data.length;
      }
    } catch {
      // the primary's brick went down: this write was not acknowledged
    } finally {
      await h.close().catch(() => {});
    }
  };
  const writing = Promise.all(names.map(writer));
  return {
    acked,
    shortWrites,
    stop: async () => {
      stop = true;
      await writing;
    },
  };
}

/** Every acknowledged write reads back on every agent's brick, and the replicas equal the primary. */
async function checkBricks(t: Test, agents: readonly ControlAgent[], acked: ReturnType<typeof startWriters>['acked'], names: string[]): Promise<void> {
  const trees = [];
  for (const [i, agent] of agents.entries()) {
    const dir = await dataDirOf(agent, VOLUME);
    const files: Record<string, string> = {};
    for (const name of names) files[name] = await sha256(path.join(dir, name)).catch(() => 'absent');
    trees.push(files);
    const bad = [];
    for (const w of acked) {
      const h = await open(path.join(dir, w.name), 'r');
      const bytes = Buffer.alloc(w.length);
      const { bytesRead } = await h.read(bytes, 0, w.length, w.offset);
      await h.close();
      if (bytesRead !== w.length || createHash('sha256').update(bytes).digest('hex') !== w.sha) bad.push(w);
    }
    t.equal(acked.length - bad.length, acked.length, `${i === 0 ? 'the primary' : `replica ${i}`}: all ${acked.length} acknowledged writes intact`, { bad: bad.slice(0, 3) });
  }
  for (let i = 1; i < trees.length; i++) t.same(trees[i], trees[0], `replica ${i} equals the primary`);
}

const WRITERS = ['w0', 'w1', 'w2'];

t.test("a power loss of the primary's brick in the middle of writes: every acknowledged write on every replica, the replicas equal to it", { skip: needsFuse(), timeout: 240_000 }, async (t) => {
  const { agents, mnt, status } = await writtenCluster(t);
  const [a] = agents;
  const writers = startWriters(mnt, WRITERS);
  await new Promise((r) => setTimeout(r, 800 + Math.floor(Math.random() * 600))); // mid-write: the writers take about 2.5 s to reach their cap
  const restore = await cutPower(await brickOf(a, VOLUME));
  a.proc.child.kill('SIGKILL');
  await a.proc.exited;
  await run('umount', ['--lazy', mnt]).catch(() => {});
  await writers.stop();
  t.ok(writers.acked.length > 5, `${writers.acked.length} writes acknowledged before the power loss`);
  // The machine comes back: the brick is mounted again, then the agent starts.
  await restore();
  await a.restart();
  await caughtUp(status);
  const peers = (await status()).peers;
  t.comment(`after the power loss: ${peers.map((p) => `${p.nodeId.slice(0, 8)} ${p.resync ? `resynced (${p.resync.incremental ? 'incremental' : 'full'}, ${(Number(p.resync.bytesCompared) / MiB).toFixed(1)} MiB compared)` : 'caught up from the queue'}`).join('; ')}`);
  await checkBricks(t, agents, writers.acked, ['f', ...WRITERS]);
});

t.test("a power loss of a replica's brick in the middle of writes: it kept every write it acknowledged", { skip: needsFuse(), timeout: 240_000 }, async (t) => {
  const { agents, mnt, status } = await writtenCluster(t);
  const [, b] = agents;
  const nodeB = (await b.api.getNodeInfo({})).nodeId;
  const writers = startWriters(mnt, WRITERS);
  await new Promise((r) => setTimeout(r, 800 + Math.floor(Math.random() * 600))); // mid-write: the writers take about 2.5 s to reach their cap
  const restore = await cutPower(await brickOf(b, VOLUME));
  const ackedByB = BigInt((await status()).peers.find((p) => p.nodeId === nodeB)!.ackedSeq);
  b.proc.child.kill('SIGKILL');
  await b.proc.exited;
  // The primary goes on with the other replica (W=2 of 3).
  await new Promise((r) => setTimeout(r, 1000));
  await writers.stop();
  await run('umount', ['--lazy', mnt]).catch(() => {});
  t.ok(writers.acked.length > 5, `${writers.acked.length} writes acknowledged`);
  t.same(writers.shortWrites, [], 'no write ended short');
  await restore();
  await b.restart();
  await caughtUp(status);
  // A replica that lost what it had acknowledged durable says so in WELCOME (durable below
  // the acked seq) and is compared in full; one that kept it is caught up from the queue.
  const peer = (await status()).peers.find((p) => p.nodeId === nodeB)!;
  t.ok(ackedByB > 0n, `it had acknowledged seq ${ackedByB} durable before the power loss`);
  t.ok(!peer.resync || peer.resync.incremental, `it came back holding everything it acknowledged: ${peer.resync ? `an incremental resync` : 'caught up from the queue'} (${peer.reason})`);
  await checkBricks(t, agents, writers.acked, ['f', ...WRITERS]);
});
