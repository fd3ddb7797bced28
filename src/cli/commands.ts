// Every brickctl command: its words, arguments, options, and what it does with the agent's
// answer. Each command prints one thing on stdout: a table or key/value block for people, or
// with --json one JSON document (the API message in proto3 JSON field names, every field
// present); progress and step lines go to stderr. A command returns its exit code or throws
// a CliError (exit.ts); brickctl.ts prints the error.
import { loadTopology, TopologyError } from './provision/topology.js';
import { provision, type ProvisionReport } from './provision/provisioner.js';
import { SPREAD_ZONES, type SpreadZones } from './provision/placement.js';
import type { CommandSpec, OptionValues } from './args.js';
import { CliError, EXIT, exitCodeOfReason, usageError } from './exit.js';
import { formatBytes, formatPercent, keyValues, parseSize, ProgressDisplay, table, type Cell } from './format.js';
import { plain, type AgentClient } from './rpc.js';
import { pb } from '../wire/control.js';

export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface Context {
  socket: string;
  json: boolean;
  /** Deadline of each call. */
  timeoutMs: number;
  /** Bound of a whole --wait / op watch; 0 = as long as it takes. */
  waitTimeoutMs: number;
  stdout: Output;
  stderr: Output;
  /** The client of --socket (made on first use, closed by brickctl.ts). */
  client(): AgentClient;
  /** Handle Ctrl-C (SIGINT/SIGTERM) instead of exiting with 130. */
  onInterrupt(handler: () => void): void;
}

type Command = CommandSpec<Context>;

// ---- small helpers -------------------------------------------------------------------

function print(ctx: Context, human: string, json: unknown): void {
  if (ctx.json) ctx.stdout.write(JSON.stringify(json, null, 2) + '\n');
  else if (human) ctx.stdout.write(human + '\n');
}

function str(values: OptionValues, name: string): string | undefined {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
}

function list(values: OptionValues, name: string): string[] {
  const v = values[name];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

function size(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined;
  try {
    const bytes = parseSize(text, option);
    if (bytes <= 0) throw new RangeError(`${option}: must be more than zero`);
    return bytes;
  } catch (err) {
    throw usageError((err as Error).message);
  }
}

/** A rate in bytes per second: "50MiB", "50MiB/s", or 0 / "unlimited" for none. */
function rate(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined;
  if (text === 'unlimited') return 0;
  try {
    return parseSize(text.replace(/\/s$/, ''), option);
  } catch (err) {
    throw usageError(`${(err as Error).message} (bytes per second, e.g. 50MiB/s, or 0 or unlimited)`);
  }
}

function integer(text: string | undefined, option: string, min = 0): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text)) || Number(text) < min) throw usageError(`${option}: expected a whole number ≥ ${min}, got ${JSON.stringify(text)}`);
  return Number(text);
}

function oneOf<T extends string>(text: string | undefined, option: string, values: readonly T[]): T | undefined {
  if (text === undefined) return undefined;
  if (!values.includes(text as T)) throw usageError(`${option}: expected ${values.join(' or ')}, got ${JSON.stringify(text)}`);
  return text as T;
}

/** --tag k=v → { k: v }. */
function tags(values: OptionValues): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of list(values, 'tag')) {
    const eq = t.indexOf('=');
    if (eq < 1) throw usageError(`--tag: expected key=value, got ${JSON.stringify(t)}`);
    out[t.slice(0, eq)] = t.slice(eq + 1);
  }
  return out;
}

/** --peer nodeId=host:port → Peer. */
function peers(values: OptionValues): pb.IPeer[] {
  return list(values, 'peer').map((p) => {
    const eq = p.indexOf('=');
    const address = p.slice(eq + 1);
    if (eq < 1 || !/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):\d{1,5}$/.test(address)) throw usageError(`--peer: expected nodeId=host:port, got ${JSON.stringify(p)}`);
    return { nodeId: p.slice(0, eq), address };
  });
}

const dash = (s: string | null | undefined) => (s ? s : '-');

// ---- renderers -----------------------------------------------------------------------

