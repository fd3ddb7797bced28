// Pure parts of the brick layer: mountinfo parsing, mount option words, allowlist globs,
// labels and mkfs command lines. No devices needed.
import t from 'tap';
import { matchAllowlist, validateAllowlist } from '../../src/brick/allowlist.js';
import { brickFromSignatures } from '../../src/brick/discover.js';
import { brickLabel, mkfsCommand } from '../../src/brick/format.js';
import { parseMountInfo } from '../../src/brick/mountinfo.js';
import { parseMountOptions } from '../../src/brick/mountopts.js';
import { MountFlags } from '../../src/native.js';

t.test('mountinfo: fields, escapes, optional fields', async (t) => {
  const text = [
    '36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
    '100 29 7:3 / /var/lib/brickd/bricks/abc rw,noatime shared:5 - xfs /dev/loop3 rw,attr2,inode64',
    'garbage line',
  ].join('\n');
  const entries = parseMountInfo(text);
  t.equal(entries.length, 2);
  t.equal(entries[0]!.target, '/mnt/with space');
  t.equal(entries[0]!.devNumber, '98:0');
  t.same(entries[1], {
    mountId: 100,
    devNumber: '7:3',
    target: '/var/lib/brickd/bricks/abc',
    mountOptions: ['rw', 'noatime'],
    fsType: 'xfs',
    source: '/dev/loop3',
    superOptions: ['rw', 'attr2', 'inode64'],
  });
});

t.test('mount options: VFS words become flags, the rest is fs data', async (t) => {
  t.same(parseMountOptions('noatime,inode64'), { flags: MountFlags.MS_NOATIME, data: 'inode64' });
  t.same(parseMountOptions('rw,ro,nodev, nosuid ,defaults'), { flags: MountFlags.MS_RDONLY | MountFlags.MS_NODEV | MountFlags.MS_NOSUID, data: '' });
  t.same(parseMountOptions(''), { flags: 0, data: '' });
});

t.test('allowlist: globs over kernel path and aliases', async (t) => {
  t.equal(matchAllowlist(['/dev/sd[b-z]'], ['/dev/sdb']), '/dev/sd[b-z]');
  t.equal(matchAllowlist(['/dev/sd[b-z]'], ['/dev/sda']), undefined);
  t.equal(matchAllowlist(['/dev/sd[!a]'], ['/dev/sda']), undefined);
  t.equal(matchAllowlist(['/dev/sd[!a]'], ['/dev/sdc']), '/dev/sd[!a]');
  t.equal(matchAllowlist(['/dev/nvme*n1'], ['/dev/nvme0n1']), '/dev/nvme*n1');
  t.equal(matchAllowlist(['/dev/nvme*n1'], ['/dev/nvme0n1p1']), undefined, '* does not run past the pattern end');
  t.equal(matchAllowlist(['/dev/disk/by-id/wwn-*'], ['/dev/sdq', '/dev/disk/by-id/wwn-0x5000']), '/dev/disk/by-id/wwn-*');
  t.equal(matchAllowlist(['/dev/loop1'], ['/dev/loop10']), undefined, 'exact path is exact');
  t.equal(matchAllowlist(['/dev/sd.'], ['/dev/sdb']), undefined, 'a dot is literal');
  t.equal(matchAllowlist([], ['/dev/sdb']), undefined, 'empty allowlist admits nothing');
  t.throws(() => validateAllowlist(['sdb']), RangeError);
  t.throws(() => validateAllowlist(['/dev/../etc/passwd']), RangeError);
  t.throws(() => validateAllowlist([42]), RangeError);
  t.doesNotThrow(() => validateAllowlist(['/dev/sd*']));
});

t.test('labels fit XFS (12 chars) and name the brick', async (t) => {
  const id = '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d';
  t.equal(brickLabel(id), 'brickd-0a1b2');
  t.ok(brickLabel(id).length <= 12);
  const xfs = mkfsCommand('xfs', '/dev/loop9', id);
  t.equal(xfs.tool, 'mkfs.xfs');
  t.match(xfs.args.join(' '), /-i size=512 -n size=8192 -L brickd-0a1b2 -m uuid=0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d \/dev\/loop9$/);
  t.notOk(xfs.args.includes('-f'), 'mkfs.xfs is never forced');
  const ext4 = mkfsCommand('ext4', '/dev/loop9', id);
  t.match(ext4.args.join(' '), /-L brickd-0a1b2 -U 0a1b2c3d/);
});

t.test('brick recognised from signatures only by brickd label + xfs/ext4 + uuid', async (t) => {
  t.same(brickFromSignatures([{ type: 'xfs', usage: 'filesystem', offset: 0, label: 'brickd-0a1b2', uuid: 'u-1' }]), {
    brickId: 'u-1',
    label: 'brickd-0a1b2',
    fsType: 'xfs',
  });
  t.equal(brickFromSignatures([{ type: 'xfs', usage: 'filesystem', offset: 0, label: 'data', uuid: 'u' }]), undefined);
  t.equal(brickFromSignatures([{ type: 'btrfs', usage: 'filesystem', offset: 0, label: 'brickd-x', uuid: 'u' }]), undefined);
  t.equal(brickFromSignatures([]), undefined);
});
