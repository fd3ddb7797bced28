// `npm run bench -- --device X`: every refusal (no --destroy-data, no such device, mounted,
// carrying a filesystem, too small, held open, given twice, one bad among good ones) exits
// 2 with the device and the reason named, runs no case and leaves every device as it was.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { mountsOfDevice } from '../../src/brick/mountinfo.js';
import { devNumberOf } from '../../src/brick/format.js';
import { run } from '../../src/exec.js';
import { native } from '../../src/native.js';
import { loopDevice, needsRoot, tempDir } from '../helpers/loop.js';

const RUN = path.resolve(import.meta.dirname, '../../dist/bench/run.js');

/**
 * What a device holds, as far as a refusal could have changed it: its signatures, its
 * mounts and, unless it is mounted (its filesystem then rewrites its own superblock), its
 * first MiB.
 */
async function fingerprint(device: string): Promise<string> {
  const signatures = (await native.probeDevice(device)).signatures.map((s) => `${s.type}:${s.offset}`);
  const mounts = (await mountsOfDevice(await devNumberOf(device))).map((m) => m.target);
  let head = 'mounted';
  if (mounts.length === 0) {
    const handle = await open(device, 'r');
    const bytes = Buffer.alloc(2 ** 20);
    try {
      await handle.read(bytes, 0, bytes.length, 0);
    } finally {
      await handle.close();
    }
    head = createHash('sha256').update(bytes).digest('hex');
  }
  return `${head} ${signatures.join(',')} ${mounts.join(',')}`;
}

/** Run the bench with `args`; returns its exit status, its stderr and whether it wrote a report. */
async function bench(t: Test, args: string[]): Promise<{ status: number | null; stderr: string; reported: boolean }> {
  const out = await tempDir(t, 'brickd-bench-out-');
  const result = spawnSync(process.execPath, [RUN, '--case', 'store', '--quick', '--out', out, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status, stderr: result.stderr, reported: (await readdir(out)).length > 0 };
}

/** Refused: exit 2, the message, no case run, every device unchanged. */
async function refused(t: Test, args: string[], devices: string[], message: RegExp): Promise<void> {
  const before = await Promise.all(devices.map(fingerprint));
  const { status, stderr, reported } = await bench(t, args);
  t.equal(status, 2, 'exit 2');
  t.match(stderr, message);
  t.notOk(reported, 'no case ran, no report written');
  t.same(await Promise.all(devices.map(fingerprint)), before, 'the devices are as they were');
}

const skip = needsRoot();

t.test('without --destroy-data: refused before the device is even opened', { skip }, async (t) => {
  const device = await loopDevice(t, 400);
  await refused(t, ['--device', device], [device], new RegExp(`refusing --device ${device}: .*destroys all data.*add --destroy-data`));
});

t.test('--destroy-data without --device is a usage error', async (t) => {
  const { status, stderr, reported } = await bench(t, ['--destroy-data']);
  t.equal(status, 2);
  t.match(stderr, '--destroy-data confirms --device');
  t.notOk(reported);
});

t.test('a path that is not a block device', { skip }, async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'plain-file');
  await (await open(file, 'w')).close();
  await refused(t, ['--device', '/dev/brickd-no-such-device', '--destroy-data'], [], /refusing \/dev\/brickd-no-such-device: not a block device on this machine \(NOT_FOUND\)/);
  await refused(t, ['--device', file, '--destroy-data'], [], new RegExp(`refusing ${file}: not a block device`));
});

t.test('a mounted device', { skip }, async (t) => {
  const device = await loopDevice(t, 400);
  await run('mkfs.ext4', ['-q', device]);
  const mountpoint = await tempDir(t, 'brickd-bench-mnt-');
  await run('mount', [device, mountpoint]);
  t.teardown(() => run('umount', [mountpoint]).catch(() => {}));
  await writeFile(path.join(mountpoint, 'data'), 'kept');
  await refused(t, ['--device', device, '--destroy-data'], [device], new RegExp(`refusing ${device}: .*mounted at ${mountpoint} \\(MOUNTED\\)`));
  t.equal(await readFile(path.join(mountpoint, 'data'), 'utf8'), 'kept', 'its files are still there');
});

t.test('a device carrying a filesystem', { skip }, async (t) => {
  const device = await loopDevice(t, 400);
  await run('mkfs.ext4', ['-q', '-L', 'precious', device]);
  await refused(t, ['--device', device, '--destroy-data'], [device], new RegExp(`refusing ${device}: carries ext4 "precious" .*\\(HAS_SIGNATURE\\)`));
});

t.test('a device under the agent minimum size', { skip }, async (t) => {
  const device = await loopDevice(t, 100);
  await refused(t, ['--device', device, '--destroy-data'], [device], new RegExp(`refusing ${device}: 100 MiB is under the minimum 300 MiB \\(TOO_SMALL\\)`));
});

t.test('a device another process holds open exclusively', { skip }, async (t) => {
  const device = await loopDevice(t, 400);
  const holder = await open(device, constants.O_RDONLY | constants.O_EXCL);
  try {
    await refused(t, ['--device', device, '--destroy-data'], [device], new RegExp(`refusing ${device}: another user holds it open exclusively \\(IN_USE\\)`));
  } finally {
    await holder.close();
  }
});

t.test('one device given twice, and one bad device among good ones: nothing is touched', { skip }, async (t) => {
  const good = await loopDevice(t, 400);
  const bad = await loopDevice(t, 400);
  await run('mkfs.ext4', ['-q', bad]);
  await refused(t, ['--device', good, '--device', good, '--destroy-data'], [good], new RegExp(`refusing ${good}: the same device as ${good} \\(GIVEN_TWICE\\)`));
  await refused(t, ['--device', good, '--device', bad, '--destroy-data'], [good, bad], new RegExp(`refusing ${bad}: carries ext4`));
  const { stderr } = await bench(t, ['--device', good, '--device', bad, '--destroy-data']);
  t.notMatch(stderr, `refusing ${good}`, 'the eligible device is not named as refused');
  t.same((await native.probeDevice(good)).signatures, [], 'the good device is still blank');
});
