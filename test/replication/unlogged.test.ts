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
// Needs root (loop devices, mkfs, mount) and /dev/fuse; skipped otherwise.
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { run } from '../../src/exec.js';
import { native } from '../../src/native.js';
import { dataDirOf, replicatedCluster, sh } from '../helpers/cluster.js';
import { needsFuse } from '../helpers/fuse.js';
import { mountPoint } from '../helpers/mount.js';

const VOLUME = 'pv-unlogged';
const MiB = 2 ** 20;

const sha256 = async (file: string) => createHash('sha256').update(await readFile(file)).digest('hex');

t.test('bytes a crash left in the primary without their record reach every replica', { skip: needsFuse(), timeout: 180_000 }, async (t) => {
  const { agents } = await replicatedCluster(t, { volumeId: VOLUME, sizeLimitBytes: 256 * MiB, args: ['--quorum-timeout-ms', '3000'] });
  const [a, b, c] = agents;
  const mnt = await mountPoint(t, 'brickd-unlogged-');
  await a.api.mountVolume({ volumeId: VOLUME, hostPath: mnt });
  t.teardown(() => run('umount', ['--lazy', mnt]).catch(() => {}));
  await writeFile(path.join(mnt, 'f'), randomBytes(24 * MiB));
  await sh(`sync -f ${path.join(mnt, 'f')}`);
  // Both replicas hold everything the primary has.
  const status = () => a.api.getVolumeStatus({ volumeId: VOLUME });
  for (const deadline = Date.now() + 30_000; ; ) {
    const s = await status();
    if (s.peers.length === 2 && s.peers.every((p) => p.state === 'streaming' && BigInt(p.ackedSeq) === BigInt(s.appliedSeq))) break;
    if (Date.now() > deadline) throw new Error(`the replicas never caught up: ${JSON.stringify(s.peers)}`);
    await new Promise((r) => setTimeout(r, 100));
  }

  a.proc.child.kill('SIGKILL');
  await a.proc.exited;
  await run('umount', ['--lazy', mnt]).catch(() => {});
  // What a power loss can leave: one block of f rewritten in the data file, with a matching
  // checksum, by a write whose record never became durable (so the replicas never got it).
  const dataA = await dataDirOf(a, VOLUME);
  const file = path.join(dataA, 'f');
  const fid = (await native.getXattr(file, 'trusted.brickd.fid'))!.toString('utf8');
  const block = (9 * MiB + 8192) / 4096;
  const bytes = randomBytes(4096);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(native.crc32c(bytes));
  for (const [target, data, at] of [
    [file, bytes, block * 4096],
    [path.join(dataA, '..', '.brickd', 'sums', fid.slice(0, 2), fid), crc, block * 4],
  ] as const) {
    const h = await open(target, 'r+');
    await h.write(data, 0, data.length, at);
    await h.sync();
    await h.close();
  }
  const primaryHash = await sha256(file);
  t.not(primaryHash, await sha256(path.join(await dataDirOf(b, VOLUME), 'f')), 'the replicas do not have those bytes');

  await a.restart();
  t.ok(
    a.proc.lines.some((l) => typeof l.msg === 'string' && l.msg.startsWith('unclean stop')),
    'the restarted primary finds parts of its tree named in its activity log',
  );
  const nodes = [(await b.api.getNodeInfo({})).nodeId, (await c.api.getNodeInfo({})).nodeId];
  for (const deadline = Date.now() + 60_000; ; ) {
    const peers = (await status()).peers.filter((p) => nodes.includes(p.nodeId));
    if (peers.length === 2 && peers.every((p) => p.state === 'streaming' && p.resync?.phase === 'done')) {
      for (const p of peers) {
        t.equal(p.resync!.incremental, true, `${p.nodeId}: resynced incrementally`);
        t.ok(Number(p.resync!.bytesCompared) <= 24 * MiB, `${p.nodeId}: compared ${(Number(p.resync!.bytesCompared) / MiB).toFixed(1)} MiB, within the suspect extents`);
      }
      break;
    }
    if (Date.now() > deadline) throw new Error(`the replicas were never resynced: ${JSON.stringify(peers)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const [i, agent] of [b, c].entries()) t.equal(await sha256(path.join(await dataDirOf(agent, VOLUME), 'f')), primaryHash, `${nodes[i]}: holds the primary's bytes`);
});
