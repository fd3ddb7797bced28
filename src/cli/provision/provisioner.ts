// The reference provisioner behind `brickctl provision`: from a topology file to a volume
// with N replicas on N nodes, driving each node's agent through its control socket.
//
// How it works (each step only reads until step 5):
//   1. GetNodeInfo on every node of the cluster: its node id, and its zone (the file is
//      authoritative for placement; a differing agent zone is a warning). An unreachable
//      node is left out with a warning; the same agent listed twice is an error.
//   2. ListVolumes everywhere: if replicas of the volume exist, the replica set recorded in
//      them (each replica's node plus its peers) is the plan, and only its missing members
//      are created. This makes a rerun idempotent, also after a run that stopped halfway.
//   3. AdoptDevice for every listed device that is not already a mounted brick of that node
//      (waiting for each operation; `destroydata: true` adopts with force).
//   4. ListBricks + ListVolumes for capacity, then placement.ts picks the nodes and bricks.
//   5. CreateVolume on each chosen node, the primary first: same volume id, generation 1,
//      role primary on the mount node (or the first placed) and replica elsewhere, peers =
//      the other replicas at their topology replication addresses, write quorum a majority.
//   6. MountVolume on the primary when asked.
// A dry run stops after step 4 and reports what it would do.
//
// Free space of a brick for a new replica: its size minus the larger of what is used on it
// and the size limits of the replicas it already holds (size limits count as reserved).
import { CliError, EXIT, exitCodeOfReason } from '../exit.js';
import { AgentClient } from '../rpc.js';
import type { pb } from '../../wire/control.js';
import { placeReplicas, type PlacementNode, type SpreadZones } from './placement.js';
import { selectCluster, type Topology, type TopologyDevice, type TopologyNode } from './topology.js';

/** What the provisioner needs of a node's agent (AgentClient; a fake in tests). */
export type NodeApi = Pick<AgentClient, 'call' | 'mutate' | 'watchOperation' | 'close'>;

export interface ProvisionOptions {
  topology: Topology;
  /** Cluster name or index; required when the file has several. */
  cluster?: string;
  volumeId: string;
  sizeBytes: number;
  replicas: number;
  spreadZones?: SpreadZones;
  /** Node (name, control endpoint, storage host or node id) that holds the primary and mounts the volume. */
  mountOn?: string;
  /** Host path to mount the volume at (on mountOn, else on the primary). */
  mountPath?: string;
  dryRun?: boolean;
  /** Deadline of each control call. */
  timeoutMs: number;
  /** One line per step, for people (stderr). */
  log?: (line: string) => void;
  /** Progress of each device adoption. */
  onOperation?: (node: string, op: pb.Operation) => void;
  /** Operation finished (to end a progress display). */
  onOperationDone?: () => void;
  connect?: (node: TopologyNode, timeoutMs: number) => NodeApi;
}

export type DeviceAction = 'adopted' | 'brick' | 'would-adopt' | 'not-adoptable';
export type ReplicaAction = 'created' | 'exists' | 'would-create';

export interface ProvisionReport {
  volumeId: string;
  cluster: string;
  sizeBytes: number;
  replicas: number;
  writeQuorum: number;
  spreadZones: SpreadZones;
  dryRun: boolean;
  /** True when this run created or adopted anything. */
  changed: boolean;
  nodes: Array<{
    name: string;
    endpoint: string;
    zone: string;
    reachable: boolean;
    nodeId?: string;
    agentZone?: string;
    error?: string;
    devices: Array<{ device: string; action: DeviceAction; brickId?: string; reason?: string }>;
  }>;
  placement: Array<{ node: string; nodeId: string; zone: string; brickId: string; role: 'primary' | 'replica'; address: string; generation: number; action: ReplicaAction }>;
  mount?: { node: string; path: string; state: 'mounted' | 'would-mount' | 'failed'; mountPath?: string; reason?: string; message?: string };
  warnings: string[];
}

interface NodeState {
  topo: TopologyNode;
  api: NodeApi;
  reachable: boolean;
  error?: CliError;
  info?: pb.NodeInfo;
  devices: pb.IDevice[];
  bricks: pb.IBrick[];
  volumes: pb.IVolume[];
  report: ProvisionReport['nodes'][number];
}

/** The result: the report, and the error of the mount step if it failed (the volume exists then). */
export interface ProvisionOutcome {
  report: ProvisionReport;
  mountError?: CliError;
}

