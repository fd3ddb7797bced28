#!/usr/bin/env node
// `npm run demo`: a three-node brickd cluster on this machine, to watch a replica fail and
// come back in the primary's metrics.
//
// The story: three agents, each in its own network namespace on 10.213.8.0/24
// (scripts/demo-netns.mjs; replication and /metrics on the namespace address, control on a
// Unix socket), each with one embedded loop-file brick under $BRICKD_DEMO_DIR (default
// /tmp/brickd-demo). A Heketi-style topology file and `brickctl provision` make a
// 3-replica volume (W=2), mounted through FUSE on node-a's primary; a file is written with
// fsync and each node's view is shown. Then node-c's agent is SIGKILLed, more is written
// (more than the primary's 64 MiB retained queue, so node-c will need a resync), node-c is
// restarted and catches up. At each stage the demo prints the primary's replication
// metrics, scraped from http://10.213.8.1:9464/metrics inside node-a's namespace
// (scripts/demo-metrics.mjs): in sync 3/3 → degraded 2/3 with the lag growing → resync →
// 3/3 with lag 0.
//
// Then it waits: use the mount from another shell; Ctrl-C cleans up. `--once` runs the
// story and cleans up at once (test/deploy/demo.test.ts); `--record FILE` also writes the
// stages' metrics as JSON there.
//
// Cleanup, on every exit path (end of --once, Ctrl-C, SIGTERM, an error): the agents this
// script started are stopped by pid with SIGTERM (they run with --unmount-on-exit: they
// unmount the volume and their bricks and detach their loop devices); whatever a killed
// agent left under the demo directory is swept (scripts/demo-sweep.mjs); the namespaces are
// deleted; the directory is removed. The agents run in their own session, so a Ctrl-C
// reaches only this script, which stops them in order. If this script is itself SIGKILLed,
// nothing cleans up: stop the agents (see the pids it printed), delete the
// brickd-demo-* namespaces and the directory by hand.
//
// Needs root (loop devices, mkfs, mount, FUSE, network namespaces), iproute2 and nsenter.
// Built code only: run `npm install` first.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const USAGE = `usage: sudo npm run demo [-- --once] [-- --record FILE]
  --once          run the whole story, then clean up and exit (no waiting for Ctrl-C)
  --record FILE   also write each stage's metrics as JSON to FILE
