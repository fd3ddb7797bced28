// FuseMount's lifecycle on real mounts: the mount options reach the kernel (allow_other,
// default_permissions, and 128 KiB writes from big_writes,max_write), a dead mount left by a
// SIGKILLed process (ENOTCONN) is cleaned up before mounting again, a live mount on the path
// is refused, and unmount leaves nothing in /proc/self/mountinfo.
// Skips without root (loop devices, mkfs, mount) or without /dev/fuse.
import { execFile, spawn } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { FuseMount, fuseMountOptions } from '../../src/fuse/mount.js';
import { storeBackend } from '../../src/volume/backend.js';
import { fuseVolume, needsFuse } from '../helpers/fuse.js';
import { mountInfoAt, mountPoint } from '../helpers/mount.js';
import { testBrick, testStore } from '../helpers/store.js';

t.test('mount options', async (t) => {
  t.same(fuseMountOptions('vol1', { readOnly: false, allowOther: true }), [
    'fsname=brickd:vol1',
    'subtype=brickd',
    'default_permissions',
    'big_writes',
    'max_write=131072',
    'allow_other',
  ]);
  t.same(fuseMountOptions('v', { readOnly: true, allowOther: false }).slice(-1), ['ro']);
});

t.test('the options reach the kernel; writes arrive 128 KiB at a time', { skip: needsFuse() }, async (t) => {
  const sizes: number[] = [];
  const v = await fuseVolume(t, {
    wrap: (b) => ({
      ...b,
      write: (file, offset, data) => {
        sizes.push(data.length);
        return b.write(file, offset, data);
      },
    }),
  });
  const info = await mountInfoAt(v.mnt);
  t.equal(info?.fsType, 'fuse.brickd');
  t.equal(info?.source, 'brickd:vol1');
  t.match(info?.superOptions.join(','), /allow_other/);
  t.match(info?.superOptions.join(','), /default_permissions/);
  await new Promise<void>((resolve, reject) =>
    execFile('dd', ['if=/dev/zero', `of=${path.join(v.mnt, 'zeros')}`, 'bs=1M', 'count=4'], (err) => (err ? reject(err) : resolve())),
  );
  t.equal(Math.max(...sizes), 131072, `largest write ${Math.max(...sizes)} bytes (not 4 KiB)`);
  t.equal((await stat(path.join(v.mnt, 'zeros'))).size, 4 * 2 ** 20);
});

t.test('a dead mount (ENOTCONN) from a killed process is cleaned up, then mounted', { skip: needsFuse() }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  const mnt = await mountPoint(t, 'brickd-fuse-dead-');
  const child = spawn(process.execPath, [path.join(import.meta.dirname, '..', 'brick', 'children', 'fuse-mount.cjs'), mnt], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('mounted') && resolve());
    child.once('exit', (code) => reject(new Error(`FUSE child exited ${code}`)));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  await t.rejects(stat(mnt), { code: 'ENOTCONN' }, 'the mount is dead, as after a crash');

  const fuse = new FuseMount();
  await fuse.mount(storeBackend(store), mnt);
  t.teardown(() => fuse.unmount());
  await writeFile(path.join(mnt, 'alive'), 'yes');
  t.equal(await readFile(path.join(mnt, 'alive'), 'utf8'), 'yes', 'the new mount serves the volume');
  t.equal((await mountInfoAt(mnt))?.fsType, 'fuse.brickd', 'the mount on top is ours');
  await fuse.unmount();
  t.equal(await mountInfoAt(mnt), undefined, 'nothing left at the path after unmount (the dead mount too)');
});

t.test('a live mount on the path is refused; unmount is clean and idempotent', { skip: needsFuse() }, async (t) => {
  const v = await fuseVolume(t);
  const second = new FuseMount();
  await t.rejects(second.mount(storeBackend(v.store), v.mnt), { code: 'MOUNT_FAILED' });
  await t.rejects(v.fuse.mount(storeBackend(v.store), v.mnt), { code: 'MOUNT_FAILED' }, 'one FuseMount serves one path');
  await writeFile(path.join(v.mnt, 'f'), 'x');
  await v.fuse.unmount();
  t.notOk(v.fuse.mounted);
  t.equal(await mountInfoAt(v.mnt), undefined, 'no mount left in /proc/self/mountinfo');
  const all = await readFile('/proc/self/mountinfo', 'utf8');
  t.notOk(all.includes(v.mnt), 'not even a stacked one');
  await v.fuse.unmount();
  t.pass('a second unmount does nothing');
});
