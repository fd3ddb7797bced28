// The provisioner's decisions (src/cli/provision/provisioner.ts) against in-memory fake
// agents: what it sends to each node (adoptions, CreateVolume with role, generation, peers,
// quorum), how a rerun completes a half-made volume, and the cases it must refuse. The real
// agents are exercised by brickctl.test.ts; these cover what is awkward to stage there.
import t from 'tap';
import { CliError, EXIT } from '../../src/cli/exit.js';
import { provision, type NodeApi, type ProvisionOptions } from '../../src/cli/provision/provisioner.js';
import { parseTopology, type TopologyNode } from '../../src/cli/provision/topology.js';
import { pb } from '../../src/wire/control.js';

const MiB = 2 ** 20;

interface Call {
  method: string;
  request: Record<string, any>;
}

/** An agent in memory: a node id, a zone, devices, bricks, volumes, and a log of mutating calls. */
class FakeAgent {
  calls: Call[] = [];
  unreachable = false;
  failCreate?: CliError;
  adoptFails?: { reason: string; message: string };
  private adopted = 0;

  constructor(
    readonly nodeId: string,
    readonly zone: string,
    public devices: pb.IDevice[] = [],
    public bricks: pb.IBrick[] = [],
    public volumes: pb.IVolume[] = [],
  ) {}

  api(): NodeApi {
    const unreachable = () => new CliError(EXIT.UNREACHABLE, 'UNAVAILABLE', `${this.nodeId}: agent unreachable`);
    return {
      close: () => {},
      call: (async (method: string) => {
        if (this.unreachable) throw unreachable();
        switch (method) {
          case 'getNodeInfo':
            return pb.NodeInfo.create({ nodeId: this.nodeId, zone: this.zone });
          case 'listDevices':
            return pb.ListDevicesResponse.create({ devices: this.devices });
          case 'listBricks':
            return pb.ListBricksResponse.create({ bricks: this.bricks });
          case 'listVolumes':
            return pb.ListVolumesResponse.create({ volumes: this.volumes });
        }
        throw new Error(`unexpected call ${method}`);
      }) as NodeApi['call'],
      mutate: (async (method: string, request: Record<string, any>) => {
        if (this.unreachable) throw unreachable();
        this.calls.push({ method, request });
        if (method === 'adoptDevice') {
          if (this.adoptFails) return pb.Operation.create({ operationId: 'op', kind: 'adopt-device', target: request.device, state: 'failed', errorReason: this.adoptFails.reason, errorMessage: this.adoptFails.message });
          const brick = pb.Brick.create({ brickId: `${this.nodeId}-new${this.adopted++}`, state: 'mounted', device: request.device, sizeBytes: 1000 * MiB, usedBytes: 10 * MiB });
          this.bricks.push(brick);
          return pb.Operation.create({ operationId: 'op', kind: 'adopt-device', target: request.device, state: 'succeeded', progress: 1, brick });
        }
        if (method === 'createVolume') {
          if (this.failCreate) throw this.failCreate;
          const volume = pb.Volume.create({ ...request, requestId: undefined } as pb.IVolume);
          this.volumes.push(volume);
          return volume;
        }
        if (method === 'mountVolume') throw new CliError(EXIT.UNIMPLEMENTED, 'NOT_IMPLEMENTED', 'MountVolume: NOT_IMPLEMENTED: not yet');
        throw new Error(`unexpected mutate ${method}`);
      }) as NodeApi['mutate'],
      watchOperation: (async () => {
        throw new Error('operations finish at once here');
      }) as NodeApi['watchOperation'],
    };
  }
}

const brick = (brickId: string, freeMiB: number, extra: Partial<pb.IBrick> = {}): pb.IBrick => ({ brickId, state: 'mounted', sizeBytes: (freeMiB + 10) * MiB, usedBytes: 10 * MiB, ...extra });