/** A refusal (exit 4), worded as the agent's errors are: "<what>: <REASON>: <why>". */
const refused = (reason: string, context: string, why: string) => new CliError(EXIT.REFUSED, reason, `${context}: ${reason}: ${why}`);

function deviceMatches(device: pb.IDevice, wanted: string): boolean {
  return device.path === wanted || `/dev/${device.name}` === wanted || (device.aliases ?? []).includes(wanted);
}

/** Bytes a new replica may use on each mounted brick of a node. */
function brickCapacity(bricks: readonly pb.IBrick[], volumes: readonly pb.IVolume[]): Array<{ brickId: string; freeBytes: number }> {
  return bricks
    .filter((b) => b.state === 'mounted')
    .map((b) => {
      const size = Number(b.sizeBytes ?? 0);
      const reserved = volumes.filter((v) => v.brickId === b.brickId).reduce((sum, v) => sum + Number(v.sizeLimitBytes ?? 0), 0);
      return { brickId: b.brickId ?? '', freeBytes: Math.max(0, size - Math.max(Number(b.usedBytes ?? 0), reserved)) };
    });
}

export function writeQuorumOf(replicas: number): number {
  return Math.floor(replicas / 2) + 1;
}

export async function provision(options: ProvisionOptions): Promise<ProvisionOutcome> {
  const log = options.log ?? (() => {});
  const cluster = selectCluster(options.topology, options.cluster);
  const connect = options.connect ?? ((node, timeoutMs) => new AgentClient(node.manage, { timeoutMs, label: `node ${node.name}` }));
  const report: ProvisionReport = {
    volumeId: options.volumeId,
    cluster: cluster.name,
    sizeBytes: options.sizeBytes,
    replicas: options.replicas,
    writeQuorum: writeQuorumOf(options.replicas),
    spreadZones: options.spreadZones ?? 'prefer',
    dryRun: Boolean(options.dryRun),
    changed: false,
    nodes: [],
    placement: [],
    warnings: [],
  };
  const warn = (text: string) => {
    report.warnings.push(text);
    log(`warning: ${text}`);
  };
  if (options.mountPath !== undefined && !options.mountPath.startsWith('/')) throw new CliError(EXIT.USAGE, 'USAGE', `--path must be an absolute host path, got ${JSON.stringify(options.mountPath)}`);

  const nodes: NodeState[] = cluster.nodes.map((topo) => {
    const nodeReport = { name: topo.name, endpoint: topo.manage, zone: topo.zone, reachable: false, devices: [] };
    report.nodes.push(nodeReport);
    return { topo, api: connect(topo, options.timeoutMs), reachable: false, devices: [], bricks: [], volumes: [], report: nodeReport };
  });
  try {
    // 1. Who answers, and who they are.
    await Promise.all(
      nodes.map(async (n) => {
        try {
          n.info = await n.api.call('getNodeInfo', {});
          n.reachable = true;
          n.report.reachable = true;
          n.report.nodeId = n.info.nodeId;
          n.report.agentZone = n.info.zone;
        } catch (err) {
          if (!(err instanceof CliError) || err.exitCode !== EXIT.UNREACHABLE) throw err;
          n.error = err;
          n.report.error = err.message;
        }
      }),
    );
    for (const n of nodes) {
      if (!n.reachable) warn(`node ${n.topo.name} (${n.topo.manage}) is unreachable and left out: ${n.error?.message}`);
      else if (n.info!.zone !== n.topo.zone) warn(`node ${n.topo.name}: the agent reports zone ${JSON.stringify(n.info!.zone)}, the topology says ${JSON.stringify(n.topo.zone)}; placing by the topology`);
    }
    const reachable = nodes.filter((n) => n.reachable);
    const byId = new Map<string, NodeState>();
    for (const n of reachable) {
      const other = byId.get(n.info!.nodeId);
      if (other) throw new CliError(EXIT.USAGE, 'TOPOLOGY_INVALID', `${other.topo.where} (${other.topo.name}) and ${n.topo.where} (${n.topo.name}) are the same agent (node id ${n.info!.nodeId}); list each node once`);
      byId.set(n.info!.nodeId, n);
    }
    const mountNode = options.mountOn === undefined ? undefined : findNode(nodes, options.mountOn);
    if (mountNode && !mountNode.reachable) throw new CliError(EXIT.UNREACHABLE, 'UNAVAILABLE', `--mount-on ${options.mountOn}: ${mountNode.error?.message}`);

    // 2 and 3. What exists, and the devices.
    await refresh(reachable, { devices: true });
    for (const n of reachable) await adoptDevices(n, options, report, log);
    await refresh(reachable, { devices: false });

    // 4. The plan: the recorded replica set, else a new placement.
    const holders = reachable.flatMap((n) => n.volumes.filter((v) => v.volumeId === options.volumeId).map((volume) => ({ node: n, volume })));
    if (holders.length > 0) planFromExisting(holders, nodes, byId, mountNode, options, report, warn);
    else planNew(reachable, nodes, mountNode, options, report, warn);

    if (options.dryRun) {
      if (options.mountPath !== undefined || mountNode) {
        const primary = report.placement.find((p) => p.role === 'primary')!;
        report.mount = { node: primary.node, path: options.mountPath ?? '', state: 'would-mount' };
      }
      return { report };
    }

    // 5. Create what is missing, the primary first.
    const ordered = [...report.placement].sort((a, b) => (a.role === 'primary' ? -1 : b.role === 'primary' ? 1 : 0));
    for (const p of ordered) {
      if (p.action !== 'would-create') continue;
      const n = byId.get(p.nodeId)!;
      const peers = report.placement.filter((q) => q !== p).map((q) => ({ nodeId: q.nodeId, address: q.address }));
      try {
        await n.api.mutate(
          'createVolume',
          { volumeId: options.volumeId, sizeLimitBytes: options.sizeBytes, brickId: p.brickId, generation: p.generation, role: p.role, peers, writeQuorum: report.writeQuorum },
          options.volumeId,
        );
      } catch (err) {
        const done = report.placement.filter((q) => q.action !== 'would-create').map((q) => q.node);
        const e = err as CliError;
        throw new CliError(e.exitCode, e.reason, `${e.message}${done.length ? ` (replicas exist on ${done.join(', ')}; rerun provision to finish, it is idempotent)` : ''}`, e.status);
      }
      p.action = 'created';
      report.changed = true;
      log(`node ${p.node}: created ${options.volumeId} (${p.role}) on brick ${p.brickId}`);
    }

    // 6. Mount.
    if (options.mountPath !== undefined) {
      const primary = report.placement.find((p) => p.role === 'primary');
      if (!primary) throw refused('NO_PRIMARY', `volume ${options.volumeId}`, 'no replica is the primary, so none can mount it');
      const n = byId.get(primary.nodeId)!;
      try {
        const res = await n.api.mutate('mountVolume', { volumeId: options.volumeId, hostPath: options.mountPath }, options.volumeId);
        report.mount = { node: primary.node, path: options.mountPath, state: 'mounted', mountPath: res.mountPath };
        log(`node ${primary.node}: mounted ${options.volumeId} at ${res.mountPath || options.mountPath}`);
      } catch (err) {
        const e = err as CliError;
        report.mount = { node: primary.node, path: options.mountPath, state: 'failed', reason: e.reason, message: e.message };
        return { report, mountError: e };
      }
    }
    return { report };
  } finally {
    for (const n of nodes) n.api.close();
  }
}

