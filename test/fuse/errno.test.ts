// Errors through a real FUSE mount: each failure reaches the application as the errno it
// means (ENOENT, EEXIST, ENOTEMPTY, ENOTDIR, EISDIR, ENAMETOOLONG, ENOSPC, EIO on an
// unrepairable checksum error, EROFS), and a hung backend answers ETIMEDOUT within the
// op timeout while the mount stays usable. Plus the errno mapping itself, without a mount.
// The mount tests skip without root (loop devices, mkfs, mount) or without /dev/fuse.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { BrickdError } from '../../src/errors.js';
import { ErrnoMapper } from '../../src/fuse/errno.js';
import { FuseMount } from '../../src/fuse/mount.js';
import { posixError, volumeFull } from '../../src/store/posix.js';
import { storeBackend } from '../../src/volume/backend.js';
import { flipByte } from '../helpers/corrupt.js';
import { fuseVolume, needsFuse } from '../helpers/fuse.js';
import { mountInfoAt, mountPoint } from '../helpers/mount.js';
import { replicaDir } from '../helpers/store.js';
import type { Logger } from '../../src/log.js';

t.test('errno mapping', async (t) => {
  const logged: unknown[] = [];
  const log = { error: (o: unknown) => logged.push(o) } as unknown as Logger;
  const m = new ErrnoMapper(log);
  t.equal(m.toErrno(posixError('ENOENT', 'stat', 'a'), 'getattr'), -2);
  t.equal(m.toErrno(Object.assign(new Error('x'), { code: 'EBADF' }), 'read'), -9, 'any errno-shaped code');
  t.equal(m.toErrno(volumeFull('full', {}), 'write'), -28, 'VOLUME_FULL → ENOSPC');
  t.equal(m.toErrno(new BrickdError('CHECKSUM_MISMATCH', 'bad'), 'read'), -5, 'CHECKSUM_MISMATCH → EIO');
  t.equal(m.toErrno(new BrickdError('QUORUM_LOST', 'no'), 'write'), -5, 'QUORUM_LOST → EIO');
  t.equal(m.toErrno(new BrickdError('STORE_CLOSED', 'closed'), 'write'), -5, 'STORE_CLOSED → EIO');
  t.equal(m.toErrno(new BrickdError('NAME_INVALID', '"x": component longer than 255 bytes'), 'create'), -36, 'too long → ENAMETOOLONG');
  t.equal(m.toErrno(new BrickdError('NAME_INVALID', '"x": NUL byte in path'), 'create'), -22, 'other bad names → EINVAL');
  t.equal(m.toErrno(new RangeError('offset must be ...'), 'write'), -22, 'RangeError → EINVAL');
  t.equal(m.toErrno(new TypeError('data must be ...'), 'write'), -22, 'TypeError → EINVAL');
  t.equal(logged.length, 0, 'nothing logged for known errors');
  t.equal(m.toErrno(new Error('surprise'), 'read'), -5, 'unknown → EIO');
  t.equal(m.toErrno(new Error('surprise again'), 'read'), -5);
  t.equal(m.toErrno(new BrickdError('SEQ_GAP', 'gap'), 'write'), -5);
  t.equal(logged.length, 2, 'logged once per kind');
});

t.test('POSIX errors through the mount', { skip: needsFuse() }, async (t) => {
  const v = await fuseVolume(t);
  const at = (...p: string[]) => path.join(v.mnt, ...p);
  await writeFile(at('file'), 'x');
  await mkdir(at('dir'));
  await writeFile(at('dir', 'inside'), 'y');

  await t.rejects(readFile(at('missing')), { code: 'ENOENT' });
  await t.rejects(open(at('file'), 'wx'), { code: 'EEXIST' }, 'O_EXCL on an existing file');
  await t.rejects(mkdir(at('dir')), { code: 'EEXIST' });
  await t.rejects(rmdir(at('dir')), { code: 'ENOTEMPTY' });
  await t.rejects(writeFile(at('file', 'below'), 'z'), { code: 'ENOTDIR' });
  await t.rejects(readdir(at('file')), { code: 'ENOTDIR' });
  await t.rejects(rename(at('file'), at('dir')), { code: 'EISDIR' }, 'rename a file over a directory');
  await t.rejects(writeFile(at('dir'), 'z'), { code: 'EISDIR' });
  await t.rejects(writeFile(at('n'.repeat(300)), 'z'), { code: 'ENAMETOOLONG' }, 'a 300-byte name (the store refuses > 255)');
  t.same(await v.store.readdir(''), ['dir', 'file'], 'nothing changed');
});

