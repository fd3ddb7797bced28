// The addon's device concern on real loop devices: probeDevice, wipeSignatures and
// discardDevice against signatures made by the real tools (mkfs.ext4, mkfs.xfs, sgdisk,
// mkswap) and, where no tool is installed (LVM2, md), by fixtures written byte for byte
// from the on-disk formats. Every probe is cross-checked against `wipefs`, and every wipe
// against `blkid -p`.
import { execFile } from 'node:child_process';
import { open, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import type { Test } from 'tap';
import { createSparseFile } from '../../src/brick/loop.js';
import { run } from '../../src/exec.js';
import { MountFlags, native, type DeviceSignature } from '../../src/native.js';
import { loopDevice, MiB, needsRoot, tempDir } from '../helpers/loop.js';
import { mountForTest, readMountInfo } from '../helpers/mount.js';

const skip = needsRoot();
const execFileAsync = promisify(execFile);

// ── helpers ─────────────────────────────────────────────────────────────────────────

/** What `wipefs` (util-linux, libblkid underneath) lists for `device`, in offset order. */
async function wipefsList(device: string): Promise<DeviceSignature[]> {
  const { stdout } = await run('wipefs', ['--json', '--output', 'OFFSET,TYPE,USAGE,UUID,LABEL', device]);
  if (!stdout.trim()) return [];
  const parsed = JSON.parse(stdout) as {
    signatures: Array<{ offset: string; type: string; usage: string; uuid: string | null; label: string | null }>;
  };
  return parsed.signatures
    .map((s) => {
      const sig: DeviceSignature = { type: s.type, usage: s.usage.replace('partition-table', 'partition_table'), offset: Number(s.offset) };
      if (s.label) sig.label = s.label;
      if (s.uuid) sig.uuid = s.uuid;
      return sig;
    })
    .sort((a, b) => a.offset - b.offset);
}

/** Assert that probeDevice and wipefs see the same signatures (wipefs shows no PTUUID). */
async function sameAsWipefs(t: Test, device: string, signatures: DeviceSignature[]): Promise<void> {
  const withoutPtuuid = (s: DeviceSignature): DeviceSignature => {
    if (s.usage !== 'partition_table') return s;
    const { uuid: _ptuuid, ...rest } = s;
    return rest;
  };
  t.same(signatures.map(withoutPtuuid), (await wipefsList(device)).map(withoutPtuuid), 'the same signatures as wipefs lists');
}

/** `blkid -p` (low-level probe, no cache): exit status 2 means it found nothing. */
async function blkidFinds(device: string): Promise<boolean> {
  try {
    await execFileAsync('blkid', ['-p', device]);
    return true;
  } catch (err) {
    if ((err as { code?: unknown }).code === 2) return false;
    throw err;
  }
}

async function blkidValue(device: string, tag: string): Promise<string> {
  return (await run('blkid', ['-p', '-s', tag, '-o', 'value', device])).stdout.trim();
}

/** Write `data` at `offset` straight onto the device, durably. */
async function writeAt(device: string, offset: number, data: Uint8Array): Promise<void> {
  const handle = await open(device, 'r+');
  try {
    await handle.write(data, 0, data.length, offset);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function readAt(device: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(device, 'r');
  try {
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, offset);
    return buf;
  } finally {
    await handle.close();
  }
}

/**
 * A loop device with partition scanning on (losetup --partscan), so the kernel creates
 * <device>pN nodes for a partition table: the test helper's devices have it off.
 * Detached at teardown, after unmounting anything on it or its partitions.
 */
async function partscanLoopDevice(t: Test, sizeMiB: number): Promise<string> {
  const file = path.join(await tempDir(t), 'partitioned.img');
  await createSparseFile(file, sizeMiB * MiB);
  const device = (await run('losetup', ['--find', '--show', '--partscan', file])).stdout.trim();
  t.teardown(() => run('losetup', ['--detach', device]));
  return device;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/** Where `device` is mounted, from mountinfo. */
async function mountedOn(device: string): Promise<string | undefined> {
  return (await readMountInfo()).find((m) => m.source === device)?.target;
}

/** The sparse backing file's allocated bytes. */
async function allocatedBytes(file: string): Promise<number> {
  return (await stat(file)).blocks * 512;
}

/**
 * An LVM2 physical-volume label in sector 1, as pvcreate writes it: "LABELONE", its own
 * sector number, a CRC over the rest of the sector, then "LVM2 001" and the PV UUID.
 * lvm2 is not installed here, so the label is built from the format.
 */
function lvm2Label(pvUuid: string): Buffer {
  const sector = Buffer.alloc(512);
  sector.write('LABELONE', 0, 'latin1');
  sector.writeBigUInt64LE(1n, 8); // sector_xl: the sector this label sits in
  sector.writeUInt32LE(32, 20); // offset_xl: pv_header follows the 32-byte label header
  sector.write('LVM2 001', 24, 'latin1');
  sector.write(pvUuid, 32, 'latin1');
  // LVM's CRC-32: reflected polynomial 0xEDB88320, seed 0xf597a6cf, no final xor,
  // over everything after the crc field to the end of the sector.
  let crc = 0xf597a6cf;
  for (const byte of sector.subarray(20)) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = (crc >>> 1) ^ (crc & 1 ? 0xedb88320 : 0);
  }
  sector.writeUInt32LE(crc >>> 0, 16);
  return sector;
}

/**
 * An md (Linux software RAID) version-1 superblock as mdadm writes it for a 2-disk RAID1
 * member, for a superblock that sits `superOffset` bytes into the device (4 KiB for
 * metadata 1.2, near the end for 1.0). mdadm is not installed here.
 */
function mdSuperblock(superOffset: number, setUuid: Buffer, name: string): Buffer {
  const maxDev = 2;
  const sb = Buffer.alloc(4096);
  sb.writeUInt32LE(0xa92b4efc, 0); // magic
  sb.writeUInt32LE(1, 4); // major_version
  setUuid.copy(sb, 16); // set_uuid
  sb.write(name, 32, 'latin1'); // set_name (32 bytes)
  sb.writeUInt32LE(1, 72); // level: raid1
  sb.writeUInt32LE(2, 92); // raid_disks
  sb.writeBigUInt64LE(BigInt(superOffset / 512), 144); // super_offset, in sectors
  sb.writeUInt32LE(maxDev, 220); // max_dev
  sb.writeUInt16LE(0, 256); // dev_roles[0]
  sb.writeUInt16LE(1, 258); // dev_roles[1]
  // sb_csum: 32-bit little-endian words summed over 256 + 2*max_dev bytes (csum field
  // zero), the carry folded back in once.
  let sum = 0n;
  for (let i = 0; i < 256 + 2 * maxDev; i += 4) sum += BigInt(sb.readUInt32LE(i));
  sb.writeUInt32LE(Number(((sum & 0xffffffffn) + (sum >> 32n)) & 0xffffffffn), 216);
  return sb;
}

function uuidString(bytes: Buffer): string {
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ── probe ───────────────────────────────────────────────────────────────────────────

t.test('1. probe a blank device: size, sector sizes, no signatures, not busy', { skip }, async (t) => {
  const device = await loopDevice(t, 64);
  const probe = await native.probeDevice(device);
  t.equal(probe.path, device);
  t.equal(probe.sizeBytes, 64 * MiB);
  t.equal(probe.logicalSectorSize, 512, 'a loop device has 512-byte logical sectors by default');
  t.ok(probe.physicalSectorSize >= probe.logicalSectorSize && probe.physicalSectorSize % probe.logicalSectorSize === 0);
  t.type(probe.rotational, 'boolean');
  const name = path.basename(device);
  const sysfs = (attr: string) => run('cat', [`/sys/block/${name}/queue/${attr}`]).then((r) => r.stdout.trim());
  t.equal(probe.rotational, (await sysfs('rotational')) === '1', 'rotational matches sysfs');
  t.equal(probe.discard, Number(await sysfs('discard_max_bytes')) > 0, 'discard matches sysfs');
  t.equal(probe.busy, false);
  t.same(probe.signatures, []);
  t.equal(await blkidFinds(device), false, 'blkid -p agrees: nothing there');
});

t.test('2. probe ext4: type, usage, label, uuid, magic offset', { skip }, async (t) => {
  const device = await loopDevice(t, 64);
  await run('mkfs.ext4', ['-q', '-F', '-L', 'lbl', device]);
  const probe = await native.probeDevice(device);
  t.same(probe.signatures, [{ type: 'ext4', usage: 'filesystem', offset: 0x438, label: 'lbl', uuid: await blkidValue(device, 'UUID') }]);
  await sameAsWipefs(t, device, probe.signatures);
});

t.test('3. probe xfs', { skip }, async (t) => {
  const device = await loopDevice(t, 320); // mkfs.xfs 6.1 refuses anything under 300 MB
  await run('mkfs.xfs', ['-q', '-f', '-L', 'xlbl', device]);
  const probe = await native.probeDevice(device);
  t.same(probe.signatures, [{ type: 'xfs', usage: 'filesystem', offset: 0, label: 'xlbl', uuid: await blkidValue(device, 'UUID') }]);
  await sameAsWipefs(t, device, probe.signatures);
});

t.test('4. probe GPT: protective MBR, primary and backup header, all partition tables', { skip }, async (t) => {
  const device = await loopDevice(t, 64);
  await run('sgdisk', ['--new=1:2048:+8M', '--new=2:0:0', device]);
  const probe = await native.probeDevice(device);
  const ptuuid = await blkidValue(device, 'PTUUID');
  t.same(probe.signatures, [
    { type: 'PMBR', usage: 'partition_table', offset: 0x1fe },
    { type: 'gpt', usage: 'partition_table', offset: 0x200, uuid: ptuuid },
    { type: 'gpt', usage: 'partition_table', offset: 64 * MiB - 512, uuid: ptuuid },
  ]);
  await sameAsWipefs(t, device, probe.signatures);
});

t.test('5. probe GPT whose protective MBR was zeroed: both headers still found', { skip }, async (t) => {
  // libblkid ignores GPT without a valid protective MBR unless asked (BLKID_PARTS_FORCE_GPT,
  // which wipefs sets and so do we): the headers and partition entries are still there.
  const device = await loopDevice(t, 64);
  await run('sgdisk', ['--new=1:2048:+8M', device]);
  await writeAt(device, 0, Buffer.alloc(512));
  const probe = await native.probeDevice(device);
  t.same(
    probe.signatures.map((s) => [s.type, s.offset]),
    [
      ['gpt', 0x200],
      ['gpt', 64 * MiB - 512],
    ],
  );
  await sameAsWipefs(t, device, probe.signatures);
});

t.test('6. probe a dos (MBR) partition table', { skip }, async (t) => {
  const device = await loopDevice(t, 64);
  await run('sgdisk', ['--new=1:2048:+8M', device]);
  await run('sgdisk', ['--gpttombr=1', device]); // convert: a plain MBR with partition 1
  const probe = await native.probeDevice(device);
  // sgdisk leaves the MBR disk identifier at 0, which libblkid reports as no PTUUID.
  t.equal(await blkidValue(device, 'PTUUID'), '');
  t.same(probe.signatures, [{ type: 'dos', usage: 'partition_table', offset: 0x1fe }]);
  await sameAsWipefs(t, device, probe.signatures);
});

t.test('7. probe swap', { skip }, async (t) => {
  const device = await loopDevice(t, 64);
  await run('mkswap', ['-L', 'sw', device]);
  const probe = await native.probeDevice(device);
  // "SWAPSPACE2" ends the first page: 4096 - 10.
  t.same(probe.signatures, [{ type: 'swap', usage: 'other', offset: 4086, label: 'sw', uuid: await blkidValue(device, 'UUID') }]);
  await sameAsWipefs(t, device, probe.signatures);
});

t.test('8. probe an LVM2 physical volume label (fixture: lvm2 is not installed)', { skip }, async (t) => {
  const device = await loopDevice(t, 64);
  const pvUuid = 'AbCdEf0123456789GhIjKlMnOpQrStUv';
  await writeAt(device, 512, lvm2Label(pvUuid));
  const probe = await native.probeDevice(device);
  // libblkid prints LVM's 32-character id in 6-4-4-4-4-4-6 groups, as pvdisplay does.
  const formatted = 'AbCdEf-0123-4567-89Gh-IjKl-MnOp-QrStUv';
  t.same(probe.signatures, [{ type: 'LVM2_member', usage: 'raid', offset: 0x218, uuid: formatted }]);
  t.equal(await blkidValue(device, 'UUID'), formatted, 'blkid -p reads the same fixture');
  await sameAsWipefs(t, device, probe.signatures);
});

t.test('9. probe an md RAID member, metadata 1.2 (fixture: mdadm is not installed)', { skip }, async (t) => {
  const device = await loopDevice(t, 64);
  const setUuid = Buffer.from('0123456789abcdeffedcba9876543210', 'hex');
  await writeAt(device, 4096, mdSuperblock(4096, setUuid, 'brickd-test:0'));
  const probe = await native.probeDevice(device);
  t.same(probe.signatures, [{ type: 'linux_raid_member', usage: 'raid', offset: 4096, label: 'brickd-test:0', uuid: uuidString(setUuid) }]);
  await sameAsWipefs(t, device, probe.signatures);
});

t.test('10. probe lists every signature on a device, not only the first', { skip }, async (t) => {
  // An md 1.0 member (superblock near the end) whose array holds ext4 (at the start).
  const device = await loopDevice(t, 64);
  await run('mkfs.ext4', ['-q', '-F', '-L', 'inner', device]);
  const mdOffset = 64 * MiB - 8192;
  await writeAt(device, mdOffset, mdSuperblock(mdOffset, Buffer.alloc(16, 0x42), 'outer'));
  const probe = await native.probeDevice(device);
  t.same(
    probe.signatures.map((s) => [s.type, s.offset, s.label]),
    [
      ['ext4', 0x438, 'inner'],
      ['linux_raid_member', mdOffset, 'outer'],
    ],
    'both, in offset order',
  );
  await sameAsWipefs(t, device, probe.signatures);
});

// ── busy, wipe ──────────────────────────────────────────────────────────────────────

t.test('11. a mounted device is busy; wipe and discard refuse it and change nothing', { skip }, async (t) => {
  const device = await loopDevice(t, 64);
  await run('mkfs.ext4', ['-q', '-F', '-L', 'keep', device]);
  await mountForTest(t, device, 'ext4', MountFlags.MS_NOATIME);
  const before = await native.probeDevice(device);
  t.equal(before.busy, true, 'busy while mounted');
  await t.rejects(native.wipeSignatures(device), { code: 'EBUSY', errno: -16, syscall: 'open', path: device });
  await t.rejects(native.discardDevice(device), { code: 'EBUSY', syscall: 'open', path: device });
  const after = await native.probeDevice(device);
  t.same(after.signatures, before.signatures, 'the ext4 signature is still there');
  t.equal(after.signatures[0]?.label, 'keep');
});

t.test('12. wipe ext4: returns what it erased; nothing left for probe or blkid -p', { skip }, async (t) => {
  const device = await loopDevice(t, 64);
  await run('mkfs.ext4', ['-q', '-F', '-L', 'gone', device]);
  const before = await native.probeDevice(device);
  const erased = await native.wipeSignatures(device);
  t.same(erased, before.signatures);
  const after = await native.probeDevice(device);
  t.same(after.signatures, []);
  t.equal(after.busy, false);
  t.equal(await blkidFinds(device), false, 'blkid -p finds nothing');
  t.same(await native.wipeSignatures(device), [], 'wiping again erases nothing');
});

t.test('13. wipe GPT: primary header, backup header, then the protective MBR', { skip }, async (t) => {
  const device = await loopDevice(t, 64);
  await run('sgdisk', ['--new=1:2048:+8M', '--new=2:0:0', device]);
  const erased = await native.wipeSignatures(device);
  t.same(
    erased.map((s) => [s.type, s.offset, s.usage]),
    [
      ['gpt', 0x200, 'partition_table'],
      ['gpt', 64 * MiB - 512, 'partition_table'],
      ['PMBR', 0x1fe, 'partition_table'],
    ],
    'in the order wipefs -a erases them',
  );
  t.same((await native.probeDevice(device)).signatures, []);
  t.equal(await blkidFinds(device), false, 'blkid -p finds nothing');
  t.same(await wipefsList(device), [], 'wipefs lists nothing');
});

t.test('14. parallel probes; wipe xfs, swap, LVM2, md, and several signatures at once', { skip }, async (t) => {
  const xfs = await loopDevice(t, 320);
  await run('mkfs.xfs', ['-q', '-f', xfs]);
  const swap = await loopDevice(t, 64);
  await run('mkswap', [swap]);
  const lvm = await loopDevice(t, 64);
  await writeAt(lvm, 512, lvm2Label('AbCdEf0123456789GhIjKlMnOpQrStUv'));
  const md = await loopDevice(t, 64);
  await writeAt(md, 4096, mdSuperblock(4096, Buffer.alloc(16, 7), 'x'));
  const many = await loopDevice(t, 64);
  await run('mkfs.ext4', ['-q', '-F', many]);
  await writeAt(many, 64 * MiB - 8192, mdSuperblock(64 * MiB - 8192, Buffer.alloc(16, 9), 'y'));

  // Probes run on the libuv pool (4 threads by default): in parallel they see what one at a time sees.
  const devices = [xfs, swap, lvm, md, many];
  const oneByOne: DeviceSignature[][] = [];
  for (const device of devices) oneByOne.push((await native.probeDevice(device)).signatures);
  const parallel = await Promise.all([...devices, ...devices].map((device) => native.probeDevice(device)));
  t.same(
    parallel.map((p) => p.signatures),
    [...oneByOne, ...oneByOne],
    'parallel probes agree with sequential ones',
  );

  for (const [device, types] of [
    [xfs, ['xfs']],
    [swap, ['swap']],
    [lvm, ['LVM2_member']],
    [md, ['linux_raid_member']],
    [many, ['ext4', 'linux_raid_member']],
  ] as const) {
    const erased = await native.wipeSignatures(device);
    t.same(erased.map((s) => s.type).sort(), [...types].sort(), `${types.join('+')}: erased`);
    t.same((await native.probeDevice(device)).signatures, [], `${types.join('+')}: probe finds nothing`);
    t.equal(await blkidFinds(device), false, `${types.join('+')}: blkid -p finds nothing`);
  }
});

t.test('15. partitioned disk (partscan): a mounted partition makes the disk busy; wipe drops the partitions', { skip }, async (t) => {
  const device = await partscanLoopDevice(t, 64);
  await run('sgdisk', ['--new=1:2048:+8M', '--new=2:0:0', device]); // sgdisk has the kernel re-read it
  const partition = `${device}p1`;
  // A kernel built without the GPT parser (CONFIG_EFI_PARTITION unset, as on some VM
  // kernels) finds no partitions on re-read: partx reads the table itself (libblkid) and
  // adds them with the BLKPG ioctl. Either way, the BLKRRPART after the wipe must drop them.
  if (!(await exists(partition))) await run('partx', ['--add', device]);
  t.ok(await exists(partition), `${partition} exists`);

  const part = await native.probeDevice(partition);
  t.equal(part.sizeBytes, 8 * MiB, 'a partition probes as itself');
  t.equal(part.discard, true, "a partition's discard support comes from its parent disk's queue");

  await run('mkfs.ext4', ['-q', '-F', partition]);
  await mountForTest(t, partition, 'ext4');
  t.equal((await native.probeDevice(device)).busy, true, 'the whole disk is busy while a partition is mounted');
  await t.rejects(native.wipeSignatures(device), { code: 'EBUSY', syscall: 'open', path: device });
  t.equal((await native.probeDevice(device)).signatures.length, 3, 'nothing was erased');
  await native.umount((await mountedOn(partition))!, 0);

  const erased = await native.wipeSignatures(device);
  t.same(erased.map((s) => s.type), ['gpt', 'gpt', 'PMBR']);
  t.notOk(await exists(partition), 'BLKRRPART made the kernel drop the partitions');
  t.same((await native.probeDevice(device)).signatures, []);
});

// ── discard ─────────────────────────────────────────────────────────────────────────

t.test('16. discard a range: it reads back as zeros and the backing file loses the blocks', { skip }, async (t) => {
  const dir = await tempDir(t);
  const device = await loopDevice(t, 64, dir);
  const { stdout } = await run('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE', device]);
  const backing = stdout.trim();
  t.equal(path.dirname(backing), dir, 'the backing file is ours');
  t.equal((await native.probeDevice(device)).discard, true, 'a loop device over a file supports discard');

  const data = Buffer.alloc(8 * MiB, 0xa5);
  await writeAt(device, 8 * MiB, data);
  const full = await allocatedBytes(backing);
  t.ok(full >= 8 * MiB, `8 MiB written land in the backing file (${full} bytes allocated)`);

  await native.discardDevice(device, 8 * MiB, 4 * MiB);
  t.ok((await readAt(device, 8 * MiB, 4 * MiB)).equals(Buffer.alloc(4 * MiB)), 'the discarded range reads as zeros');
  t.ok((await readAt(device, 12 * MiB, 4 * MiB)).equals(data.subarray(0, 4 * MiB)), 'the rest is untouched');
  const punched = await allocatedBytes(backing);
  t.ok(full - punched >= 4 * MiB, `the backing file gave back the range (${full} → ${punched} bytes)`);

  await native.discardDevice(device); // the whole device
  t.ok((await readAt(device, 12 * MiB, 4 * MiB)).equals(Buffer.alloc(4 * MiB)), 'whole-device discard zeroes the rest');
  t.ok((await allocatedBytes(backing)) < 1 * MiB, 'and the backing file is (nearly) empty again');

  await native.discardDevice(device, 60 * MiB); // from an offset to the end
  await t.rejects(native.discardDevice(device, 100), { code: 'EINVAL', syscall: 'ioctl(BLKDISCARD)', path: device }, 'unaligned offset');
  await t.rejects(native.discardDevice(device, 0, 64 * MiB + 512), { code: 'EINVAL' }, 'past the end');
  await t.rejects(native.discardDevice(device, 65 * MiB), { code: 'EINVAL' }, 'offset past the end, no length');
});

// ── errors ──────────────────────────────────────────────────────────────────────────

t.test('17. not a block device: ENOTBLK; missing: ENOENT; nothing written', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'plain-file');
  await writeFile(file, 'not a disk');
  const calls = (target: string): Array<() => Promise<unknown>> => [
    () => native.probeDevice(target),
    () => native.wipeSignatures(target),
    () => native.discardDevice(target),
  ];
  for (const call of calls(file)) {
    await t.rejects(call(), { code: 'ENOTBLK', syscall: 'open', path: file, message: /^ENOTBLK: .*, open '/ });
  }
  t.equal((await stat(file)).size, 10, 'the file is unchanged');
  const missing = path.join(dir, 'no-such-device');
  for (const call of calls(missing)) {
    await t.rejects(call(), { code: 'ENOENT', errno: -2, syscall: 'open', path: missing });
  }
});

t.test('18. bad arguments throw TypeError/RangeError naming the argument, before any work', async (t) => {
  const bad = (fn: () => unknown, name: 'TypeError' | 'RangeError', code: string, message: RegExp) => t.throws(fn, { name, code, message });
  const call = native as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const fn of ['probeDevice', 'wipeSignatures', 'discardDevice']) {
    bad(() => call[fn]!(), 'TypeError', 'ERR_INVALID_ARG_TYPE', /"path" argument must be of type string/);
    bad(() => call[fn]!(42), 'TypeError', 'ERR_INVALID_ARG_TYPE', /"path".*Received type number/);
    bad(() => call[fn]!('/dev/loop0\0/etc'), 'TypeError', 'ERR_INVALID_ARG_VALUE', /'path' must be a string without null bytes/);
  }
  bad(() => call.discardDevice!('/dev/null', '0'), 'TypeError', 'ERR_INVALID_ARG_TYPE', /"offset" argument must be of type number/);
  bad(() => call.discardDevice!('/dev/null', 0, null), 'TypeError', 'ERR_INVALID_ARG_TYPE', /"length"/);
  bad(() => call.discardDevice!('/dev/null', -512), 'RangeError', 'ERR_OUT_OF_RANGE', /"offset" is out of range/);
  bad(() => call.discardDevice!('/dev/null', 1.5), 'RangeError', 'ERR_OUT_OF_RANGE', /"offset"/);
  bad(() => call.discardDevice!('/dev/null', 0, Number.NaN), 'RangeError', 'ERR_OUT_OF_RANGE', /"length"/);
  bad(() => call.discardDevice!('/dev/null', 0, 2 ** 53), 'RangeError', 'ERR_OUT_OF_RANGE', /"length"/);
});
