// An agent killed while serving a FUSE mount leaves a dead mount (ENOTCONN) at the path;
// its restart detaches it and serves the volume there again (mounts.json), with the data
// that was fsynced before the kill. A clean stop unmounts and the next start mounts again.
//
// Needs root (loop devices, mkfs, mount) and /dev/fuse; skipped otherwise.
import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { startControlAgent } from '../helpers/control.js';
import { needsFuse } from '../helpers/fuse.js';
import { tempDir } from '../helpers/loop.js';
import { mountInfoAt } from '../helpers/mount.js';

function sh(script: string): Promise<string> {
  return new Promise((resolve, reject) => execFile('sh', ['-c', script], { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message} ${stderr}`)) : resolve(stdout))));
}

t.test('a killed agent\'s dead mount is detached and the volume served again at start', { skip: needsFuse() }, async (t) => {
  const agent = await startControlAgent(t, { embeddedCount: 1 });
  const base = await tempDir(t, 'brickd-restore-');
  const mnt = path.join(base, 'vol');
  t.teardown(() => sh(`umount -l ${mnt} 2>/dev/null; true`));
  await agent.api.createVolume({ volumeId: 'keep', sizeLimitBytes: 64 * 2 ** 20, role: 'primary', generation: 1 });
  await agent.api.mountVolume({ volumeId: 'keep', hostPath: mnt });
  await sh(`printf 'before the kill' > ${mnt}/f && dd if=/dev/null of=${mnt}/f oflag=append conv=notrunc,fsync status=none`);

  await agent.stop('SIGKILL');
  const dead = await stat(mnt).then(() => undefined, (err: NodeJS.ErrnoException) => err.code);
  t.equal(dead, 'ENOTCONN', 'the killed agent left a dead mount');

  await agent.restart();
  t.equal(await sh(`cat ${mnt}/f`), 'before the kill', 'served again at the same path, with the fsynced data');
  t.equal((await agent.api.getVolumeStatus({ volumeId: 'keep' })).mountPath, mnt);
  t.match(await mountInfoAt(mnt), { fsType: 'fuse.brickd' });

  t.equal(await agent.stop('SIGTERM'), 0);
  t.notOk(await mountInfoAt(mnt), 'a clean stop unmounts');
  await agent.restart();
  t.equal(await sh(`cat ${mnt}/f`), 'before the kill', 'and the next start mounts again');
  await agent.api.unmountVolume({ volumeId: 'keep' });
  await agent.stop('SIGTERM');
  await agent.restart();
  t.notOk(await mountInfoAt(mnt), 'after UnmountVolume, a restart leaves it unmounted');
});
