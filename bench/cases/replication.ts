// Benchmark case `replication`: volumes of 1, 2 and 3 replicas, each replica store on its
// own XFS loop-device brick, on loopback and in network namespaces, against the store
// alone and against TCP over the same network, in the same run.
//
// Topology (bench/cluster.ts): the primary (its store, a RetainedQueue fed by the store's
// onMutation, one ReplicaLink per replica, QuorumTrackers) in one process, each replica
// agent (a store served by a ReplicaServer) in its own child process, as agents on other
// nodes would be, so that they do not share one event loop. A write counts when the
// primary's store.write resolved (durable locally) and the quorum tracker says W replicas,
// local included, hold it durably (protocol C). Volumes:
//   1 replica   the store alone, as the agent runs a volume without peers (it builds no
//               replication for it): measured to show that such a volume pays nothing.
//   2 replicas  the primary and one replica agent, W=2 of 2.
//   3 replicas  the primary and two replica agents, W=2 of 3 and W=3 of 3.
// Networks: (lo) 127.0.0.1, the primary in the bench process; (netns) every node in its own
// network namespace on a bridge (bench/netns.ts: veth pairs, MTU 1500), the primary in a
// child process in the first (bench/children/netns-primary.ts), as the bench process
// itself has no address there.
//
// Setups: (a) `disk`: the bricks' backing files in the temp dir on disk; (b) `tmpfs`: in a
// tmpfs made for the run, which takes the disk out and leaves the CPU, the event loops and
// the network. In each setup and round, in an order that reverses every other round:
//   local        one store, no replication, on the primary's brick;
//   replicated   1, 2 and 3 replicas on loopback, then 2 and 3 in namespaces (in the
//                setups that run them: NETNS_SETUPS_FULL), each volume on fresh files;
//   tcp          one writer pushing 1 MiB buffers to a child that discards them (the
//                topology of a link) over loopback, the same between two namespaces, and
//                both ends in the bench process.
// Workloads (bench/replicated.ts): 1 MiB sequential writes, 4 in flight, durable; 4 KiB
// random durable writes at QD1 and QD16. CPU: process.cpuUsage() of the primary's process
// and of the replica children across the sequential write, per GiB the client wrote (each
// GiB goes to every replica). Peak RSS: maxRSS of this process (the bench run so far) and
// of each replica child.
// Duration on a shared 2-vCPU VM: a full run ~9 min (3 rounds; 544 s measured at load
// 10–17), a quick run ~1 min (one short round of every variant, ~3 s each).
import { tempBrickUnavailable, withTempBricks, withTmpfs, type TempBrick } from '../brick.js';
import { row, target, type BenchCase, type BenchContext, type CaseResult, type ResultRow } from '../case.js';
import type { ReplicaPlacement } from '../cluster.js';
import { NETNS_MTU, NETNS_SUBNET, netnsUnavailable, withNetns, type NetnsNode } from '../netns.js';
import {
  GiB,
  inNetns,
  measureLocal,
  measureReplicated,
  MiB,
  QD16,
  SEQ_IN_FLIGHT,
  SMALL_WARM_UP_FRACTION,
  tcpInProcess,
  tcpToChild,
  WARM_UP_FRACTION,
  type Plan,
  type ReplicatedRound,
  type WorkloadRound,
} from '../replicated.js';

const BRICK_BYTES = 2 * GiB;
/** Room for three sparse bricks' written blocks (the case trims freed blocks between runs). */
const TMPFS_BYTES = 3.5 * GiB;
const MAX_REPLICAS = 3;
const SETUPS = ['disk', 'tmpfs'] as const;
type Setup = (typeof SETUPS)[number];
type Network = 'lo' | 'netns';
/**
 * Setups that also run the volumes in namespaces. A full run keeps them to tmpfs: on disk
 * the disk hides the network's differences, and they would add ~3 min; a quick run (the
 * smoke run) covers both.
 */
const NETNS_SETUPS_FULL: readonly Setup[] = ['tmpfs'];

/** A volume the case measures: its replicas, the W it is measured at, its network. */
interface Variant {
  replicas: number;
  writeQuorums: number[];
  network: Network;
}

const LOOPBACK_VARIANTS: Variant[] = [
  { replicas: 1, writeQuorums: [1], network: 'lo' },
  { replicas: 2, writeQuorums: [2], network: 'lo' },
  { replicas: 3, writeQuorums: [2, 3], network: 'lo' },
];
const NETNS_VARIANTS: Variant[] = [
  { replicas: 2, writeQuorums: [2], network: 'netns' },
  { replicas: 3, writeQuorums: [2, 3], network: 'netns' },
];

