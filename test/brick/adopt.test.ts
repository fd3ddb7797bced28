// Adopting devices into bricks on real loop devices: format, label, mount, manifest, and
// every refusal of DESIGN.md invariant 1 (each leaves the device untouched).
import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { readBrickManifest } from '../../src/brick/manifest.js';
import { mountAt } from '../../src/brick/mountinfo.js';
import { run } from '../../src/exec.js';
import { native } from '../../src/native.js';
import { rejectsWithCode } from '../helpers/assert.js';
import { brickManager } from '../helpers/bricks.js';
import { loopDevice, needsRoot, tempDir } from '../helpers/loop.js';

t.test('adopt a blank device: xfs, label, uuid, mount options, manifest', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t);
  const bricks = await brickManager(t, { allow: [device] });
  const before = (await bricks.discover()).find((d) => d.path === device)!;
  t.equal(before.eligible, true, 'blank allowlisted device is eligible');
  t.same(before.reasons, []);

  const brick = await bricks.adopt(device, { tags: { zone: 'a' } });
  t.equal(brick.state, 'mounted');
  t.equal(brick.fsType, 'xfs');
  t.match(brick.label, /^brickd-[0-9a-f]{5}$/);
  t.equal(brick.label, 'brickd-' + brick.brickId.replace(/-/g, '').slice(0, 5));
  t.equal(brick.mountPath, path.join(bricks.bricksDir, brick.brickId));

  const blkid = (await run('blkid', ['-p', '-o', 'export', device])).stdout;
  t.match(blkid, /TYPE=xfs/);
  t.match(blkid, new RegExp(`LABEL=${brick.label}`));
  t.match(blkid, new RegExp(`UUID=${brick.brickId}`), 'filesystem UUID is the brick id');
  const xfsInfo = (await run('xfs_info', [brick.mountPath])).stdout;
  t.match(xfsInfo, /isize=512/, 'inode size 512');
  t.match(xfsInfo, /naming\s+=version 2\s+bsize=8192/, 'directory block size 8192');

  const mount = await mountAt(brick.mountPath);
  t.equal(mount?.fsType, 'xfs');
  t.ok(mount?.mountOptions.includes('noatime'), 'noatime');
  t.ok(mount?.superOptions.includes('inode64'), 'inode64');

  const manifest = await readBrickManifest(brick.mountPath);
  t.match(manifest, { format: 'brickd-brick', version: 1, brickId: brick.brickId, fsType: 'xfs', tags: { zone: 'a' } });
  t.ok(brick.sizeBytes! > 250 * 2 ** 20);

  const after = (await bricks.discover()).find((d) => d.path === device)!;
  t.equal(after.eligible, false);
  t.same(after.reasons.map((r) => r.code).sort(), ['IS_BRICK', 'MOUNTED']);

  const again = await bricks.adopt(device);
  t.equal(again.brickId, brick.brickId, 'adopting our own brick again is idempotent');
});

t.test('adopt as ext4', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t, 64);
  const bricks = await brickManager(t, { allow: [device], minSizeBytes: 32 * 2 ** 20 });
  const brick = await bricks.adopt(device, { fsType: 'ext4' });
  t.equal(brick.fsType, 'ext4');
  t.match((await run('blkid', ['-p', '-o', 'export', device])).stdout, /TYPE=ext4/);
  t.equal((await mountAt(brick.mountPath))?.fsType, 'ext4');
});

/** The signatures libblkid sees, for "nothing changed" checks. */
async function signatureTypes(device: string): Promise<string[]> {
  return (await native.probeDevice(device)).signatures.map((s) => s.type);
}

t.test('refuse a device with an ext4 filesystem; force erases it', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t);
  await run('mkfs.ext4', ['-q', '-L', 'precious', device]);
  const bricks = await brickManager(t, { allow: [device] });
  const report = (await bricks.discover()).find((d) => d.path === device)!;
  t.equal(report.eligible, false);
  t.match(report.reasons, [{ code: 'HAS_SIGNATURE', message: /ext4 "precious"/ }]);
  await rejectsWithCode(t, bricks.adopt(device), 'DEVICE_HAS_SIGNATURE', /ext4 "precious".*use force/);
  t.same(await signatureTypes(device), ['ext4'], 'refusal changed nothing');
  const brick = await bricks.adopt(device, { force: true });
  t.equal(brick.state, 'mounted');
  t.same(await signatureTypes(device), ['xfs']);
});