t.test('ENOSPC at the volume size limit', { skip: needsFuse() }, async (t) => {
  const v = await fuseVolume(t, { sizeLimitBytes: 2 ** 20 });
  await writeFile(path.join(v.mnt, 'small'), randomBytes(512 * 1024));
  await t.rejects(writeFile(path.join(v.mnt, 'big'), randomBytes(2 ** 20)), { code: 'ENOSPC' });
  t.ok(v.store.statfs().usedBytes <= 2 ** 20, 'the limit held');
});

t.test('EIO on an unrepairable checksum error; bad bytes never returned', { skip: needsFuse() }, async (t) => {
  const v = await fuseVolume(t);
  // Written through the store, not the mount: pages written through the mount stay in the
  // kernel's page cache and would be served from there without asking the store.
  const data = randomBytes(64 * 1024);
  const { fid } = await v.store.create('victim');
  await v.store.write({ fid }, 0, data);
  await flipByte(path.join(replicaDir(v.brick), 'data', 'victim'), 5000);
  // The kernel returns the good blocks before the bad one as a short read, then EIO (what
  // cat and dd report). (node's readFile takes a short read for EOF: not used here.)
  const h = await open(path.join(v.mnt, 'victim'), 'r');
  try {
    const first = Buffer.alloc(4096);
    t.equal((await h.read(first, 0, 4096, 0)).bytesRead, 4096);
    t.same(first, data.subarray(0, 4096), 'blocks before the bad one still read');
    await t.rejects(h.read(Buffer.alloc(4096), 0, 4096, 4096), { code: 'EIO' }, 'the bad block is EIO');
  } finally {
    await h.close();
  }
  const cat = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn('cat', [path.join(v.mnt, 'victim')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stderr }));
  });
  t.not(cat.code, 0, 'cat fails');
  t.match(cat.stderr, /Input\/output error/);
  t.ok(v.store.stats.checksumErrors >= 1, 'the store saw the mismatch');
});

t.test('EROFS on a read-only mount', { skip: needsFuse() }, async (t) => {
  const v = await fuseVolume(t);
  await writeFile(path.join(v.mnt, 'existing'), 'readable');
  const roDir = await mountPoint(t, 'brickd-fuse-ro-');
  const ro = new FuseMount();
  await ro.mount(storeBackend(v.store), roDir, { readOnly: true });
  t.teardown(() => ro.unmount());
  const info = await mountInfoAt(roDir);
  t.ok(info?.mountOptions.includes('ro'), `mounted ro (${info?.mountOptions.join(',')})`);
  t.equal(info?.fsType, 'fuse.brickd');
  t.equal(await readFile(path.join(roDir, 'existing'), 'utf8'), 'readable');
  await t.rejects(writeFile(path.join(roDir, 'new'), 'x'), { code: 'EROFS' });
  await t.rejects(writeFile(path.join(roDir, 'existing'), 'x'), { code: 'EROFS' });
  await t.rejects(mkdir(path.join(roDir, 'd')), { code: 'EROFS' });
  t.same(await v.store.readdir(''), ['existing'], 'nothing changed');
});

t.test('a hung backend answers ETIMEDOUT in time and the mount stays usable', { skip: needsFuse() }, async (t) => {
  let hung = 0;
  const v = await fuseVolume(t, {
    timeoutMs: 1000,
    wrap: (b) => ({
      ...b,
      write: (file, offset, data) => (offset === 0 && data.toString().startsWith('HANG') ? (hung++, new Promise<never>(() => {})) : b.write(file, offset, data)),
    }),
  });
  await writeFile(path.join(v.mnt, 'ok'), 'fine');
  const started = Date.now();
  await t.rejects(writeFile(path.join(v.mnt, 'stuck'), 'HANG forever'), { code: 'ETIMEDOUT' });
  const took = Date.now() - started;
  t.ok(took >= 900 && took < 5000, `answered after ${took} ms (timeout 1000 ms)`);
  t.equal(hung, 1);
  t.equal(await readFile(path.join(v.mnt, 'ok'), 'utf8'), 'fine', 'reads still work');
  await writeFile(path.join(v.mnt, 'after'), 'written after the hang');
  t.equal(await readFile(path.join(v.mnt, 'after'), 'utf8'), 'written after the hang', 'writes still work');
  t.ok((await stat(path.join(v.mnt, 'stuck'))).isFile());
});
