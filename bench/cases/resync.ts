// Benchmark case `resync`: how much a replica's resync sends and how long it takes after a
// known change, against the bytes changed and a full copy of the volume measured in the
// same run.
//
// Topology (bench/cluster.ts, as the replication case): a 3-replica volume, the primary in
// this process (its links resync from its store, as the agent's do), two replica agent
// processes on 127.0.0.1, each store on its own XFS loop-device brick on disk. Per round:
//   load      a known data set (FILES files of random bytes, 1 MiB writes, 4 in flight,
//             W=3: every replica holds it), then all in sync;
//   baseline  a full copy of the primary's data tree onto the killed replica's brick (read,
//             write and fsync every byte, no brickd): what bringing that replica in sync
//             costs without an incremental resync; removed after;
//   changes   for each change (1% and 10% of the volume in distinct 4 KiB blocks chosen at
//             random over the whole data set; 1% as one range of consecutive blocks):
//             replica-2 is SIGKILLed, those blocks are overwritten with new random bytes at
//             QD16 (W=2: the primary and replica-1), replica-2 is restarted on its
//             directory and port, and the clock runs until its link streams again with the
//             replica durable at the primary's last seq. The primary kept running, so the
//             resync is incremental: only the 1 MiB regions changed since replica-2's seq
//             are compared (src/replication/changed.ts): nearly all of them for scattered
//             changes, 1% of the volume for the range;
//   full      replica-2 SIGKILLed, its replica directory deleted (a replaced disk),
//             restarted empty: a resync of the whole volume, timed the same way.
// After each resync the replica's data tree must equal the primary's byte for byte
// (bench/trees.ts), otherwise the case fails.
//
// Why the queue is bounded at 64 entries here (the agent's bound is 65,536 entries or
// 64 MiB): a replica that comes back while the retained queue still holds everything it
// missed is caught up by replaying the queue, not resynced. The bound makes every change
// measured here too large for the queue, so the restart must resync; the case fails if
// the replica was caught up any other way. The initial load's backlog stays far below it
// (a few 1 MiB entries in flight, W=3).
// Bytes: the primary's link counters over every resync attempt (ReplicaLink.stats: file
// bytes in RESYNC_DATA, and every byte of every resync frame); the agent's status
// (PeerStatus.resync: dataBytesSent, bytesSent) and brickd_replication_resync_data_bytes
// report the same counts per attempt from ResyncProgress. Durations: ResyncProgress
// (snapshot to RESYNC_DONE) and, wall clock, from the restart to in sync (the agent's
// start, its store's recovery, the link's reconnect backoff, kept at 50–250 ms here, and
// the resync).
// Baseline choice: a full copy, not a TCP stream of the changed bytes. The resync's outcome
// is a replica in sync, which is what a full copy also gives; its cost is comparing the
// whole volume's checksums and scattered reads and writes of the changed blocks, for which
// a stream of the same few MiB over loopback (milliseconds) says nothing. The full resync's
// throughput is compared with the copy's: same bytes, same outcome.
// Duration on a shared 2-vCPU VM: a full run (3 rounds, a 1 GiB volume) ~1.6 min since the
// changes are resynced incrementally (was ~2.7 min), a quick run (one round, 64 MiB) ~5 s.
import { randomFillSync } from 'node:crypto';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { dropCaches, tempBrickUnavailable, withTempBricks, type TempBrick } from '../brick.js';
import { row, target, type BenchCase, type BenchContext, type CaseResult, type ResultRow } from '../case.js';
import { BenchCluster, LOOPBACK, waitUntil } from '../cluster.js';
import { copyTree, firstDifference } from '../trees.js';
import { inParallel } from '../workload.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const BRICK_BYTES = 4 * GiB;
const BLOCK = 4 * KiB;
const LOAD_CHUNK = MiB;
const LOAD_IN_FLIGHT = 4;
const CHANGE_QD = 16;
const QUEUE_MAX_ENTRIES = 64;
const RECONNECT = { minMs: 50, maxMs: 250 };
interface Change {
  /** Names the change in rows and params. */
  label: string;
  fraction: number;
  layout: 'scattered' | 'one range';
}
const CHANGES: readonly Change[] = [
  { label: '1% of the volume changed', fraction: 0.01, layout: 'scattered' },
  { label: '10% of the volume changed', fraction: 0.1, layout: 'scattered' },
  { label: '1% of the volume changed in one range', fraction: 0.01, layout: 'one range' },
];
const FULL = 'full resync of an emptied replica';
/** The replica the case kills and resyncs (replica-2); replica-1 keeps W=2 reachable. */
const VICTIM = 1;
const SYNC_TIMEOUT_MS = 15 * 60_000;

