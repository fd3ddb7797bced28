// Benchmark case `replication`: a primary and two replica agents on loopback TCP, each
// replica store on its own XFS loop-device brick, against the store alone and against
// loopback TCP, in the same run.
//
// Topology: the primary (its store, a RetainedQueue fed by the store's onMutation, one
// ReplicaLink per replica, QuorumTrackers) runs in this process; each replica agent (a
// store served by a ReplicaServer) runs in its own child process (bench/children/
// replica-agent.ts), as agents on other nodes would, so the three do not share one event
// loop. A write counts when the primary's store.write resolved (durable locally) and the
// quorum tracker says W replicas, local included, hold it durably (protocol C).
//
// Setups: (a) `disk`: the three bricks' backing files in the temp dir on disk; (b) `tmpfs`:
// the backing files in a tmpfs made for the run, which takes the disk out and leaves the
// CPU, the event loops and TCP. In each setup, rounds alternate which side goes first:
//   local:      one store, no replication, on the primary's brick: 1 MiB sequential
//               writes, 4 in flight, each durable when it resolves; 4 KiB random durable
//               writes over that file at QD1 and QD16.
//   replicated: the same workloads through the primary with W=2 of 3 and with W=3, each
//               on a fresh file (the previous one unlinked, the bricks trimmed), which
//               goes first alternating with the round.
//   tcp:        loopback TCP, one writer here pushing 1 MiB buffers to a child that
//               discards them (the topology of a link), and the same within this process.
// CPU: this process's and the children's process.cpuUsage() across each sequential write,
// per GiB written by the client (each GiB goes to two replicas). Peak RSS: maxRSS of this
// process (all of the bench run so far) and of each replica child.
import { randomBytes, randomFillSync } from 'node:crypto';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ReplicaLink } from '../../src/replication/link.js';
import { QuorumTracker } from '../../src/replication/quorum.js';
import { RetainedQueue } from '../../src/replication/retained.js';
import { ReplicaStore } from '../../src/store/store.js';
import { tempBrickUnavailable, trimBrick, withTempBricks, withTmpfs, type TempBrick } from '../brick.js';
import { median, row, target, type BenchCase, type BenchContext, type CaseResult, type ResultRow } from '../case.js';
import { BenchChild, startChildren, stopChildren } from '../child.js';
import { inParallel, timedLoops, type Latencies } from '../workload.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const BRICK_BYTES = 2 * GiB;
/** Room for three sparse bricks' written blocks (the case trims freed blocks between runs). */
const TMPFS_BYTES = 3.5 * GiB;
const SEQ_BLOCK = MiB;
const SEQ_IN_FLIGHT = 4;
const SMALL_BLOCK = 4 * KiB;
const QD16 = 16;
const REPLICA_AGENTS = 2;
const CLUSTER = 'bench-cluster';
const QUORUM_TIMEOUT_MS = 30_000;
const SETUPS = ['disk', 'tmpfs'] as const;
type Setup = (typeof SETUPS)[number];

interface Plan {
  rounds: number;
  seqBytes: number;
  randomSeconds: number;
  tcpBytes: number;
  tcpSeconds: number;
  writeQuorums: number[];
}

interface WorkloadRound {
  seqWriteMiBps: number;
  /** CPU seconds of the process running the store (the primary) per GiB written. */
  cpuSecondsPerGiB: number;
  /** The system (kernel) part of it. */
  cpuSystemSecondsPerGiB: number;
  qd1Iops: number;
  qd1: Latencies;
  qd16Iops: number;
  qd16: Latencies;
}

interface ReplicatedRound extends WorkloadRound {
  writeQuorum: number;
  /** Both replica children together, per GiB the client wrote. */
  replicaCpuSecondsPerGiB: number;
  replicaCpuSystemSecondsPerGiB: number;
  /** Per 1 MiB write, medians: until the primary's store.write resolved, then until the quorum. */
  seqLocalWriteMs: number;
  seqQuorumWaitMs: number;
}

interface SetupRounds {
  local: WorkloadRound[];
  replicated: ReplicatedRound[];
  tcpChildMiBps: number[];
  tcpInProcessMiBps: number[];
  replicaMaxRssBytes: number[];
}