/** Three nodes a, b, c in zones 1, 2, 3, each with one brick, and the topology naming them. */
function cluster(devices: Record<string, unknown[]> = {}) {
  const agents: Record<string, FakeAgent> = {
    a: new FakeAgent('id-a', '1', [], [brick('a0', 500)]),
    b: new FakeAgent('id-b', '2', [], [brick('b0', 400)]),
    c: new FakeAgent('id-c', '3', [], [brick('c0', 300)]),
  };
  const topology = parseTopology(
    JSON.stringify({
      clusters: [
        {
          nodes: Object.keys(agents).map((name, i) => ({
            node: { hostnames: { manage: [`/run/${name}.sock`], storage: [`10.0.0.${i + 1}`] }, zone: i + 1, name },
            devices: devices[name] ?? [],
          })),
        },
      ],
    }),
  );
  const options = (extra: Partial<ProvisionOptions> = {}): ProvisionOptions => ({
    topology,
    volumeId: 'v',
    sizeBytes: 100 * MiB,
    replicas: 3,
    timeoutMs: 1000,
    connect: (node: TopologyNode) => agents[node.name]!.api(),
    ...extra,
  });
  return { agents, options };
}

const creates = (agent: FakeAgent) => agent.calls.filter((c) => c.method === 'createVolume').map((c) => c.request);

t.test('a new volume: one CreateVolume per node, the primary first, peers and quorum', async (t) => {
  const { agents, options } = cluster();
  const order: string[] = [];
  for (const [name, agent] of Object.entries(agents)) {
    const api = agent.api();
    const mutate = api.mutate;
    agent.api = () => ({ ...api, mutate: ((m: string, r: any, w?: string) => (m === 'createVolume' && order.push(name), (mutate as any)(m, r, w))) as NodeApi['mutate'] });
  }
  const { report } = await provision(options());
  t.same(order, ['a', 'b', 'c'], 'the roomiest zone first; it holds the primary');
  t.match(creates(agents.a!)[0], { volumeId: 'v', sizeLimitBytes: 100 * MiB, brickId: 'a0', generation: 1, role: 'primary', writeQuorum: 2 });
  t.match(creates(agents.b!)[0], { role: 'replica', generation: 1, brickId: 'b0' });
  t.same(creates(agents.c!)[0]!.peers, [
    { nodeId: 'id-a', address: '10.0.0.1:7400' },
    { nodeId: 'id-b', address: '10.0.0.2:7400' },
  ]);
  t.ok(creates(agents.a!)[0]!.requestId === undefined || creates(agents.a!)[0]!.requestId === '', 'request ids are the client\'s business');
  t.equal(report.changed, true);
  t.same(report.placement.map((p) => [p.node, p.role, p.action]), [['a', 'primary', 'created'], ['b', 'replica', 'created'], ['c', 'replica', 'created']]);
});

t.test('devices: mounted bricks are skipped, destroydata is force, but never on a brick of the node itself', async (t) => {
  const { agents, options } = cluster({ a: ['/dev/sdb', { name: '/dev/sdc', destroydata: true }, { name: '/dev/sdd', destroydata: true }], b: [{ name: '/dev/disk/by-id/x', destroydata: true }] });
  agents.a!.devices = [
    { path: '/dev/sdb', name: 'sdb', brickId: 'a0' },
    { path: '/dev/sdc', name: 'sdc', brickId: 'a-unmounted' },
    { path: '/dev/sdd', name: 'sdd', brickId: 'someone-elses' },
  ];
  agents.a!.bricks.push(brick('a-unmounted', 0, { state: 'unmounted', device: '/dev/sdc' }));
  agents.b!.devices = [{ path: '/dev/sdx', name: 'sdx', aliases: ['/dev/disk/by-id/x'], reasons: [{ code: 'HAS_SIGNATURE' }] }];
  const { report } = await provision(options());
  const adoptions = agents.a!.calls.filter((c) => c.method === 'adoptDevice').map((c) => [c.request.device, c.request.force]);
  t.same(adoptions, [
    ['/dev/sdc', false],
    ['/dev/sdd', true],
  ], 'sdb is a mounted brick: skipped; sdc holds our own brick: no force; sdd is foreign: destroydata');
  t.same(agents.b!.calls.filter((c) => c.method === 'adoptDevice').map((c) => [c.request.device, c.request.force]), [['/dev/disk/by-id/x', true]], 'matched through an alias');
  t.same(report.nodes[0]!.devices.map((d) => d.action), ['brick', 'adopted', 'adopted']);
});

t.test('a failed adoption stops the run with the exit code of its reason', async (t) => {
  const { agents, options } = cluster({ b: ['/dev/sdb'] });
  agents.b!.adoptFails = { reason: 'DEVICE_IN_USE', message: '/dev/sdb became busy' };
  await t.rejects(provision(options()), { name: 'CliError', exitCode: EXIT.REFUSED, reason: 'DEVICE_IN_USE', message: 'node b: AdoptDevice /dev/sdb: /dev/sdb became busy' });
  t.same(creates(agents.a!), [], 'nothing created');
});