interface Plan {
  rounds: number;
  files: number;
  fileBytes: number;
}

interface ResyncRun {
  /** The change's label (CHANGES), or FULL. */
  label: string;
  changedBytes: number;
  dataBytes: number;
  totalBytes: number;
  resyncs: number;
  /** From the restart of the replica agent until it is in sync. */
  inSyncSeconds: number;
  /** Of which until the agent was ready (process start, store recovery, listening). */
  agentStartSeconds: number;
  /** The (last) resync's own duration, snapshot to RESYNC_DONE. */
  resyncSeconds: number;
  blocksCompared: number;
  blocksWanted: number;
  incremental: boolean;
}

interface Round {
  copySeconds: number;
  copyBytes: number;
  runs: ResyncRun[];
}

const fileName = (i: number) => `set/data-${i}.dat`;

/** `count` distinct indices below `n`, in random order (a partial Fisher–Yates shuffle). */
function distinctRandom(n: number, count: number): Uint32Array {
  const pool = new Uint32Array(n);
  for (let i = 0; i < n; i++) pool[i] = i;
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(Math.random() * (n - i));
    const t = pool[i]!;
    pool[i] = pool[j]!;
    pool[j] = t;
  }
  return pool.subarray(0, count);
}

async function load(cluster: BenchCluster, plan: Plan): Promise<string[]> {
  await cluster.replicated(3, cluster.store.mkdir('set'));
  const fids: string[] = [];
  for (let i = 0; i < plan.files; i++) fids.push((await cluster.replicated(3, cluster.store.create(fileName(i)))).fid);
  const perFile = plan.fileBytes / LOAD_CHUNK;
  // Each write gets its own buffer: the retained queue keeps a reference until every replica has it.
  await inParallel(LOAD_IN_FLIGHT, plan.files * perFile, async (k) => {
    const data = randomFillSync(Buffer.allocUnsafe(LOAD_CHUNK));
    await cluster.replicated(3, cluster.store.write({ fid: fids[Math.floor(k / perFile)]! }, (k % perFile) * LOAD_CHUNK, data));
  });
  await waitUntil(() => cluster.inSync, 'every replica in sync after the load', SYNC_TIMEOUT_MS);
  return fids;
}

/**
 * Restart the victim and time it until in sync; the link's counters before and after give
 * what the resync sent. Fails if it was caught up without a resync.
 */
async function resyncVictim(cluster: BenchCluster, label: string, changedBytes: number): Promise<ResyncRun> {
  const link = cluster.links[VICTIM]!;
  const before = { ...link.stats };
  await dropCaches();
  const start = performance.now();
  await cluster.restartReplica(VICTIM);
  const agentStartSeconds = (performance.now() - start) / 1000;
  await waitUntil(() => cluster.inSync, `${link.name} in sync after its restart`, SYNC_TIMEOUT_MS);
  const inSyncSeconds = (performance.now() - start) / 1000;
  const resyncs = link.stats.resyncsCompleted - before.resyncsCompleted;
  const progress = link.resyncProgress;
  if (resyncs < 1 || !progress) throw new Error(`${link.name} was caught up without a resync (the retained queue held what it missed): the change is too small for this measurement`);
  return {
    label,
    changedBytes,
    dataBytes: link.stats.resyncDataBytes - before.resyncDataBytes,
    totalBytes: link.stats.resyncBytesSent - before.resyncBytesSent,
    resyncs: link.stats.resyncs - before.resyncs,
    inSyncSeconds,
    agentStartSeconds,
    resyncSeconds: ((progress.finishedAt ?? Date.now()) - progress.startedAt) / 1000,
    blocksCompared: progress.blocksCompared,
    blocksWanted: progress.blocksWanted,
    incremental: progress.incremental,
  };
}

/** The victim's data tree must equal the primary's, byte for byte. */
async function verify(dirs: readonly string[], what: string): Promise<void> {
  const difference = await firstDifference(path.join(dirs[0]!, 'data'), path.join(dirs[1 + VICTIM]!, 'data'));
  if (difference) throw new Error(`after ${what}, replica-${VICTIM + 1} differs from the primary: ${difference}`);
}

