// The `gluster` benchmark peer: a GlusterFS replica-3 volume mounted through GlusterFS's
// own FUSE client, set up from nothing for one body and taken down after it, so a case can
// run the same fio jobs on it as on brickd's mount.
//
//   netns brickd-bench-gl-<hex> (10.213.9.1 on a veth end, lo up)
//     glusterd -N (our child; state, logs, pid files and CLI socket under the temp dir)
//       ├─ glusterfsd × 3   bricks: XFS loop bricks made as Heketi makes them (xfs-bricks.ts)
//       └─ glusterfs        the self-heal daemon
//     glusterfs (FUSE client, from `mount -t glusterfs 10.213.9.1:/benchgl MNT`)
//   host: MNT, where fio runs
//
// glusterd refuses bricks on localhost/127.0.0.1, hence the namespace. Everything runs in
// it through `nsenter --net` only, so the FUSE mount made there is the host's mount.
//
// Ownership: the peer stops exactly the processes it started: its glusterd child and every
// process in the namespace it created (the bricks, the self-heal daemon and the client
// that glusterd and mount.glusterfs spawned, found with `ip netns pids`). It refuses to
// run while any GlusterFS process it did not start is running, so it never signals,
// shares or removes another's state; the few entries glusterd insists on making at fixed
// paths are removed by exact comparison with a snapshot (system-dirs.ts). Teardown runs
// whatever happened (undo.ts) and is then verified: no loop device over its files, no mount
// under its temp dir, no namespace, none of its processes, nothing new in the system dirs.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { listLoops } from '../../src/brick/loop.js';
import { mountAt, readMountInfo } from '../../src/brick/mountinfo.js';
import { run } from '../../src/exec.js';
import { native, UmountFlags } from '../../src/native.js';
import { ensureGlusterInstalled } from './gluster-install.js';
import { createNetns, deleteNetns, netnsExists, netnsPids, type Netns } from './netns.js';
import { cmdlineOf, commOf, processesNamed, stillRunning, stopProcesses } from './processes.js';
import { newEntries, removeNewEntries, snapshotDirs, type DirSnapshot } from './system-dirs.js';
import { UndoStack } from './undo.js';
import { makeXfsBricks, XFS_BRICK_MKFS, XFS_BRICK_MOUNT_OPTIONS, type XfsBrick } from './xfs-bricks.js';

const GiB = 2 ** 30;
/** The same size class as brickd's embedded bricks in the fuse case. */
export const GLUSTER_BRICK_BYTES = 5 * GiB;
const NETNS_PREFIX = 'brickd-bench-gl';
const ADDRESS = '10.213.9.1';
const VOLUME = 'benchgl';
const REPLICAS = 3;
/** Command names of every GlusterFS daemon: glusterd, the bricks, clients and self-heal. */
const GLUSTER_COMMS = ['glusterd', 'glusterfsd', 'glusterfs'] as const;
/** Where glusterd creates entries whatever its volfile says (see system-dirs.ts). */
const SYSTEM_DIRS = ['/var/lib/glusterd', '/run/gluster', '/var/log/glusterfs'];
const READY_TIMEOUT_MS = 60_000;

/** What the report says about the peer's setup. */
export const GLUSTER_SETUP = {
  topology: `one glusterd in a network namespace of its own (${ADDRESS}), ${REPLICAS} bricks on it, replica ${REPLICAS} (force: one server), mounted with mount -t glusterfs`,
  bricks: `XFS on loop devices over ${GLUSTER_BRICK_BYTES / GiB} GiB sparse files on disk: mkfs.xfs ${XFS_BRICK_MKFS.join(' ')}, mounted ${XFS_BRICK_MOUNT_OPTIONS} (Heketi's brick settings)`,
  volumeOptions: 'the defaults of gluster volume create (no option set)',
};

/** Why the peer cannot run here (root, tools, installation, a foreign GlusterFS), or undefined. */
export async function glusterPeerUnavailable(progress: (message: string) => void): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (network namespace, loop devices, mounts, installing GlusterFS)';
  try {
    await run('ip', ['-V']);
    await run('nsenter', ['--version']);
  } catch {
    return 'needs iproute2 (ip) and util-linux (nsenter)';
  }
  const install = await ensureGlusterInstalled(progress);
  if (install) return install;
  return foreignGluster(new Map());
}

/** A reason not to run when a GlusterFS process not in `ours` is running, else undefined. */
async function foreignGluster(ours: ReadonlyMap<number, string>): Promise<string | undefined> {
  const foreign = [...(await processesNamed(GLUSTER_COMMS))].filter(([pid]) => !ours.has(pid));
  if (foreign.length === 0) return undefined;
  const list = foreign.map(([pid, comm]) => `${comm} pid ${pid}`).join(', ');
  return `GlusterFS processes the benchmark did not start are running (${list}): it runs its own glusterd only on a machine without one, so that it can neither disturb nor remove another's state`;
}

