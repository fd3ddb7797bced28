// brickctl's client (src/cli/rpc.ts) against a scripted in-process control server: mutating
// calls carry a request id and are retried once, with the same id, on UNAVAILABLE and
// DEADLINE_EXCEEDED; other failures are not retried and keep the agent's reason; read-only
// calls are never retried; exit codes follow the status.
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { CliError, EXIT } from '../../src/cli/exit.js';
import { AgentClient } from '../../src/cli/rpc.js';
import { ControlService, pb, REASON_KEY } from '../../src/wire/control.js';
import { tempDir } from '../helpers/loop.js';

type Handler = (request: Record<string, unknown>, callback: grpc.sendUnaryData<unknown>) => void;

/** A control server whose handlers the test scripts; answers UNIMPLEMENTED for the rest. */
async function fakeAgent(t: Test, handlers: Record<string, Handler>): Promise<string> {
  const server = new grpc.Server();
  const impl = Object.fromEntries(Object.entries(handlers).map(([name, h]) => [name, (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, cb: grpc.sendUnaryData<unknown>) => h(call.request, cb)]));
  server.addService(ControlService as unknown as grpc.ServiceDefinition, impl);
  const socket = path.join(await tempDir(t, 'brickctl-rpc-'), 'control.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  t.teardown(() => new Promise<void>((resolve) => server.tryShutdown(() => resolve())));
  return socket;
}

function failure(code: grpc.status, details: string, reason?: string): Partial<grpc.ServiceError> {
  const metadata = new grpc.Metadata();
  if (reason) metadata.set(REASON_KEY, reason);
  return { code, details, metadata };
}

const volume = (id: string) => pb.Volume.create({ volumeId: id, role: 'replica', generation: 1 });

t.test('a mutating call is retried once with the same request id after UNAVAILABLE', async (t) => {
  const ids: string[] = [];
  const socket = await fakeAgent(t, {
    createVolume: (req, cb) => {
      ids.push(req.requestId as string);
      if (ids.length === 1) cb(failure(grpc.status.UNAVAILABLE, 'agent restarting'));
      else cb(null, volume(req.volumeId as string));
    },
  });
  const client = new AgentClient(socket, { timeoutMs: 5000, retryDelayMs: 10 });
  t.teardown(() => client.close());
  const v = await client.mutate('createVolume', { volumeId: 'v1', sizeLimitBytes: 1 });
  t.equal(v.volumeId, 'v1');
  t.equal(ids.length, 2, 'sent twice');
  t.match(ids[0], /^[0-9a-f-]{36}$/, 'a generated request id');
  t.equal(ids[1], ids[0], 'the retry carries the same id');
});

t.test('a mutating call that timed out is retried with the same id', async (t) => {
  const ids: string[] = [];
  const socket = await fakeAgent(t, {
    deleteVolume: (req, cb) => {
      ids.push(req.requestId as string);
      // The first call is never answered: the client's deadline expires.
      if (ids.length > 1) cb(null, pb.DeleteVolumeResponse.create({ volumeId: 'v1', deleted: true }));
    },
  });
  const client = new AgentClient(socket, { timeoutMs: 300, retryDelayMs: 10 });
  t.teardown(() => client.close());
  const res = await client.mutate('deleteVolume', { volumeId: 'v1' });
  t.equal(res.deleted, true);
  t.same(ids, [ids[0], ids[0]]);
});

t.test('a request id given by the caller is kept', async (t) => {
  const ids: string[] = [];
  const socket = await fakeAgent(t, {
    deleteVolume: (req, cb) => {
      ids.push(req.requestId as string);
      cb(null, pb.DeleteVolumeResponse.create({ volumeId: 'v1' }));
    },
  });
  const client = new AgentClient(socket, { timeoutMs: 5000 });
  t.teardown(() => client.close());
  await client.mutate('deleteVolume', { volumeId: 'v1', requestId: 'mine-1' });
  t.same(ids, ['mine-1']);
});

t.test('two failures in a row: the second one is reported, no third try', async (t) => {
  let calls = 0;
  const socket = await fakeAgent(t, {
    startScrub: (_req, cb) => {
      calls++;
      cb(failure(grpc.status.UNAVAILABLE, 'store closed', 'STORE_CLOSED'));
    },
  });
  const client = new AgentClient(socket, { timeoutMs: 5000, retryDelayMs: 10 });
  t.teardown(() => client.close());
  await t.rejects(client.mutate('startScrub', { volumeId: 'v1' }, 'v1'), { constructor: CliError, exitCode: EXIT.UNREACHABLE, reason: 'STORE_CLOSED', message: 'StartScrub v1: STORE_CLOSED: store closed' });
  t.equal(calls, 2);
});

t.test('refusals are not retried and keep the agent\'s reason and exit code', async (t) => {
  let calls = 0;
  const socket = await fakeAgent(t, {
    adoptDevice: (_req, cb) => {
      calls++;
      cb(failure(grpc.status.FAILED_PRECONDITION, 'DEVICE_HAS_SIGNATURE: /dev/sdb carries ext4 at 1080; use force to erase it', 'DEVICE_HAS_SIGNATURE'));
    },
    getVolumeStatus: (_req, cb) => cb(failure(grpc.status.NOT_FOUND, 'VOLUME_NOT_FOUND: no replica of volume "x"', 'VOLUME_NOT_FOUND')),
    releaseDevice: (_req, cb) => cb(failure(grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT: brick is required', 'INVALID_ARGUMENT')),
  });
  const client = new AgentClient(socket, { timeoutMs: 5000, retryDelayMs: 10 });
  t.teardown(() => client.close());
  await t.rejects(client.mutate('adoptDevice', { device: '/dev/sdb' }, '/dev/sdb'), {
    exitCode: EXIT.REFUSED,
    reason: 'DEVICE_HAS_SIGNATURE',
    status: 'FAILED_PRECONDITION',
    message: 'AdoptDevice /dev/sdb: DEVICE_HAS_SIGNATURE: /dev/sdb carries ext4 at 1080; use force to erase it',
  });
  t.equal(calls, 1, 'a refusal is final');
  await t.rejects(client.call('getVolumeStatus', { volumeId: 'x' }, 'x'), { name: 'CliError', exitCode: EXIT.NOT_FOUND, reason: 'VOLUME_NOT_FOUND' });
  await t.rejects(client.mutate('releaseDevice', { brick: '' }), { name: 'CliError', exitCode: EXIT.USAGE, reason: 'INVALID_ARGUMENT' });
  await t.rejects(client.call('listBricks', {}), { name: 'CliError', exitCode: EXIT.UNIMPLEMENTED, reason: 'UNIMPLEMENTED' }, 'a method the server lacks');
});

t.test('read-only calls are not retried', async (t) => {
  let calls = 0;
  const socket = await fakeAgent(t, {
    listVolumes: (_req, cb) => {
      calls++;
      cb(failure(grpc.status.UNAVAILABLE, 'busy'));
    },
  });
  const client = new AgentClient(socket, { timeoutMs: 5000, retryDelayMs: 10 });
  t.teardown(() => client.close());
  await t.rejects(client.call('listVolumes', {}), { name: 'CliError', exitCode: EXIT.UNREACHABLE });
  t.equal(calls, 1);
});

t.test('no agent on the socket: unreachable, naming the socket', async (t) => {
  const socket = path.join(await tempDir(t, 'brickctl-rpc-'), 'none.sock');
  const client = new AgentClient(socket, { timeoutMs: 2000, retryDelayMs: 10 });
  t.teardown(() => client.close());
  await t.rejects(client.mutate('deleteVolume', { volumeId: 'v1' }), {
    exitCode: EXIT.UNREACHABLE,
    reason: 'UNAVAILABLE',
    message: new RegExp(`^DeleteVolume: UNAVAILABLE: agent unreachable at ${socket.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(connect ENOENT`),
  });
});