async function measureRound(ctx: BenchContext, bricks: TempBrick[], plan: Plan, round: number): Promise<Round> {
  const volumeId = `bench-resync-${round}`;
  const dirs = bricks.map((b) => path.join(b.root, 'volumes', volumeId));
  const volumeBytes = plan.files * plan.fileBytes;
  const copyDir = path.join(bricks[1 + VICTIM]!.root, 'bench-copy');
  let cluster: BenchCluster | undefined;
  try {
    cluster = await BenchCluster.start({
      volumeId,
      dirs,
      sizeLimitBytes: 2 * volumeBytes,
      placements: [LOOPBACK, LOOPBACK],
      writeQuorums: [2, 3],
      queue: { maxEntries: QUEUE_MAX_ENTRIES },
      reconnect: RECONNECT,
    });
    const c = cluster;
    const fids = await load(c, plan);

    await dropCaches();
    const copyStart = performance.now();
    const copyBytes = await copyTree(path.join(dirs[0]!, 'data'), copyDir);
    const copySeconds = (performance.now() - copyStart) / 1000;
    await rm(copyDir, { recursive: true, force: true });
    if (copyBytes !== volumeBytes) throw new Error(`the full copy copied ${copyBytes} bytes of ${volumeBytes}`);

    const runs: ResyncRun[] = [];
    const blocksPerFile = plan.fileBytes / BLOCK;
    const blocks = plan.files * blocksPerFile;
    for (const { label, fraction, layout } of CHANGES) {
      await c.killReplica(VICTIM);
      const count = Math.round(fraction * blocks);
      const start = Math.floor(Math.random() * (blocks - count + 1));
      const picked = layout === 'scattered' ? distinctRandom(blocks, count) : Uint32Array.from({ length: count }, (_, i) => start + i);
      await inParallel(CHANGE_QD, picked.length, async (k) => {
        const block = picked[k]!;
        const data = randomFillSync(Buffer.allocUnsafe(BLOCK));
        await c.replicated(2, c.store.write({ fid: fids[Math.floor(block / blocksPerFile)]! }, (block % blocksPerFile) * BLOCK, data));
      });
      const run = await resyncVictim(c, label, picked.length * BLOCK);
      await verify(dirs, label);
      runs.push(run);
      ctx.progress(
        `round ${round + 1}/${plan.rounds}: ${label} (${(run.changedBytes / MiB).toFixed(1)} MiB): ${run.incremental ? 'incremental ' : ''}resync compared ${((run.blocksCompared * BLOCK) / MiB).toFixed(1)} MiB, sent ${(run.dataBytes / MiB).toFixed(1)} MiB data, ` +
          `${(run.totalBytes / MiB).toFixed(1)} MiB in all, in sync ${run.inSyncSeconds.toFixed(2)} s after the restart (full copy ${copySeconds.toFixed(2)} s)`,
      );
    }

    // A replaced disk: the replica comes back empty and is rebuilt from the whole volume.
    await c.killReplica(VICTIM);
    await rm(dirs[1 + VICTIM]!, { recursive: true, force: true });
    const full = await resyncVictim(c, FULL, volumeBytes);
    await verify(dirs, 'the full resync of an emptied replica');
    runs.push(full);
    ctx.progress(`round ${round + 1}/${plan.rounds}: full resync of ${(volumeBytes / MiB).toFixed(0)} MiB in ${full.inSyncSeconds.toFixed(2)} s (full copy ${copySeconds.toFixed(2)} s)`);
    return { copySeconds, copyBytes, runs };
  } finally {
    await cluster?.close();
    await rm(copyDir, { recursive: true, force: true });
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  }
}