Environment: BRICKD_DEMO_DIR (default /tmp/brickd-demo) holds the state, sockets and mount.`;

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const brickd = path.join(root, 'dist/src/cli/brickd.js');
const brickctl = path.join(root, 'dist/src/cli/brickctl.js');
const base = path.resolve(process.env.BRICKD_DEMO_DIR ?? '/tmp/brickd-demo');
const VOLUME = 'demo';
const VOLUME_SIZE = '512MiB';
/** Written while node-c is down: more than the retained queue (64 MiB), so node-c is resynced, not replayed. */
const BULK_MIB = 80;
const REPLICATION_PORT = 7400;
const METRICS_PORT = 9464;

const argv = process.argv.slice(2);
const once = argv.includes('--once');
const recordIndex = argv.indexOf('--record');
const recordFile = recordIndex >= 0 ? argv[recordIndex + 1] : undefined;
const unknown = argv.filter((a, i) => a !== '--once' && a !== '--record' && !(recordIndex >= 0 && i === recordIndex + 1));
if (argv.includes('--help') || unknown.length > 0 || (recordIndex >= 0 && !recordFile)) {
  console.error(USAGE);
  process.exit(argv.includes('--help') ? 0 : 2);
}
if (process.getuid?.() !== 0) {
  console.error('npm run demo needs root: it makes network namespaces, loop devices, XFS bricks and a FUSE mount.');
  process.exit(3);
}
if (!existsSync(brickd)) {
  console.error('build first: npm install');
  process.exit(2);
}
if (existsSync(base)) {
  console.error(`${base} exists: another demo may be running (or remove it, or set BRICKD_DEMO_DIR)`);
  process.exit(2);
}

// Loaded after the checks: they import the built code.
const { run } = await import('../dist/src/exec.js');
const { createNetwork, removeNetwork } = await import('./demo-netns.mjs');
const { fetchIn, formatBytes, formatSnapshot, formatResync, formatTable, scrapeReplication } = await import('./demo-metrics.mjs');
const { sweep } = await import('./demo-sweep.mjs');

const started = performance.now();
const seconds = () => Number(((performance.now() - started) / 1000).toFixed(1));
const elapsed = () => `${seconds().toFixed(1)} s`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const ctl = async (socket, ...args) => (await run(process.execPath, [brickctl, '--socket', socket, ...args])).stdout;
const ctlJson = async (socket, ...args) => JSON.parse(await ctl(socket, ...args, '--json'));
const sh = async (script) => (await run('sh', ['-c', script])).stdout;

/** What the record file gets: the stages' snapshots, the catch-up's transitions, the cleanup. */
const record = { stages: [], catchUp: [], cleanup: [], seconds: 0 };
/** Namespaces made so far (createNetwork appends as it goes; removeNetwork empties it). */
const namespaces = [];
const nodes = [];
let stopping = false;
/** Settles when the story has ended, by finishing or by failing once the agents are gone. */
let storySettled = Promise.resolve();

// ── agents ──────────────────────────────────────────────────────────────────────────
function startAgent(node) {
  if (stopping) throw new Error('stopping: not starting agents any more');
  const args = [
    brickd, '--state-dir', node.stateDir, '--control-socket', node.socket,
    '--embedded', '--embedded-count', '1', '--embedded-size-bytes', '1GiB', '--unmount-on-exit', '--log-level', 'warn', '--zone', node.zone,
    '--replication-address', node.replication, '--replication-secret-file', path.join(base, 'replication-secret'), '--cluster-id', 'demo',
    '--metrics-address', node.metricsAddress,
  ];
  const [tool, ...prefix] = node.command;
  const log = openSync(node.logFile, 'a');
  // nsenter execs node in place (no fork without --pid or --fork): the pid is the agent's.
  // Its own session: Ctrl-C on the terminal reaches only this script, which stops agents in order.
  node.proc = spawn(tool, [...prefix, process.execPath, ...args], { stdio: ['ignore', log, log], detached: true });
  closeSync(log);
  node.exited = new Promise((resolve) => node.proc.once('exit', (code, signal) => resolve(signal ?? code)));
}

/** Until the agent answers on its control socket and /readyz answers 200 on its namespace address. */
async function waitReady(node) {
  for (let i = 0; i < 600; i++) {
    if (node.proc.exitCode !== null || node.proc.signalCode !== null) throw new Error(`${node.name}'s agent exited (${node.proc.exitCode ?? node.proc.signalCode}); its log: ${node.logFile}`);
    const ready = await ctl(node.socket, 'node', 'info').then(() => fetchIn(node.command, node.metricsAddress, '/readyz')).then(
      () => true,
      () => false,
    );
    if (ready) return;
    await sleep(100);
  }
  throw new Error(`${node.name} did not become ready in 60 s; its log: ${node.logFile}`);
}

async function stopAgent(node) {
  const { proc } = node;
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGTERM');
  const result = await Promise.race([node.exited, sleep(30_000).then(() => 'timeout')]);
  if (result === 'timeout') {
    record.cleanup.push(`${node.name}'s agent did not stop in 30 s: SIGKILL`);
    proc.kill('SIGKILL');
    await node.exited;
  }
}

// ── cleanup, on every exit path ─────────────────────────────────────────────────────
async function stop(code) {
  if (stopping) return;
  stopping = true;
  console.log('\nstopping the agents (they unmount and detach what they made) ...');
  // The primary first: it unmounts the volume and closes its links before the replicas go.
  if (nodes[0]) await stopAgent(nodes[0]);
  await Promise.all(nodes.slice(1).map(stopAgent));
  // A signal may have come mid-step: let the story end first (its steps fail fast once the
  // agents are gone; it starts no agent once stopping), so it cannot make a namespace or
  // a mount after the cleanup below has looked.
  if ((await Promise.race([storySettled.then(() => 'ended'), sleep(15_000)])) !== 'ended') record.cleanup.push('the story did not end within 15 s of the agents stopping');
  if (existsSync(base)) {
    for (const line of await sweep(base).catch((err) => [`sweep failed: ${err.message}`])) record.cleanup.push(line);
  }
  const made = namespaces.length;
  for (const line of await removeNetwork(namespaces)) record.cleanup.push(`namespace not removed: ${line}`);
  for (const line of record.cleanup) console.log(`  ${line}`);
  rmSync(base, { recursive: true, force: true });
  record.seconds = seconds();
  record.exitCode = code;
  if (recordFile) writeFileSync(recordFile, JSON.stringify(record, null, 2) + '\n');
  console.log(`removed ${made} network namespaces and ${base} (${elapsed()} in all)`);
  process.exit(code);
}
process.on('SIGINT', () => (stopping ? console.log('cleaning up, please wait') : void stop(0)));
process.on('SIGTERM', () => void stop(0));
process.on('SIGHUP', () => void stop(0));

// ── printing ────────────────────────────────────────────────────────────────────────
const say = (text = '') => console.log(text);
const heading = (text) => say(`\n── ${text} ${'─'.repeat(Math.max(3, 78 - text.length))} +${elapsed()}`);
const command = (text) => say(`$ ${text}`);