/** A node by topology name, control endpoint, node id (if it answered) or storage address; ambiguity is an error. */
function findNode(nodes: readonly NodeState[], which: string): NodeState {
  const tests: Array<(n: NodeState) => boolean> = [
    (n) => n.topo.name === which,
    (n) => n.topo.manage === which || n.topo.manage === `unix://${which}`,
    (n) => n.info?.nodeId === which,
    (n) => n.topo.storage.includes(which),
  ];
  for (const test of tests) {
    const matches = nodes.filter(test);
    if (matches.length > 1) throw new CliError(EXIT.USAGE, 'USAGE', `--mount-on ${which}: ambiguous, it names ${matches.map((n) => n.topo.name).join(', ')}; use a node name`);
    if (matches.length === 1) return matches[0]!;
  }
  throw new CliError(EXIT.USAGE, 'USAGE', `--mount-on ${which}: no such node in the cluster (nodes: ${nodes.map((n) => n.topo.name).join(', ')})`);
}

async function refresh(nodes: readonly NodeState[], what: { devices: boolean }): Promise<void> {
  await Promise.all(
    nodes.map(async (n) => {
      const [bricks, volumes, devices] = await Promise.all([
        n.api.call('listBricks', {}),
        n.api.call('listVolumes', {}),
        what.devices ? n.api.call('listDevices', {}) : Promise.resolve(undefined),
      ]);
      n.bricks = bricks.bricks;
      n.volumes = volumes.volumes;
      if (devices) n.devices = devices.devices;
    }),
  );
}

