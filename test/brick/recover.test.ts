// Restart: the brick table is rebuilt from the devices alone (labels + manifests), with
// every odd case reported rather than dropped: vanished device, foreign brick, half-done
// adoption, a manifest from a newer format, stale mounts.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { brickLabel, mountBrick, unmountBrick } from '../../src/brick/format.js';
import { readBrickManifest, writeBrickManifest } from '../../src/brick/manifest.js';
import { mountAt } from '../../src/brick/mountinfo.js';
import { detachLoop } from '../../src/brick/loop.js';
import { run } from '../../src/exec.js';
import { brickManager } from '../helpers/bricks.js';
import { loopDevice, needsRoot } from '../helpers/loop.js';

t.test('restart rediscovers and remounts bricks from labels and manifests', { skip: needsRoot() }, async (t) => {
  const devices = [await loopDevice(t), await loopDevice(t)];
  const first = await brickManager(t, { allow: devices });
  const made = [await first.adopt(devices[0]!), await first.adopt(devices[1]!)];
  await writeFile(path.join(made[0]!.mountPath, 'hello'), 'world');
  await first.unmountAll();
  t.equal(await mountAt(made[0]!.mountPath), undefined, 'unmounted');

  // A new manager over the same state dir is a restarted agent: no memory but the disks.
  const second = await brickManager(t, { allow: devices, stateDir: path.dirname(first.bricksDir) });
  const found = await second.recover();
  t.same(found.map((b) => [b.brickId, b.state]).sort(), made.map((b) => [b.brickId, 'mounted']).sort());
  t.ok(await mountAt(made[0]!.mountPath), 'mounted again at the same place');
  const again = await second.recover();
  t.same(again.map((b) => b.state), ['mounted', 'mounted'], 'recover is idempotent with bricks already mounted');
});

t.test('a brick whose device vanished is reported missing', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t);
  const bricks = await brickManager(t, { allow: [device] });
  const brick = await bricks.adopt(device);
  await bricks.unmountAll();
  await detachLoop(device);
  const found = await bricks.recover();
  t.match(found, [{ brickId: brick.brickId, state: 'missing', reason: /no allowlisted device/ }]);
});

t.test('a brick of another node is foreign and left unmounted', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t);
  const other = await brickManager(t, { allow: [device], nodeId: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee' });
  const brick = await other.adopt(device);
  await other.unmountAll();
  const mine = await brickManager(t, { allow: [device] });
  const found = await mine.recover();
  t.match(found, [{ brickId: brick.brickId, state: 'foreign', reason: /aaaaaaaa-bbbb/ }]);
  t.equal(await mountAt(brick.mountPath.replace(other.bricksDir, mine.bricksDir)), undefined, 'not left mounted');
});

t.test('half-done adoption: empty fs is finished, non-empty is reported incomplete', { skip: needsRoot() }, async (t) => {
  const empty = await loopDevice(t);
  const used = await loopDevice(t);
  const ids = ['0c0ffee0-0000-4000-8000-000000000001', '0c0ffee0-0000-4000-8000-000000000002'];
  await run('mkfs.xfs', ['-q', '-L', brickLabel(ids[0]!), '-m', `uuid=${ids[0]}`, empty]);
  await run('mkfs.xfs', ['-q', '-L', brickLabel(ids[1]!), '-m', `uuid=${ids[1]}`, used]);
  const bricks = await brickManager(t, { allow: [empty, used] });
  // Put a file on the second one, as if something else had written there.
  const scratch = path.join(bricks.bricksDir, 'scratch');
  await mountBrick(used, scratch, 'xfs');
  await writeFile(path.join(scratch, 'stranger'), 'x');
  await unmountBrick(scratch);
  await run('rmdir', [scratch]);

  const found = await bricks.recover();
  const byId = new Map(found.map((b) => [b.brickId, b]));
  t.equal(byId.get(ids[0]!)?.state, 'mounted', 'empty labelled fs: adoption finished');
  t.match(await readBrickManifest(byId.get(ids[0]!)!.mountPath), { brickId: ids[0] });
  t.match(byId.get(ids[1]!), { state: 'incomplete', reason: /not empty \(stranger\)/ });
});

t.test('a brick with a newer manifest format is refused, not misread', { skip: needsRoot() }, async (t) => {
  const device = await loopDevice(t);
  const bricks = await brickManager(t, { allow: [device] });
  const brick = await bricks.adopt(device);
  await writeBrickManifest(brick.mountPath, { ...brick.manifest!, version: 99 });
  await bricks.unmountAll();
  const found = await bricks.recover();
  t.match(found, [{ state: 'unsupported', reason: /format version 99; this agent reads up to 1/ }]);
  t.equal(await mountAt(brick.mountPath), undefined);
});

t.test('a mount point directory with no device at all is reported missing', { skip: needsRoot() }, async (t) => {
  const bricks = await brickManager(t, { allow: [] });
  await mkdir(path.join(bricks.bricksDir, 'deadbeef-0000-4000-8000-000000000000'), { recursive: true });
  t.match(await bricks.recover(), [{ brickId: 'deadbeef-0000-4000-8000-000000000000', state: 'missing' }]);
});

t.test('a dead mount (ENOTCONN) under bricks/ is detached at start-up and reported', { skip: needsRoot() || (existsSync('/dev/fuse') ? false : 'needs /dev/fuse') }, async (t) => {
  const bricks = await brickManager(t, { allow: [] });
  const stale = path.join(bricks.bricksDir, 'dead0000-0000-4000-8000-000000000000');
  await mkdir(stale, { recursive: true });
  const child = spawn(process.execPath, [path.join(import.meta.dirname, 'children', 'fuse-mount.cjs'), stale], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => {
    child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('mounted') && resolve());
    child.once('exit', (code) => reject(new Error(`FUSE child exited ${code}`)));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  await t.rejects(stat(stale), { code: 'ENOTCONN' }, 'the mount is dead, as after a crash');
  const found = await bricks.recover();
  t.equal(await mountAt(stale), undefined, 'the dead mount is gone');
  t.match(found, [{ brickId: 'dead0000-0000-4000-8000-000000000000', state: 'missing' }], 'and its brick is reported');
});