interface NetworkedRound extends ReplicatedRound {
  network: Network;
}

interface SetupRounds {
  netns: boolean;
  local: WorkloadRound[];
  replicated: NetworkedRound[];
  tcpChildMiBps: number[];
  tcpInProcessMiBps: number[];
  tcpNetnsMiBps: number[];
  replicaMaxRssBytes: number[];
}

async function withSetupBricks<T>(setup: Setup, body: (bricks: TempBrick[]) => Promise<T>): Promise<T> {
  if (setup === 'disk') return withTempBricks(MAX_REPLICAS, BRICK_BYTES, body);
  return withTmpfs(TMPFS_BYTES, (dir) => withTempBricks(MAX_REPLICAS, BRICK_BYTES, body, { parentDir: dir }));
}

/** Replica placements in the namespaces: replica i on node i + 1 (node 0 runs the primary). */
function netnsPlacements(nodes: NetnsNode[], count: number): ReplicaPlacement[] {
  return nodes.slice(1, 1 + count).map((n) => ({ host: n.address, command: n.command }));
}

async function measureVariant(bricks: TempBrick[], plan: Plan, round: number, v: Variant, nodes: NetnsNode[] | undefined) {
  const used = bricks.slice(0, v.replicas);
  if (v.network === 'lo') return measureReplicated(used, plan, round, v.writeQuorums);
  return inNetns(nodes![0]!, { kind: 'replicated', bricks: used, plan, round, writeQuorums: v.writeQuorums, placements: netnsPlacements(nodes!, v.replicas - 1) });
}

async function measureSetup(ctx: BenchContext, setup: Setup, plan: Plan, nodes: NetnsNode[] | undefined): Promise<SetupRounds> {
  const out: SetupRounds = { netns: nodes !== undefined, local: [], replicated: [], tcpChildMiBps: [], tcpInProcessMiBps: [], tcpNetnsMiBps: [], replicaMaxRssBytes: [] };
  const variants = nodes ? [...LOOPBACK_VARIANTS, ...NETNS_VARIANTS] : LOOPBACK_VARIANTS;
  await withSetupBricks(setup, async (bricks) => {
    ctx.progress(`${setup}: bricks ${bricks.map((b) => b.device).join(', ')}${nodes ? `; namespaces ${nodes.map((n) => n.ns).join(', ')}` : ''}`);
    for (let round = 0; round < plan.rounds; round++) {
      const steps: Array<() => Promise<void>> = [
        async () => void out.local.push(await measureLocal(bricks[0]!, plan, round)),
        ...variants.map((v) => async () => {
          const r = await measureVariant(bricks, plan, round, v, nodes);
          out.replicated.push(...r.rounds.map((x) => ({ ...x, network: v.network })));
          if (v.replicas > 1) out.replicaMaxRssBytes.push(r.replicaMaxRssBytes);
        }),
      ];
      // The order reverses every other round so that drift of the machine favours no side.
      for (const step of round % 2 === 0 ? steps : steps.reverse()) await step();
      out.tcpChildMiBps.push(await tcpToChild(plan));
      out.tcpInProcessMiBps.push(await tcpInProcess(plan));
      if (nodes) out.tcpNetnsMiBps.push(await inNetns(nodes[0]!, { kind: 'tcp', plan, sink: netnsPlacements(nodes, 1)[0]! }));
      const l = out.local[round]!;
      const pick = (n: number, w: number, network: Network) => out.replicated.filter((x) => x.replicas === n && x.writeQuorum === w && x.network === network)[round]!;
      const lo = pick(3, 2, 'lo');
      const ns = nodes ? pick(3, 2, 'netns') : undefined;
      ctx.progress(
        `${setup} round ${round + 1}/${plan.rounds}: seq write MiB/s local ${l.seqWriteMiBps.toFixed(0)}, 1 replica ${pick(1, 1, 'lo').seqWriteMiBps.toFixed(0)}, ` +
          `W=2 of 2 ${pick(2, 2, 'lo').seqWriteMiBps.toFixed(0)}, W=2 of 3 ${lo.seqWriteMiBps.toFixed(0)}${ns ? ` (netns ${ns.seqWriteMiBps.toFixed(0)})` : ''} ` +
          `(tcp ${out.tcpChildMiBps[round]!.toFixed(0)}${nodes ? `, netns ${out.tcpNetnsMiBps[round]!.toFixed(0)}` : ''}); ` +
          `4 KiB QD1 p99 W=2 of 3 ${lo.qd1.p99Us.toFixed(0)} vs ${l.qd1.p99Us.toFixed(0)} µs`,
      );
    }
  });
  return out;
}

