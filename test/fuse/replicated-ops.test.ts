// The FUSE operation suite (test/helpers/fuse-ops.ts) on a 3-replica volume mounted by an
// agent: three brickd processes on loopback with replication on (W=2), the volume mounted
// on the primary through MountVolume. Afterwards every replica's brick holds the same
// tree, byte for byte (read from <brick>/volumes/<id>/data without brickd): names, types,
// modes, owners, link targets, sizes and contents.
//
// Needs root (loop devices, mkfs, mount) and /dev/fuse; skipped otherwise.
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { dataDirOf, replicatedCluster, sh } from '../helpers/cluster.js';
import type { ControlAgent } from '../helpers/control.js';
import { needsFuse } from '../helpers/fuse.js';
import { GiB, opsSuite } from '../helpers/fuse-ops.js';
import { mountPoint } from '../helpers/mount.js';

const VOLUME = 'pvops';


t.test('the operation suite on a 3-replica volume mounted by its primary agent', { skip: needsFuse(), timeout: 180_000 }, async (t) => {
  const sizeLimitBytes = 8 * GiB;
  const { agents } = await replicatedCluster(t, { volumeId: VOLUME, sizeLimitBytes });
  const [a, b, c] = agents;
  const mnt = await mountPoint(t, 'brickd-pvops-');
  await a.api.mountVolume({ volumeId: VOLUME, hostPath: mnt });
  t.teardown(() => a.api.unmountVolume({ volumeId: VOLUME }).catch(() => {}));
  const primaryData = await dataDirOf(a, VOLUME);
  t.teardown(() => {
    if (process.env.DEBUG_AGENTS) for (const [i, x] of agents.entries()) for (const l of x.proc.lines) if (Number(l.level) >= 40) console.error(`agent ${i}: ${JSON.stringify(l).slice(0, 600)}`);
  });

  opsSuite(t, {
    mnt,
    sizeLimitBytes,
    readStored: async (file, offset, length) => {
      const h = await open(path.join(primaryData, file), 'r');
      try {
        const buf = Buffer.alloc(length);
        const { bytesRead } = await h.read(buf, 0, length, offset);
        return buf.subarray(0, bytesRead);
      } finally {
        await h.close();
      }
    },
    listStored: (dir) => readdir(path.join(primaryData, dir)),
    usedBytes: async () => Number((await a.api.getVolumeStatus({ volumeId: VOLUME })).usedBytes),
  });

  t.test('every replica holds the same tree as the primary', async (t) => {
    await sh(`sync -f ${mnt}`);
    for (let i = 0; i < 500; i++) {
      const status = await a.api.getVolumeStatus({ volumeId: VOLUME });
      if (status.peers.every((p) => p.state === 'streaming' && p.lagSeq === 0)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const listing = async (agent: ControlAgent) => {
      const dir = JSON.stringify(await dataDirOf(agent, VOLUME));
      const entries = await sh(`cd ${dir} && find . -mindepth 1 -printf '%p %y %m %U %G %s %l\\n' | sort`);
      // Whole contents of ordinary files; of the sparse 5 GiB one, its written tail (hashing
      // 5 GiB of holes on three bricks would take a minute and prove nothing more).
      const sums = await sh(`cd ${dir} && find . -type f -size -64M -print0 | sort -z | xargs -0 -r sha256sum`);
      const tails = await sh(`cd ${dir} && for f in $(find . -type f -size +64M | sort); do echo "$f $(tail -c 1048576 "$f" | sha256sum)"; done`);
      return { entries, sums, tails };
    };
    const expected = await listing(a);
    t.ok(expected.entries.split('\n').length > 15, 'the suite left a tree behind');
    for (const r of [b, c]) t.same(await listing(r), expected, `replica ${r.stateDir} equals the primary`);
  });
});
