// The replication case's measurements, callable in the bench process or, for the network
// namespace runs, in a child process running in the primary's namespace (bench/children/
// netns-primary.ts): the same workloads on the local store and on a replicated volume
// (bench/cluster.ts), and the TCP stream that is their network baseline.
//
// Workloads, on one file: 1 MiB sequential writes, 4 in flight, each durable when it
// resolves (and the CPU this process and the replica agents spent on them, per GiB the
// client wrote); then 4 KiB random durable writes over that file at QD1 and QD16, a fixed
// time each. Replicated, a write counts once the primary's store.write resolved and W
// replicas, the local one included, hold it durably (protocol C).
// What it may touch: directories `volumes/bench-*` on the bricks it is given (removed, and
// the bricks trimmed, after each measurement) and the child processes it starts.
import { randomFillSync } from 'node:crypto';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ReplicaStore } from '../src/store/store.js';
import { trimBrick, writeBackAll, type TempBrick } from './brick.js';
import { median } from './case.js';
import { startChildren } from './child.js';
import { BenchCluster, LOOPBACK, waitUntil, type ReplicaPlacement } from './cluster.js';
import type { NetnsNode } from './netns.js';
import { inParallel, timedLoops, type Latencies } from './workload.js';

const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const SEQ_BLOCK = MiB;
export const SEQ_IN_FLIGHT = 4;
const SMALL_BLOCK = 4 * KiB;
export const QD16 = 16;

export interface Plan {
  rounds: number;
  seqBytes: number;
  randomSeconds: number;
  tcpBytes: number;
  tcpSeconds: number;
}