function resultRows(rounds: Round[], plan: Plan): { rows: ResultRow[]; dataRatios: Map<string, ResultRow> } {
  const volumeMiB = (plan.files * plan.fileBytes) / MiB;
  const copy = { label: 'full copy of the volume (read, write, fsync; no brickd)', samples: rounds.map((r) => r.copySeconds) };
  const copyRate = { label: 'full copy of the volume', samples: rounds.map((r) => r.copyBytes / MiB / r.copySeconds) };
  const rows: ResultRow[] = [row(`full copy of the ${volumeMiB} MiB volume, brick to brick (baseline)`, 'MiB/s', copyRate.samples)];
  const dataRatios = new Map<string, ResultRow>();
  const volume = { label: 'the volume', samples: rounds.map(() => volumeMiB) };
  for (const label of [...CHANGES.map((c) => c.label), FULL]) {
    const runs = rounds.map((r) => r.runs.find((x) => x.label === label)!);
    const mib = (f: (x: ResyncRun) => number) => runs.map((x) => f(x) / MiB);
    const secs = (f: (x: ResyncRun) => number) => runs.map(f);
    if (label === FULL) {
      const q = FULL;
      rows.push(row(`${q}: data bytes sent`, 'MiB', mib((x) => x.dataBytes), { label: 'the volume', samples: mib((x) => x.changedBytes) }));
      rows.push(row(`${q}: bytes sent, every frame`, 'MiB', mib((x) => x.totalBytes), { label: 'the volume', samples: mib((x) => x.changedBytes) }));
      rows.push(row(`${q}: throughput, volume / time from restart to in sync`, 'MiB/s', runs.map((x) => x.changedBytes / MiB / x.inSyncSeconds), copyRate));
      rows.push(row(`${q}: time from restart to in sync`, 's', secs((x) => x.inSyncSeconds), copy));
      continue;
    }
    const q = label;
    const changed = { label: 'bytes changed', samples: mib((x) => x.changedBytes) };
    const layout = CHANGES.find((c) => c.label === label)!.layout === 'scattered' ? 'distinct 4 KiB blocks at random' : 'consecutive 4 KiB blocks';
    rows.push(row(`${q}: bytes changed (${layout})`, 'MiB', changed.samples));
    rows.push(row(`${q}: bytes compared by block CRC (${runs.every((x) => x.incremental) ? 'incremental: the changed 1 MiB regions' : 'not all incremental'})`, 'MiB', mib((x) => x.blocksCompared * BLOCK), volume));
    const data = row(`${q}: resync data bytes sent (RESYNC_DATA payloads)`, 'MiB', mib((x) => x.dataBytes), changed);
    dataRatios.set(label, data);
    rows.push(data);
    rows.push(row(`${q}: resync bytes sent, every frame (entries, checksums, data, headers)`, 'MiB', mib((x) => x.totalBytes), changed));
    rows.push(row(`${q}: time from restart to in sync`, 's', secs((x) => x.inSyncSeconds), copy));
    rows.push(row(`${q}: of which the replica agent's start (process, store recovery)`, 's', secs((x) => x.agentStartSeconds)));
    rows.push(row(`${q}: resync duration (snapshot to RESYNC_DONE)`, 's', secs((x) => x.resyncSeconds)));
    rows.push(row(`${q}: resync data rate (data bytes / resync duration)`, 'MiB/s', runs.map((x) => x.dataBytes / MiB / x.resyncSeconds)));
  }
  return { rows, dataRatios };
}

async function run(ctx: BenchContext): Promise<CaseResult> {
  const plan: Plan = ctx.quick ? { rounds: 1, files: 2, fileBytes: 32 * MiB } : { rounds: 3, files: 8, fileBytes: 128 * MiB };
  const params: Record<string, unknown> = {
    ...plan,
    volumeBytes: plan.files * plan.fileBytes,
    changes: CHANGES,
    changeWrites: `4 KiB blocks (distinct ones at random over the data set, or one range of consecutive blocks at a random place), QD${CHANGE_QD}, W=2 (the primary and replica-1; replica-2 is down)`,
    incremental: 'the primary runs throughout, so each change is resynced comparing only the 1 MiB regions changed since the replica\'s seq (ChangedRegions); the emptied replica is compared in full',
    brickBytes: BRICK_BYTES,
    bricks: 'three XFS loop-device bricks on disk (backing files in the temp dir, direct I/O)',
    topology: 'primary (store + RetainedQueue + 2 ReplicaLinks with the store as resync source + QuorumTrackers) in the bench process, 2 replica agents (ReplicaServer + store) in child processes, 127.0.0.1',
    retainedQueue: `at most ${QUEUE_MAX_ENTRIES} entries (the agent: 65,536 entries or 64 MiB), so that every change measured needs a resync`,
    reconnectBackoffMs: RECONNECT,
    resyncThrottle: 'none (the agent default)',
    cacheDrop: 'sync; echo 3 > /proc/sys/vm/drop_caches before the copy and before each restart',
    bytes: "the primary's ReplicaLink counters: resync data (RESYNC_DATA payloads) and every resync frame byte (what the agent's status and metrics report)",
  };
  const unavailable = tempBrickUnavailable();
  if (unavailable) return { params, rows: [], targets: [], skipped: unavailable };

  const rounds: Round[] = [];
  await withTempBricks(3, BRICK_BYTES, async (bricks) => {
    ctx.progress(`bricks ${bricks.map((b) => b.device).join(', ')}`);
    for (let round = 0; round < plan.rounds; round++) rounds.push(await measureRound(ctx, bricks, plan, round));
  });
  params.rounds = rounds;
  const { rows, dataRatios } = resultRows(rounds, plan);
  return {
    params,
    rows,
    targets: CHANGES.map((c) => target(`${c.label}: resync data bytes ≤ 1.1× the bytes changed`, dataRatios.get(c.label)?.ratio ?? Number.NaN, '<=', 1.1)),
  };
}

export const resyncCase: BenchCase = {
  name: 'resync',
  family: 'replication',
  description:
    'a 3-replica volume (primary + 2 replica agent processes on loopback, XFS loop bricks on disk): one replica SIGKILLed, 1% and 10% of the volume changed in scattered 4 KiB blocks and 1% in one range, ' +
    'the replica restarted and resynced; bytes sent vs bytes changed, time to in sync vs a full copy of the volume, a full resync of an emptied replica; the replica verified equal to the primary',
  run,
};