t.test('dry run: no mutating call at all', async (t) => {
  const { agents, options } = cluster({ c: ['/dev/sdb'] });
  agents.c!.devices = [{ path: '/dev/sdb', name: 'sdb', sizeBytes: 2000 * MiB }];
  const { report } = await provision(options({ dryRun: true, mountPath: '/mnt/v' }));
  for (const agent of Object.values(agents)) t.same(agent.calls, []);
  t.equal(report.placement.find((p) => p.node === 'c')!.brickId, '(new brick on /dev/sdb)', 'the device to adopt counts');
  t.same(report.mount, { node: 'c', path: '/mnt/v', state: 'would-mount' }, 'c is now the roomiest: primary');
});

t.test('a rerun completes a half-made volume from the replica set recorded in it', async (t) => {
  const { agents, options } = cluster();
  agents.a!.volumes = [{ volumeId: 'v', brickId: 'a0', sizeLimitBytes: 100 * MiB, generation: 3, role: 'primary', peers: [{ nodeId: 'id-c', address: '10.0.0.3:7400' }, { nodeId: 'id-b', address: '10.0.0.2:7400' }] }];
  const { report } = await provision(options());
  t.same(creates(agents.a!), [], 'the existing replica is left alone');
  t.match(creates(agents.b!)[0], { role: 'replica', generation: 3, peers: [{ nodeId: 'id-a' }, { nodeId: 'id-c' }] });
  t.match(creates(agents.c!)[0], { role: 'replica', generation: 3 });
  t.same(report.placement.map((p) => p.action), ['exists', 'created', 'created']);

  const again = await provision(options());
  t.equal(again.report.changed, false, 'then nothing is left to do');
  t.same(again.report.placement.map((p) => p.action), ['exists', 'exists', 'exists']);
});

t.test('existing volumes that do not match are refused', async (t) => {
  const existing = (peers: string[], extra: Partial<pb.IVolume> = {}): pb.IVolume => ({ volumeId: 'v', brickId: 'x', sizeLimitBytes: 100 * MiB, generation: 1, role: 'replica', peers: peers.map((nodeId) => ({ nodeId, address: 'h:1' })), ...extra });
  const cases: Array<[string, (a: Record<string, FakeAgent>) => void, Partial<ProvisionOptions>, RegExp]> = [
    ['size', (a) => (a.a!.volumes = [existing(['id-b', 'id-c'], { sizeLimitBytes: 5 })]), {}, /volume v: VOLUME_EXISTS: exists on a with a size limit of 5 bytes, not 104857600/],
    ['replica count', (a) => (a.a!.volumes = [existing(['id-b'])]), {}, /exists with 2 replicas \(on a, b\), not 3/],
    ['disagreement', (a) => ((a.a!.volumes = [existing(['id-b', 'id-c'])]), (a.b!.volumes = [existing(['id-a', 'id-x'])])), {}, /its replicas disagree on the replica set: a has \[id-a, id-b, id-c\], b has \[id-a, id-b, id-x\]/],
    ['unknown member', (a) => (a.a!.volumes = [existing(['id-b', 'id-zz'])]), {}, /has replica set members that are not in the topology: id-zz/],
    ['primary elsewhere', (a) => (a.a!.volumes = [existing(['id-b', 'id-c'], { role: 'primary' })]), { mountOn: 'b', mountPath: '/m' }, /PRIMARY_ELSEWHERE: exists with its primary on a, not b/],
  ];
  for (const [name, setup, extra, message] of cases) {
    const { agents, options } = cluster();
    setup(agents);
    await t.rejects(provision(options(extra)), { name: 'CliError', exitCode: EXIT.REFUSED, message }, name);
    t.same(Object.values(agents).flatMap(creates), [], `${name}: nothing created`);
  }
});

