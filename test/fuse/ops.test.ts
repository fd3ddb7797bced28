// Every FUSE operation through real syscalls on a real mount: a ReplicaStore on a loop-device
// XFS brick, served by FuseMount in this process (test/helpers/fuse-ops.ts has the suite).
// Skips without root (loop devices, mkfs, mount, allow_other) or without /dev/fuse.
import t from 'tap';
import { fuseVolume, needsFuse } from '../helpers/fuse.js';
import { GiB, opsSuite } from '../helpers/fuse-ops.js';

for (const writeBack of [false, true]) {
  // Write-back is how the agent serves a primary: writes coalesced into runs, fsync the barrier.
  t.test(`operations through a real mount${writeBack ? ', write-back' : ''}`, { skip: needsFuse() }, async (t) => {
    let syncs = 0;
    // The size limit counts file sizes (a sparse 5 GiB file uses 5 GiB of it): 8 GiB.
    const v = await fuseVolume(t, {
      sizeLimitBytes: 8 * GiB,
      writeBack,
      wrap: (b) => ({
        ...b,
        sync: () => {
          syncs++;
          return b.sync();
        },
      }),
    });
    opsSuite(t, {
      mnt: v.mnt,
      sizeLimitBytes: 8 * GiB,
      readStored: (file, offset, length) => v.store.read(file, offset, length),
      listStored: (dir) => v.store.readdir(dir),
      usedBytes: async () => v.store.statfs().usedBytes,
      syncs: () => syncs,
    });
  });
}
