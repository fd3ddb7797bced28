// Bad input on the control socket (DESIGN.md invariant 7): raw garbage, truncated and
// oversized frames, random protobuf payloads and valid-but-wrong requests. The agent answers
// every call with an error status, keeps serving, and its state (devices, bricks, replicas,
// mounts) is exactly what it was before.
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { readMountInfo } from '../../src/brick/mountinfo.js';
import type { pb } from '../../src/wire/control.js';
import { ControlService } from '../../src/wire/control.js';
import { callFails, startControlAgent, type ControlAgent } from '../helpers/control.js';
import { needsRoot } from '../helpers/loop.js';
import { randomInts as prng } from '../helpers/random.js';

const SEED = 20261125;


function randomBytes(random: (n: number) => number, max: number): Buffer {
  const b = Buffer.alloc(random(max + 1));
  for (let i = 0; i < b.length; i++) b[i] = random(256);
  return b;
}

async function snapshot(node: ControlAgent): Promise<string> {
  const devices = ((await node.api.listDevices({})) as pb.ListDevicesResponse).devices.map((d) => [d.path, d.eligible, d.brickId]);
  const bricks = ((await node.api.listBricks({})) as pb.ListBricksResponse).bricks.map((b) => [b.brickId, b.state, b.device]);
  const volumes = ((await node.api.listVolumes({})) as pb.ListVolumesResponse).volumes.map((v) => [v.volumeId, v.generation]);
  const mounts = (await readMountInfo()).filter((m) => m.target.startsWith(node.stateDir)).map((m) => m.target);
  return JSON.stringify({ devices, bricks, volumes, mounts });
}

/** Send raw bytes on a fresh connection; resolves when the agent closed it or after a short wait. */
function rawExchange(socketPath: string, chunks: Buffer[], abrupt: boolean): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    const done = () => {
      socket.destroy();
      resolve();
    };
    socket.on('error', done);
    socket.on('close', done);
    socket.on('data', () => {});
    socket.on('connect', () => {
      for (const c of chunks) socket.write(c);
      if (abrupt) done();
      else setTimeout(done, 20);
    });
  });
}