function operationText(op: pb.IOperation): string {
  const pairs: Array<[string, Cell]> = [
    ['operation', op.operationId ?? ''],
    ['kind', op.kind ?? ''],
    ['target', op.target ?? ''],
    ['state', op.state ?? ''],
    ['progress', formatPercent(op.progress ?? 0)],
    ['message', op.message ?? ''],
  ];
  if (op.state === 'failed') pairs.push(['error', `${op.errorReason}: ${op.errorMessage}`]);
  if (op.brick?.brickId) pairs.push(['brick', `${op.brick.brickId} (${op.brick.fsType}, ${formatBytes(Number(op.brick.sizeBytes))}, mounted at ${op.brick.mountPath})`]);
  if (op.scrub?.state) pairs.push(['scrub', scrubText(op.scrub)]);
  pairs.push(['started', op.startedAt ?? ''], ['finished', op.finishedAt ?? '']);
  return keyValues(pairs);
}

function scrubText(s: pb.IScrubProgress): string {
  const findings = s.findings ?? [];
  const repaired = findings.filter((f) => f.repaired).length;
  return `${s.state}, ${formatBytes(Number(s.bytesScanned))} of ${formatBytes(Number(s.bytesTotal))} in ${Number(s.filesScanned)} files, ${findings.length} bad blocks (${repaired} repaired)`;
}

function resyncText(r: pb.IResyncStatus): string {
  return `${r.incremental ? 'incremental ' : ''}resync ${r.phase} from seq ${Number(r.s0)}: ${formatBytes(Number(r.bytesCompared))} of ${formatBytes(Number(r.bytesToCompare))} compared, ${formatBytes(Number(r.dataBytesSent))} of data sent`;
}

function resyncRateText(v: pb.IVolume): string {
  const rate = Number(v.resyncRateBytesPerSec ?? 0);
  return rate > 0 ? `${formatBytes(rate)}/s per replica` : 'unthrottled';
}

/** One peer of `volume status`: its link state and position, and why when it is not streaming. */
function peerText(p: pb.IPeerStatus): string {
  const why = p.state !== 'streaming' && p.reason ? ` [${p.reason}]` : '';
  return `${p.nodeId} ${p.state}${why} acked ${Number(p.ackedSeq)} lag ${Number(p.lagSeq)}${p.resync ? ` (${resyncText(p.resync)})` : ''}`;
}

function volumeText(v: pb.IVolume): string {
  return keyValues([
    ['volume', v.volumeId ?? ''],
    ['role', v.role ?? ''],
    ['generation', Number(v.generation)],
    ['size limit', formatBytes(Number(v.sizeLimitBytes))],
    ['brick', v.brickId ?? ''],
    ['write quorum', v.writeQuorum ? Number(v.writeQuorum) : 'majority'],
    ['replication', v.replicationMode || 'sync'],
    ['resync rate', resyncRateText(v)],
    ['peers', (v.peers ?? []).map((p) => `${p.nodeId}=${p.address}`).join(', ')],
    ['block size', v.blockSize ? formatBytes(Number(v.blockSize)) : ''],
    ['uid', v.volumeUid || 'none yet'],
  ]);
}

/** Follow an operation with a progress display on stderr; the final state decides the exit code. */
async function follow(ctx: Context, op: pb.Operation): Promise<pb.Operation> {
  // Under --json a progress display only on a terminal, so that scripts read clean stderr.
  const display = ctx.json && !ctx.stderr.isTTY ? undefined : new ProgressDisplay(ctx.stderr);
  const show = (o: pb.IOperation) => display?.update({ label: `${o.kind} ${o.target}`, state: o.state ?? '', progress: o.progress ?? 0, message: o.message ?? '' });
  show(op);
  try {
    return op.state === 'running' ? await ctx.client().watchOperation(op.operationId, show, ctx.waitTimeoutMs) : op;
  } finally {
    display?.finish();
  }
}

/** Exit code of a finished operation; a failed one also prints its reason on stderr. */
function operationExit(op: pb.IOperation): number {
  if (op.state === 'succeeded') return EXIT.OK;
  if (op.state === 'running') return EXIT.OK;
  const reason = op.errorReason || 'INTERNAL';
  throw new CliError(exitCodeOfReason(reason), reason, `operation ${op.operationId} (${op.kind} ${op.target}) failed: ${op.errorMessage || reason}`);
}