const COPIES = ['', 'the local store', 'one half of the local store (2 copies, one machine)', 'one third of the local store (3 copies, one machine)'];

/** A variant's label in row names; loopback's 3 replicas keep the names they always had. */
function variantLabel(setup: Setup, replicas: number, w: number, network: Network): string {
  const where = network === 'netns' ? `[${setup}, netns]` : `[${setup}]`;
  return replicas === 1 ? `${where} 1 replica (no peers)` : `${where} W=${w} of ${replicas}`;
}

function setupRows(setup: Setup, r: SetupRounds): { rows: ResultRow[]; byName: Map<string, ResultRow> } {
  const rows: ResultRow[] = [];
  const byName = new Map<string, ResultRow>();
  const add = (name: string, resultRow: ResultRow) => {
    rows.push(resultRow);
    byName.set(name, resultRow);
  };
  const local = (label: string, pick: (w: WorkloadRound) => number) => ({ label: `local store, ${label}`, samples: r.local.map(pick) });
  const tcp = {
    lo: { label: 'loopback TCP to a child', samples: r.tcpChildMiBps },
    netns: { label: 'TCP between two namespaces', samples: r.tcpNetnsMiBps },
  };
  add('local seq', row(`[${setup}] local store: seq write 1 MiB, ${SEQ_IN_FLIGHT} in flight, durable`, 'MiB/s', r.local.map((l) => l.seqWriteMiBps)));
  add('local cpu', row(`[${setup}] local store: CPU per GiB written`, 's/GiB', r.local.map((l) => l.cpuSecondsPerGiB)));
  add('local sys', row(`[${setup}] local store: of which system`, 's/GiB', r.local.map((l) => l.cpuSystemSecondsPerGiB)));
  const variants = [...new Map(r.replicated.map((x) => [`${x.network} ${x.replicas} ${x.writeQuorum}`, x])).values()];
  for (const { network, replicas: n, writeQuorum: w } of variants) {
    const rs = r.replicated.filter((x) => x.network === network && x.replicas === n && x.writeQuorum === w);
    const pick = (f: (x: ReplicatedRound) => number) => rs.map(f);
    const q = variantLabel(setup, n, w, network);
    // Names: loopback's keep the ones the targets use ("2 seq"); others say their variant.
    const key = network === 'lo' && n === 3 ? `${w}` : `${network} ${n} ${w}`;
    // The full set of rows for 3 replicas on loopback (as the case always reported); the
    // main figures for the other volumes.
    const full = network === 'lo' && n === 3;
    add(`${key} seq`, row(`${q}: seq write 1 MiB, ${SEQ_IN_FLIGHT} in flight`, 'MiB/s', pick((x) => x.seqWriteMiBps), { label: COPIES[n]!, samples: r.local.map((l) => l.seqWriteMiBps / n) }));
    if (n > 1) add(`${key} seq tcp`, row(`${q}: seq write (same figure) vs ${network === 'lo' ? 'loopback TCP' : 'TCP between namespaces'}`, 'MiB/s', pick((x) => x.seqWriteMiBps), tcp[network]));
    if (network === 'netns') {
      const lo = r.replicated.filter((x) => x.network === 'lo' && x.replicas === n && x.writeQuorum === w);
      add(`${key} seq lo`, row(`${q}: seq write (same figure) vs the same volume on loopback`, 'MiB/s', pick((x) => x.seqWriteMiBps), { label: `W=${w} of ${n} on loopback`, samples: lo.map((x) => x.seqWriteMiBps) }));
    }
    add(`${key} qd1`, row(`${q}: 4 KiB random durable write QD1`, 'IOPS', pick((x) => x.qd1Iops), local('QD1', (l) => l.qd1Iops)));
    if (full) add(`${key} qd1 p50`, row(`${q}: 4 KiB QD1 latency p50`, 'µs', pick((x) => x.qd1.p50Us), local('QD1 p50', (l) => l.qd1.p50Us)));
    add(`${key} qd1 p99`, row(`${q}: 4 KiB QD1 latency p99`, 'µs', pick((x) => x.qd1.p99Us), local('QD1 p99', (l) => l.qd1.p99Us)));
    add(`${key} qd16`, row(`${q}: 4 KiB random durable write QD${QD16}`, 'IOPS', pick((x) => x.qd16Iops), local(`QD${QD16}`, (l) => l.qd16Iops)));
    if (full) add(`${key} qd16 p50`, row(`${q}: 4 KiB QD${QD16} latency p50`, 'µs', pick((x) => x.qd16.p50Us), local(`QD${QD16} p50`, (l) => l.qd16.p50Us)));
    add(`${key} qd16 p99`, row(`${q}: 4 KiB QD${QD16} latency p99`, 'µs', pick((x) => x.qd16.p99Us), local(`QD${QD16} p99`, (l) => l.qd16.p99Us)));
    add(`${key} cpu`, row(`${q}: primary CPU per GiB written (seq write)`, 's/GiB', pick((x) => x.cpuSecondsPerGiB), local('CPU per GiB', (l) => l.cpuSecondsPerGiB)));
    if (full) add(`${key} sys`, row(`${q}: primary CPU per GiB, of which system`, 's/GiB', pick((x) => x.cpuSystemSecondsPerGiB), local('system CPU per GiB', (l) => l.cpuSystemSecondsPerGiB)));
    if (n === 1) continue;
    const children = n === 2 ? 'the replica child' : 'both replica children';
    add(`${key} replica cpu`, row(`${q}: ${children}'s CPU per GiB written (seq write)`, 's/GiB', pick((x) => x.replicaCpuSecondsPerGiB)));
    if (full) add(`${key} replica sys`, row(`${q}: ${children}'s CPU per GiB, of which system`, 's/GiB', pick((x) => x.replicaCpuSystemSecondsPerGiB)));
    if (full) add(`${key} local ms`, row(`${q}: 1 MiB write, median time until the primary's store.write resolved`, 'ms', pick((x) => x.seqLocalWriteMs)));
    add(`${key} quorum ms`, row(`${q}: 1 MiB write, median time from ${full ? 'there' : "the primary's store.write"} until W replicas hold it`, 'ms', pick((x) => x.seqQuorumWaitMs)));
  }
  add('replica rss', row(`[${setup}] peak RSS of a replica child (largest)`, 'MiB', r.replicaMaxRssBytes.map((b) => b / MiB)));
  if (r.netns) add('tcp netns', row(`[${setup}] TCP between two namespaces, 1 MiB writes to a child that discards`, 'MiB/s', r.tcpNetnsMiBps, tcp.lo));
  return { rows, byName };
}