t.test('unreachable nodes: left out of a new placement, fatal when they hold part of the volume', async (t) => {
  {
    const { agents, options } = cluster();
    agents.a!.unreachable = true;
    const { report } = await provision(options({ replicas: 2 }));
    t.same(report.placement.map((p) => p.node), ['b', 'c']);
    t.match(report.warnings[0], /node a \(unix:\/\/\/run\/a.sock\) is unreachable and left out/);
    await t.rejects(provision(options({ replicas: 3, volumeId: 'w' })), { exitCode: EXIT.REFUSED, reason: 'NOT_ENOUGH_NODES', message: /there are 2 \(b, c\) \(unreachable, left out: a\)/ });
  }
  {
    const { agents, options } = cluster();
    agents.b!.volumes = [{ volumeId: 'v', brickId: 'b0', sizeLimitBytes: 100 * MiB, generation: 1, role: 'replica', peers: [{ nodeId: 'id-a', address: 'h:1' }, { nodeId: 'id-c', address: 'h:2' }] }];
    agents.a!.unreachable = true;
    await t.rejects(provision(options()), { exitCode: EXIT.UNREACHABLE, message: /replica set members \(id-a\) that did not answer; unreachable: a/ });
  }
  {
    const { agents, options } = cluster();
    agents.b!.unreachable = true;
    await t.rejects(provision(options({ mountOn: 'b', mountPath: '/m' })), { exitCode: EXIT.UNREACHABLE, message: /--mount-on b: id-b: agent unreachable/ });
  }
});

t.test('the same agent listed twice is a topology error', async (t) => {
  const { agents, options } = cluster();
  (agents.c as { nodeId: string }).nodeId = 'id-a';
  await t.rejects(provision(options()), { exitCode: EXIT.USAGE, reason: 'TOPOLOGY_INVALID', message: /clusters\[0\].nodes\[0\] \(a\) and clusters\[0\].nodes\[2\] \(c\) are the same agent \(node id id-a\)/ });
});

t.test('--mount-on: primary there, mount asked of it; ambiguous and unknown names are usage errors', async (t) => {
  const { agents, options } = cluster();
  const outcome = await provision(options({ mountOn: 'c', mountPath: '/mnt/v' }));
  t.equal(outcome.report.placement[0]!.node, 'c');
  t.match(creates(agents.c!)[0], { role: 'primary' });
  t.same(agents.c!.calls.filter((c) => c.method === 'mountVolume').map((c) => c.request), [{ volumeId: 'v', hostPath: '/mnt/v' }]);
  t.match(outcome.mountError, { exitCode: EXIT.UNIMPLEMENTED, reason: 'NOT_IMPLEMENTED' });
  t.match(outcome.report.mount, { node: 'c', state: 'failed', reason: 'NOT_IMPLEMENTED' });
  t.equal((await provision(options({ volumeId: 'w', mountOn: 'id-b', mountPath: '/m', dryRun: true }))).report.placement[0]!.node, 'b', 'by node id');
  t.equal((await provision(options({ volumeId: 'w', mountOn: '10.0.0.1', mountPath: '/m', dryRun: true }))).report.placement[0]!.node, 'a', 'by storage address');
  await t.rejects(provision(options({ mountOn: 'zz', mountPath: '/m' })), { exitCode: EXIT.USAGE, message: /--mount-on zz: no such node in the cluster \(nodes: a, b, c\)/ });
  await t.rejects(provision(options({ mountPath: 'relative' })), { exitCode: EXIT.USAGE, message: /--path must be an absolute host path/ });

  const shared = cluster();
  for (const n of shared.options().topology.clusters[0]!.nodes) n.storage = ['127.0.0.1'];
  await t.rejects(provision(shared.options({ mountOn: '127.0.0.1', mountPath: '/m' })), { exitCode: EXIT.USAGE, message: /--mount-on 127.0.0.1: ambiguous, it names a, b, c; use a node name/ });
});

t.test('a CreateVolume that fails halfway says what exists and that a rerun finishes', async (t) => {
  const { agents, options } = cluster();
  agents.b!.failCreate = new CliError(EXIT.REFUSED, 'NO_BRICK', 'node b: CreateVolume v: NO_BRICK: no mounted brick');
  await t.rejects(provision(options()), { exitCode: EXIT.REFUSED, reason: 'NO_BRICK', message: 'node b: CreateVolume v: NO_BRICK: no mounted brick (replicas exist on a; rerun provision to finish, it is idempotent)' });
  agents.b!.failCreate = undefined;
  const { report } = await provision(options());
  t.same(report.placement.map((p) => [p.node, p.action]), [['a', 'exists'], ['b', 'created'], ['c', 'created']]);
});