function provisionText(r: ProvisionReport): string {
  const parts: string[] = [];
  const deviceRows = r.nodes.flatMap((n) =>
    n.devices.length === 0 ? [[n.name, n.zone, n.reachable ? dash(n.nodeId) : 'unreachable', '-', '-', '-']] : n.devices.map((d) => [n.name, n.zone, n.reachable ? dash(n.nodeId) : 'unreachable', d.device, d.action, dash(d.brickId ?? d.reason)]),
  );
  parts.push(table(['NODE', 'ZONE', 'NODE-ID', 'DEVICE', 'DEVICE-ACTION', 'BRICK'], deviceRows));
  parts.push('');
  parts.push(table(['NODE', 'ZONE', 'ROLE', 'GEN', 'BRICK', 'REPLICATION', 'ACTION'], r.placement.map((p) => [p.node, p.zone, p.role, p.generation, p.brickId, p.address, p.action])));
  parts.push('');
  const verb = r.dryRun ? 'would provision' : r.changed ? 'provisioned' : 'already provisioned';
  parts.push(`${verb} ${r.volumeId}: ${r.replicas} replicas of ${formatBytes(r.sizeBytes)} in zones ${[...new Set(r.placement.map((p) => p.zone))].sort((x, y) => x.localeCompare(y, 'en', { numeric: true })).join(', ')}, write quorum ${r.writeQuorum}`);
  if (r.mount) parts.push(`mount on ${r.mount.node} at ${r.mount.path}: ${r.mount.state}${r.mount.message ? ` (${r.mount.message})` : ''}`);
  return parts.join('\n');
}

// ---- the commands --------------------------------------------------------------------

const waitOption = { type: 'boolean', help: 'wait for the operation to end, with a progress display on stderr' } as const;