async function adoptDevices(n: NodeState, options: ProvisionOptions, report: ProvisionReport, log: (line: string) => void): Promise<void> {
  for (const wanted of n.topo.devices) {
    const device = n.devices.find((d) => deviceMatches(d, wanted.name));
    const ownBrick = device?.brickId ? n.bricks.find((b) => b.brickId === device.brickId) : undefined;
    if (ownBrick?.state === 'mounted') {
      n.report.devices.push({ device: wanted.name, action: 'brick', brickId: ownBrick.brickId ?? '' });
      continue;
    }
    // destroydata never applies to a brick of this very node (unmounted, missing, in error):
    // adopting it without force lets the agent bring it up, or refuse, but never reformat it.
    const force = wanted.destroyData && !ownBrick;
    if (options.dryRun) {
      n.report.devices.push(dryRunAdoption(wanted, device, Boolean(ownBrick)));
      continue;
    }
    log(`node ${n.topo.name}: adopting ${wanted.name}${force ? ' (destroydata: erasing signatures)' : ownBrick ? ` (its brick ${ownBrick.brickId} is ${ownBrick.state})` : ''}`);
    const started = await n.api.mutate('adoptDevice', { device: wanted.name, force, tags: wanted.tags }, wanted.name);
    let final = started;
    try {
      options.onOperation?.(n.topo.name, started);
      if (started.state === 'running') final = await n.api.watchOperation(started.operationId, (op) => options.onOperation?.(n.topo.name, op));
    } finally {
      options.onOperationDone?.();
    }
    if (final.state !== 'succeeded') {
      const reason = final.errorReason || 'INTERNAL';
      throw new CliError(exitCodeOfReason(reason), reason, `node ${n.topo.name}: AdoptDevice ${wanted.name}: ${final.errorMessage || 'the operation failed'}`);
    }
    n.report.devices.push({ device: wanted.name, action: 'adopted', brickId: final.brick?.brickId ?? '' });
    report.changed = true;
  }
}

/** What adopting would do, judged from ListDevices (nothing is changed in a dry run). */
function dryRunAdoption(wanted: TopologyDevice, device: pb.IDevice | undefined, ownBrick: boolean): ProvisionReport['nodes'][number]['devices'][number] {
  if (!device) return { device: wanted.name, action: 'not-adoptable', reason: 'DEVICE_NOT_FOUND: the agent lists no such device' };
  const force = wanted.destroyData && !ownBrick;
  const blocking = (device.reasons ?? []).filter((r) => !(force && (r.code === 'HAS_SIGNATURE' || r.code === 'IS_BRICK')) && !(ownBrick && r.code === 'IS_BRICK'));
  if (blocking.length > 0) return { device: wanted.name, action: 'not-adoptable', reason: blocking.map((r) => `${r.code}: ${r.message}`).join('; ') };
  return { device: wanted.name, action: 'would-adopt' };
}

function planNew(reachable: NodeState[], all: NodeState[], mountNode: NodeState | undefined, options: ProvisionOptions, report: ProvisionReport, warn: (t: string) => void): void {
  const placementNodes: PlacementNode[] = reachable.map((n) => {
    const bricks = brickCapacity(n.bricks, n.volumes);
    if (options.dryRun) {
      // Devices this run would adopt count with their raw size (an estimate: the filesystem takes a little).
      for (const d of n.report.devices.filter((d) => d.action === 'would-adopt')) {
        const device = n.devices.find((x) => deviceMatches(x, d.device));
        bricks.push({ brickId: `(new brick on ${d.device})`, freeBytes: Number(device?.sizeBytes ?? 0) });
      }
    }
    return { name: n.topo.name, zone: n.topo.zone, bricks };
  });
  const result = placeReplicas({
    replicas: options.replicas,
    sizeBytes: options.sizeBytes,
    nodes: placementNodes,
    spreadZones: options.spreadZones ?? 'prefer',
    ...(mountNode ? { first: mountNode.topo.name } : {}),
  });
  if (!result.ok) {
    const down = all.filter((n) => !n.reachable).map((n) => n.topo.name);
    throw refused(result.code, `cannot place ${options.volumeId}`, `${result.message}${down.length ? ` (unreachable, left out: ${down.join(', ')})` : ''}`);
  }
  for (const w of result.warnings) warn(w);
  result.replicas.forEach((r, i) => {
    const n = reachable.find((x) => x.topo.name === r.node)!;
    report.placement.push({
      node: r.node,
      nodeId: n.info!.nodeId,
      zone: r.zone,
      brickId: r.brickId,
      role: i === 0 ? 'primary' : 'replica',
      address: n.topo.replication,
      generation: 1,
      action: 'would-create',
    });
  });
}