export interface WorkloadRound {
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

export interface ReplicatedRound extends WorkloadRound {
  /** Replicas of the volume, the primary's included. */
  replicas: number;
  writeQuorum: number;
  /** Every replica child together, per GiB the client wrote. */
  replicaCpuSecondsPerGiB: number;
  replicaCpuSystemSecondsPerGiB: number;
  /** Per 1 MiB write, medians: until the primary's store.write resolved, then until the quorum. */
  seqLocalWriteMs: number;
  seqQuorumWaitMs: number;
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

/** Share of the sequential bytes written, untimed, before the measured sequential write. */
export const WARM_UP_FRACTION = 1 / 8;
/**
 * Share of the 4 KiB phase's seconds spent, untimed, on QD1 writes before it: the small-write
 * path (log records with data, batched block writes) is not the sequential one, and fresh
 * agents were 2-3x slower at it over their first ~2 s (measured: the slow writes of a first
 * QD1 run cluster there, a second run has none).
 */
export const SMALL_WARM_UP_FRACTION = 2 / 5;

const NO_CPU: CpuTime = { seconds: 0, systemSeconds: 0 };

/** The three workloads on one file through `write` (local, or replicated and awaited on quorum). */
async function runWorkloads(
  write: (offset: number, data: Buffer) => Promise<void>,
  plan: Plan,
  otherCpuTime: () => Promise<CpuTime>,
): Promise<WorkloadRound & { otherCpuPerGiB: CpuTime }> {
  const pattern = randomFillSync(Buffer.alloc(SEQ_BLOCK));
  const writes = plan.seqBytes / SEQ_BLOCK;
  // Untimed warm-up (WARM_UP_FRACTION of the sequential bytes, the file's first part): agents
  // that just started would otherwise count V8's compilation of the data path (~30% more
  // replica CPU over the first 250 MiB, measured) as the cost of replication. A running
  // agent is warm. Every variant, local store included, gets the same, and the same again
  // before the 4 KiB phases (SMALL_WARM_UP_FRACTION).
  await inParallel(SEQ_IN_FLIGHT, Math.max(1, Math.floor(writes * WARM_UP_FRACTION)), (i) => write(i * SEQ_BLOCK, pattern));
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
  // The 4 KiB phases measure the small-write path, not the host writing back the sequential
  // phase's data underneath them (the bricks are files in its page cache, and the replicated
  // variants leave one copy per replica): every variant, local store included, waits for it.
  await writeBackAll();
  await timedLoops(1, plan.randomSeconds * SMALL_WARM_UP_FRACTION, randomWrite);
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

/** Room for a measurement's file and its write log. */
function sizeLimitOf(plan: Plan): number {
  return 2 * plan.seqBytes;
}

/** The workloads on one store, no replication, on `brick`. */
export async function measureLocal(brick: TempBrick, plan: Plan, round: number): Promise<WorkloadRound> {
  const volumeId = `bench-local-${round}`;
  const dir = path.join(brick.root, 'volumes', volumeId);
  const store = await ReplicaStore.create(dir, { volumeId, sizeLimitBytes: sizeLimitOf(plan) });
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

/**
 * A volume of `bricks.length` replicas (primary here, one agent per other brick, placed by
 * `placements`), the workloads once per W in `writeQuorums`, each on a fresh file; which W
 * goes first alternates with the round, as local and replicated do in the case.
 */
export async function measureReplicated(
  bricks: readonly TempBrick[],
  plan: Plan,
  round: number,
  writeQuorums: readonly number[],
  placements: readonly ReplicaPlacement[] = bricks.slice(1).map(() => LOOPBACK),
): Promise<{ rounds: ReplicatedRound[]; replicaMaxRssBytes: number }> {
  const volumeId = `bench-repl-${round}`;
  const dirs = bricks.map((b) => path.join(b.root, 'volumes', volumeId));
  let cluster: BenchCluster | undefined;
  try {
    cluster = await BenchCluster.start({ volumeId, dirs, sizeLimitBytes: sizeLimitOf(plan), placements, writeQuorums });
    const c = cluster;
    const rounds: ReplicatedRound[] = [];
    for (const writeQuorum of round % 2 === 0 ? writeQuorums : [...writeQuorums].reverse()) {
      const tracker = c.tracker(writeQuorum);
      const file = `seq-w${writeQuorum}.dat`;
      const { fid } = await c.replicated(writeQuorum, c.store.create(file));
      // Where a 1 MiB write's time goes: the primary's own durable write, then the wait for W.
      const localMs: number[] = [];
      const quorumMs: number[] = [];
      const write = async (offset: number, data: Buffer) => {
        const t0 = performance.now();
        const { seq } = await c.store.write({ fid }, offset, data);
        const t1 = performance.now();
        await tracker.waitFor(seq, true);
        if (data.length === SEQ_BLOCK) {
          localMs.push(t1 - t0);
          quorumMs.push(performance.now() - t1);
        }
      };
      const { otherCpuPerGiB, ...result } = await runWorkloads(write, plan, () => c.replicaCpu());
      const stuck = c.links.filter((l) => l.state !== 'streaming');
      if (stuck.length > 0) throw new Error(`${bricks.length} replicas, W=${writeQuorum}: replica links left streaming: ${stuck.map((l) => `${l.name} ${l.state}`).join(', ')}`);
      rounds.push({
        replicas: bricks.length,
        writeQuorum,
        ...result,
        replicaCpuSecondsPerGiB: otherCpuPerGiB.seconds,
        replicaCpuSystemSecondsPerGiB: otherCpuPerGiB.systemSeconds,
        seqLocalWriteMs: median(localMs),
        seqQuorumWaitMs: median(quorumMs),
      });
      // The next W starts on a fresh file with the same free space, as the first did.
      await c.replicated(writeQuorum, c.store.unlink(file));
      await waitUntil(() => c.inSync, 'every replica durable at the unlink');
      for (const brick of bricks) await trimBrick(brick);
    }
    return { rounds, replicaMaxRssBytes: await c.replicaMaxRssBytes() };
  } finally {
    await cluster?.close();
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

function connect(host: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/**
 * TCP from this process to a child that discards (placed by `sink`: loopback, or another
 * namespace): MiB/s from the first write until it has received everything.
 */
export async function tcpToChild(plan: Plan, sink: ReplicaPlacement = LOOPBACK): Promise<number> {
  const [child] = await startChildren([['tcp-sink.js', [sink.host], { name: 'tcp-sink', ...(sink.command ? { command: sink.command } : {}) }]]);
  try {
    const socket = await connect(sink.host, child!.info.port as number);
    const received = child!.nextEvent((e) => e.kind === 'received');
    const start = performance.now();
    const written = await pushBuffers(socket, plan);
    socket.end();
    const { bytes } = await received;
    const seconds = (performance.now() - start) / 1000;
    socket.destroy();
    if (bytes !== written) throw new Error(`tcp sink received ${String(bytes)} bytes of ${written}`);
    return written / MiB / seconds;
  } finally {
    await child!.stop();
  }
}

/** The same with both ends in this process (one event loop): a lower bound of loopback TCP here. */
export async function tcpInProcess(plan: Plan): Promise<number> {
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
    const socket = await connect('127.0.0.1', (server.address() as net.AddressInfo).port);
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

/** A measurement the primary's namespace runs (bench/children/netns-primary.ts). */
export type NetnsJob =
  | { kind: 'replicated'; bricks: TempBrick[]; plan: Plan; round: number; writeQuorums: number[]; placements: ReplicaPlacement[] }
  | { kind: 'tcp'; plan: Plan; sink: ReplicaPlacement };

export type NetnsJobResult<J extends NetnsJob> = J extends { kind: 'replicated' } ? Awaited<ReturnType<typeof measureReplicated>> : number;

export function runNetnsJob(job: NetnsJob): Promise<unknown> {
  return job.kind === 'replicated' ? measureReplicated(job.bricks, job.plan, job.round, job.writeQuorums, job.placements) : tcpToChild(job.plan, job.sink);
}

/** How long a job in a namespace may take before the case gives up on it. */
const NETNS_JOB_TIMEOUT_MS = 30 * 60_000;

/**
 * Run `job` with the primary (or the TCP writer) in `nodes[0]`'s namespace and the replica
 * agents (or the TCP sink) in the others': the bench process itself stays in the host's
 * namespace, which has no address on the namespaces' bridge.
 */
export async function inNetns<J extends NetnsJob>(primary: NetnsNode, job: J): Promise<NetnsJobResult<J>> {
  const [child] = await startChildren([['netns-primary.js', [JSON.stringify(job)], { name: `netns-primary (${job.kind})`, command: primary.command }]]);
  try {
    const event = await child!.nextEvent((e) => e.kind === 'result' || e.kind === 'failed', NETNS_JOB_TIMEOUT_MS);
    if (event.kind === 'failed') throw new Error(`in network namespace ${primary.ns}: ${String(event.message)}`);
    return event.result as NetnsJobResult<J>;
  } finally {
    await child!.stop();
  }
}