interface CpuTime {
  seconds: number;
  systemSeconds: number;
}

function cpuTime(): CpuTime {
  const cpu = process.cpuUsage();
  return { seconds: (cpu.user + cpu.system) / 1e6, systemSeconds: cpu.system / 1e6 };
}

function perGiB(after: CpuTime, before: CpuTime, gib: number): CpuTime {
  return { seconds: (after.seconds - before.seconds) / gib, systemSeconds: (after.systemSeconds - before.systemSeconds) / gib };
}

const NO_CPU: CpuTime = { seconds: 0, systemSeconds: 0 };

/** The three workloads on one file through `write` (local, or replicated and awaited on quorum). */
async function runWorkloads(
  write: (offset: number, data: Buffer) => Promise<void>,
  plan: Plan,
  otherCpuTime: () => Promise<CpuTime>,
): Promise<WorkloadRound & { otherCpuPerGiB: CpuTime }> {
  const pattern = randomFillSync(Buffer.alloc(SEQ_BLOCK));
  const writes = plan.seqBytes / SEQ_BLOCK;
  const otherBefore = await otherCpuTime();
  const cpuBefore = cpuTime();
  const start = performance.now();
  // The retained queue keeps a reference to each write's buffer: `pattern` never changes.
  await inParallel(SEQ_IN_FLIGHT, writes, (i) => write(i * SEQ_BLOCK, pattern));
  const seconds = (performance.now() - start) / 1000;
  const gib = plan.seqBytes / GiB;
  const cpu = perGiB(cpuTime(), cpuBefore, gib);
  const otherCpuPerGiB = perGiB(await otherCpuTime(), otherBefore, gib);

  const small = randomFillSync(Buffer.alloc(SMALL_BLOCK));
  const blocks = plan.seqBytes / SMALL_BLOCK;
  const randomWrite = () => write(Math.floor(Math.random() * blocks) * SMALL_BLOCK, small);
  const qd1 = await timedLoops(1, plan.randomSeconds, randomWrite);
  const qd16 = await timedLoops(QD16, plan.randomSeconds, randomWrite);
  return {
    seqWriteMiBps: plan.seqBytes / MiB / seconds,
    cpuSecondsPerGiB: cpu.seconds,
    cpuSystemSecondsPerGiB: cpu.systemSeconds,
    otherCpuPerGiB,
    qd1Iops: qd1.iops,
    qd1: qd1.latency,
    qd16Iops: qd16.iops,
    qd16: qd16.latency,
  };
}

async function measureLocal(brick: TempBrick, plan: Plan, round: number): Promise<WorkloadRound> {
  const volumeId = `bench-local-${round}`;
  const dir = path.join(brick.root, 'volumes', volumeId);
  const store = await ReplicaStore.create(dir, { volumeId, sizeLimitBytes: 2 * plan.seqBytes });
  try {
    const { fid } = await store.create('seq.dat');
    const { otherCpuPerGiB: _, ...result } = await runWorkloads(async (offset, data) => void (await store.write({ fid }, offset, data)), plan, async () => NO_CPU);
    return result;
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
    await trimBrick(brick);
  }
}