const printTable = (rows) => formatTable(rows.map((r) => r.map(String))).forEach((line) => say(`  ${line}`));

/** Each node's view of the volume, from its own control socket. */
async function printViews() {
  const rows = [['node', 'role', 'health', 'durable seq', 'used', 'mounted at']];
  for (const node of nodes) {
    const s = await ctlJson(node.socket, 'volume', 'status', VOLUME);
    rows.push([node.name, s.volume.role, s.health, s.durableSeq, formatBytes(s.usedBytes), s.mountPath || '-']);
  }
  printTable(rows);
}

/** Scrape the primary, print the stage's table and keep it for the record. */
async function stage(name, title, context) {
  const snapshot = await scrapeReplication(nodes[0], VOLUME, context.names, context.writeQuorum);
  heading(title);
  say(`  metrics of node-a (primary): http://${nodes[0].metricsAddress}/metrics`);
  for (const line of formatSnapshot(snapshot)) say(`  ${line}`);
  record.stages.push({ name, title, seconds: seconds(), snapshot });
  return snapshot;
}

/** Poll the primary's metrics until `done(snapshot)`; `onChange` sees every snapshot. */
async function watch(context, done, onChange, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (stopping) throw new Error('stopping');
    const snapshot = await scrapeReplication(nodes[0], VOLUME, context.names, context.writeQuorum);
    onChange?.(snapshot);
    if (done(snapshot)) return snapshot;
    if (Date.now() > deadline) throw new Error(`the primary's metrics did not reach the expected state in ${timeoutMs / 1000} s: ${JSON.stringify(snapshot.peers)}`);
    await sleep(200);
  }
}
const allInSync = (s) => s.inSync === s.replicas;