async function run(ctx: BenchContext): Promise<CaseResult> {
  const plan: Plan = ctx.quick
    ? { rounds: 1, seqBytes: 32 * MiB, randomSeconds: 1, tcpBytes: 512 * MiB, tcpSeconds: 0.5 }
    : { rounds: 3, seqBytes: 512 * MiB, randomSeconds: 5, tcpBytes: 2 * GiB, tcpSeconds: 5 };
  const netnsSetups: readonly Setup[] = ctx.quick ? SETUPS : NETNS_SETUPS_FULL;
  const params: Record<string, unknown> = {
    ...plan,
    brickBytes: BRICK_BYTES,
    tmpfsBytes: TMPFS_BYTES,
    bricks: 'three XFS loop-device bricks (brick mkfs and mount options), direct I/O on their backing files: disk = in the temp dir, tmpfs = in a tmpfs made for the run',
    volumes: '1 replica (the store alone: the agent builds no replication for a volume without peers), 2 replicas (W=2 of 2), 3 replicas (W=2 and W=3 of 3)',
    topology:
      'primary (store + RetainedQueue + one ReplicaLink per replica + QuorumTrackers) and one replica agent (ReplicaServer + store) per other replica, each in its own process; ' +
      'lo: 127.0.0.1, the primary in the bench process; netns: each in its own network namespace (veth pairs on a bridge in a hub namespace), the primary in a child process',
    network: { loopback: '127.0.0.1 (MTU 65536)', netns: `${NETNS_SUBNET}.0/24, veth MTU ${NETNS_MTU}`, netnsSetups },
    storeOptions: 'defaults on every store (directWriteBytes 64 KiB, segmentBytes 64 MiB, checkpoint every 10 s or 128 MiB)',
    seqBlockBytes: 1 * MiB,
    seqInFlight: SEQ_IN_FLIGHT,
    smallBlockBytes: 4096,
    warmUpBytes: Math.max(MiB, Math.floor((plan.seqBytes * WARM_UP_FRACTION) / MiB) * MiB),
    warmUp: 'that many bytes of the same 1 MiB writes, untimed, before the sequential write of every variant (local store included): agents just started would count V8 compiling the data path as replication cost',
    smallWarmUpSeconds: plan.randomSeconds * SMALL_WARM_UP_FRACTION,
    smallWarmUp: 'that many seconds of 4 KiB QD1 writes, untimed, before the 4 KiB phases of every variant (local store included): the small-write path warms up separately',
    writeBack: 'sync (every dirty page written back, page cache kept) between the sequential phase and the 4 KiB phases of every variant (local store included)',
    cpu: 'process.cpuUsage (user + system) across the sequential write, per GiB the client wrote (each GiB is sent to every replica)',
  };
  const unavailable = tempBrickUnavailable();
  if (unavailable) return { params, rows: [], targets: [], skipped: unavailable };
  const noNetns = await netnsUnavailable();
  if (noNetns) {
    params.netnsSkipped = noNetns;
    ctx.progress(`no network namespaces: ${noNetns}`);
  }

  const measured = new Map<Setup, SetupRounds>();
  const measureAll = async (nodes: NetnsNode[] | undefined) => {
    for (const setup of SETUPS) measured.set(setup, await measureSetup(ctx, setup, plan, netnsSetups.includes(setup) ? nodes : undefined));
  };
  if (noNetns) await measureAll(undefined);
  else await withNetns(MAX_REPLICAS, measureAll);

  const disk = setupRows('disk', measured.get('disk')!);
  const tmpfs = setupRows('tmpfs', measured.get('tmpfs')!);
  const tcpChild = SETUPS.flatMap((s) => measured.get(s)!.tcpChildMiBps);
  const tcpInProcess = SETUPS.flatMap((s) => measured.get(s)!.tcpInProcessMiBps);
  const rows: ResultRow[] = [
    ...disk.rows,
    ...tmpfs.rows,
    row('loopback TCP, 1 MiB writes to a child that discards', 'MiB/s', tcpChild),
    row('loopback TCP, both ends in this process', 'MiB/s', tcpInProcess),
    row('peak RSS of the primary (bench) process', 'MiB', [process.resourceUsage().maxRSS / 1024]),
  ];
  params.rounds = Object.fromEntries(measured);
  const ratio = (r: ResultRow | undefined) => r?.ratio ?? Number.NaN;
  return {
    params,
    rows,
    targets: [
      target('(a) disk: W=2 seq write ≥ 80% of one third of the local store', ratio(disk.byName.get('2 seq')), '>=', 0.8),
      target('(b) tmpfs: W=2 seq write ≥ 50% of loopback TCP', ratio(tmpfs.byName.get('2 seq tcp')), '>=', 0.5),
      target('(a) disk: W=2 4 KiB QD1 p99 ≤ 2× the local store', ratio(disk.byName.get('2 qd1 p99')), '<=', 2),
    ],
  };
}