t.test('garbage, truncation, oversize and wrong requests change nothing', { skip: needsRoot(), timeout: 240_000 }, async (t) => {
  t.comment(`seed ${SEED}`);
  const random = prng(SEED);
  const node = await startControlAgent(t);
  await node.api.createVolume({ volumeId: 'keep', sizeLimitBytes: 2 ** 24, generation: 3 });
  const before = await snapshot(node);

  await t.test('raw bytes on the socket', async (t) => {
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    let sent = 0;
    for (let i = 0; i < 600; i++) {
      const kind = i % 5;
      let chunks: Buffer[];
      if (kind === 0) chunks = [randomBytes(random, 4096)];
      else if (kind === 1) chunks = [preface.subarray(0, random(preface.length))];
      else if (kind === 2) chunks = [preface, randomBytes(random, 2048)];
      else if (kind === 3) {
        // A frame header declaring a 16 MiB - 1 frame of a random type, then nothing more.
        const header = Buffer.from([0xff, 0xff, 0xff, random(10), random(256), 0, 0, 0, random(8)]);
        chunks = [preface, header, randomBytes(random, 64)];
      } else chunks = [preface, Buffer.from([0, 0, 6, 4, 0, 0, 0, 0, 0]), randomBytes(random, 6), randomBytes(random, 300)];
      await rawExchange(node.socketPath, chunks, i % 2 === 0);
      sent++;
    }
    t.equal(sent, 600);
    const info = (await node.api.getNodeInfo({})) as pb.NodeInfo;
    t.ok(info.nodeId, 'the agent still answers');
  });

  await t.test('random protobuf payloads to every method', async (t) => {
    const client = new grpc.Client(`unix://${node.socketPath}`, grpc.credentials.createInsecure());
    t.teardown(() => client.close());
    const identity = (b: Buffer) => b;
    // CreateVolume and UpdateVolume get only crafted wrong requests below: random bytes can
    // be a valid create, which would (rightly) change the state.
    const methods = Object.values(ControlService).filter((m) => !m.responseStream && !/CreateVolume|UpdateVolume/.test(m.path));
    const statuses = new Map<number, number>();
    const calls: Array<Promise<void>> = [];
    for (let i = 0; i < 1500; i++) {
      const method = methods[random(methods.length)]!;
      const payload = randomBytes(random, 200);
      calls.push(
        new Promise((resolve) => {
          client.makeUnaryRequest(method.path, identity, identity, payload, new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err) => {
            const code = err ? err.code : grpc.status.OK;
            statuses.set(code, (statuses.get(code) ?? 0) + 1);
            resolve();
          });
        }),
      );
      if (calls.length >= 50) await Promise.all(calls.splice(0));
    }
    await Promise.all(calls);
    t.comment(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].map(([k, v]) => [grpc.status[k], v])))}`);
    t.notOk(statuses.has(grpc.status.DEADLINE_EXCEEDED), 'no call hung');
    t.notOk(statuses.has(grpc.status.INTERNAL), 'an undecodable request is INVALID_ARGUMENT, not an internal error');
    t.notOk(statuses.has(grpc.status.UNAVAILABLE), 'the agent never went away');

    // Oversized, truncated, unknown method.
    const big = Buffer.alloc(2 * 1024 * 1024, 0x0a);
    const bigErr = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(ControlService.getNodeInfo.path, identity, identity, big, (err) => resolve(err)),
    );
    t.equal(bigErr?.code, grpc.status.RESOURCE_EXHAUSTED, 'a 2 MiB request is refused');
    const truncated = Buffer.from([0x12, 0x40, 0x41]); // field 2 declares 64 bytes, has 1
    const truncErr = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest(ControlService.createVolume.path, identity, identity, truncated, (err) => resolve(err)),
    );
    t.ok(truncErr, `a truncated message is refused (${truncErr?.code})`);
    const unknown = await new Promise<grpc.ServiceError | null>((resolve) =>
      client.makeUnaryRequest('/brickd.v1.Control/FormatEverything', identity, identity, Buffer.alloc(0), (err) => resolve(err)),
    );
    t.equal(unknown?.code, grpc.status.UNIMPLEMENTED);
  });

  await t.test('valid but wrong requests', async (t) => {
    const rpc = node.api;
    const bad: Array<[string, () => Promise<unknown>, grpc.status, string]> = [
      ['volume id with ..', () => rpc.createVolume({ volumeId: '../../etc', sizeLimitBytes: 1 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
      ['volume id with NUL', () => rpc.createVolume({ volumeId: 'a\0b', sizeLimitBytes: 1 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
      ['volume id with slash', () => rpc.createVolume({ volumeId: 'a/b', sizeLimitBytes: 1 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
      ['empty volume id', () => rpc.createVolume({ volumeId: '', sizeLimitBytes: 1 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
      ['huge size', () => rpc.createVolume({ volumeId: 'huge', sizeLimitBytes: 2 ** 60 }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
      ['bad role', () => rpc.createVolume({ volumeId: 'r', sizeLimitBytes: 1, role: 'admin' }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
      ['peer without address', () => rpc.createVolume({ volumeId: 'p', sizeLimitBytes: 1, peers: [{ nodeId: 'x' }] }), grpc.status.INVALID_ARGUMENT, 'INVALID_ARGUMENT'],
      ['stale generation', () => rpc.updateVolume({ volumeId: 'keep', generation: 1 }), grpc.status.FAILED_PRECONDITION, 'GENERATION_STALE'],
      ['unknown volume', () => rpc.updateVolume({ volumeId: 'ghost', generation: 9 }), grpc.status.NOT_FOUND, 'VOLUME_NOT_FOUND'],
      ['unknown volume status', () => rpc.getVolumeStatus({ volumeId: 'ghost' }), grpc.status.NOT_FOUND, 'VOLUME_NOT_FOUND'],
      ['device path traversal', () => rpc.adoptDevice({ device: '/dev/../etc/passwd' }), grpc.status.NOT_FOUND, 'DEVICE_NOT_FOUND'],
      ['a regular file as device', () => rpc.adoptDevice({ device: '/etc/hostname' }), grpc.status.NOT_FOUND, 'DEVICE_NOT_FOUND'],
      ['the root disk', () => rpc.adoptDevice({ device: '/dev/vda', force: true }), grpc.status.PERMISSION_DENIED, 'DEVICE_NOT_ALLOWED'],
      ['unknown brick', () => rpc.releaseDevice({ brick: 'ghost' }), grpc.status.NOT_FOUND, 'BRICK_NOT_FOUND'],
      ['unknown operation', () => rpc.getOperation({ operationId: 'ghost' }), grpc.status.NOT_FOUND, 'OPERATION_NOT_FOUND'],
      ['scrub of unknown volume', () => rpc.startScrub({ volumeId: 'ghost' }), grpc.status.NOT_FOUND, 'VOLUME_NOT_FOUND'],
    ];
    for (const [name, call, status, reason] of bad) await callFails(t, call(), status, reason, name);
  });

  t.equal(await snapshot(node), before, 'devices, bricks, replicas and mounts are unchanged');
});