t.test('refuse a device with a GPT partition table', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t);
  const res = spawnSync('sgdisk', ['--new=1:0:+100M', device]);
  t.equal(res.status, 0, `sgdisk: ${res.stderr}`);
  const bricks = await brickManager(t, { allow: [device] });
  await rejectsWithCode(t, bricks.adopt(device), 'DEVICE_HAS_SIGNATURE', /gpt/);
  t.ok((await signatureTypes(device)).includes('gpt'), 'partition table still there');
});

t.test('refuse a mounted device, even with force', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t, 64);
  await run('mkfs.ext4', ['-q', device]);
  const dir = await tempDir(t);
  await run('mount', [device, dir]);
  t.teardown(() => run('umount', [dir]).catch(() => {}));
  await writeFile(path.join(dir, 'data'), 'keep me');
  const bricks = await brickManager(t, { allow: [device], minSizeBytes: 0 });
  const report = (await bricks.discover()).find((d) => d.path === device)!;
  t.ok(report.reasons.some((r) => r.code === 'MOUNTED'));
  await rejectsWithCode(t, bricks.adopt(device, { force: true }), 'DEVICE_IN_USE', /mounted at/);
  t.equal(await readFile(path.join(dir, 'data'), 'utf8'), 'keep me', 'data untouched');
});

t.test('refuse a device outside the allowlist, even with force; never opened', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t);
  const other = await loopDevice(t);
  const bricks = await brickManager(t, { allow: [other] });
  const report = (await bricks.discover()).find((d) => d.path === device)!;
  t.match(report.reasons, [{ code: 'NOT_ALLOWED' }]);
  t.equal(report.probe, undefined, 'a device outside the allowlist is not probed');
  await rejectsWithCode(t, bricks.adopt(device, { force: true }), 'DEVICE_NOT_ALLOWED');
  t.same(await signatureTypes(device), [], 'still blank');
});

t.test('refuse a device too small, a missing device', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t, 100);
  const bricks = await brickManager(t, { allow: ['/dev/loop*'] });
  await rejectsWithCode(t, bricks.adopt(device), 'DEVICE_TOO_SMALL', /100 MiB is under the minimum 300 MiB/);
  await rejectsWithCode(t, bricks.adopt('/dev/does-not-exist'), 'DEVICE_NOT_FOUND');
  const dir = await tempDir(t);
  const plain = path.join(dir, 'file');
  await writeFile(plain, 'x');
  await rejectsWithCode(t, bricks.adopt(plain), 'DEVICE_NOT_FOUND');
});

t.test('missing mkfs binary gives TOOL_MISSING naming the package, device unchanged', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t);
  const bricks = await brickManager(t, { allow: [device] });
  const emptyBin = await tempDir(t);
  const savedPath = process.env.PATH;
  process.env.PATH = emptyBin;
  try {
    await rejectsWithCode(t, bricks.adopt(device), 'TOOL_MISSING', /mkfs\.xfs is not installed \(install the xfsprogs package\)/);
  } finally {
    process.env.PATH = savedPath;
  }
  t.same(await signatureTypes(device), []);
  t.same(bricks.list(), [], 'no brick recorded');
  const brick = await bricks.adopt(device);
  t.equal(brick.state, 'mounted', 'adoption works once the tool is there');
});

t.test('concurrent adoptions of one device format it once', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t);
  const bricks = await brickManager(t, { allow: [device] });
  const results = await Promise.all([bricks.adopt(device), bricks.adopt(device), bricks.adopt(device)]);
  t.equal(new Set(results.map((b) => b.brickId)).size, 1, 'one brick id');
  t.equal(bricks.list().length, 1);
});
