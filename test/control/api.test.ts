// The control API against a real agent process over its real Unix socket: every call, the
// typed refusals (status + brickd-reason), idempotent retries of every mutating call, the
// socket's permissions, concurrent calls, and state surviving an agent restart.
import { spawnSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { run } from '../../src/exec.js';
import type { pb } from '../../src/wire/control.js';
import { startAgent } from '../helpers/agent.js';
import { cleanStateDir, expectCallError, promisify, startControlAgent, type Rpc } from '../helpers/control.js';
import { loopDevice, needsRoot, tempDir } from '../helpers/loop.js';

const skip = needsRoot();

/** Poll an operation until it leaves `running`. */
async function finished(rpc: Rpc, operationId: string): Promise<pb.Operation> {
  for (;;) {
    const op = (await rpc.getOperation({ operationId })) as pb.Operation;
    if (op.state !== 'running') return op;
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('control API over the real socket', { skip, timeout: 240_000 }, async (t) => {
  const dir = await tempDir(t, 'brickd-ctl-devs-');
  const blank = await loopDevice(t, 320, dir);
  const signed = await loopDevice(t, 320, dir);
  const outside = await loopDevice(t, 320, dir);
  await run('mkfs.ext4', ['-q', '-L', 'precious', signed]);
  const node = await startControlAgent(t, { allow: [blank, signed] });
  const { rpc } = node;

  const events: pb.Event[] = [];
  const stream = node.client.watchEvents({});
  stream.on('data', (e: pb.Event) => events.push(e));
  stream.on('error', () => {});
  t.teardown(() => stream.cancel());

  await t.test('socket: mode 0600, root only', async (t) => {
    const st = await stat(node.socket);
    t.ok(st.isSocket());
    t.equal(st.mode & 0o777, 0o600);
    t.equal(st.uid, 0);
    const probe = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', `require('net').connect(${JSON.stringify(node.socket)}).on('error', e => { console.log(e.code); process.exit(0) }).on('connect', () => { console.log('CONNECTED'); process.exit(0) })`]);
    t.equal(String(probe.stdout).trim(), 'EACCES', 'a non-root process cannot connect');
  });

  await t.test('node info, devices, bricks', async (t) => {
    const info = (await rpc.getNodeInfo({})) as pb.NodeInfo;
    t.match(info.nodeId, /^[0-9a-f-]{36}$/);
    t.ok(info.capabilities.includes('embedded-devices'));
    t.equal(info.brickFormatVersion, 1);
    const devices = ((await rpc.listDevices({})) as pb.ListDevicesResponse).devices;
    const byPath = new Map(devices.map((d) => [d.path, d]));
    t.equal(byPath.get(blank)?.eligible, true, 'the blank allowlisted device is eligible');
    t.match(byPath.get(signed)?.reasons, [{ code: 'HAS_SIGNATURE', message: /ext4 "precious"/ }]);
    t.match(byPath.get(outside)?.reasons, [{ code: 'NOT_ALLOWED' }]);
    t.equal(byPath.get(outside)?.signatures?.length, 0, 'a device outside the allowlist is not even probed');
    const bricks = ((await rpc.listBricks({})) as pb.ListBricksResponse).bricks;
    t.equal(bricks.length, 2);
    t.ok(bricks.every((b) => b.state === 'mounted' && Number(b.sizeBytes) > 0));
  });

  let adoptedBrick = '';
  await t.test('adopt: refusals are call errors; success is an operation; retries are idempotent', async (t) => {
    await expectCallError(t, rpc.adoptDevice({ device: signed }), grpc.status.FAILED_PRECONDITION, 'DEVICE_HAS_SIGNATURE');
    await expectCallError(t, rpc.adoptDevice({ device: outside, force: true }), grpc.status.PERMISSION_DENIED, 'DEVICE_NOT_ALLOWED');
    await expectCallError(t, rpc.adoptDevice({ device: '/dev/nonexistent' }), grpc.status.NOT_FOUND, 'DEVICE_NOT_FOUND');
    await expectCallError(t, rpc.adoptDevice({ device: '' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    await expectCallError(t, rpc.adoptDevice({ device: blank, fsType: 'btrfs' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');

    const first = (await rpc.adoptDevice({ requestId: 'adopt-1', device: blank, tags: { zone: 'z1' } })) as pb.Operation;
    t.equal(first.kind, 'adopt-device');
    const again = (await rpc.adoptDevice({ requestId: 'adopt-1', device: blank })) as pb.Operation;
    t.equal(again.operationId, first.operationId, 'the same request id returns the same operation');
    const done = await finished(rpc, first.operationId);
    t.equal(done.state, 'succeeded', done.errorMessage);
    adoptedBrick = done.brick!.brickId ?? "";
    t.equal(done.brick!.tags?.zone, 'z1');

    // WatchOperation of a finished operation sends it once and ends.
    const watched: pb.Operation[] = [];
    await new Promise<void>((resolve, reject) => {
      const s = node.client.watchOperation({ operationId: first.operationId });
      s.on('data', (op: pb.Operation) => watched.push(op));
      s.on('end', resolve);
      s.on('error', reject);
    });
    t.equal(watched.at(-1)?.state, 'succeeded');

    // Without a request id, adopting our own brick again is naturally idempotent.
    const natural = await finished(rpc, ((await rpc.adoptDevice({ device: blank })) as pb.Operation).operationId);
    t.equal(natural.brick?.brickId, adoptedBrick, 'same brick, not a second format');
    await expectCallError(t, rpc.createVolume({ requestId: 'adopt-1', volumeId: 'x', sizeLimitBytes: 1 }), grpc.status.INVALID_ARGUMENT, 'REQUEST_ID_REUSED');
    t.equal(((await rpc.listBricks({})) as pb.ListBricksResponse).bricks.length, 3);
  });

  await t.test('volumes: create, update, status, retries, refusals', async (t) => {
    const v = (await rpc.createVolume({ requestId: 'cv-1', volumeId: 'vol-a', sizeLimitBytes: 64 * 2 ** 20, brickId: adoptedBrick, generation: 1, role: 'primary' })) as pb.Volume;
    t.match(v, { volumeId: 'vol-a', brickId: adoptedBrick, generation: 1, role: 'primary', blockSize: 4096 });
    const retry = (await rpc.createVolume({ requestId: 'cv-1', volumeId: 'vol-a', sizeLimitBytes: 64 * 2 ** 20, brickId: adoptedBrick, generation: 1, role: 'primary' })) as pb.Volume;
    t.same(retry, v, 'a retry returns the same volume');
    const natural = (await rpc.createVolume({ volumeId: 'vol-a', sizeLimitBytes: 64 * 2 ** 20 })) as pb.Volume;
    t.equal(natural.brickId, adoptedBrick, 'the same settings without a request id return the existing replica');
    await expectCallError(t, rpc.createVolume({ volumeId: 'vol-a', sizeLimitBytes: 2 ** 20 }), grpc.status.ALREADY_EXISTS, 'VOLUME_EXISTS');
    await expectCallError(t, rpc.createVolume({ volumeId: '../escape', sizeLimitBytes: 2 ** 20 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    await expectCallError(t, rpc.createVolume({ volumeId: 'v', sizeLimitBytes: 0 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    await expectCallError(t, rpc.createVolume({ volumeId: 'v', sizeLimitBytes: 1, role: 'boss' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT');
    await expectCallError(t, rpc.createVolume({ volumeId: 'v', sizeLimitBytes: 1, brickId: 'no-such-brick' }), grpc.status.NOT_FOUND, 'BRICK_NOT_FOUND');

    const updated = (await rpc.updateVolume({ requestId: 'uv-1', volumeId: 'vol-a', generation: 5, setPeers: true, peers: [{ nodeId: 'n2', address: '127.0.0.1:7400' }] })) as pb.Volume;
    t.equal(updated.generation, 5);
    t.same(updated.peers.map((p) => p.nodeId), ['n2']);
    t.same(await rpc.updateVolume({ requestId: 'uv-1', volumeId: 'vol-a', generation: 5 }), updated, 'a retry returns the same answer');
    await expectCallError(t, rpc.updateVolume({ volumeId: 'vol-a', generation: 4 }), grpc.status.FAILED_PRECONDITION, 'GENERATION_STALE');
    await expectCallError(t, rpc.updateVolume({ volumeId: 'nope', generation: 9 }), grpc.status.NOT_FOUND, 'VOLUME_NOT_FOUND');

    const status = (await rpc.getVolumeStatus({ volumeId: 'vol-a' })) as pb.VolumeStatus;
    t.match(status, { health: 'healthy', usedBytes: 0, checksumErrors: 0 });
    t.equal(status.volume!.generation, 5);
    t.same(((await rpc.listVolumes({})) as pb.ListVolumesResponse).volumes.map((x) => x.volumeId), ['vol-a']);

    await expectCallError(t, rpc.mountVolume({ volumeId: 'vol-a', hostPath: '/mnt/x' }), grpc.status.UNIMPLEMENTED, 'NOT_IMPLEMENTED');
    await expectCallError(t, rpc.unmountVolume({ volumeId: 'vol-a' }), grpc.status.UNIMPLEMENTED, 'NOT_IMPLEMENTED');
  });

  await t.test('scrub: an operation that finishes; stop is idempotent', async (t) => {
    const op = (await rpc.startScrub({ requestId: 'scrub-1', volumeId: 'vol-a' })) as pb.Operation;
    t.equal(op.kind, 'scrub');
    t.equal(((await rpc.startScrub({ requestId: 'scrub-1', volumeId: 'vol-a' })) as pb.Operation).operationId, op.operationId);
    const done = await finished(rpc, op.operationId);
    t.equal(done.state, 'succeeded');
    t.equal(done.scrub?.state, 'done');
    const stopped = (await rpc.stopScrub({ volumeId: 'vol-a' })) as pb.Operation;
    t.equal(stopped.operationId, op.operationId);
    await expectCallError(t, rpc.startScrub({ volumeId: 'nope' }), grpc.status.NOT_FOUND, 'VOLUME_NOT_FOUND');
  });

  await t.test('release and delete', async (t) => {
    await expectCallError(t, rpc.releaseDevice({ brick: adoptedBrick }), grpc.status.FAILED_PRECONDITION, 'BRICK_IN_USE');
    const deleted = (await rpc.deleteVolume({ requestId: 'dv-1', volumeId: 'vol-a' })) as pb.DeleteVolumeResponse;
    t.same(deleted, { volumeId: 'vol-a', deleted: true });
    t.same(await rpc.deleteVolume({ requestId: 'dv-1', volumeId: 'vol-a' }), deleted, 'a retry returns the first answer');
    t.same(await rpc.deleteVolume({ volumeId: 'vol-a' }), { volumeId: 'vol-a', deleted: false }, 'deleting a gone volume succeeds');
    const released = (await rpc.releaseDevice({ requestId: 'rel-1', brick: blank })) as pb.ReleaseDeviceResponse;
    t.equal(released.brickId, adoptedBrick);
    t.same(await rpc.releaseDevice({ requestId: 'rel-1', brick: blank }), released, 'a retry returns the first answer');
    await expectCallError(t, rpc.releaseDevice({ brick: blank }), grpc.status.NOT_FOUND, 'BRICK_NOT_FOUND');
    const device = ((await rpc.listDevices({})) as pb.ListDevicesResponse).devices.find((d) => d.path === blank);
    t.equal(device?.eligible, true, 'the released device is blank and eligible again');
  });

  await t.test('events reached the watcher', async (t) => {
    await new Promise((r) => setTimeout(r, 200));
    const kinds = new Set(events.map((e) => e.kind));
    for (const kind of ['brick-mounted', 'replica-created', 'replica-deleted', 'brick-released', 'scrub-done']) t.ok(kinds.has(kind), kind);
  });

  await t.test('concurrent calls', async (t) => {
    const calls: Array<Promise<unknown>> = [];
    for (let i = 0; i < 20; i++) calls.push(rpc.createVolume({ volumeId: 'race', sizeLimitBytes: 2 ** 24 }));
    for (let i = 0; i < 40; i++) calls.push(rpc.listBricks({}), rpc.getNodeInfo({}));
    for (let i = 0; i < 10; i++) calls.push(rpc.createVolume({ volumeId: `many-${i}`, sizeLimitBytes: 2 ** 24 }));
    const results = await Promise.allSettled(calls);
    t.equal(results.filter((r) => r.status === 'rejected').length, 0, 'every call answered');
    const created = results.slice(0, 20).map((r) => (r as PromiseFulfilledResult<pb.Volume>).value.brickId);
    t.equal(new Set(created).size, 1, 'twenty concurrent creates of one volume made one replica');
    t.equal(((await rpc.listVolumes({})) as pb.ListVolumesResponse).volumes.length, 11);
  });

  await t.test('restart: volumes recovered; a second agent on a live socket is refused', async (t) => {
    const second = startAgent(t, node.args.map((a) => (a === 'debug' ? 'info' : a)));
    t.not(await second.exited, 0, 'the second agent exits');
    t.ok(second.lines.some((l) => String(l.err && (l.err as { message?: string }).message).includes('CONTROL_SOCKET_IN_USE')), 'because the socket is in use');
    node.client.close();
    node.agent.child.kill('SIGTERM');
    t.equal(await node.agent.exited, 0);
    const again = startAgent(t, node.args);
    await again.waitFor((l) => l.msg === 'agent running');
    const rpc2 = promisify((await import('../../src/wire/control.js')).controlClient(node.socket));
    const volumes = ((await rpc2.listVolumes({})) as pb.ListVolumesResponse).volumes.map((v) => v.volumeId).sort();
    t.same(volumes, ['many-0', 'many-1', 'many-2', 'many-3', 'many-4', 'many-5', 'many-6', 'many-7', 'many-8', 'many-9', 'race']);
    again.child.kill('SIGTERM');
    t.equal(await again.exited, 0);
    await cleanStateDir(node.stateDir);
  });
});
