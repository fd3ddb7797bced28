// The control API (proto/brickd/v1/control.proto) against a real agent process over its real
// Unix socket: every RPC, the refusals as call errors with status and brickd-reason, the
// idempotent retry of every mutating call, the socket's permissions, concurrent calls, and
// recovery across a restart. Devices are real loop devices; bricks are real XFS mounts.
import { spawn } from 'node:child_process';
import { access, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { run } from '../../src/exec.js';
import { readMountInfo } from '../../src/brick/mountinfo.js';
import { silentLogger } from '../../src/log.js';
import { ReplicaStore } from '../../src/store/store.js';
import type { pb } from '../../src/wire/control.js';
import { startAgent, testSecretFile } from '../helpers/agent.js';
import {
  callFails,
  grpc,
  isRunning,
  operationDone,
  readStream,
  snapshot,
  startControlAgent,
  type ControlAgent,
  type ResponseOf,
} from '../helpers/control.js';
import { loopDevice, MiB, needsRoot, tempDir } from '../helpers/loop.js';

const { status } = grpc;

/** Collect the agent's events from the moment the agent confirms the watch (its response headers). */
async function watchEvents(agent: ControlAgent) {
  const events: pb.IEvent[] = [];
  const stream = agent.client.watchEvents({});
  stream.on('data', (e: pb.IEvent) => events.push(e));
  stream.on('error', () => {}); // cancelled at the end
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('WatchEvents: no response headers within 5 s')), 5000);
    stream.once('metadata', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
  return {
    events,
    /** Wait until an event matching `match` arrived. */
    async waitFor(match: (e: pb.IEvent) => boolean, timeoutMs = 10_000): Promise<pb.IEvent> {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const found = events.find(match);
        if (found) return found;
        if (Date.now() > until) throw new Error(`no such event; got ${JSON.stringify(events)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    stop: () => stream.cancel(),
  };
}

/** Run `code` as an ES module under uid/gid 65534 (nobody); resolves with its stdout. */
function runAsNobody(code: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', code], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: '/',
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`exit ${code}: ${err}`))));
  });
}

/** Which mounted bricks of `agent` hold a replica directory of `volumeId` on disk. */
async function bricksHolding(agent: ControlAgent, volumeId: string): Promise<string[]> {
  const holders: string[] = [];
  for (const b of (await agent.api.listBricks({})).bricks.filter((b) => b.state === 'mounted')) {
    const names = await readdir(path.join(b.mountPath, 'volumes')).catch(() => [] as string[]);
    if (names.includes(volumeId)) holders.push(b.brickId);
  }
  return holders;
}

t.test('control API against a real agent', { skip: needsRoot() }, async (t) => {
  // Extra devices: [0] blank (adopted, released, adopted again concurrently), [1] ext4
  // signature, [2] too small. One more device with a signature is NOT on the allowlist.
  const outside = await loopDevice(t, 16);
  await run('mkfs.ext4', ['-q', '-F', '-L', 'outside', outside]);
  const agent = await startControlAgent(t, { extraDevices: [320, 320, 64], secretFile: await testSecretFile(t) });
  const [blank, ext4Device, small] = agent.extraDevices as [string, string, string];
  await run('mkfs.ext4', ['-q', '-F', '-L', 'precious', ext4Device]);
  const { api } = agent;
  const embedded = (await api.listBricks({})).bricks;
  t.equal(embedded.length, 2, 'the two embedded devices are bricks at start');

  let adopted: ResponseOf<'listBricks'>['bricks'][number] | undefined;

  await t.test('GetNodeInfo', { timeout: 30_000 }, async (t) => {
    const info = await api.getNodeInfo({});
    const up = agent.proc.lines.find(isRunning)!;
    t.equal(info.nodeId, up.nodeId, 'the node id the agent logged at start');
    t.match(info.nodeId, /^[0-9a-f-]{36}$/);
    t.equal(info.zone, 'default');
    t.match(info.version, /^\d+\.\d+\.\d+/);
    for (const c of ['xfs', 'ext4', 'scrub', 'fuse', 'replication', 'embedded-devices']) t.ok(info.capabilities.includes(c), `capability ${c}`);
    t.match(info.replicationAddress, /^127\.0\.0\.1:\d+$/, 'the replication address peers dial');
    t.equal(info.brickFormatVersion, 1);
    t.equal(info.replicaFormatVersion, 1);
  });

  await t.test('every mutating call is logged with the caller\'s credentials (SO_PEERCRED)', { timeout: 30_000 }, async (t) => {
    await api.createVolume({ requestId: 'audit-1', volumeId: 'vol-audit', sizeLimitBytes: MiB });
    await api.deleteVolume({ volumeId: 'vol-audit' });
    const peer = `unix:pid=${process.pid},uid=${process.getuid!()},gid=${process.getgid!()}`;
    for (const method of ['createVolume', 'deleteVolume']) {
      t.ok(agent.proc.lines.some((l) => l.msg === 'control call' && l.method === method && l.peer === peer), `${method} logged with ${peer}`);
    }
  });

  await t.test('ListDevices: eligibility and its reasons', { timeout: 30_000 }, async (t) => {
    const { devices } = await api.listDevices({});
    const byPath = new Map(devices.map((d) => [d.path, d]));
    for (const b of embedded) {
      const d = byPath.get(b.device)!;
      t.ok(d, `embedded ${b.device} listed`);
      t.notOk(d.eligible);
      t.same(d.reasons.map((r) => r.code).sort(), ['IS_BRICK', 'MOUNTED'], 'an embedded brick: IS_BRICK and MOUNTED');
      t.equal(d.brickId, b.brickId);
      t.equal(d.allowedBy, b.device, 'admitted by its exact path');
    }
    const blankDevice = byPath.get(blank)!;
    t.ok(blankDevice.eligible, 'the blank allowlisted device is eligible');
    t.same(blankDevice.reasons, []);
    t.equal(blankDevice.allowedBy, blank);
    t.equal(blankDevice.sizeBytes, 320 * MiB);
    t.equal(blankDevice.brickId, '');

    const ext4 = byPath.get(ext4Device)!;
    t.notOk(ext4.eligible);
    t.same(ext4.reasons.map((r) => r.code), ['HAS_SIGNATURE']);
    t.same(ext4.signatures.map((s) => [s.type, s.label]), [['ext4', 'precious']], 'its ext4 signature is reported');

    t.same(byPath.get(small)!.reasons.map((r) => r.code), ['TOO_SMALL']);

    const other = byPath.get(outside)!;
    t.notOk(other.eligible);
    t.ok(other.reasons.some((r) => r.code === 'NOT_ALLOWED'), 'outside the allowlist: NOT_ALLOWED');
    t.equal(other.allowedBy, '');
    t.same(other.signatures, [], 'a device outside the allowlist is not opened, so its ext4 signature is not seen');
  });

  await t.test('AdoptDevice: operation, watch, brick; idempotent retries', { timeout: 30_000 }, async (t) => {
    const watch = await watchEvents(agent);
    t.teardown(watch.stop);
    const op = await api.adoptDevice({ requestId: 'adopt-1', device: blank, tags: { zone: 'a', media: 'ssd' } });
    t.equal(op.kind, 'adopt-device');
    t.equal(op.target, blank);
    t.match(op.operationId, /^[0-9a-f-]{36}$/);
    t.equal(op.errorReason, '');

    const updates = await readStream(agent.client.watchOperation({ operationId: op.operationId }));
    t.ok(updates.length >= 1, 'WatchOperation streams the operation');
    t.ok(updates.every((u) => u.operationId === op.operationId));
    t.equal(updates.at(-1)!.state, 'succeeded', 'the stream ends with the finished operation');
    t.ok(updates.slice(0, -1).every((u) => u.state === 'running'), 'every earlier update is running');

    const done = await api.getOperation({ operationId: op.operationId });
    t.equal(done.state, 'succeeded');
    t.equal(done.progress, 1);
    t.ok(done.finishedAt >= done.startedAt && done.finishedAt !== '');
    const brick = done.brick!;
    t.ok(brick, 'the operation carries the brick');
    t.equal(brick.device, blank);
    t.equal(brick.state, 'mounted');
    t.equal(brick.fsType, 'xfs');
    t.same(brick.tags, { zone: 'a', media: 'ssd' }, 'the tags went into the brick manifest');

    const listed = (await api.listBricks({})).bricks;
    t.equal(listed.length, 3, 'a third brick');
    adopted = listed.find((b) => b.brickId === brick.brickId);
    t.ok(adopted, 'ListBricks shows the new brick');
    t.equal(adopted?.state, 'mounted');
    const mount = (await readMountInfo()).find((m) => m.target === adopted!.mountPath);
    t.equal(mount?.fsType, 'xfs', 'really mounted');

    // Same request id: the same operation, now finished, and no second brick.
    const retry = await api.adoptDevice({ requestId: 'adopt-1', device: blank, tags: { zone: 'a', media: 'ssd' } });
    t.equal(retry.operationId, op.operationId, 'a retry with the request id returns the same operation');
    t.equal(retry.state, 'succeeded', 'in its current state');
    t.equal(retry.brick?.brickId, brick.brickId);
    // No request id: adopting our own brick again is naturally idempotent.
    const again = await operationDone(api, (await api.adoptDevice({ device: blank })).operationId);
    t.equal(again.state, 'succeeded');
    t.equal(again.brick?.brickId, brick.brickId, 'the same brick, not a new one');
    t.equal((await api.listBricks({})).bricks.length, 3, 'still three bricks');

    await watch.waitFor((e) => e.kind === 'brick-mounted' && e.brickId === brick.brickId);
    await new Promise((r) => setTimeout(r, 200));
    t.equal(
      watch.events.filter((e) => e.kind === 'brick-mounted').length,
      1,
      'one brick-mounted event for one adoption (none for the retries, which mount nothing)',
    );
    t.equal(watch.events.find((e) => e.kind === 'brick-mounted')!.device, blank);
  });

  await t.test('AdoptDevice refusals are call errors with status and reason', { timeout: 30_000 }, async (t) => {
    const before = (await api.listDevices({})).devices.find((d) => d.path === ext4Device)!;
    await callFails(t, api.adoptDevice({ requestId: 'adopt-ext4', device: ext4Device }), status.FAILED_PRECONDITION, 'DEVICE_HAS_SIGNATURE', 'ext4 signature');
    // A refused call is not remembered: its retry is refused again, not answered from the log.
    const e = await callFails(t, api.adoptDevice({ requestId: 'adopt-ext4', device: ext4Device }), status.FAILED_PRECONDITION, 'DEVICE_HAS_SIGNATURE', 'retry');
    t.match(e?.details, /carries ext4 "precious"/);
    await callFails(t, api.adoptDevice({ device: outside }), status.PERMISSION_DENIED, 'DEVICE_NOT_ALLOWED', 'outside the allowlist');
    await callFails(t, api.adoptDevice({ device: outside, force: true }), status.PERMISSION_DENIED, 'DEVICE_NOT_ALLOWED', 'force does not widen the allowlist');
    await callFails(t, api.adoptDevice({ device: '/dev/brickd-no-such-device' }), status.NOT_FOUND, 'DEVICE_NOT_FOUND', 'missing');
    await callFails(t, api.adoptDevice({ device: '/dev/null' }), status.NOT_FOUND, 'DEVICE_NOT_FOUND', 'not a block device');
    await callFails(t, api.adoptDevice({ device: small }), status.FAILED_PRECONDITION, 'DEVICE_TOO_SMALL', 'too small');
    await callFails(t, api.adoptDevice({ device: blank, tags: { '../bad key': 'x' } }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'bad tag key');
    await callFails(t, api.adoptDevice({ requestId: 'x'.repeat(300), device: blank }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'request id too long');
    await callFails(t, api.adoptDevice({ device: '' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'no device');
    await callFails(t, api.adoptDevice({ device: blank, fsType: 'btrfs' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'bad fs type');
    // force never reformats a device in use: our own mounted brick is simply returned.
    const own = await operationDone(api, (await api.adoptDevice({ device: embedded[0]!.device, force: true })).operationId);
    t.equal(own.brick?.brickId, embedded[0]!.brickId, 'force on our own mounted brick: the same brick, not reformatted');
    const after = (await api.listDevices({})).devices.find((d) => d.path === ext4Device)!;
    t.same(after.signatures, before.signatures, 'the ext4 device is untouched');
    t.equal((await api.listBricks({})).bricks.length, 3, 'no brick was made');
  });

  await t.test('volumes: create, update, status, list, delete; retries', { timeout: 30_000 }, async (t) => {
    const watch = await watchEvents(agent);
    t.teardown(watch.stop);
    const brickId = adopted!.brickId;
    const request = {
      requestId: 'create-a',
      volumeId: 'vol-a',
      sizeLimitBytes: 64 * MiB,
      brickId,
      generation: 1,
      role: 'primary',
      peers: [{ nodeId: 'node-2', address: '127.0.0.1:9' }],
      writeQuorum: 2,
    };
    const created = await api.createVolume(request);
    t.match(created, { volumeId: 'vol-a', brickId, sizeLimitBytes: 64 * MiB, generation: 1, role: 'primary', writeQuorum: 2 });
    t.same(created.peers.map((p) => [p.nodeId, p.address]), [['node-2', '127.0.0.1:9']]);
    t.ok(created.blockSize > 0);
    t.match(created.volumeUid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, `a primary created without a uid mints one (${created.volumeUid})`);
    t.same(await bricksHolding(agent, 'vol-a'), [brickId], 'the replica is on the brick asked for');

    t.same(await api.createVolume(request), created, 'retry with the request id: the same volume');
    const { requestId: _, ...natural } = request;
    t.same(await api.createVolume(natural), created, 'same settings without a request id: returns it');
    t.same(await api.createVolume({ volumeId: 'vol-a', sizeLimitBytes: 64 * MiB }), created, 'no brick given: the existing replica');
    t.equal((await api.listVolumes({})).volumes.filter((v) => v.volumeId === 'vol-a').length, 1, 'one replica');
    await watch.waitFor((e) => e.kind === 'replica-created' && e.volumeId === 'vol-a');
    await new Promise((r) => setTimeout(r, 100));
    t.equal(watch.events.filter((e) => e.kind === 'replica-created').length, 1, 'one replica-created event');
    t.equal(watch.events.find((e) => e.kind === 'replica-created')!.brickId, brickId);

    await callFails(t, api.createVolume({ volumeId: 'vol-a', sizeLimitBytes: 32 * MiB }), status.ALREADY_EXISTS, 'VOLUME_EXISTS', 'other size');
    await callFails(t, api.createVolume({ volumeId: 'vol-a', sizeLimitBytes: 64 * MiB, brickId: embedded[0]!.brickId }), status.ALREADY_EXISTS, 'VOLUME_EXISTS', 'other brick');
    await callFails(t, api.createVolume({ volumeId: '../x', sizeLimitBytes: MiB }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'path traversal');
    await callFails(t, api.createVolume({ volumeId: '', sizeLimitBytes: MiB }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'empty id');
    await callFails(t, api.createVolume({ volumeId: 'vol-b', sizeLimitBytes: 0 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'no size');
    await callFails(t, api.createVolume({ volumeId: 'vol-b', sizeLimitBytes: MiB, role: 'leader' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'bad role');
    await callFails(t, api.createVolume({ volumeId: 'vol-b', sizeLimitBytes: MiB, brickId: 'no-such-brick' }), status.NOT_FOUND, 'BRICK_NOT_FOUND', 'unknown brick');
    await callFails(t, api.createVolume({ volumeId: 'vol-b', sizeLimitBytes: MiB, peers: [{ nodeId: 'n' }] }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'peer without address');
    await callFails(t, api.createVolume({ volumeId: 'vol-b', sizeLimitBytes: MiB, peers: [{ nodeId: 'n', address: 'no-port' }] }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'peer address without port');
    await callFails(t, api.createVolume({ volumeId: 'vol-b', sizeLimitBytes: MiB, generation: 2 ** 60 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'generation beyond 2^53');
    await callFails(t, api.createVolume({ volumeId: 'vol-b', sizeLimitBytes: MiB, writeQuorum: 2 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'write quorum above the replica count');
    await callFails(t, api.createVolume({ volumeId: 'vol-b', sizeLimitBytes: MiB, resyncRateBytesPerSec: 2 ** 60 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'resync rate beyond 2^53');
    await callFails(t, api.createVolume({ volumeId: 'vol-a', sizeLimitBytes: 64 * MiB, resyncRateBytesPerSec: MiB }), status.ALREADY_EXISTS, 'VOLUME_EXISTS', 'another resync rate');
    await callFails(t, api.createVolume({ volumeId: 'vol-a', sizeLimitBytes: 64 * MiB, volumeUid: 'pv-0000-other' }), status.ALREADY_EXISTS, 'VOLUME_EXISTS', 'another uid');
    t.same(await api.createVolume({ volumeId: 'vol-a', sizeLimitBytes: 64 * MiB, volumeUid: created.volumeUid }), created, 'its own uid: returns it');
    await callFails(t, api.createVolume({ volumeId: 'vol-b', sizeLimitBytes: MiB, volumeUid: '../pv' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'uid with a path');
    await callFails(t, api.createVolume({ volumeId: 'vol-b', sizeLimitBytes: MiB, volumeUid: 'x'.repeat(129) }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'uid too long');
    t.same(await bricksHolding(agent, 'vol-b'), [], 'no refused create left a replica');
    const given = await api.createVolume({ volumeId: 'vol-c', sizeLimitBytes: MiB, volumeUid: 'a3f1c2d4-pv-uid' });
    t.equal(given.volumeUid, 'a3f1c2d4-pv-uid', 'a replica created with the orchestrator\'s uid holds it');
    t.equal((await api.createVolume({ volumeId: 'vol-d', sizeLimitBytes: MiB })).volumeUid, '', 'a replica created without one has none until its primary\'s');
    await api.deleteVolume({ volumeId: 'vol-c' });
    await api.deleteVolume({ volumeId: 'vol-d' });

    await callFails(t, api.updateVolume({ volumeId: 'vol-a', generation: 5, setPeers: true, peers: [] }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'no peers left for a write quorum of 2');
    t.equal((await api.getVolumeStatus({ volumeId: 'vol-a' })).volume?.generation, 1, 'a refused update does not raise the generation');
    const update = { requestId: 'update-a', volumeId: 'vol-a', generation: 5, role: 'replica', setPeers: true, peers: [], writeQuorum: 1 };
    const updated = await api.updateVolume(update);
    t.match(updated, { volumeId: 'vol-a', generation: 5, role: 'replica', writeQuorum: 1 });
    t.same(updated.peers, [], 'set_peers with no peers clears them');
    t.same(await api.updateVolume(update), updated, 'retry with the request id: the same answer');
    t.same(await api.updateVolume({ volumeId: 'vol-a', generation: 5 }), updated, 'the same generation again, nothing else: unchanged (natural retry)');
    await callFails(t, api.updateVolume({ volumeId: 'vol-a', generation: 4 }), status.FAILED_PRECONDITION, 'GENERATION_STALE', 'lower generation');
    await callFails(t, api.updateVolume({ volumeId: 'vol-a', generation: 6, role: 'boss' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'bad role');
    await callFails(t, api.updateVolume({ volumeId: 'vol-none', generation: 6 }), status.NOT_FOUND, 'VOLUME_NOT_FOUND', 'unknown volume');
    await callFails(t, api.updateVolume({ volumeId: '../vol-a', generation: 6 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'path traversal');
    await callFails(t, api.updateVolume({ volumeId: 'vol-a', generation: 2 ** 60 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'generation beyond 2^53');
    await callFails(t, api.updateVolume({ volumeId: 'vol-a', generation: 6, resyncRateBytesPerSec: 2 ** 60 }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'resync rate beyond 2^53');
    t.equal((await api.getVolumeStatus({ volumeId: 'vol-a' })).volume?.generation, 5, 'a refused rate does not raise the generation');
    const rated = await api.updateVolume({ volumeId: 'vol-a', generation: 5, resyncRateBytesPerSec: 3 * MiB });
    t.match(rated, { generation: 5, resyncRateBytesPerSec: 3 * MiB }, 'a rate-only update: the volume rate in force');
    const peersKept = await api.updateVolume({ volumeId: 'vol-a', generation: 6 });
    t.match(peersKept, { generation: 6, writeQuorum: 1, role: 'replica' }, 'a raise keeps what it does not set');

    const st = await api.getVolumeStatus({ volumeId: 'vol-a' });
    t.same(st.volume, peersKept, 'GetVolumeStatus: the volume as UpdateVolume left it');
    t.equal(st.health, 'healthy');
    t.equal(st.usedBytes, 0);
    t.equal(st.checksumErrors, 0);
    t.equal(st.scrub?.state, 'idle');
    t.equal(st.mountPath, '', 'not mounted');
    await callFails(t, api.getVolumeStatus({ volumeId: 'vol-none' }), status.NOT_FOUND, 'VOLUME_NOT_FOUND', 'status of unknown');
    await callFails(t, api.getVolumeStatus({ volumeId: '' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'status without id');

    const listed = (await api.listVolumes({})).volumes;
    t.same(listed.map((v) => v.volumeId), ['vol-a']);
    t.same((await api.listBricks({})).bricks.find((b) => b.brickId === brickId)!.volumes, ['vol-a'], 'ListBricks names the replica');

    // Delete, on a second volume so vol-a stays for the release test.
    await api.createVolume({ volumeId: 'vol-del', sizeLimitBytes: 8 * MiB, brickId });
    const first = await api.deleteVolume({ requestId: 'delete-1', volumeId: 'vol-del' });
    t.same(first, { volumeId: 'vol-del', deleted: true });
    t.same(await api.deleteVolume({ requestId: 'delete-1', volumeId: 'vol-del' }), first, 'retry with the request id: the first answer');
    t.same(await api.deleteVolume({ volumeId: 'vol-del' }), { volumeId: 'vol-del', deleted: false }, 'gone: deleted false');
    await callFails(t, api.deleteVolume({ volumeId: '../vol-a' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'delete with path traversal');
    await callFails(t, api.deleteVolume({ volumeId: '' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'delete without id');
    t.same(await bricksHolding(agent, 'vol-del'), [], 'its directory is gone');
    const volumesDir = path.join(adopted!.mountPath, 'volumes');
    t.same((await readdir(volumesDir)).sort(), ['vol-a'], 'no leftovers (trash) in volumes/');
    await watch.waitFor((e) => e.kind === 'replica-deleted' && e.volumeId === 'vol-del');
    t.equal(watch.events.filter((e) => e.kind === 'replica-deleted' && e.volumeId === 'vol-del').length, 1, 'one replica-deleted event for it');
  });

  await t.test('scrub: StartScrub operation, StopScrub, retries', { timeout: 30_000 }, async (t) => {
    const op = await api.startScrub({ requestId: 'scrub-1', volumeId: 'vol-a' });
    t.equal(op.kind, 'scrub');
    t.equal(op.target, 'vol-a');
    const done = await operationDone(api, op.operationId);
    t.equal(done.state, 'succeeded');
    t.equal(done.scrub?.state, 'done');
    t.ok(done.scrub?.finishedAt, 'scrub progress carries its end');
    const retry = await api.startScrub({ requestId: 'scrub-1', volumeId: 'vol-a' });
    t.equal(retry.operationId, op.operationId, 'retry with the request id: the same operation');
    t.equal(retry.state, 'succeeded');
    const stopped = await api.stopScrub({ requestId: 'stop-1', volumeId: 'vol-a' });
    t.equal(stopped.operationId, op.operationId, 'StopScrub answers with the scrub operation');
    t.same(await api.stopScrub({ requestId: 'stop-1', volumeId: 'vol-a' }), stopped, 'StopScrub retry');
    t.equal((await api.getVolumeStatus({ volumeId: 'vol-a' })).scrub?.state, 'done', 'stopping a finished scrub changes nothing');
    const second = await api.startScrub({ volumeId: 'vol-a' });
    t.not(second.operationId, op.operationId, 'a new StartScrub after the end is a new pass');
    t.equal((await operationDone(api, second.operationId)).state, 'succeeded');
    await callFails(t, api.startScrub({ volumeId: 'vol-none' }), status.NOT_FOUND, 'VOLUME_NOT_FOUND', 'scrub of unknown volume');
    await callFails(t, api.startScrub({ volumeId: '../vol-a' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'scrub with path traversal');
    await callFails(t, api.stopScrub({ volumeId: 'vol-none' }), status.NOT_FOUND, 'VOLUME_NOT_FOUND', 'stop of unknown volume');
    await api.createVolume({ volumeId: 'vol-idle', sizeLimitBytes: MiB });
    await callFails(t, api.stopScrub({ volumeId: 'vol-idle' }), status.NOT_FOUND, 'OPERATION_NOT_FOUND', 'stop with no scrub started');
    t.same((await api.deleteVolume({ volumeId: 'vol-idle' })).deleted, true);
    await callFails(t, api.getOperation({ operationId: 'no-such-op' }), status.NOT_FOUND, 'OPERATION_NOT_FOUND', 'unknown operation');
    await callFails(t, api.getOperation({ operationId: '' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'no operation id');
    await t.rejects(readStream(agent.client.watchOperation({ operationId: 'no-such-op' }), undefined, 5000), { code: status.NOT_FOUND, reason: 'OPERATION_NOT_FOUND' }, 'WatchOperation of an unknown id');
  });

  await t.test('MountVolume and UnmountVolume: FUSE at a host path, retries, refusals', { timeout: 60_000 }, async (t) => {
    await api.createVolume({ volumeId: 'vol-m', sizeLimitBytes: 64 * MiB, role: 'primary', generation: 1 });
    t.teardown(async () => {
      await api.unmountVolume({ volumeId: 'vol-m' }).catch(() => {});
      await api.deleteVolume({ volumeId: 'vol-m' }).catch(() => {});
    });
    const base = await tempDir(t, 'brickd-api-mnt-');
    const mnt = path.join(base, 'vol-m');
    const before = await snapshot(agent);
    for (const [request, code, reason, name] of [
      [{ volumeId: 'vol-m', hostPath: 'relative/path' }, status.INVALID_ARGUMENT, 'MOUNT_PATH_INVALID', 'a relative path'],
      [{ volumeId: 'vol-m', hostPath: '/' }, status.INVALID_ARGUMENT, 'MOUNT_PATH_INVALID', 'the root'],
      [{ volumeId: 'vol-m', hostPath: `${base}/../x` }, status.INVALID_ARGUMENT, 'MOUNT_PATH_INVALID', 'a path with ..'],
      [{ volumeId: 'vol-m', hostPath: path.join(agent.stateDir, 'bricks', 'x') }, status.INVALID_ARGUMENT, 'MOUNT_PATH_INVALID', 'inside the state dir'],
      [{ volumeId: 'vol-m', hostPath: '' }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'no path'],
      [{ volumeId: 'vol-none', hostPath: mnt }, status.NOT_FOUND, 'VOLUME_NOT_FOUND', 'an unknown volume'],
      [{ volumeId: '../vol-m', hostPath: mnt }, status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'a volume id with ..'],
    ] as const) {
      await callFails(t, api.mountVolume(request), code, reason, name);
    }
    t.same(await snapshot(agent), before, 'refused mounts changed nothing');
    await t.rejects(access(mnt), { code: 'ENOENT' }, 'not even the mount point was made');

    const mounted = await api.mountVolume({ requestId: 'mount-m', volumeId: 'vol-m', hostPath: mnt });
    t.same(mounted, { mountPath: mnt });
    t.same(await api.mountVolume({ requestId: 'mount-m', volumeId: 'vol-m', hostPath: mnt }), mounted, 'a retry answers the same');
    t.same(await api.mountVolume({ volumeId: 'vol-m', hostPath: mnt }), mounted, 'the same mount without a request id too');
    await callFails(t, api.mountVolume({ volumeId: 'vol-m', hostPath: path.join(base, 'elsewhere') }), status.FAILED_PRECONDITION, 'VOLUME_MOUNTED', 'a second path');
    const info = (await readMountInfo()).find((m) => m.target === mnt);
    t.match(info, { fsType: 'fuse.brickd', source: 'brickd:vol-m' }, 'a FUSE mount named after the volume');
    await run('sh', ['-c', `printf data > ${mnt}/file`]);
    t.equal((await run('cat', [`${mnt}/file`])).stdout, 'data', 'written and read by other processes');
    t.equal((await api.getVolumeStatus({ volumeId: 'vol-m' })).mountPath, mnt);
    await callFails(t, api.deleteVolume({ volumeId: 'vol-m' }), status.FAILED_PRECONDITION, 'VOLUME_MOUNTED', 'delete while mounted');
    await callFails(t, api.updateVolume({ volumeId: 'vol-m', generation: 1, role: 'replica' }), status.FAILED_PRECONDITION, 'VOLUME_MOUNTED', 'demote while mounted read-write');

    t.same(await api.unmountVolume({ requestId: 'unmount-m', volumeId: 'vol-m' }), {});
    t.same(await api.unmountVolume({ requestId: 'unmount-m', volumeId: 'vol-m' }), {}, 'a retried unmount');
    t.same(await api.unmountVolume({ volumeId: 'vol-m' }), {}, 'unmounting what is not mounted succeeds');
    t.notOk((await readMountInfo()).some((m) => m.target === mnt), 'nothing mounted there any more');
    t.equal((await api.getVolumeStatus({ volumeId: 'vol-m' })).mountPath, '');
    await callFails(t, api.unmountVolume({ volumeId: '../vol-a' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'unmount with path traversal');
  });

  await t.test('a request id is bound to its method', { timeout: 30_000 }, async (t) => {
    const before = (await api.listVolumes({})).volumes;
    // 'create-a' was a CreateVolume: every other mutating method refuses it and does nothing.
    const reuse = 'create-a';
    await callFails(t, api.deleteVolume({ requestId: reuse, volumeId: 'vol-a' }), status.INVALID_ARGUMENT, 'REQUEST_ID_REUSED', 'DeleteVolume');
    await callFails(t, api.updateVolume({ requestId: reuse, volumeId: 'vol-a', generation: 99 }), status.INVALID_ARGUMENT, 'REQUEST_ID_REUSED', 'UpdateVolume');
    await callFails(t, api.adoptDevice({ requestId: reuse, device: blank }), status.INVALID_ARGUMENT, 'REQUEST_ID_REUSED', 'AdoptDevice');
    await callFails(t, api.releaseDevice({ requestId: reuse, brick: adopted!.brickId }), status.INVALID_ARGUMENT, 'REQUEST_ID_REUSED', 'ReleaseDevice');
    await callFails(t, api.startScrub({ requestId: reuse, volumeId: 'vol-a' }), status.INVALID_ARGUMENT, 'REQUEST_ID_REUSED', 'StartScrub');
    await callFails(t, api.stopScrub({ requestId: reuse, volumeId: 'vol-a' }), status.INVALID_ARGUMENT, 'REQUEST_ID_REUSED', 'StopScrub');
    await callFails(t, api.createVolume({ requestId: 'adopt-1', volumeId: 'vol-z', sizeLimitBytes: MiB }), status.INVALID_ARGUMENT, 'REQUEST_ID_REUSED', 'CreateVolume');
    t.same((await api.listVolumes({})).volumes, before, 'nothing changed');
    t.same(await bricksHolding(agent, 'vol-z'), []);
  });

  await t.test('ReleaseDevice: refused while in use, then the device is blank again', { timeout: 30_000 }, async (t) => {
    const watch = await watchEvents(agent);
    t.teardown(watch.stop);
    const brick = adopted!;
    await callFails(t, api.releaseDevice({ requestId: 'release-busy', brick: brick.brickId }), status.FAILED_PRECONDITION, 'BRICK_IN_USE', 'holds vol-a');
    t.ok((await readMountInfo()).some((m) => m.target === brick.mountPath), 'still mounted');
    t.same((await api.deleteVolume({ volumeId: 'vol-a' })).deleted, true);
    const released = await api.releaseDevice({ requestId: 'release-1', brick: blank });
    t.equal(released.brickId, brick.brickId, 'released by device path');
    t.same(await api.releaseDevice({ requestId: 'release-1', brick: blank }), released, 'retry with the request id: the first answer');
    await callFails(t, api.releaseDevice({ brick: brick.brickId }), status.NOT_FOUND, 'BRICK_NOT_FOUND', 'without a request id a released brick is not found');
    await callFails(t, api.releaseDevice({ brick: '' }), status.INVALID_ARGUMENT, 'INVALID_ARGUMENT', 'no brick');
    t.notOk((await api.listBricks({})).bricks.some((b) => b.brickId === brick.brickId), 'gone from ListBricks');
    t.notOk((await readMountInfo()).some((m) => m.target === brick.mountPath), 'unmounted');
    const device = (await api.listDevices({})).devices.find((d) => d.path === blank)!;
    t.ok(device.eligible, 'the device is eligible again');
    t.same(device.signatures, [], 'its signature was erased');
    await watch.waitFor((e) => e.kind === 'brick-released' && e.brickId === brick.brickId);
    t.equal(watch.events.filter((e) => e.kind === 'brick-released').length, 1, 'one brick-released event');
    await watch.waitFor((e) => e.kind === 'device-found' && e.device === blank);
    await api.listDevices({});
    t.equal(watch.events.filter((e) => e.kind === 'device-found' && e.device === blank).length, 1, 'device-found once when it became eligible again, not at every look');
  });

  await t.test('the socket: 0600, root only', { timeout: 30_000 }, async (t) => {
    const s = await stat(agent.socketPath);
    t.ok(s.isSocket(), 'a Unix socket');
    t.equal((s.mode & 0o7777).toString(8), '600', 'mode 0600');
    t.equal(s.uid, 0, 'owned by root');
    t.equal(s.gid, 0);
    const dirMode = (await stat(path.dirname(agent.socketPath))).mode & 0o777;
    t.equal(dirMode.toString(8), '755', 'its directory is open, so the file mode is what refuses');
    const socket = JSON.stringify(agent.socketPath);
    const result = await runAsNobody(`
      import net from 'node:net';
      import fs from 'node:fs';
      fs.statSync(${socket});
      net.connect(${socket})
        .on('connect', () => { console.log('connected'); process.exit(0); })
        .on('error', (err) => { console.log(err.code); process.exit(0); });
    `);
    t.equal(result, 'EACCES', 'a non-root process can see the socket but not connect');
    await access(agent.socketPath); // root can
    t.ok((await api.getNodeInfo({})).nodeId, 'root connects');
  });

  await t.test('concurrent calls', { timeout: 30_000 }, async (t) => {
    const before = (await api.listBricks({})).bricks.length;
    const calls: Array<Promise<unknown>> = [];
    const creates: Array<Promise<ResponseOf<'createVolume'>>> = [];
    const adopts: Array<Promise<ResponseOf<'adoptDevice'>>> = [];
    for (let i = 0; i < 20; i++) creates.push(api.createVolume({ volumeId: 'conc', sizeLimitBytes: 16 * MiB, generation: 3 }));
    for (let i = 0; i < 10; i++) calls.push(api.createVolume({ volumeId: `conc-${i}`, sizeLimitBytes: 8 * MiB }));
    // The released blank device, adopted by ten callers at once: five retries of one request, five without an id.
    for (let i = 0; i < 10; i++) adopts.push(api.adoptDevice(i < 5 ? { requestId: 'adopt-conc', device: blank } : { device: blank }));
    // ...and by impatient retries without a request id while it is being formatted.
    const first = adopts[0]!.then((op) => operationDone(api, op.operationId));
    let formatted = false;
    void first.finally(() => (formatted = true));
    const retries = (async () => {
      const answers: Array<ResponseOf<'adoptDevice'>> = [];
      await adopts[0];
      while (!formatted && answers.length < 200) {
        answers.push(await api.adoptDevice({ device: blank }));
        await new Promise((r) => setTimeout(r, 20));
      }
      return answers;
    })();
    for (let i = 0; i < 20; i++) calls.push(api.getNodeInfo({}));
    for (let i = 0; i < 10; i++) calls.push(api.listBricks({}));
    for (let i = 0; i < 10; i++) calls.push(api.listVolumes({}));
    for (let i = 0; i < 5; i++) calls.push(api.listDevices({}));
    for (let i = 0; i < 15; i++) calls.push(callFails(t, api.getVolumeStatus({ volumeId: `none-${i}` }), status.NOT_FOUND, 'VOLUME_NOT_FOUND', `status ${i}`));
    const settled = await Promise.allSettled([...creates, ...adopts, ...calls]);
    t.equal(settled.length, 100);
    const failed = settled.filter((s) => s.status === 'rejected');
    t.same(failed.map((f) => String((f as PromiseRejectedResult).reason)), [], 'every call answered as expected');

    const volumes = await Promise.all(creates);
    t.equal(new Set(volumes.map((v) => JSON.stringify(v))).size, 1, 'every concurrent CreateVolume got the same volume');
    t.same(await bricksHolding(agent, 'conc'), [volumes[0]!.brickId], 'exactly one replica, on disk too');
    const all = (await api.listVolumes({})).volumes;
    t.equal(all.filter((v) => v.volumeId === 'conc').length, 1, 'one conc in ListVolumes');
    t.equal(all.length, 11, 'conc and conc-0..9');

    const ops = await Promise.all(adopts);
    t.equal(new Set(ops.map((o) => o.operationId)).size, 1, 'the ten concurrent adoptions of one device share one operation');
    const retried = await retries;
    t.ok(retried.length > 0, `${retried.length} retries while formatting, all answered`);
    const finished = await Promise.all([...ops, ...retried].map((o) => operationDone(api, o.operationId)));
    t.same(new Set(finished.map((o) => o.state)), new Set(['succeeded']), 'every adoption succeeded');
    t.equal(new Set(finished.map((o) => o.brick?.brickId)).size, 1, 'all with the same brick');
    t.equal((await api.listBricks({})).bricks.length, before + 1, 'one new brick');

    // Concurrent deletes of each volume: exactly one of them deletes it.
    const deletes = await Promise.all(all.flatMap((v) => [0, 1, 2].map(() => api.deleteVolume({ volumeId: v.volumeId }))));
    for (const v of all) t.equal(deletes.filter((d) => d.volumeId === v.volumeId && d.deleted).length, 1, `${v.volumeId} deleted once`);
    t.same((await api.listVolumes({})).volumes, []);
  });

  await t.test('event watchers are bounded and released', { timeout: 30_000 }, async (t) => {
    const streams = Array.from({ length: 256 }, () => agent.client.watchEvents({}));
    for (const s of streams) s.on('error', () => {});
    // Each stream is open once the server has sent its headers; wait for all of them.
    await Promise.all(streams.map((s) => new Promise((r) => s.once('metadata', r))));
    const extra = agent.client.watchEvents({});
    await t.rejects(readStream(extra, undefined, 5000), { code: status.RESOURCE_EXHAUSTED, reason: 'TOO_MANY_WATCHERS' }, 'the 257th watcher is refused');
    for (const s of streams) s.cancel();
    await new Promise((r) => setTimeout(r, 300));
    const again = agent.client.watchEvents({});
    const watched = readStream(again, (e) => e.kind === 'replica-created', 10_000);
    await new Promise((r) => again.once('metadata', r));
    await api.createVolume({ volumeId: 'after-watchers', sizeLimitBytes: MiB });
    t.equal((await watched).at(-1)?.volumeId, 'after-watchers', 'cancelled watchers were released: a new one is served');
    await api.deleteVolume({ volumeId: 'after-watchers' });
  });

  await t.test('restart: bricks and volumes recovered; scrub stop and resume on real data', { timeout: 30_000 }, async (t) => {
    const brickId = embedded[0]!.brickId;
    await api.createVolume({ volumeId: 'keep', sizeLimitBytes: 64 * MiB, brickId, generation: 7, role: 'primary', peers: [{ nodeId: 'n2', address: '127.0.0.1:9' }], writeQuorum: 2 });
    const bricksBefore = (await api.listBricks({})).bricks;
    const volumesBefore = (await api.listVolumes({})).volumes;
    t.equal(await agent.stop('SIGTERM'), 0, 'clean stop');
    await t.rejects(stat(agent.socketPath), { code: 'ENOENT' }, 'a clean stop removes the socket');

    // Put 16 MiB of data into the replica while the agent is down (the FUSE path does not exist yet).
    const store = await ReplicaStore.open(path.join(embedded[0]!.mountPath, 'volumes', 'keep'), { log: silentLogger });
    for (let i = 0; i < 8; i++) {
      await store.create(`f${i}`);
      await store.write(`f${i}`, 0, Buffer.alloc(2 * MiB, i + 1));
    }
    await store.close();

    await agent.restart();
    const bricksAfter = (await agent.api.listBricks({})).bricks;
    t.same(
      bricksAfter.map((b) => [b.brickId, b.state, b.device]),
      bricksBefore.map((b) => [b.brickId, b.state, b.device]),
      'the same bricks, mounted',
    );
    t.same((await agent.api.listVolumes({})).volumes, volumesBefore, 'the same volumes, settings and generation');
    const st = await agent.api.getVolumeStatus({ volumeId: 'keep' });
    t.equal(st.usedBytes, 16 * MiB, 'the data written while it was down');

    // A slow scrub (4 MiB/s over 16 MiB), paused and resumed.
    const op = await agent.api.startScrub({ volumeId: 'keep', rateBytesPerSec: 4 * MiB });
    await new Promise((r) => setTimeout(r, 1200));
    const stopped = await agent.api.stopScrub({ volumeId: 'keep' });
    t.equal(stopped.operationId, op.operationId);
    t.equal(stopped.scrub?.state, 'paused', 'StopScrub pauses the pass');
    t.equal(stopped.state, 'running', 'the operation lasts until the pass is done');
    const pausedAt = stopped.scrub!.bytesScanned;
    t.ok(pausedAt > 0 && pausedAt < 16 * MiB, `paused part way (${pausedAt} bytes)`);
    await new Promise((r) => setTimeout(r, 500));
    t.equal((await agent.api.getVolumeStatus({ volumeId: 'keep' })).scrub?.bytesScanned, pausedAt, 'nothing scanned while paused');
    // Resume at a faster rate: the same operation finishes the pass.
    const resumed = await agent.api.startScrub({ volumeId: 'keep', rateBytesPerSec: 64 * MiB });
    t.equal(resumed.operationId, op.operationId, 'StartScrub resumes the paused operation');
    const done = await operationDone(agent.api, op.operationId, 30_000);
    t.equal(done.state, 'succeeded');
    t.equal(done.scrub?.bytesScanned, 16 * MiB, 'the whole volume verified once');
    t.same(done.scrub?.findings, []);

    // A scrub paused and then its volume deleted: the operation ends, a new volume scrubs anew.
    const slow = await agent.api.startScrub({ volumeId: 'keep', rateBytesPerSec: 2 * MiB });
    await new Promise((r) => setTimeout(r, 500));
    await agent.api.stopScrub({ volumeId: 'keep' });
    t.same((await agent.api.deleteVolume({ volumeId: 'keep' })).deleted, true);
    const ended = await operationDone(agent.api, slow.operationId, 5_000);
    t.equal(ended.state, 'failed', 'the scrub of a deleted volume fails');
    t.equal(ended.errorReason, 'VOLUME_NOT_FOUND');
    await agent.api.createVolume({ volumeId: 'keep', sizeLimitBytes: 8 * MiB });
    const fresh = await agent.api.startScrub({ volumeId: 'keep' });
    t.not(fresh.operationId, slow.operationId, 'a new volume of the same name gets a new scrub');
    t.equal((await operationDone(agent.api, fresh.operationId, 5_000)).state, 'succeeded');
    await agent.api.deleteVolume({ volumeId: 'keep' });
  });

  await t.test('one agent per socket; a killed agent leaves a socket the next one replaces', { timeout: 30_000 }, async (t) => {
    const otherState = await tempDir(t, 'brickd-ctl-second-');
    const second = startAgent(t, ['--state-dir', otherState, '--no-embedded', '--control-socket', agent.socketPath]);
    const code = await second.exited;
    t.not(code, 0, 'the second agent exits non-zero');
    t.ok(
      second.lines.some((l) => (l.err as { code?: string } | undefined)?.code === 'CONTROL_SOCKET_IN_USE'),
      'and says CONTROL_SOCKET_IN_USE',
    );
    t.ok((await agent.api.getNodeInfo({})).nodeId, 'the first agent still serves on its socket');

    const bricks = (await agent.api.listBricks({})).bricks.map((b) => b.brickId);
    t.equal(await agent.stop('SIGKILL'), null, 'killed');
    t.ok((await stat(agent.socketPath)).isSocket(), 'the dead agent left its socket file');
    await agent.restart();
    t.same((await agent.api.listBricks({})).bricks.map((b) => b.brickId), bricks, 'the restarted agent serves, with every brick');
  });
});

t.test('controlSocketGroup: 0660 owned by the group; its members call and are logged as themselves', { skip: needsRoot() }, async (t) => {
  const agent = await startControlAgent(t, { embeddedCount: 1, args: ['--control-socket-group', '65534'] });
  const s = await stat(agent.socketPath);
  t.equal((s.mode & 0o7777).toString(8), '660', 'mode 0660');
  t.same([s.uid, s.gid], [0, 65534], 'owned by root and the group');
  const wire = JSON.stringify(path.resolve(import.meta.dirname, '../../dist/src/wire/control.js'));
  const out = await runAsNobody(`
    const { controlClient } = await import(${wire});
    const client = controlClient(${JSON.stringify(agent.socketPath)});
    client.createVolume({ volumeId: 'by-nobody', sizeLimitBytes: 1048576 }, (err, res) => { console.log(err ? err.message : res.volumeId); client.close(); });
  `);
  t.equal(out, 'by-nobody', 'a member of the group (uid 65534) made a call');
  t.ok(agent.proc.lines.some((l) => l.msg === 'control call' && l.method === 'createVolume' && /^unix:pid=\d+,uid=65534,gid=65534$/.test(String(l.peer))), 'logged with its uid and gid');
});
