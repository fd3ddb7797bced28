// SIGTERM under writes (a DaemonSet rollout): the primary agent of a 3-replica volume is
// stopped while a writer keeps writing through its FUSE mount without ever calling fsync.
// One replica is SIGSTOPped meanwhile and falls behind (the write quorum does not need it),
// then continued while the agent stops. The agent unmounts, then drains: every file the
// writer finished before the mount went away is on both replicas' bricks, byte for byte,
// although none was fsynced, the lagging one included; the agent exits 0.
//
// Needs root (loop devices, mkfs, mount) and /dev/fuse; skipped otherwise.
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { dataDirOf, replicatedCluster, sh } from '../helpers/cluster.js';
import { needsFuse } from '../helpers/fuse.js';
import { tempDir } from '../helpers/loop.js';
import { mountPoint } from '../helpers/mount.js';

const VOLUME = 'pvdrain';

/** Exit code of a shell script. */
const exitCode = (script: string): Promise<number> => sh(script).then(() => 0, () => 1);

t.test('SIGTERM under writes: unmount, drain to the replicas, exit 0', { skip: needsFuse(), timeout: 120_000 }, async (t) => {
  const {
    agents: [a, b, c],
  } = await replicatedCluster(t, { volumeId: VOLUME, sizeLimitBytes: 512 * 2 ** 20 });
  const mnt = await mountPoint(t, 'brickd-drain-');
  await a.api.mountVolume({ volumeId: VOLUME, hostPath: mnt });

  // Files of 1 MiB, copies of 8 random sources, written with cat, never fsynced.
  const sources = await tempDir(t, 'brickd-drain-src-');
  const contents = Array.from({ length: 8 }, () => randomBytes(1048576));
  for (const [k, bytes] of contents.entries()) await writeFile(path.join(sources, `s${k}`), bytes);
  // Into a directory of the volume: once the mount is gone, the path no longer exists
  // (the writer must not count files it wrote into the empty mount point underneath).
  await sh(`mkdir ${mnt}/data`);
  const finished: number[] = [];
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      if ((await exitCode(`cat ${sources}/s${i % 8} > ${mnt}/data/f${i}`)) !== 0) return; // the mount went away
      finished.push(i);
    }
  })();
  while (finished.length < 10) await new Promise((r) => setTimeout(r, 10));
  // One replica stalls (SIGSTOP): the write quorum (the primary and c) keeps writes going,
  // and b falls behind; it wakes up while the primary is draining.
  b.proc.child.kill('SIGSTOP');
  while (finished.length < 20) await new Promise((r) => setTimeout(r, 10));
  const t0 = Date.now();
  setTimeout(() => b.proc.child.kill('SIGCONT'), 1000);
  const code = await a.stop('SIGTERM');
  stop = true;
  await writer;
  t.equal(code, 0, `the agent exits 0 (${Date.now() - t0} ms after SIGTERM)`);
  t.ok(finished.length >= 20, `${finished.length} files finished before the mount went away`);
  for (const r of [b, c]) {
    const dir = await dataDirOf(r, VOLUME);
    let intact = 0;
    for (const i of finished) {
      const bytes = await readFile(path.join(dir, 'data', `f${i}`)).catch(() => Buffer.alloc(0));
      if (bytes.equals(contents[i % 8]!)) intact++;
    }
    t.equal(intact, finished.length, `every finished file is on the replica of ${r.stateDir}, byte for byte`);
  }
});