/** The replica set recorded in the existing replicas; only its missing members are to be created. */
function planFromExisting(
  holders: Array<{ node: NodeState; volume: pb.IVolume }>,
  all: NodeState[],
  byId: Map<string, NodeState>,
  mountNode: NodeState | undefined,
  options: ProvisionOptions,
  report: ProvisionReport,
  warn: (t: string) => void,
): void {
  const id = options.volumeId;
  for (const h of holders) {
    if (Number(h.volume.sizeLimitBytes) !== options.sizeBytes) {
      throw refused('VOLUME_EXISTS', `volume ${id}`, `exists on ${h.node.topo.name} with a size limit of ${Number(h.volume.sizeLimitBytes)} bytes, not ${options.sizeBytes}`);
    }
  }
  const setOf = (h: (typeof holders)[number]) => [h.node.info!.nodeId, ...(h.volume.peers ?? []).map((p) => p.nodeId ?? '')].sort();
  const members = setOf(holders[0]!);
  for (const h of holders.slice(1)) {
    if (setOf(h).join(',') !== members.join(',')) {
      throw refused('VOLUME_EXISTS', `volume ${id}`, `its replicas disagree on the replica set: ${holders[0]!.node.topo.name} has [${members.join(', ')}], ${h.node.topo.name} has [${setOf(h).join(', ')}]`);
    }
  }
  if (members.length !== options.replicas) {
    throw refused('VOLUME_EXISTS', `volume ${id}`, `exists with ${members.length} replicas (on ${members.map((m) => byId.get(m)?.topo.name ?? m).join(', ')}), not ${options.replicas}; provision does not change the replica count`);
  }
  const missing = members.filter((m) => !byId.has(m));
  if (missing.length > 0) {
    const down = all.filter((n) => !n.reachable);
    if (down.length > 0) throw new CliError(EXIT.UNREACHABLE, 'UNAVAILABLE', `volume ${id} has replica set members (${missing.join(', ')}) that did not answer; unreachable: ${down.map((n) => n.topo.name).join(', ')}`);
    throw refused('VOLUME_EXISTS', `volume ${id}`, `has replica set members that are not in the topology: ${missing.join(', ')}`);
  }
  const primaryHolder = holders.find((h) => h.volume.role === 'primary');
  if (mountNode && primaryHolder && primaryHolder.node !== mountNode) {
    throw refused('PRIMARY_ELSEWHERE', `volume ${id}`, `exists with its primary on ${primaryHolder.node.topo.name}, not ${mountNode.topo.name}; moving the primary needs a new generation (brickctl volume update)`);
  }
  if (mountNode && !members.includes(mountNode.info!.nodeId)) {
    throw refused('PRIMARY_ELSEWHERE', `volume ${id}`, `has no replica on ${mountNode.topo.name}`);
  }
  const generation = Math.max(...holders.map((h) => Number(h.volume.generation)));
  for (const nodeId of members) {
    const n = byId.get(nodeId)!;
    const held = holders.find((h) => h.node === n);
    if (held) {
      report.placement.push({
        node: n.topo.name,
        nodeId,
        zone: n.topo.zone,
        brickId: held.volume.brickId ?? '',
        role: held.volume.role === 'primary' ? 'primary' : 'replica',
        address: n.topo.replication,
        generation: Number(held.volume.generation),
        action: 'exists',
      });
      continue;
    }
    const result = placeReplicas({ replicas: 1, sizeBytes: options.sizeBytes, nodes: [{ name: n.topo.name, zone: n.topo.zone, bricks: brickCapacity(n.bricks, n.volumes) }] });
    if (!result.ok) throw refused(result.code, `cannot complete ${id} on ${n.topo.name}`, result.message);
    const role = !primaryHolder && mountNode === n ? 'primary' : 'replica';
    report.placement.push({ node: n.topo.name, nodeId, zone: n.topo.zone, brickId: result.replicas[0]!.brickId, role, address: n.topo.replication, generation, action: 'would-create' });
  }
  // Report order: the primary, then the topology's order.
  const order = (p: ProvisionReport['placement'][number]) => (p.role === 'primary' ? -1 : all.findIndex((n) => n.topo.name === p.node));
  report.placement.sort((x, y) => order(x) - order(y));
  if (!report.placement.some((p) => p.role === 'primary')) warn(`volume ${id} has no primary replica; choose one with brickctl volume update --role primary --generation N`);
}
