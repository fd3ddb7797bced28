// Benchmark case `fuse`: brickd's own FUSE mount of a 3-replica volume, the way a pod uses
// it, against its ceilings, with the same fio jobs (bench/fusejobs.ts) in the same run.
//
// Topology: three brickd agent processes (dist/src/cli/brickd.js), each with one embedded
// loop-file brick under its own state dir on disk and replication on 127.0.0.1, configured
// through their control sockets: a volume with its primary on the first (W=2 of 3), mounted
// there with MountVolume. fio runs in its own process against the mount.
// Baselines, measured in this run:
//   raw brick fs   the same jobs on an XFS loop brick (the disk path with nothing above it)
//   null FUSE      the same jobs on a fuse-native filesystem that discards writes (the
//                  ceiling of any fuse-native frontend on this machine)
//   brickd direct  brickd's own 3-replica figures without FUSE (bench/cases/replication.ts,
//                  W=2 on disk bricks): 1 MiB sequential writes, 4 KiB durable writes QD1
//   GlusterFS      only with `--peer gluster` (ctx.peers): the same jobs on a GlusterFS
//                  replica-3 volume through its own FUSE client, bricks on the same kind of
//                  loop device (bench/peers/gluster.ts), set up and torn down every round
// Targets (the FUSE issue): sequential write ≥ 70% of null FUSE and ≥ 50% of brickd
// direct; 4 KiB sync QD1 IOPS ≥ 50% of brickd direct. With the GlusterFS peer (the
// benchmark issue): seq write ≥ 2× GlusterFS with one writer and with four; 4 KiB sync
// QD1 IOPS ≥ 2× and its p99 ≤ 0.5× GlusterFS's; seq read ≥ 1× GlusterFS.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { controlClient, type ControlClient } from '../../src/wire/control.js';
import { agentBrickFlags, dropCaches, eraseAgentBrick, tempBrickUnavailable, withTempBrick } from '../brick.js';
import { row, target, type BenchCase, type BenchContext, type CaseResult, type ResultRow, type Target } from '../case.js';
import { fioVersion, type FioResult } from '../fio.js';
import { figure, fuseJobs, PARALLEL_WRITERS, runFuseJobs, type FuseJobKey } from '../fusejobs.js';
import { glusterVersion } from '../peers/gluster-install.js';
import { GLUSTER_SETUP, glusterPeerUnavailable, withGlusterMount } from '../peers/gluster.js';
import { withNullFuse } from './fuse-null.js';
import { replicatedBaseline } from './replication.js';

const GiB = 2 ** 30;
const BRICK_BYTES = 5 * GiB;
const VOLUME = 'bench-fuse';
const BRICKD = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/brickd.js');