export const COMMANDS: Command[] = [
  {
    words: ['node', 'info'],
    args: [],
    options: {},
    summary: 'Who the agent is: node id, version, zone, capabilities, on-disk format versions.',
    run: async (ctx) => {
      const info = await ctx.client().call('getNodeInfo', {});
      const labels = Object.entries(info.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(', ');
      print(
        ctx,
        keyValues([
          ['node id', info.nodeId],
          ['version', info.version],
          ['zone', info.zone],
          ['labels', labels],
          ['capabilities', info.capabilities.join(', ')],
          ['brick format', info.brickFormatVersion],
          ['replica format', info.replicaFormatVersion],
        ]),
        plain(pb.NodeInfo, info),
      );
      return EXIT.OK;
    },
  },
  {
    words: ['device', 'list'],
    args: [],
    options: {},
    summary: 'Every block device of the node, whether it may be adopted and why not.',
    run: async (ctx) => {
      const res = await ctx.client().call('listDevices', {});
      const rows = res.devices.map((d) => [
        d.path,
        formatBytes(Number(d.sizeBytes)),
        d.eligible ? 'yes' : 'no',
        dash(d.brickId),
        (d.signatures ?? []).map((s) => s.type).join(','),
        (d.reasons ?? []).map((r) => r.code).join(','),
      ]);
      print(ctx, table(['DEVICE', 'SIZE', 'ELIGIBLE', 'BRICK', 'SIGNATURES', 'REASONS'], rows), plain(pb.ListDevicesResponse, res));
      return EXIT.OK;
    },
  },
  {
    words: ['device', 'adopt'],
    args: [{ name: 'device' }],
    options: {
      force: { type: 'boolean', help: 'erase existing signatures (never overrides the allowlist or an in-use device)' },
      fs: { type: 'string', value: 'xfs|ext4', help: 'brick filesystem (default: the agent\'s)' },
      tag: { type: 'string', multiple: true, value: 'KEY=VALUE', help: 'tag kept in the brick manifest' },
      wait: waitOption,
    },
    summary: 'Format a device into a brick and mount it. Starts an operation; --wait follows it to the end.',
    run: async (ctx, [device], values) => {
      const fsType = oneOf(str(values, 'fs'), '--fs', ['xfs', 'ext4'] as const);
      const op = await ctx.client().mutate('adoptDevice', { device: device!, force: Boolean(values.force), fsType: fsType ?? '', tags: tags(values) }, device);
      if (!values.wait) {
        print(ctx, `${operationText(op)}\n\nfollow it with: brickctl op watch ${op.operationId}`, plain(pb.Operation, op));
        return EXIT.OK;
      }
      const final = await follow(ctx, op);
      print(ctx, final.state === 'succeeded' ? `adopted ${device}: brick ${final.brick?.brickId} mounted at ${final.brick?.mountPath}` : operationText(final), plain(pb.Operation, final));
      return operationExit(final);
    },
  },
  {
    words: ['device', 'release'],
    args: [{ name: 'brick|device' }],
    options: {},
    summary: 'Unmount a brick, erase its filesystem signature and forget it. Refused while it holds replicas.',
    run: async (ctx, [brick]) => {
      const res = await ctx.client().mutate('releaseDevice', { brick: brick! }, brick);
      print(ctx, `released brick ${res.brickId}`, plain(pb.ReleaseDeviceResponse, res));
      return EXIT.OK;
    },
  },
  {
    words: ['brick', 'list'],
    args: [],
    options: {},
    summary: 'The bricks of the node with their state, size, use and replicas.',
    run: async (ctx) => {
      const res = await ctx.client().call('listBricks', {});
      const rows = res.bricks.map((b) => [
        b.brickId,
        b.reason ? `${b.state} (${b.reason})` : b.state,
        dash(b.device),
        dash(b.fsType),
        formatBytes(Number(b.sizeBytes)),
        formatBytes(Number(b.usedBytes)),
        (b.volumes ?? []).join(','),
        dash(b.mountPath),
      ]);
      print(ctx, table(['BRICK', 'STATE', 'DEVICE', 'FS', 'SIZE', 'USED', 'VOLUMES', 'MOUNTPOINT'], rows), plain(pb.ListBricksResponse, res));
      return EXIT.OK;
    },
  },
  {
    words: ['volume', 'create'],
    args: [{ name: 'id' }],
    options: {
      size: { type: 'string', value: 'SIZE', required: true, help: 'size limit, e.g. 10GiB' },
      brick: { type: 'string', value: 'ID', help: 'brick to put the replica on (default: the roomiest mounted brick)' },
      generation: { type: 'string', value: 'N', help: 'generation (default 0)' },
      role: { type: 'string', value: 'primary|replica', help: 'role of this replica (default replica)' },
      peer: { type: 'string', multiple: true, value: 'NODE=HOST:PORT', help: 'another replica: node id and replication address' },
      quorum: { type: 'string', value: 'N', help: 'write quorum including this replica (default: a majority)' },
      mode: { type: 'string', value: 'sync|async', help: 'acknowledge on the write quorum (sync, default) or on this replica alone (async)' },
      'resync-rate': { type: 'string', value: 'RATE', help: "resync data per second to each replica, e.g. 50MiB/s; 0 or unlimited: none (default: the agent's)" },
      uid: { type: 'string', value: 'ID', help: "the volume's incarnation, e.g. the PersistentVolume's UID (default: a primary mints one, a replica adopts its primary's)" },
    },
    summary: "Create this node's replica of a volume. Idempotent: the same settings again return it.",
    run: async (ctx, [volumeId], values) => {
      const sizeLimitBytes = size(str(values, 'size'), '--size')!;
      const v = await ctx.client().mutate(
        'createVolume',
        {
          volumeId: volumeId!,
          sizeLimitBytes,
          brickId: str(values, 'brick') ?? '',
          generation: integer(str(values, 'generation'), '--generation') ?? 0,
          role: oneOf(str(values, 'role'), '--role', ['primary', 'replica'] as const) ?? '',
          peers: peers(values),
          writeQuorum: integer(str(values, 'quorum'), '--quorum') ?? 0,
          replicationMode: oneOf(str(values, 'mode'), '--mode', ['sync', 'async'] as const) ?? '',
          resyncRateBytesPerSec: rate(str(values, 'resync-rate'), '--resync-rate') ?? null,
          volumeUid: str(values, 'uid') ?? '',
        },
        volumeId,
      );
      print(ctx, volumeText(v), plain(pb.Volume, v));
      return EXIT.OK;
    },
  },
  {
    words: ['volume', 'update'],
    args: [{ name: 'id' }],
    options: {
      generation: { type: 'string', value: 'N', required: true, help: 'new generation, not lower than the current one' },
      role: { type: 'string', value: 'primary|replica', help: 'new role (default: unchanged)' },
      peer: { type: 'string', multiple: true, value: 'NODE=HOST:PORT', help: 'replace the peers with these' },
      'clear-peers': { type: 'boolean', help: 'set the peers to none' },
      quorum: { type: 'string', value: 'N', help: 'new write quorum (default: unchanged)' },
      mode: { type: 'string', value: 'sync|async', help: 'new replication mode (default: unchanged)' },
      'resync-rate': { type: 'string', value: 'RATE', help: 'new resync throttle, e.g. 50MiB/s, 0 or unlimited; applies to a resync in progress (default: unchanged)' },
    },
    summary: "Change the generation, role, peers, write quorum or resync rate of this node's replica (fencing: the generation never goes down).",
    run: async (ctx, [volumeId], values) => {
      const generation = integer(str(values, 'generation'), '--generation')!;
      const newPeers = peers(values);
      if (values['clear-peers'] && newPeers.length > 0) throw usageError('volume update: --clear-peers and --peer exclude each other');
      const v = await ctx.client().mutate(
        'updateVolume',
        {
          volumeId: volumeId!,
          generation,
          role: oneOf(str(values, 'role'), '--role', ['primary', 'replica'] as const) ?? '',
          peers: newPeers,
          setPeers: newPeers.length > 0 || Boolean(values['clear-peers']),
          writeQuorum: integer(str(values, 'quorum'), '--quorum') ?? 0,
          replicationMode: oneOf(str(values, 'mode'), '--mode', ['sync', 'async'] as const) ?? '',
          resyncRateBytesPerSec: rate(str(values, 'resync-rate'), '--resync-rate') ?? null,
        },
        volumeId,
      );
      print(ctx, volumeText(v), plain(pb.Volume, v));
      return EXIT.OK;
    },
  },
  {
    words: ['volume', 'delete'],
    args: [{ name: 'id' }],
    options: {},
    summary: "Delete this node's replica and its data. Deleting a volume that is gone succeeds.",
    run: async (ctx, [volumeId]) => {
      const res = await ctx.client().mutate('deleteVolume', { volumeId: volumeId! }, volumeId);
      print(ctx, res.deleted ? `deleted volume ${res.volumeId}` : `volume ${res.volumeId}: no replica here, nothing to delete`, plain(pb.DeleteVolumeResponse, res));
      return EXIT.OK;
    },
  },
  {
    words: ['volume', 'list'],
    args: [],
    options: {},
    summary: 'The volume replicas on the node.',
    run: async (ctx) => {
      const res = await ctx.client().call('listVolumes', {});
      const rows = res.volumes.map((v) => [
        v.volumeId,
        v.role,
        Number(v.generation),
        formatBytes(Number(v.sizeLimitBytes)),
        v.brickId,
        v.writeQuorum ? Number(v.writeQuorum) : 'majority',
        (v.peers ?? []).map((p) => `${p.nodeId}=${p.address}`).join(','),
      ]);
      print(ctx, table(['VOLUME', 'ROLE', 'GEN', 'SIZE', 'BRICK', 'QUORUM', 'PEERS'], rows), plain(pb.ListVolumesResponse, res));
      return EXIT.OK;
    },
  },
  {
    words: ['volume', 'status'],
    args: [{ name: 'id' }],
    options: {},
    summary: "Health, sequence numbers, use, checksum errors, peers and scrub of this node's replica.",
    run: async (ctx, [volumeId]) => {
      const s = await ctx.client().call('getVolumeStatus', { volumeId: volumeId! }, volumeId);
      const v = s.volume ?? pb.Volume.create();
      print(
        ctx,
        keyValues([
          ['volume', v.volumeId],
          ['health', s.health],
          ['role', v.role],
          ['generation', Number(v.generation)],
          ['brick', v.brickId],
          ['size limit', formatBytes(Number(v.sizeLimitBytes))],
          ['used', formatBytes(Number(s.usedBytes))],
          ['applied seq', Number(s.appliedSeq)],
          ['durable seq', Number(s.durableSeq)],
          ['durable seq made by generation', s.durableGeneration === null || s.durableGeneration === undefined ? 'unknown' : Number(s.durableGeneration)],
          ['checksum errors', Number(s.checksumErrors)],
          ['repaired blocks', Number(s.repairedBlocks)],
          ['resync rate', resyncRateText(v)],
          ['uid', v.volumeUid || 'none yet'],
          ['peers', s.peers.map(peerText).join('; ')],
          ['mounted at', s.mountPath],
          ['scrub', s.scrub ? scrubText(s.scrub) : ''],
        ]),
        plain(pb.VolumeStatus, s),
      );
      return EXIT.OK;
    },
  },
  {
    words: ['volume', 'mount'],
    args: [{ name: 'id' }, { name: 'hostPath' }],
    options: { 'read-only': { type: 'boolean', help: 'mount read-only' } },
    summary: 'Serve the volume to the host through FUSE at a host path (on the primary).',
    run: async (ctx, [volumeId, hostPath], values) => {
      const res = await ctx.client().mutate('mountVolume', { volumeId: volumeId!, hostPath: hostPath!, readOnly: Boolean(values['read-only']) }, volumeId);
      print(ctx, `mounted ${volumeId} at ${res.mountPath || hostPath}`, plain(pb.MountVolumeResponse, res));
      return EXIT.OK;
    },
  },
  {
    words: ['volume', 'unmount'],
    args: [{ name: 'id' }],
    options: {},
    summary: 'Stop serving the volume to the host.',
    run: async (ctx, [volumeId]) => {
      const res = await ctx.client().mutate('unmountVolume', { volumeId: volumeId! }, volumeId);
      print(ctx, `unmounted ${volumeId}`, plain(pb.UnmountVolumeResponse, res));
      return EXIT.OK;
    },
  },
  {
    words: ['scrub', 'start'],
    args: [{ name: 'volume' }],
    options: {
      rate: { type: 'string', value: 'MB/s', help: 'verification rate in MB/s (10^6 bytes), or a size per second such as 64MiB (default: the agent\'s)' },
      wait: waitOption,
    },
    summary: "Start or resume a scrub of this node's replica: every block verified, bad ones repaired.",
    run: async (ctx, [volumeId], values) => {
      const rateText = str(values, 'rate');
      let rate = 0;
      if (rateText !== undefined) {
        rate = /^\d+(\.\d+)?$/.test(rateText) ? Math.floor(Number(rateText) * 1e6) : size(rateText, '--rate')!;
        if (rate <= 0) throw usageError(`--rate: must be more than zero, got ${JSON.stringify(rateText)}`);
      }
      const op = await ctx.client().mutate('startScrub', { volumeId: volumeId!, rateBytesPerSec: rate }, volumeId);
      if (!values.wait) {
        print(ctx, `${operationText(op)}\n\nfollow it with: brickctl op watch ${op.operationId}`, plain(pb.Operation, op));
        return EXIT.OK;
      }
      const final = await follow(ctx, op);
      print(ctx, operationText(final), plain(pb.Operation, final));
      return operationExit(final);
    },
  },
  {
    words: ['scrub', 'stop'],
    args: [{ name: 'volume' }],
    options: {},
    summary: 'Pause a running scrub; scrub start resumes it where it stopped.',
    run: async (ctx, [volumeId]) => {
      const op = await ctx.client().mutate('stopScrub', { volumeId: volumeId! }, volumeId);
      print(ctx, operationText(op), plain(pb.Operation, op));
      return EXIT.OK;
    },
  },
  {
    words: ['op', 'get'],
    args: [{ name: 'operation' }],
    options: {},
    summary: 'An operation now. Exits 0 whatever its state: read "state" (running, succeeded, failed).',
    run: async (ctx, [operationId]) => {
      const op = await ctx.client().call('getOperation', { operationId: operationId! }, operationId);
      print(ctx, operationText(op), plain(pb.Operation, op));
      return EXIT.OK;
    },
  },
  {
    words: ['op', 'watch'],
    args: [{ name: 'operation' }],
    options: {},
    summary: 'Follow an operation to its end with a progress display; the exit code is that of its outcome.',
    details: 'With --json, one JSON document per line (NDJSON): every state the agent reports, the last one final.',
    run: async (ctx, [operationId]) => {
      const client = ctx.client();
      let final: pb.Operation;
      if (ctx.json) {
        final = await client.watchOperation(operationId!, (op) => ctx.stdout.write(JSON.stringify(plain(pb.Operation, op)) + '\n'), ctx.waitTimeoutMs);
      } else {
        const first = await client.call('getOperation', { operationId: operationId! }, operationId);
        final = await follow(ctx, first);
        print(ctx, operationText(final), undefined);
      }
      return operationExit(final);
    },
  },
  {
    words: ['events'],
    args: [],
    options: {},
    summary: 'Stream what happens on the node (bricks, replicas, checksum repairs, scrubs) until Ctrl-C.',
    details: 'With --json, one JSON document per event per line (NDJSON). Ctrl-C ends it with exit code 0.',
    run: async (ctx) => {
      const stream = ctx.client().events((e) => {
        if (ctx.json) {
          ctx.stdout.write(JSON.stringify(plain(pb.Event, e)) + '\n');
          return;
        }
        const where = [e.volumeId && `volume=${e.volumeId}`, e.brickId && `brick=${e.brickId}`, e.device && `device=${e.device}`].filter(Boolean).join(' ');
        ctx.stdout.write(`${e.time}  ${e.kind.padEnd(18)} ${where}${where ? '  ' : ''}${e.message}\n`);
      });
      ctx.onInterrupt(() => stream.stop());
      await stream.done;
      return EXIT.OK;
    },
  },
  {
    words: ['provision'],
    args: [],
    options: {
      topology: { type: 'string', value: 'FILE', required: true, help: 'topology file (JSON, Heketi-style; see the README)' },
      volume: { type: 'string', value: 'ID', required: true, help: 'volume id' },
      size: { type: 'string', value: 'SIZE', required: true, help: 'size limit of the volume, e.g. 10GiB' },
      replicas: { type: 'string', value: 'N', required: true, help: 'number of replicas, each on a different node' },
      'spread-zones': { type: 'string', value: 'prefer|strict', help: 'prefer: spread over zones, doubling up only when there are fewer zones than replicas (default); strict: refuse then' },
      cluster: { type: 'string', value: 'NAME|INDEX', help: 'cluster of the topology (required when it has several)' },
      'mount-on': { type: 'string', value: 'NODE', help: 'node that holds the primary and mounts the volume (topology name, endpoint, storage host or node id); needs --path' },
      path: { type: 'string', value: 'P', help: 'host path to mount the volume at (on --mount-on, else on the primary)' },
      'dry-run': { type: 'boolean', help: 'change nothing: report the adoptions, placement and creations it would make' },
    },
    summary: 'Reference provisioner: adopt the topology\'s devices, place N replicas on N nodes across zones, create the volume on each, optionally mount it.',
    details: `Placement: zones ordered by free capacity, round-robin over them, nodes within a zone by
free capacity; never two replicas on one node. Rerunning with the same arguments is safe:
replicas that exist are kept, missing ones are created. Refusals exit 4 with the reason
NOT_ENOUGH_NODES, NOT_ENOUGH_ZONES or NOT_ENOUGH_CAPACITY. If the volume is created but the
agent cannot mount it, the report is printed and the exit code is that of the mount call.`,
    run: async (ctx, _args, values) => {
      const file = str(values, 'topology')!;
      const volumeId = str(values, 'volume')!;
      const sizeBytes = size(str(values, 'size'), '--size')!;
      const replicas = integer(str(values, 'replicas'), '--replicas', 1)!;
      const spreadZones = oneOf(str(values, 'spread-zones'), '--spread-zones', SPREAD_ZONES) ?? ('prefer' as SpreadZones);
      const mountOn = str(values, 'mount-on');
      const mountPath = str(values, 'path');
      if (mountOn !== undefined && mountPath === undefined) throw usageError('provision: --mount-on needs --path (where to mount the volume on that node)');
      let topology;
      try {
        topology = await loadTopology(file);
      } catch (err) {
        if (err instanceof TopologyError) throw new CliError(EXIT.USAGE, err.code, err.message);
        throw err;
      }
      const display = ctx.json && !ctx.stderr.isTTY ? undefined : new ProgressDisplay(ctx.stderr);
      let outcome;
      try {
        outcome = await provision({
          topology,
          ...(str(values, 'cluster') !== undefined ? { cluster: str(values, 'cluster')! } : {}),
          volumeId,
          sizeBytes,
          replicas,
          spreadZones,
          ...(mountOn !== undefined ? { mountOn } : {}),
          ...(mountPath !== undefined ? { mountPath } : {}),
          dryRun: Boolean(values['dry-run']),
          timeoutMs: ctx.timeoutMs,
          log: (line) => {
            if (!ctx.json) ctx.stderr.write(line + '\n');
          },
          onOperation: (node, op) => display?.update({ label: `node ${node}: ${op.kind} ${op.target}`, state: op.state, progress: op.progress, message: op.message }),
          onOperationDone: () => display?.finish(),
        });
      } catch (err) {
        if (err instanceof TopologyError) throw new CliError(EXIT.USAGE, err.code, err.message);
        throw err;
      }
      print(ctx, provisionText(outcome.report), outcome.report);
      if (outcome.mountError) throw outcome.mountError;
      return EXIT.OK;
    },
  },
];
