// The addon's mount concern: mount(2) and umount2(2) of real filesystems on loop devices,
// checked against /proc/self/mountinfo, and their errno-shaped failures.
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { run } from '../../src/exec.js';
import { MountFlags, native, UmountFlags } from '../../src/native.js';
import { loopDevice, needsRoot, tempDir } from '../helpers/loop.js';
import { mountInfoAt, mountPoint } from '../helpers/mount.js';

const skip = needsRoot();

/** "major:minor" of a block device node, as mountinfo prints it. */
async function devNumber(device: string): Promise<string> {
  const rdev = (await stat(device, { bigint: true })).rdev;
  const major = (rdev >> 8n) & 0xfffn;
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}

t.test('1. mount ext4 with MS_NOATIME, use it, unmount it', { skip }, async (t) => {
  const device = await loopDevice(t, 32);
  await run('mkfs.ext4', ['-q', '-F', device]);
  const dir = await mountPoint(t); // registered after the device: unmounted before it is detached

  await native.mount(device, dir, 'ext4', MountFlags.MS_NOATIME, '');
  const entry = await mountInfoAt(dir);
  t.ok(entry, 'mountinfo shows the mount');
  t.equal(entry?.fsType, 'ext4');
  t.equal(entry?.source, device);
  t.equal(entry?.devNumber, await devNumber(device));
  t.ok(entry?.mountOptions.includes('noatime'), `noatime in ${entry?.mountOptions.join(',')}`);
  t.ok(entry?.mountOptions.includes('rw'));

  await writeFile(path.join(dir, 'hello.txt'), 'on a real filesystem');
  t.equal(await readFile(path.join(dir, 'hello.txt'), 'utf8'), 'on a real filesystem');

  await native.umount(dir, 0);
  t.equal(await mountInfoAt(dir), undefined, 'gone from mountinfo');
  await t.rejects(stat(path.join(dir, 'hello.txt')), { code: 'ENOENT' }, 'the file was on the unmounted filesystem');

  // Mount again: the file survived the unmount.
  await native.mount(device, dir, 'ext4', MountFlags.MS_RDONLY, '');
  t.equal(await readFile(path.join(dir, 'hello.txt'), 'utf8'), 'on a real filesystem', 'data persisted');
  t.ok((await mountInfoAt(dir))?.mountOptions.includes('ro'), 'MS_RDONLY gives a read-only mount');
  await t.rejects(writeFile(path.join(dir, 'nope'), 'x'), { code: 'EROFS' });
  await native.umount(dir, 0);
  t.equal(await mountInfoAt(dir), undefined);
});

t.test('2. fs-specific data reaches the filesystem', { skip }, async (t) => {
  const device = await loopDevice(t, 32);
  await run('mkfs.ext4', ['-q', '-F', device]);
  const dir = await mountPoint(t);
  await native.mount(device, dir, 'ext4', 0, 'errors=remount-ro,commit=7');
  const entry = await mountInfoAt(dir);
  t.ok(entry?.superOptions.includes('commit=7'), `commit=7 in ${entry?.superOptions.join(',')}`);
  await t.rejects(native.mount(device, dir, 'ext4', MountFlags.MS_REMOUNT, 'no_such_option=1'), { code: 'EINVAL', syscall: 'mount' }, 'the filesystem refuses an unknown option');
  await native.umount(dir, 0);
});

t.test('3. mount failures are errno-shaped with the target as path', { skip }, async (t) => {
  const device = await loopDevice(t, 32);
  const dir = await mountPoint(t);
  const missing = path.join(await tempDir(t), 'no-such-device');
  await t.rejects(native.mount(missing, dir, 'ext4', 0, ''), {
    code: 'ENOENT',
    errno: -2,
    syscall: 'mount',
    path: dir,
    message: new RegExp(`^ENOENT: .*, mount '${dir}' \\(source '${missing}', type 'ext4'\\)$`),
  });
  await t.rejects(native.mount(device, dir, 'no_such_fs', 0, ''), { code: 'ENODEV', syscall: 'mount', path: dir }, 'unknown filesystem type');
  await t.rejects(native.mount(device, dir, 'ext4', 0, ''), { name: 'Error', syscall: 'mount', path: dir }, 'a blank device has no ext4 on it');
  await t.rejects(native.mount(device, path.join(dir, 'absent'), 'ext4', 0, ''), { code: 'ENOENT', path: path.join(dir, 'absent') }, 'missing target');
  t.equal(await mountInfoAt(dir), undefined, 'nothing got mounted');
});

t.test('4. umount of a directory that is not a mount point: EINVAL', { skip }, async (t) => {
  const dir = await tempDir(t);
  await t.rejects(native.umount(dir, 0), { code: 'EINVAL', errno: -22, syscall: 'umount2', path: dir, message: new RegExp(`^EINVAL: .*, umount2 '${dir}'$`) });
  await t.rejects(native.umount(path.join(dir, 'absent'), 0), { code: 'ENOENT', syscall: 'umount2' });
});

t.test('5. a busy mount refuses umount; MNT_DETACH detaches it anyway', { skip }, async (t) => {
  const device = await loopDevice(t, 32);
  await run('mkfs.ext4', ['-q', '-F', device]);
  const dir = await mountPoint(t);
  await native.mount(device, dir, 'ext4', 0, '');
  const handle = await open(path.join(dir, 'held-open'), 'w+');
  t.teardown(() => handle.close().catch(() => {}));

  await t.rejects(native.umount(dir, 0), { code: 'EBUSY', syscall: 'umount2', path: dir }, 'a file is open on it');
  t.ok(await mountInfoAt(dir), 'still mounted');

  await native.umount(dir, UmountFlags.MNT_DETACH);
  t.equal(await mountInfoAt(dir), undefined, 'detached from the tree at once');
  await handle.write('still writable through the open file');
  await handle.close();
  t.equal((await native.probeDevice(device)).busy, false, 'the filesystem let go of the device once the last file closed');
});

t.test('6. bad arguments throw TypeError/RangeError naming the argument', async (t) => {
  const call = native as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const typeError = (fn: () => unknown, message: RegExp) => t.throws(fn, { name: 'TypeError', message });
  const rangeError = (fn: () => unknown, message: RegExp) => t.throws(fn, { name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message });
  typeError(() => call.mount!(1, '/mnt', 'ext4', 0, ''), /"source" argument must be of type string/);
  typeError(() => call.mount!('/dev/x', undefined, 'ext4', 0, ''), /"target" argument must be of type string. Received undefined/);
  typeError(() => call.mount!('/dev/x', '/mnt', null, 0, ''), /"fstype" argument must be of type string. Received null/);
  typeError(() => call.mount!('/dev/x', '/mnt', 'ext4', '0', ''), /"flags" argument must be of type number/);
  typeError(() => call.mount!('/dev/x', '/mnt', 'ext4', 0), /"data" argument must be of type string/);
  typeError(() => call.mount!('/dev/x', '/mnt\0/etc', 'ext4', 0, ''), /'target' must be a string without null bytes/);
  rangeError(() => call.mount!('/dev/x', '/mnt', 'ext4', -1, ''), /"flags" is out of range/);
  rangeError(() => call.mount!('/dev/x', '/mnt', 'ext4', 2 ** 32, ''), /"flags"/);
  rangeError(() => call.mount!('/dev/x', '/mnt', 'ext4', 0.5, ''), /"flags"/);
  typeError(() => call.umount!(), /"target" argument must be of type string/);
  typeError(() => call.umount!('/mnt'), /"flags" argument must be of type number. Received undefined/);
  rangeError(() => call.umount!('/mnt', -2), /"flags"/);
});