/** glusterd's volfile: Debian's defaults, with every path it lets us choose under `dir`. */
function glusterdVolfile(dir: string): string {
  return [
    'volume management',
    '    type mgmt/glusterd',
    `    option working-directory ${path.join(dir, 'state')}`,
    `    option run-directory ${path.join(dir, 'run')}`,
    `    option logging-directory ${path.join(dir, 'log')}`,
    `    option glusterd-sockfile ${path.join(dir, 'run', 'glusterd.socket')}`,
    '    option transport-type socket',
    '    option transport.address-family inet',
    '    option transport.socket.keepalive-time 10',
    '    option transport.socket.keepalive-interval 2',
    '    option transport.socket.read-fail-log off',
    '    option transport.socket.listen-port 24007',
    '    option ping-timeout 0',
    '    option event-threads 1',
    'end-volume',
    '',
  ].join('\n');
}

async function logTail(file: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim().split('\n').slice(-5).join(' | ');
  } catch {
    return '(no log)';
  }
}

/** Poll `check` until it resolves true; throw `what` timed out (with `why()`) after `timeoutMs`. */
async function waitFor(what: string, check: () => Promise<boolean>, why: () => Promise<string>, timeoutMs = READY_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} timed out: ${await why()}`);
    await sleep(200);
  }
}

/** Every brick of the volume online, per `gluster volume status --xml` (one <node> per process). */
function bricksOnline(xml: string, brickDirs: readonly string[]): boolean {
  const nodes = xml.split('<node>').slice(1);
  return brickDirs.every((dir) => nodes.some((node) => node.includes(`<path>${dir}</path>`) && node.includes('<status>1</status>')));
}

/** What teardown left behind; empty when nothing. */
async function leftovers(dir: string, ns: string | undefined, seen: ReadonlyMap<number, string>, before: DirSnapshot | undefined): Promise<string[]> {
  const left: string[] = [];
  for (const loop of await listLoops()) if (loop.backingFile.startsWith(`${dir}/`)) left.push(`loop device ${loop.device}`);
  for (const mount of await readMountInfo()) if (mount.target.startsWith(`${dir}/`)) left.push(`mount ${mount.target}`);
  if (ns !== undefined && (await netnsExists(ns))) left.push(`network namespace ${ns}`);
  for (const [pid, comm] of seen) if (await stillRunning(pid, comm)) left.push(`${comm} pid ${pid}`);
  if (before) for (const entry of await newEntries(before)) left.push(entry);
  return left;
}

/** Run `program args...` inside the namespace (as its own process: the caller waits for it). */
function runIn(netns: Netns, program: string, args: readonly string[], timeoutMs = 120_000) {
  const [nsenter, ...nsenterArgs] = netns.nsenter as [string, ...string[]];
  return run(nsenter, [...nsenterArgs, program, ...args], { timeoutMs });
}

type GlusterCli = (...args: string[]) => ReturnType<typeof run>;

/**
 * Start glusterd in the foreground as our child, in the namespace, with every path under
 * `dir`, and wait until its CLI socket answers. Registers its stop (and that of every
 * process in the namespace by then) on `undo`; resolves with a CLI bound to it.
 */
async function startGlusterd(dir: string, netns: Netns, undo: UndoStack, ours: Map<number, string>): Promise<GlusterCli> {
  for (const sub of ['state', 'run', 'log']) await mkdir(path.join(dir, sub));
  const volfile = path.join(dir, 'glusterd.vol');
  await writeFile(volfile, glusterdVolfile(dir));
  const log = path.join(dir, 'log', 'glusterd.log');
  const [nsenter, ...nsenterArgs] = netns.nsenter as [string, ...string[]];
  const glusterd = spawn(nsenter, [...nsenterArgs, 'glusterd', '-N', '-f', volfile, '-l', log, '-p', path.join(dir, 'run', 'glusterd.pid')], { stdio: 'ignore' });
  let gone: string | undefined;
  glusterd.once('error', (err) => (gone = `glusterd could not start: ${err.message}`));
  glusterd.once('exit', (code, sig) => (gone = `glusterd exited (${sig ?? `code ${code}`})`));
  // nsenter execs glusterd: the child's pid is glusterd's.
  if (glusterd.pid !== undefined) ours.set(glusterd.pid, 'glusterd');
  undo.push('stop the GlusterFS processes', async () => {
    // The bricks, the self-heal daemon and the client were spawned (and daemonized) by
    // glusterd and mount.glusterfs: the namespace is how they are known to be ours.
    for (const pid of await netnsPids(netns.name)) {
      const comm = await commOf(pid);
      if (comm !== undefined && !ours.has(pid)) ours.set(pid, comm);
    }
    const left = await stopProcesses(ours, 10_000);
    if (left.length > 0) throw new Error(`still running after SIGKILL: ${left.join(', ')}`);
  });
  const sock = path.join(dir, 'run', 'glusterd.socket');
  const cliLog = path.join(dir, 'log', 'cli.log');
  const cli: GlusterCli = (...args) => runIn(netns, 'gluster', ['--mode=script', `--glusterd-sock=${sock}`, `--log-file=${cliLog}`, ...args]);
  await waitFor(
    'glusterd start',
    async () => {
      if (gone) throw new Error(`${gone}: ${await logTail(log)}`);
      return cli('volume', 'list').then(() => true, () => false);
    },
    () => logTail(log),
  );
  return cli;
}

/** Create and start the replica volume over `bricks`, and wait for every brick to be online. */
async function startVolume(cli: GlusterCli, bricks: readonly XfsBrick[], undo: UndoStack): Promise<void> {
  await cli('volume', 'create', VOLUME, 'replica', String(REPLICAS), ...bricks.map((b) => `${ADDRESS}:${b.brickDir}`), 'force');
  undo.push(`delete volume ${VOLUME}`, () => cli('volume', 'delete', VOLUME));
  await cli('volume', 'start', VOLUME);
  undo.push(`stop volume ${VOLUME}`, () => cli('volume', 'stop', VOLUME));
  await waitFor(
    'bricks online',
    async () => bricksOnline((await cli('volume', 'status', VOLUME, '--xml')).stdout, bricks.map((b) => b.brickDir)),
    async () => (await cli('volume', 'status', VOLUME)).stdout.replace(/\s+/g, ' '),
  );
}

/** FUSE-mount the volume at `dir`/mnt with GlusterFS's client, started in the namespace. */
async function mountVolume(dir: string, netns: Netns, undo: UndoStack): Promise<string> {
  const mountpoint = path.join(dir, 'mnt');
  await mkdir(mountpoint);
  // Registered first: a mount command that fails late may still have mounted.
  undo.push(`unmount ${mountpoint}`, async () => {
    if (!(await mountAt(mountpoint))) return;
    await native.umount(mountpoint, 0).catch(() => native.umount(mountpoint, UmountFlags.MNT_DETACH));
  });
  const log = path.join(dir, 'log', 'client.log');
  await runIn(netns, 'mount', ['-t', 'glusterfs', '-o', `log-file=${log}`, `${ADDRESS}:/${VOLUME}`, mountpoint]);
  const mounted = await mountAt(mountpoint);
  if (mounted?.fsType !== 'fuse.glusterfs') throw new Error(`mount -t glusterfs returned but ${mountpoint} shows ${mounted?.fsType ?? 'nothing'}: ${await logTail(log)}`);
  return mountpoint;
}

/**
 * A GlusterFS replica-3 volume FUSE-mounted on a fresh temp dir for the body's lifetime,
 * from an empty glusterd to a mounted volume and back to nothing, whatever the body did.
 * Call glusterPeerUnavailable first (it installs GlusterFS); this throws when a GlusterFS
 * process it did not start is running.
 */
export async function withGlusterMount<T>(body: (mountpoint: string) => Promise<T>, progress: (message: string) => void = () => {}): Promise<T> {
  const foreign = await foreignGluster(new Map());
  if (foreign) throw new Error(foreign);
  const started = Date.now();
  const dir = await mkdtemp(path.join(os.tmpdir(), `${NETNS_PREFIX}-`));
  const undo = new UndoStack();
  undo.push(`remove ${dir}`, () => rm(dir, { recursive: true, force: true }));
  /** Every process of ours ever seen, pid → command name: what teardown stops and checks. */
  const ours = new Map<number, string>();
  let netns: Netns | undefined;
  let before: DirSnapshot | undefined;
  let bodyFailed = true;
  try {
    const snapshot = (before = await snapshotDirs(SYSTEM_DIRS));
    undo.push('remove what glusterd made in system dirs', async () => {
      const failures = await removeNewEntries(snapshot);
      if (failures.length > 0) throw new Error(failures.join('; '));
    });
    const ns = (netns = await createNetns(NETNS_PREFIX, ADDRESS));
    undo.push(`delete network namespace ${ns.name}`, () => deleteNetns(ns.name));
    const bricks = await makeXfsBricks(dir, REPLICAS, GLUSTER_BRICK_BYTES, undo);
    const cli = await startGlusterd(dir, ns, undo, ours);
    await startVolume(cli, bricks, undo);
    const mountpoint = await mountVolume(dir, ns, undo);
    const pids = await netnsPids(ns.name);
    const client: number[] = [];
    for (const pid of pids) if ((await cmdlineOf(pid)).includes('--process-name fuse')) client.push(pid);
    progress(`GlusterFS up in ${((Date.now() - started) / 1000).toFixed(1)} s: netns ${ns.name}, ${pids.length} processes, FUSE client pid ${client.join(', ') || '?'}`);

    const result = await body(mountpoint);
    bodyFailed = false;
    return result;
  } finally {
    const downStarted = Date.now();
    const failures = await undo.run();
    const left = await leftovers(dir, netns?.name, ours, before).catch((err: Error) => [`teardown check failed: ${err.message}`]);
    if (left.length > 0) failures.push(`left behind: ${left.join(', ')}`);
    if (failures.length === 0) {
      progress(`GlusterFS torn down in ${((Date.now() - downStarted) / 1000).toFixed(1)} s; checked: no loop device, mount, netns, process or system-dir entry left`);
    } else {
      const message = `GlusterFS teardown failed: ${failures.join('; ')}`;
      // The body's own error matters more; a teardown failure after a good run fails the case.
      if (bodyFailed) process.stderr.write(`[bench] ${message}\n`);
      else throw new Error(message);
    }
  }
}