async function waitUntil(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Primary here, one replica agent child per other brick; each W in turn on its own file. */
async function measureReplicated(bricks: TempBrick[], plan: Plan, round: number): Promise<{ rounds: ReplicatedRound[]; replicaMaxRssBytes: number }> {
  const volumeId = `bench-repl-${round}`;
  const dirs = bricks.map((b) => path.join(b.root, 'volumes', volumeId));
  const secret = randomBytes(32);
  const sizeLimitBytes = 2 * plan.seqBytes;
  const queue = new RetainedQueue({ startSeq: 0n, generation: 1 });
  const store = await ReplicaStore.create(dirs[0]!, { volumeId, sizeLimitBytes, generation: 1 }, { onMutation: (seq, m) => queue.push(seq, m) });
  const trackers = new Map(plan.writeQuorums.map((w) => [w, new QuorumTracker({ writeQuorum: w, timeoutMs: QUORUM_TIMEOUT_MS })]));
  let children: BenchChild[] = [];
  let links: ReplicaLink[] = [];
  try {
    children = await startChildren(
      dirs.slice(1, 1 + REPLICA_AGENTS).map((dir, i) => [
        'replica-agent.js',
        [dir, volumeId, `replica-${i + 1}`, CLUSTER, String(sizeLimitBytes)],
        { name: `replica-${i + 1}`, env: { BRICKD_BENCH_SECRET: secret.toString('hex') } },
      ]),
    );
    links = children.map((child) => {
      const link = new ReplicaLink({ host: '127.0.0.1', port: child.info.port as number, name: child.name, clusterId: CLUSTER, nodeId: 'primary', volumeId, secret, queue });
      link.on('ack', (seq) => {
        for (const tracker of trackers.values()) tracker.setReplica(child.name, seq);
      });
      return link.start();
    });
    await waitUntil(() => links.every((l) => l.state === 'streaming'), 'every replica link streaming');
    const childrenCpu = async (): Promise<CpuTime> => {
      const stats = await Promise.all(children.map((c) => c.stats()));
      return { seconds: stats.reduce((sum, s) => sum + s.cpuSeconds, 0), systemSeconds: stats.reduce((sum, s) => sum + s.cpuSystemSeconds, 0) };
    };

    const rounds: ReplicatedRound[] = [];
    // Which W goes first alternates with the round, as local and replicated do.
    const order = round % 2 === 0 ? [...trackers] : [...trackers].reverse();
    for (const [writeQuorum, tracker] of order) {
      const replicated = async <T extends { seq: bigint }>(op: Promise<T>): Promise<T> => {
        const result = await op;
        await tracker.waitFor(result.seq, true);
        return result;
      };
      const file = `seq-w${writeQuorum}.dat`;
      const { fid } = await replicated(store.create(file));
      // Where a 1 MiB write's time goes: the primary's own durable write, then the wait for W.
      const localMs: number[] = [];
      const quorumMs: number[] = [];
      const write = async (offset: number, data: Buffer) => {
        const t0 = performance.now();
        const { seq } = await store.write({ fid }, offset, data);
        const t1 = performance.now();
        await tracker.waitFor(seq, true);
        if (data.length === SEQ_BLOCK) {
          localMs.push(t1 - t0);
          quorumMs.push(performance.now() - t1);
        }
      };
      const { otherCpuPerGiB, ...result } = await runWorkloads(write, plan, childrenCpu);
      const stuck = links.filter((l) => l.state !== 'streaming');
      if (stuck.length > 0) throw new Error(`W=${writeQuorum}: replica links left streaming: ${stuck.map((l) => `${l.name} ${l.state}`).join(', ')}`);
      rounds.push({
        writeQuorum,
        ...result,
        replicaCpuSecondsPerGiB: otherCpuPerGiB.seconds,
        replicaCpuSystemSecondsPerGiB: otherCpuPerGiB.systemSeconds,
        seqLocalWriteMs: median(localMs),
        seqQuorumWaitMs: median(quorumMs),
      });
      // The next W starts on a fresh file with the same free space, as the first did.
      await replicated(store.unlink(file));
      await waitUntil(() => links.every((l) => l.ackedSeq >= queue.lastSeq), 'every replica durable at the unlink');
      for (const brick of bricks) await trimBrick(brick);
    }
    const replicaMaxRssBytes = Math.max(...(await Promise.all(children.map((c) => c.stats()))).map((s) => s.maxRssBytes));
    return { rounds, replicaMaxRssBytes };
  } finally {
    for (const tracker of trackers.values()) tracker.close();
    await Promise.all(links.map((l) => l.close()));
    await stopChildren(children);
    await store.close();
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
    for (const brick of bricks) await trimBrick(brick);
  }
}

/** Push 1 MiB buffers into `socket` until `bytes` or `seconds`; resolves with the bytes written. */
async function pushBuffers(socket: net.Socket, plan: Plan): Promise<number> {
  const chunk = randomFillSync(Buffer.alloc(MiB));
  const deadline = performance.now() + plan.tcpSeconds * 1000;
  let written = 0;
  while (written < plan.tcpBytes && performance.now() < deadline) {
    written += chunk.length;
    if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve));
  }
  return written;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Loopback TCP to a child that discards: MiB/s from the first write until it has received everything. */