/**
 * brickd's own 3-replica figures without a frontend, for other cases' baselines: one round
 * of the disk setup with W=2 on loopback (1 MiB sequential writes, 4 in flight; 4 KiB
 * durable QD1).
 */
export async function replicatedBaseline(quick: boolean): Promise<{ seqWriteMiBps: number; qd1Iops: number }> {
  const plan: Plan = quick
    ? { rounds: 1, seqBytes: 32 * MiB, randomSeconds: 1, tcpBytes: 0, tcpSeconds: 0 }
    : { rounds: 1, seqBytes: 512 * MiB, randomSeconds: 5, tcpBytes: 0, tcpSeconds: 0 };
  const { rounds } = await withSetupBricks('disk', (bricks) => measureReplicated(bricks, plan, 0, [2]));
  const w2 = rounds[0]!;
  return { seqWriteMiBps: w2.seqWriteMiBps, qd1Iops: w2.qd1Iops };
}

export const replicationCase: BenchCase = {
  name: 'replication',
  family: 'replication',
  description:
    'volumes of 1, 2 and 3 replicas (primary + replica agent processes, each store on its own XFS loop brick, on disk and in tmpfs), on loopback and in network namespaces, ' +
    'vs the local store and TCP over the same network: 1 MiB sequential write, 4 KiB random durable writes QD1/QD16, CPU per GiB, peak RSS',
  run,
};
