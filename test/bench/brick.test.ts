// Bench bricks on the run's real devices (--device): taken in order, one per live brick,
// formatted and mounted through the BrickManager, wiped blank afterwards; loop files when
// no device is given or the caller placed the backing file itself; the agent flags for
// agent k's brick; and the erase of a brick an agent left on its device.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { agentBrickFlags, eraseAgentBrick, useBenchDevices, withTempBrick, withTempBricks } from '../../bench/brick.js';
import { mountAt } from '../../src/brick/mountinfo.js';
import { run } from '../../src/exec.js';
import { native } from '../../src/native.js';
import { brickManager } from '../helpers/bricks.js';
import { loopDevice, MiB, needsRoot, tempDir } from '../helpers/loop.js';

const BRICK_BYTES = 300 * MiB;
const skip = needsRoot();

t.afterEach(() => useBenchDevices([]));

const blank = async (device: string) => (await native.probeDevice(device)).signatures.length === 0;

t.test('agent flags: the embedded default, or the k-th device to adopt', async (t) => {
  t.same(agentBrickFlags(1, 5 * 2 ** 30), { args: ['--embedded', '--embedded-count', '1', '--embedded-size-bytes', String(5 * 2 ** 30)] });
  useBenchDevices(['/dev/sdx', '/dev/sdy']);
  t.same(agentBrickFlags(0, 1), { args: ['--no-embedded', '--allow', '/dev/sdx'], adopt: '/dev/sdx' });
  t.same(agentBrickFlags(1, 1), { args: ['--no-embedded', '--allow', '/dev/sdy'], adopt: '/dev/sdy' });
  t.throws(() => agentBrickFlags(2, 1), /agent 3 needs a device of its own, and 2 were given with --device \(\/dev\/sdx, \/dev\/sdy\)/);
});

t.test('bricks take the devices in order, are real XFS bricks, and leave them blank', { skip }, async (t) => {
  const first = await loopDevice(t, 400);
  const second = await loopDevice(t, 400);
  useBenchDevices([first, second]);
  const seen = await withTempBricks(2, BRICK_BYTES, async (bricks) => {
    for (const brick of bricks) {
      const mount = await mountAt(brick.root);
      t.equal(mount?.fsType, 'xfs', `${brick.device} mounted as XFS at the brick root`);
      t.ok(brick.sizeBytes >= 400 * MiB, 'the whole device');
      await mkdir(path.join(brick.root, 'volumes', 'left-behind'), { recursive: true });
    }
    return bricks.map((b) => b.device);
  });
  t.same(seen, [first, second], 'one brick per device, in the order given');
  for (const device of [first, second]) t.ok(await blank(device), `${device} blank again (replicas left behind did not stop the release)`);

  // Sequential bricks reuse the first device.
  t.equal(await withTempBrick(BRICK_BYTES, async (b) => b.device), first);
  t.ok(await blank(first));
});

t.test('more bricks at once than devices: a clear error, and the devices released', { skip }, async (t) => {
  const only = await loopDevice(t, 400);
  useBenchDevices([only]);
  await t.rejects(
    withTempBricks(2, BRICK_BYTES, async () => 'never'),
    { message: `this case needs more bricks at once than the 1 device(s) given with --device (${only}): give one more --device per brick` },
  );
  t.ok(await blank(only), 'the first brick was torn down');
  t.equal(await withTempBrick(BRICK_BYTES, async (b) => b.device), only, 'and the device is free again');
});

t.test('a device smaller than the brick asked for is refused untouched', { skip }, async (t) => {
  const small = await loopDevice(t, 400);
  useBenchDevices([small]);
  await t.rejects(withTempBrick(2 ** 30, async () => 'never'), { message: new RegExp(`--device ${small} holds ${400 * MiB} bytes; this case needs a brick of at least ${2 ** 30}`) });
  t.ok(await blank(small));
});

t.test('a brick whose caller placed its backing file stays a loop file', { skip }, async (t) => {
  const device = await loopDevice(t, 400);
  useBenchDevices([device]);
  const dir = await tempDir(t);
  const used = await withTempBrick(BRICK_BYTES, async (b) => b.device, { parentDir: dir });
  t.not(used, device);
  t.match(used, /^\/dev\/loop\d+$/);
  t.ok(await blank(device), 'the --device was not touched');
});

t.test("eraseAgentBrick: blank again after an agent's brick, nothing else", { skip }, async (t) => {
  const device = await loopDevice(t, 400);
  const other = await loopDevice(t, 400);
  useBenchDevices([device]);
  // What an agent leaves behind: its brick adopted, then unmounted at exit.
  const manager = await brickManager(t, { allow: [device] });
  const brick = await manager.adopt(device);
  await run('umount', [brick.mountPath]);
  t.notOk(await blank(device));
  await eraseAgentBrick(device);
  t.ok(await blank(device));
  await eraseAgentBrick(device); // nothing left: nothing to do

  await run('mkfs.ext4', ['-q', other]);
  await t.rejects(eraseAgentBrick(other), { message: `${other} is not a --device of this run` });
  t.notOk(await blank(other), 'a device outside the run is not touched');

  // Still mounted: refused.
  const again = await manager.adopt(device);
  await t.rejects(eraseAgentBrick(device), { message: new RegExp(`${device} still holds brick ${again.brickId}: mounted at`) });
  t.notOk(await blank(device));
});
