// The record of changed regions survives a crash of the primary's agent: three brickd
// processes on loopback, the volume mounted through FUSE on the primary; after a clean
// restart of the primary a replica stops, more is written and synced, then the
// primary's agent is SIGKILLed and started again on its state dir. The replica, back, is resynced comparing only what it missed: the
// record was saved at the primary's last checkpoint (changes.json) and recovery fed it the
// mutations the log replayed after that checkpoint.
//
// Needs root (loop devices, mkfs, mount) and /dev/fuse; skipped otherwise.
import { randomBytes } from 'node:crypto';
import { stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { run } from '../../src/exec.js';
import { dataDirOf, replicatedCluster, sh } from '../helpers/cluster.js';
import { needsFuse } from '../helpers/fuse.js';
import { mountPoint } from '../helpers/mount.js';

const VOLUME = 'pv-crash';

t.test('a replica that lagged a primary which then crashed is resynced incrementally', { skip: needsFuse(), timeout: 180_000 }, async (t) => {
  const { agents } = await replicatedCluster(t, { volumeId: VOLUME, sizeLimitBytes: 512 * 2 ** 20, args: ['--quorum-timeout-ms', '3000'] });
  const [a, , c] = agents;
  const mnt = await mountPoint(t, 'brickd-crash-rec-');
  await a.api.mountVolume({ volumeId: VOLUME, hostPath: mnt });
  t.teardown(() => run('umount', ['--lazy', mnt]).catch(() => {}));
  const write = async (name: string, mib: number) => {
    await writeFile(path.join(mnt, name), randomBytes(mib * 2 ** 20));
    await sh(`sync -f ${path.join(mnt, name)}`);
  };
  await write('before', 48);
  // A clean restart of the primary: its record of changed regions goes on (saved at the
  // stop), and its activity log is emptied, so the crash below leaves only what was written
  // after it suspect (store/activity.ts; otherwise the 48 MiB, still among its most recently
  // used extents, would be compared too, as they should be after a crash).
  await run('umount', ['--lazy', mnt]).catch(() => {});
  await a.stop();
  await a.restart();
  await a.api.mountVolume({ volumeId: VOLUME, hostPath: mnt });
  // A checkpoint (every 10 s) saves the record; what follows it only the log holds.
  const saved = path.join(path.dirname(await dataDirOf(a, VOLUME)), '.brickd', 'changes.json');
  for (const deadline = Date.now() + 30_000; !(await stat(saved).catch(() => undefined)); ) {
    if (Date.now() > deadline) throw new Error('no checkpoint saved the record of changed regions');
    await new Promise((r) => setTimeout(r, 100));
  }

  // The replica stops cleanly: a SIGKILL would leave it suspects of its own, which the
  // restarted primary (a link that never sent it anything) would compare too.
  await c.stop();
  await write('while-down', 4);
  // The primary's agent crashes; the replica that stayed holds everything acknowledged.
  a.proc.child.kill('SIGKILL');
  await a.proc.exited;
  await run('umount', ['--lazy', mnt]).catch(() => {});
  await a.restart();
  await c.restart();

  const nodeC = (await c.api.getNodeInfo({})).nodeId;
  const peerC = async () => (await a.api.getVolumeStatus({ volumeId: VOLUME })).peers.find((p) => p.nodeId === nodeC);
  for (const deadline = Date.now() + 60_000; ; ) {
    const p = await peerC();
    if (p?.state === 'streaming' && p.resync?.phase === 'done') break;
    if (Date.now() > deadline) throw new Error(`the replica never caught up: ${JSON.stringify(p)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const resync = (await peerC())!.resync!;
  const used = Number((await a.api.getVolumeStatus({ volumeId: VOLUME })).usedBytes);
  const continued = a.proc.lines.find((l) => l.msg === 'record of changed regions continued across a crash');
  t.comment(continued ? `the saved record ended at seq ${continued.saved}, recovery replayed up to ${continued.recovered}` : 'a checkpoint ran after the last write: nothing to replay into the record');
  t.equal(resync.incremental, true, 'an incremental resync after the primary crashed');
  t.ok(
    Number(resync.bytesCompared) <= 6 * 2 ** 20 && used >= 52 * 2 ** 20,
    `it compared ${(Number(resync.bytesCompared) / 2 ** 20).toFixed(1)} MiB (4 MiB written while it was down) of ${(used / 2 ** 20).toFixed(1)} MiB in use`,
  );
});