async function tcpToChild(plan: Plan): Promise<number> {
  const [sink] = await startChildren([['tcp-sink.js', [], { name: 'tcp-sink' }]]);
  try {
    const socket = await connect(sink!.info.port as number);
    const received = sink!.nextEvent((e) => e.kind === 'received');
    const start = performance.now();
    const written = await pushBuffers(socket, plan);
    socket.end();
    const { bytes } = await received;
    const seconds = (performance.now() - start) / 1000;
    socket.destroy();
    if (bytes !== written) throw new Error(`tcp sink received ${String(bytes)} bytes of ${written}`);
    return written / MiB / seconds;
  } finally {
    await sink!.stop();
  }
}

/** The same with both ends in this process (one event loop): a lower bound of loopback TCP here. */
async function tcpInProcess(plan: Plan): Promise<number> {
  let received = 0;
  let ended!: () => void;
  const done = new Promise<void>((resolve) => (ended = resolve));
  const server = net.createServer((s) => {
    s.on('data', (chunk: Buffer) => (received += chunk.length));
    s.on('end', () => {
      s.end();
      ended();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const socket = await connect((server.address() as net.AddressInfo).port);
    const start = performance.now();
    const written = await pushBuffers(socket, plan);
    socket.end();
    await done;
    const seconds = (performance.now() - start) / 1000;
    socket.destroy();
    if (received !== written) throw new Error(`in-process tcp reader received ${received} bytes of ${written}`);
    return written / MiB / seconds;
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

async function withSetupBricks<T>(setup: Setup, body: (bricks: TempBrick[]) => Promise<T>): Promise<T> {
  const count = 1 + REPLICA_AGENTS;
  if (setup === 'disk') return withTempBricks(count, BRICK_BYTES, body);
  return withTmpfs(TMPFS_BYTES, (dir) => withTempBricks(count, BRICK_BYTES, body, { parentDir: dir }));
}

async function measureSetup(ctx: BenchContext, setup: Setup, plan: Plan): Promise<SetupRounds> {
  const out: SetupRounds = { local: [], replicated: [], tcpChildMiBps: [], tcpInProcessMiBps: [], replicaMaxRssBytes: [] };
  await withSetupBricks(setup, async (bricks) => {
    ctx.progress(`${setup}: bricks ${bricks.map((b) => b.device).join(', ')}`);
    for (let round = 0; round < plan.rounds; round++) {
      const replicatedFirst = round % 2 === 1;
      const replicate = async () => {
        const r = await measureReplicated(bricks, plan, round);
        out.replicated.push(...r.rounds);
        out.replicaMaxRssBytes.push(r.replicaMaxRssBytes);
      };
      if (replicatedFirst) await replicate();
      out.local.push(await measureLocal(bricks[0]!, plan, round));
      if (!replicatedFirst) await replicate();
      out.tcpChildMiBps.push(await tcpToChild(plan));
      out.tcpInProcessMiBps.push(await tcpInProcess(plan));
      const l = out.local[round]!;
      const w2 = out.replicated.filter((r) => r.writeQuorum === 2)[round]!;
      ctx.progress(
        `${setup} round ${round + 1}/${plan.rounds}: seq write W=2 ${w2.seqWriteMiBps.toFixed(0)} vs local ${l.seqWriteMiBps.toFixed(0)} MiB/s ` +
          `(tcp ${out.tcpChildMiBps[round]!.toFixed(0)}), 4 KiB QD1 p99 ${w2.qd1.p99Us.toFixed(0)} vs ${l.qd1.p99Us.toFixed(0)} µs, ` +
          `QD16 ${w2.qd16Iops.toFixed(0)} vs ${l.qd16Iops.toFixed(0)} IOPS`,
      );
    }
  });
  return out;
}

function setupRows(setup: Setup, r: SetupRounds): { rows: ResultRow[]; byName: Map<string, ResultRow> } {
  const rows: ResultRow[] = [];
  const byName = new Map<string, ResultRow>();
  const add = (name: string, resultRow: ResultRow) => {
    rows.push(resultRow);
    byName.set(name, resultRow);
  };
  const local = (label: string, pick: (w: WorkloadRound) => number) => ({ label: `local store, ${label}`, samples: r.local.map(pick) });
  const tcp = { label: 'loopback TCP to a child', samples: r.tcpChildMiBps };
  add('local seq', row(`[${setup}] local store: seq write 1 MiB, ${SEQ_IN_FLIGHT} in flight, durable`, 'MiB/s', r.local.map((l) => l.seqWriteMiBps)));
  add('local cpu', row(`[${setup}] local store: CPU per GiB written`, 's/GiB', r.local.map((l) => l.cpuSecondsPerGiB)));
  add('local sys', row(`[${setup}] local store: of which system`, 's/GiB', r.local.map((l) => l.cpuSystemSecondsPerGiB)));
  for (const w of new Set(r.replicated.map((x) => x.writeQuorum))) {
    const rs = r.replicated.filter((x) => x.writeQuorum === w);
    const pick = (f: (x: ReplicatedRound) => number) => rs.map(f);
    const q = `W=${w} of 3`;
    add(`${w} seq`, row(`[${setup}] ${q}: seq write 1 MiB, ${SEQ_IN_FLIGHT} in flight`, 'MiB/s', pick((x) => x.seqWriteMiBps), {
      label: 'one third of the local store (3 copies, one machine)',
      samples: r.local.map((l) => l.seqWriteMiBps / 3),
    }));
    add(`${w} seq tcp`, row(`[${setup}] ${q}: seq write (same figure) vs loopback TCP`, 'MiB/s', pick((x) => x.seqWriteMiBps), tcp));
    add(`${w} qd1`, row(`[${setup}] ${q}: 4 KiB random durable write QD1`, 'IOPS', pick((x) => x.qd1Iops), local('QD1', (l) => l.qd1Iops)));
    add(`${w} qd1 p50`, row(`[${setup}] ${q}: 4 KiB QD1 latency p50`, 'µs', pick((x) => x.qd1.p50Us), local('QD1 p50', (l) => l.qd1.p50Us)));
    add(`${w} qd1 p99`, row(`[${setup}] ${q}: 4 KiB QD1 latency p99`, 'µs', pick((x) => x.qd1.p99Us), local('QD1 p99', (l) => l.qd1.p99Us)));
    add(`${w} qd16`, row(`[${setup}] ${q}: 4 KiB random durable write QD${QD16}`, 'IOPS', pick((x) => x.qd16Iops), local(`QD${QD16}`, (l) => l.qd16Iops)));
    add(`${w} qd16 p50`, row(`[${setup}] ${q}: 4 KiB QD${QD16} latency p50`, 'µs', pick((x) => x.qd16.p50Us), local(`QD${QD16} p50`, (l) => l.qd16.p50Us)));
    add(`${w} qd16 p99`, row(`[${setup}] ${q}: 4 KiB QD${QD16} latency p99`, 'µs', pick((x) => x.qd16.p99Us), local(`QD${QD16} p99`, (l) => l.qd16.p99Us)));
    add(`${w} cpu`, row(`[${setup}] ${q}: primary CPU per GiB written (seq write)`, 's/GiB', pick((x) => x.cpuSecondsPerGiB), local('CPU per GiB', (l) => l.cpuSecondsPerGiB)));
    add(`${w} sys`, row(`[${setup}] ${q}: primary CPU per GiB, of which system`, 's/GiB', pick((x) => x.cpuSystemSecondsPerGiB), local('system CPU per GiB', (l) => l.cpuSystemSecondsPerGiB)));
    add(`${w} replica cpu`, row(`[${setup}] ${q}: both replica children's CPU per GiB written (seq write)`, 's/GiB', pick((x) => x.replicaCpuSecondsPerGiB)));
    add(`${w} replica sys`, row(`[${setup}] ${q}: both replica children's CPU per GiB, of which system`, 's/GiB', pick((x) => x.replicaCpuSystemSecondsPerGiB)));
    add(`${w} local ms`, row(`[${setup}] ${q}: 1 MiB write, median time until the primary's store.write resolved`, 'ms', pick((x) => x.seqLocalWriteMs)));
    add(`${w} quorum ms`, row(`[${setup}] ${q}: 1 MiB write, median time from there until W replicas hold it`, 'ms', pick((x) => x.seqQuorumWaitMs)));
  }
  add('replica rss', row(`[${setup}] peak RSS of a replica child (largest)`, 'MiB', r.replicaMaxRssBytes.map((b) => b / MiB)));
  return { rows, byName };
}

async function run(ctx: BenchContext): Promise<CaseResult> {
  const plan: Plan = ctx.quick
    ? { rounds: 1, seqBytes: 32 * MiB, randomSeconds: 1, tcpBytes: 512 * MiB, tcpSeconds: 0.5, writeQuorums: [2, 3] }
    : { rounds: 3, seqBytes: 512 * MiB, randomSeconds: 5, tcpBytes: 2 * GiB, tcpSeconds: 5, writeQuorums: [2, 3] };
  const params: Record<string, unknown> = {
    ...plan,
    brickBytes: BRICK_BYTES,
    tmpfsBytes: TMPFS_BYTES,
    bricks: 'three XFS loop-device bricks (brick mkfs and mount options), buffered backing files: disk = in the temp dir, tmpfs = in a tmpfs made for the run',
    topology: `primary (store + RetainedQueue + ${REPLICA_AGENTS} ReplicaLinks + QuorumTracker) in the bench process, ${REPLICA_AGENTS} replica agents (ReplicaServer + store) in child processes, 127.0.0.1`,
    storeOptions: 'defaults on every store (directWriteBytes 64 KiB, segmentBytes 64 MiB, checkpoint every 10 s or 128 MiB)',
    seqBlockBytes: SEQ_BLOCK,
    seqInFlight: SEQ_IN_FLIGHT,
    smallBlockBytes: SMALL_BLOCK,
    cpu: 'process.cpuUsage (user + system) across the sequential write, per GiB the client wrote (each GiB is sent to both replicas)',
  };
  const unavailable = tempBrickUnavailable();
  if (unavailable) return { params, rows: [], targets: [], skipped: unavailable };

  const measured = new Map<Setup, SetupRounds>();
  for (const setup of SETUPS) measured.set(setup, await measureSetup(ctx, setup, plan));

  const disk = setupRows('disk', measured.get('disk')!);
  const tmpfs = setupRows('tmpfs', measured.get('tmpfs')!);
  const tcpChild = SETUPS.flatMap((s) => measured.get(s)!.tcpChildMiBps);
  const tcpInProcess = SETUPS.flatMap((s) => measured.get(s)!.tcpInProcessMiBps);
  const rows: ResultRow[] = [
    ...disk.rows,
    ...tmpfs.rows,
    row('loopback TCP, 1 MiB writes to a child that discards', 'MiB/s', tcpChild),
    row('loopback TCP, both ends in this process', 'MiB/s', tcpInProcess),
    row('peak RSS of the primary (bench) process', 'MiB', [process.resourceUsage().maxRSS / KiB]),
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
 * of the disk setup with W=2 (1 MiB sequential writes, 4 in flight; 4 KiB durable QD1).
 */
export async function replicatedBaseline(quick: boolean): Promise<{ seqWriteMiBps: number; qd1Iops: number }> {
  const plan: Plan = quick
    ? { rounds: 1, seqBytes: 32 * MiB, randomSeconds: 1, tcpBytes: 0, tcpSeconds: 0, writeQuorums: [2] }
    : { rounds: 1, seqBytes: 512 * MiB, randomSeconds: 5, tcpBytes: 0, tcpSeconds: 0, writeQuorums: [2] };
  const { rounds } = await withSetupBricks('disk', (bricks) => measureReplicated(bricks, plan, 0));
  const w2 = rounds[0]!;
  return { seqWriteMiBps: w2.seqWriteMiBps, qd1Iops: w2.qd1Iops };
}

export const replicationCase: BenchCase = {
  name: 'replication',
  family: 'replication',
  description:
    'primary + 2 replica agent processes on loopback, each store on its own XFS loop brick (on disk, then in tmpfs), W=2 and W=3 of 3, ' +
    'vs the local store and loopback TCP: 1 MiB sequential write, 4 KiB random durable writes QD1/QD16, CPU per GiB, peak RSS',
  run,
};