// ── the story ───────────────────────────────────────────────────────────────────────
async function story() {
  mkdirSync(base, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(base, 'replication-secret'), randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  const names = ['node-a', 'node-b', 'node-c'];
  const net = await createNetwork(names, namespaces);
  for (const [i, name] of names.entries()) {
    const { ns, address, command: nsenter } = net[i];
    nodes.push({
      name, ns, address, command: nsenter, zone: String(i + 1),
      stateDir: path.join(base, name), socket: path.join(base, `${name}.sock`), logFile: path.join(base, `${name}.log`),
      replication: `${address}:${REPLICATION_PORT}`, metricsAddress: `${address}:${METRICS_PORT}`,
    });
  }
  for (const node of nodes) startAgent(node);
  await Promise.all(nodes.map(waitReady));
  heading('three agents, each in its own network namespace');
  printTable([
    ['node', 'namespace', 'pid', 'replication', 'metrics', 'control socket'],
    ...nodes.map((n) => [n.name, n.ns, n.proc.pid, n.replication, `http://${n.metricsAddress}/metrics`, n.socket]),
  ]);
  say(`  agent logs (warnings and errors): ${base}/node-*.log`);

  const topology = {
    clusters: [
      {
        nodes: nodes.map((n) => ({
          node: { name: n.name, zone: Number(n.zone), hostnames: { manage: [`unix://${n.socket}`], storage: [n.address] }, replication: n.replication },
          devices: [],
        })),
      },
    ],
  };
  const topologyFile = path.join(base, 'topology.json');
  writeFileSync(topologyFile, JSON.stringify(topology, null, 2));
  const mnt = path.join(base, 'mnt');
  heading('provision a 3-replica volume from a topology file, mount it on node-a');
  const provisionArgs = ['provision', '--topology', topologyFile, '--volume', VOLUME, '--size', VOLUME_SIZE, '--replicas', '3', '--mount-on', 'node-a', '--path', mnt];
  command(`brickctl ${provisionArgs.join(' ')}`);
  say((await run(process.execPath, [brickctl, ...provisionArgs])).stdout.trimEnd());

  const ids = await Promise.all(nodes.map((n) => ctlJson(n.socket, 'node', 'info')));
  const context = {
    names: new Map(ids.map((info, i) => [info.nodeId, nodes[i].name])),
    writeQuorum: (await ctlJson(nodes[0].socket, 'volume', 'status', VOLUME)).volume.writeQuorum,
  };

  heading('write a file through the mount (fsync waits for the write quorum)');
  command(`echo "hello from brickd" > ${mnt}/hello.txt && sync ${mnt}/hello.txt`);
  await sh(`echo "hello from brickd, $(date)" > ${mnt}/hello.txt && sync ${mnt}/hello.txt`);
  say("  each node's view (brickctl volume status on its own control socket):");
  await watch(context, allInSync, undefined, 30_000);
  await printViews();
  await stage('in-sync', 'stage 1: all three replicas in sync', context);

  // A node dies. The primary's link to it drops; writes go on with W=2 of the two left.
  const [primary, , victim] = nodes;
  heading(`kill node-c's agent (pid ${victim.proc.pid}) with SIGKILL`);
  command(`kill -9 ${victim.proc.pid}`);
  victim.proc.kill('SIGKILL');
  await victim.exited;
  await watch(context, (s) => s.peers.find((p) => p.peer === victim.name)?.state !== 'streaming', undefined, 30_000);
  command(`echo "written with node-c down" > ${mnt}/while-down.txt && sync ${mnt}/while-down.txt`);
  await sh(`echo "written with node-c down" > ${mnt}/while-down.txt && sync ${mnt}/while-down.txt`);
  await stage('degraded', 'stage 2: node-c down, one file written (W=2 still met)', context);

  command(`cp -a ${path.join(root, 'src')} ${mnt}/src && dd if=/dev/urandom of=${mnt}/bulk.bin bs=1M count=${BULK_MIB} conv=fsync`);
  await sh(`cp -a ${path.join(root, 'src')} ${mnt}/src && dd if=/dev/urandom of=${mnt}/bulk.bin bs=1M count=${BULK_MIB} conv=fsync status=none`);
  await stage('degraded-more', `stage 3: node-c still down, the source tree and ${BULK_MIB} MiB more written: the lag grows`, context);
  say('  (lag bytes count what the primary still retains, 64 MiB at most: past that, node-c will need a resync)');

  // node-c comes back: the same agent, state dir and brick (still mounted: a SIGKILL unmounts nothing).
  heading('restart node-c: it reconnects and catches up (the primary no longer holds all it missed: resync)');
  // The catch-up is followed from before the restart (node-c down), so its log always shows
  // where it started, however quickly it ends.
  let last = '';
  let restarted = false;
  const follow = (s) => {
    if (restarted && (victim.proc.exitCode !== null || victim.proc.signalCode !== null)) throw new Error(`node-c's agent exited again; its log: ${victim.logFile}`);
    const p = s.peers.find((x) => x.peer === victim.name);
    const line = `${p.state.padEnd(10)} lag ${p.lagSeqs} seqs, ${formatBytes(p.lagBytes)}${p.resync ? `, resync ${formatResync(p.resync)}` : ''}`;
    // A line per change of state, per tenth compared and per 16 MiB of resync data sent.
    const key = `${p.state} ${p.resync ? `${Math.floor(p.resync.ratio * 10)} ${Math.floor(p.resync.dataBytes / 2 ** 24)}` : ''} ${p.lagSeqs === 0}`;
    if (key === last) return;
    last = key;
    say(`  +${elapsed().padStart(7)}  node-c ${line}`);
    record.catchUp.push({ seconds: seconds(), ...p });
  };
  say("  the primary's link to node-c, as its metrics show it:");
  follow(await scrapeReplication(primary, VOLUME, context.names, context.writeQuorum));
  startAgent(victim);
  restarted = true;
  say(`  +${elapsed().padStart(7)}  node-c's agent restarted (pid ${victim.proc.pid})`);
  await watch(context, allInSync, follow, 120_000);
  await waitReady(victim);
  await stage('in-sync-again', 'stage 4: node-c back in sync', context);
  say("  each node's view:");
  await printViews();
  const back = await ctlJson(victim.socket, 'volume', 'status', VOLUME);
  const ahead = await ctlJson(primary.socket, 'volume', 'status', VOLUME);
  say(`  node-c holds seq ${back.durableSeq} of the primary's ${ahead.durableSeq}`);

  if (once) return;
  heading('the cluster keeps running');
  say(`The volume is mounted at ${mnt}. Try: cp -a /etc ${mnt}/ ; ls ${mnt}`);
  say(`  brickctl --socket ${primary.socket} volume status ${VOLUME}`);
  say(`  nsenter --net=/run/netns/${primary.ns} curl -s http://${primary.metricsAddress}/metrics | grep brickd_replication`);
  say('Ctrl-C stops the demo and removes everything it made.');
}

const storyRun = story();
storySettled = storyRun.then(
  () => undefined,
  () => undefined,
);
try {
  await storyRun;
  if (once) await stop(0);
} catch (err) {
  if (!stopping) {
    console.error(`\ndemo failed: ${err.message}`);
    for (const node of nodes) {
      if (!existsSync(node.logFile)) continue;
      const tail = readFileSync(node.logFile, 'utf8').trimEnd().split('\n').slice(-5).filter(Boolean);
      if (tail.length > 0) console.error(`${node.name}'s log, last lines:\n  ${tail.join('\n  ')}`);
    }
    await stop(1);
  }
}