type Round = Record<FuseJobKey, FioResult>;

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** One unary control call, promisified. */
function call<Res>(client: ControlClient, method: string, request: object): Promise<Res> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (r: object, m: grpc.Metadata, o: object, cb: (e: Error | null, r?: Res) => void) => void>)[method]!;
    fn.call(client, request, new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

interface Agent {
  proc: ChildProcess;
  client: ControlClient;
  stateDir: string;
  /** The --device this agent adopts as its brick (absent: its embedded loop-file disk). */
  device?: string;
}

/** Adopt `device` as the agent's brick through the control API and wait for the operation. */
async function adoptBrick(client: ControlClient, device: string): Promise<void> {
  let op = await call<{ operationId: string; state: string; errorMessage: string }>(client, 'adoptDevice', { device, fsType: 'xfs' });
  const deadline = Date.now() + 120_000;
  while (op.state === 'running' && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    op = await call(client, 'getOperation', { operationId: op.operationId });
  }
  if (op.state !== 'succeeded') throw new Error(`adopting --device ${device}: ${op.state === 'running' ? 'still running after 120 s' : op.errorMessage}`);
}

/**
 * Three agents, a W=2 volume with its primary on the first, mounted at a temp dir, for the
 * body's lifetime. Torn down whatever happened: unmounted, agents stopped with SIGTERM
 * (they unmount their bricks and detach their loop devices: --unmount-on-exit), SIGKILL
 * after 20 s, temp dirs removed.
 */
async function withBrickdMount<T>(quick: boolean, body: (mountpoint: string) => Promise<T>): Promise<T> {
  const base = await mkdtemp(path.join(os.tmpdir(), 'brickd-bench-fuse-'));
  const agents: Agent[] = [];
  const mountpoint = path.join(base, 'mnt');
  try {
    const secretFile = path.join(base, 'secret');
    await writeFile(secretFile, randomBytes(32).toString('hex'), { mode: 0o600 });
    for (let i = 0; i < 3; i++) {
      const stateDir = path.join(base, `agent-${i}`);
      const socket = path.join(base, `agent-${i}.sock`);
      const brick = agentBrickFlags(i, BRICK_BYTES);
      const args = [
        BRICKD, '--state-dir', stateDir, '--control-socket', socket, '--metrics-address', 'off', '--log-level', 'warn',
        ...brick.args, '--unmount-on-exit',
        '--replication-address', `127.0.0.1:${await freePort()}`, '--replication-secret-file', secretFile, '--cluster-id', 'bench',
      ];
      const proc = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      agents.push({ proc, client: controlClient(socket), stateDir, ...(brick.adopt ? { device: brick.adopt } : {}) });
    }
    const infos: Array<{ nodeId: string; replicationAddress: string }> = [];
    for (const agent of agents) {
      await new Promise<void>((resolve, reject) => agent.client.waitForReady(Date.now() + 60_000, (err) => (err ? reject(err) : resolve())));
      if (agent.device) await adoptBrick(agent.client, agent.device);
      infos.push(await call(agent.client, 'getNodeInfo', {}));
    }
    const sizeLimitBytes = (quick ? 1 : 4) * GiB;
    for (const agent of agents.slice(1)) await call(agent.client, 'createVolume', { volumeId: VOLUME, sizeLimitBytes, role: 'replica', generation: 1 });
    const peers = infos.slice(1).map((i) => ({ nodeId: i.nodeId, address: i.replicationAddress }));
    await call(agents[0]!.client, 'createVolume', { volumeId: VOLUME, sizeLimitBytes, role: 'primary', generation: 1, peers, writeQuorum: 2 });
    await call(agents[0]!.client, 'mountVolume', { volumeId: VOLUME, hostPath: mountpoint });
    return await body(mountpoint);
  } finally {
    await Promise.all(
      agents.map(async ({ proc, client }) => {
        client.close();
        if (proc.exitCode !== null || proc.signalCode !== null) return;
        const exited = new Promise((resolve) => proc.once('exit', resolve));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    // The agents unmounted their bricks on exit (--unmount-on-exit): blank the devices again.
    for (const { device } of agents) if (device) await eraseAgentBrick(device);
    await rm(base, { recursive: true, force: true });
  }
}

const GLUSTER = 'GlusterFS replica 3 FUSE';

/** The p99 of the fdatasync calls of the 4 KiB sync job (fio reports them apart from the writes). */
function syncP99(r: FioResult): number {
  if (!r.sync) throw new Error('fio reported no fdatasync latency for the 4 KiB sync job');
  return r.sync.p99Us;
}

/** brickd's mount against GlusterFS's, round by round medians: the rows and the benchmark issue's targets. */
function glusterComparison(brickd: Round[], gluster: Round[], quick: boolean): { rows: ResultRow[]; targets: Target[] } {
  const rows: ResultRow[] = [];
  const byKey = {} as Record<FuseJobKey, ResultRow>;
  for (const { key, label, unit } of fuseJobs('', quick)) {
    byKey[key] = row(`brickd FUSE (3 replicas): ${label} vs GlusterFS`, unit, brickd.map((r) => figure(key, r[key])), { label: GLUSTER, samples: gluster.map((r) => figure(key, r[key])) });
    rows.push(byKey[key]);
  }
  // Latency of the 4 KiB sync job. fio's clat of a write stops before the fdatasync that
  // follows it, and fio reports the fdatasync calls separately. Each system splits the
  // durable work between the two its own way (a write-behind cache acknowledges the write
  // early and pays at the fdatasync; a frontend that replicates on write pays at the
  // write), so neither half alone compares. The p99 of write + fdatasync is what an
  // application waits for; fio does not give it, so the sum of the two p99s (an upper
  // bound of it, computed the same way on both sides) is the compared figure and the
  // target's. Both halves are shown as well.
  const p99 = (name: string, of: (r: FioResult) => number) =>
    row(`brickd FUSE: 4 KiB sync write QD1, ${name}`, 'µs', brickd.map((r) => of(r.syncWrite4k)), { label: GLUSTER, samples: gluster.map((r) => of(r.syncWrite4k)) });
  const p99Total = p99('p99 of write + p99 of fdatasync', (r) => r.clat.p99Us + syncP99(r));
  rows.push(p99('write p99 (clat)', (r) => r.clat.p99Us), p99('fdatasync p99', syncP99), p99Total);
  const ratio = (r: ResultRow) => r.ratio ?? Number.NaN;
  return {
    rows,
    targets: [
      target('seq write through FUSE, 1 writer, ≥ 2× GlusterFS replica-3 FUSE', ratio(byKey.seqWrite), '>=', 2),
      target(`seq write through FUSE, ${PARALLEL_WRITERS} writers, ≥ 2× GlusterFS replica-3 FUSE`, ratio(byKey.parallelWrite), '>=', 2),
      target('4 KiB sync write QD1 IOPS through FUSE ≥ 2× GlusterFS replica-3 FUSE', ratio(byKey.syncWrite4k), '>=', 2),
      target('4 KiB sync write QD1 p99 (write + fdatasync) through FUSE ≤ 0.5× GlusterFS replica-3 FUSE', ratio(p99Total), '<=', 0.5),
      target('seq read through FUSE ≥ 1× GlusterFS replica-3 FUSE', ratio(byKey.seqRead), '>=', 1),
    ],
  };
}

async function run(ctx: BenchContext): Promise<CaseResult> {
  const quick = ctx.quick;
  const withGluster = ctx.peers.includes('gluster');
  const rounds = quick ? 1 : 3;
  const fio = await fioVersion();
  const params: Record<string, unknown> = {
    rounds,
    topology: '3 brickd agent processes on 127.0.0.1, one embedded loop-file XFS brick each (on disk), W=2 of 3, mounted on the primary with MountVolume',
    fio,
    jobs: fuseJobs('<dir>', quick).map(({ label }) => label),
    cacheDrop: 'sync; echo 3 > /proc/sys/vm/drop_caches before each job (and before brickd direct)',
  };
  const unavailable = tempBrickUnavailable() ?? (fio ? undefined : 'fio is not installed (apt-get install fio)');
  if (unavailable) return { params, rows: [], targets: [], skipped: unavailable };
  if (withGluster) {
    // Installs GlusterFS when missing; the case does not run half a comparison.
    const reason = await glusterPeerUnavailable(ctx.progress);
    if (reason) return { params, rows: [], targets: [], skipped: `--peer gluster: ${reason}` };
    params.gluster = { version: await glusterVersion(), ...GLUSTER_SETUP };
  }

  const brickd: Round[] = [];
  const nullFuse: Round[] = [];
  const raw: Round[] = [];
  const direct: Array<{ seqWriteMiBps: number; qd1Iops: number }> = [];
  const gluster: Round[] = [];
  for (let round = 0; round < rounds; round++) {
    // Alternate the order so that drift of the machine does not favour one side.
    const steps: Array<[string, () => Promise<void>]> = [
      ['brickd FUSE', async () => void brickd.push(await withBrickdMount(quick, (mnt) => runFuseJobs(mnt, quick, { beforeEach: dropCaches })))],
      ['null FUSE', async () => void nullFuse.push(await withNullFuse((mnt) => runFuseJobs(mnt, quick, { beforeEach: dropCaches })))],
      ['raw brick', async () => void raw.push(await withTempBrick(BRICK_BYTES, (b) => runFuseJobs(b.root, quick, { beforeEach: dropCaches })))],
      // Started like every fio job (runFuseJobs' beforeEach): no dirty pages of the step before.
      ['brickd direct', async () => void direct.push(await dropCaches().then(() => replicatedBaseline(quick)))],
    ];
    if (withGluster) {
      // Right after brickd's mount, in either order: the two compared most closely run next to each other.
      steps.splice(1, 0, ['GlusterFS FUSE', async () => void gluster.push(await withGlusterMount((mnt) => runFuseJobs(mnt, quick, { beforeEach: dropCaches }), ctx.progress))]);
    }
    for (const [name, step] of round % 2 === 0 ? steps : [...steps].reverse()) {
      ctx.progress(`round ${round + 1}/${rounds}: ${name}`);
      await step();
    }
    const b = brickd[round]!;
    ctx.progress(
      `round ${round + 1}/${rounds}: brickd FUSE seq write ${figure('seqWrite', b.seqWrite).toFixed(0)} MiB/s (null ${figure('seqWrite', nullFuse[round]!.seqWrite).toFixed(0)}, direct ${direct[round]!.seqWriteMiBps.toFixed(0)}), ` +
        `4 KiB sync QD1 ${b.syncWrite4k.iops.toFixed(0)} IOPS (direct ${direct[round]!.qd1Iops.toFixed(0)})`,
    );
    const g = gluster[round];
    if (g) {
      ctx.progress(
        `round ${round + 1}/${rounds}: GlusterFS FUSE seq write ${figure('seqWrite', g.seqWrite).toFixed(0)} MiB/s, ${PARALLEL_WRITERS} writers ${figure('parallelWrite', g.parallelWrite).toFixed(0)}, ` +
          `seq read ${figure('seqRead', g.seqRead).toFixed(0)}, 4 KiB sync QD1 ${g.syncWrite4k.iops.toFixed(0)} IOPS`,
      );
    }
  }

  const rows: ResultRow[] = [];
  for (const { key, label, unit } of fuseJobs('', quick)) {
    rows.push(row(`brickd FUSE (3 replicas): ${label}`, unit, brickd.map((r) => figure(key, r[key])), { label: 'null FUSE', samples: nullFuse.map((r) => figure(key, r[key])) }));
    rows.push(row(`brickd FUSE (3 replicas): ${label} vs raw`, unit, brickd.map((r) => figure(key, r[key])), { label: 'raw brick fs', samples: raw.map((r) => figure(key, r[key])) }));
  }
  const seqVsDirect = row('brickd FUSE: seq write vs brickd 3 replicas without FUSE', 'MiB/s', brickd.map((r) => figure('seqWrite', r.seqWrite)), { label: 'brickd direct, W=2, 1 MiB × 4 in flight', samples: direct.map((d) => d.seqWriteMiBps) });
  const qd1VsDirect = row('brickd FUSE: 4 KiB sync write QD1 vs brickd 3 replicas without FUSE', 'IOPS', brickd.map((r) => r.syncWrite4k.iops), { label: 'brickd direct, W=2, durable QD1', samples: direct.map((d) => d.qd1Iops) });
  rows.push(seqVsDirect, qd1VsDirect);
  const seqVsNull = rows[0]!;
  params.rounds = { brickd, nullFuse, raw, direct, ...(withGluster ? { gluster } : {}) };
  const targets = [
    target('seq write through FUSE ≥ 70% of the null-FUSE ceiling', seqVsNull.ratio ?? Number.NaN, '>=', 0.7),
    target('seq write through FUSE ≥ 50% of brickd 3 replicas without FUSE', seqVsDirect.ratio ?? Number.NaN, '>=', 0.5),
    target('4 KiB sync QD1 IOPS through FUSE ≥ 50% of brickd 3 replicas without FUSE', qd1VsDirect.ratio ?? Number.NaN, '>=', 0.5),
  ];
  if (withGluster) {
    const vsGluster = glusterComparison(brickd, gluster, quick);
    rows.push(...vsGluster.rows);
    targets.push(...vsGluster.targets);
  }
  return { params, rows, targets };
}

export const fuseCase: BenchCase = {
  name: 'fuse',
  family: 'FUSE frontend',
  description:
    "brickd's FUSE mount of a 3-replica volume (3 agent processes, W=2) vs a null fuse-native filesystem, the raw brick fs and brickd's own 3-replica figures, same fio jobs",
  run,
};
