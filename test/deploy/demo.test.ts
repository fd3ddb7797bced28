// `npm run demo` end to end (scripts/demo.mjs), run as a user would, non-interactively:
// - `--once`: the whole story happens, as the primary's metrics tell it (its `--record`
//   file holds what the tables were printed from): 3 of 3 replicas in sync, then 2 of 3 with
//   node-c's link down and its lag growing while the write quorum (2) stays met, then 3 of 3
//   again with lag 0; and nothing is left behind: no agent process, namespace, mount or loop
//   device of the demo, no demo directory;
// - Ctrl-C while node-c is down (killed, not restarted): the same cleanup, including what the
//   killed agent could not undo itself (its brick mount and loop device);
// - an existing demo directory is refused and left alone.
//
// The leftover checks are this test's own (mountinfo, losetup, ip netns, /proc), not the
// demo's. Needs root, /dev/fuse, iproute2 and nsenter; skips if a demo is running already
// (its namespaces exist). About 15 s here.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { run } from '../../src/exec.js';
import { needsFuse } from '../helpers/fuse.js';
import { REPO } from '../helpers/kubernetes.js';
import { tempDir } from '../helpers/loop.js';
import { needsNetns } from '../helpers/netns.js';

const DEMO = path.join(REPO, 'scripts', 'demo.mjs');
const PREFIX = 'brickd-demo-';

interface Peer {
  peer: string;
  state: string;
  lagSeqs: number;
  lagBytes: number;
  resync?: { ratio: number; etaSeconds: number };
}
interface Snapshot {
  durableSeq: number;
  replicas: number;
  inSync: number;
  writeQuorum: number;
  quorumMet: boolean;
  quorumLostWrites: number;
  peers: Peer[];
}
interface DemoRecord {
  stages: Array<{ name: string; snapshot: Snapshot }>;
  catchUp: Peer[];
  cleanup: string[];
  seconds: number;
  exitCode: number;
}

async function demoNamespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(PREFIX));
}

/** Processes whose command line names `dir` (the demo's agents carry their state dir in theirs). */
async function processesUnder(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(dir + '/')) pids.push(Number(entry));
  }
  return pids;
}

/** Mount points under `dir`, the last mounted first. */
async function mountsUnder(dir: string): Promise<string[]> {
  const points = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((line) => line.split(' ')[4]);
  return points.filter((p): p is string => p?.startsWith(dir) === true).reverse();
}

/** Loop devices backed by a file under `dir`: [device, backing file]. */
async function loopsUnder(dir: string): Promise<Array<[string, string]>> {
  const { stdout } = await run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']);
  return stdout
    .split('\n')
    .filter((line) => line.includes(dir))
    .map((line) => line.trim().split(/\s+/) as [string, string]);
}

/** Everything of the demo's that still exists: processes, mounts, loop devices, namespaces, its directory. */
async function leftovers(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await processesUnder(dir)) found.push(`process ${pid}`);
  for (const point of await mountsUnder(dir)) found.push(`mount ${point}`);
  for (const [device, file] of await loopsUnder(dir)) found.push(`loop ${device} ${file}`);
  for (const ns of await demoNamespaces()) found.push(`namespace ${ns}`);
  if (existsSync(dir)) found.push(`directory ${dir}`);
  return found;
}

/**
 * A demo directory in a fresh temp dir. The teardown does not trust the demo: it kills what
 * still runs there, unmounts, detaches and deletes the namespaces the demo would have made
 * (none existed when the test started), then removes the directory.
 */
async function demoDir(t: Test): Promise<string> {
  const parent = await tempDir(t, 'brickd-demo-test-');
  const dir = path.join(parent, 'demo');
  t.teardown(async () => {
    for (const pid of await processesUnder(dir)) process.kill(pid, 'SIGKILL');
    for (const point of await mountsUnder(dir)) await run('umount', ['-l', point]).catch(() => {});
    for (const [device] of await loopsUnder(dir)) await run('losetup', ['-d', device]).catch(() => {});
    for (const ns of await demoNamespaces()) await run('ip', ['netns', 'del', ns]).catch(() => {});
  });
  return dir;
}

interface Demo {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run the demo; `onOutput` sees stdout as it grows and may signal the child. */
function runDemo(dir: string, args: string[], onOutput?: (stdout: string, child: ReturnType<typeof spawn>) => void): Promise<Demo> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DEMO, ...args], { env: { ...process.env, BRICKD_DEMO_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      onOutput?.(stdout, child);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: Date.now() - started }));
  });
}

const skip = needsFuse() || (await needsNetns()) || ((await demoNamespaces()).length > 0 ? `a demo is running (namespaces ${PREFIX}* exist)` : false);

t.test('--once: in sync, degraded with the lag growing, back in sync; nothing left behind', { skip, timeout: 180_000 }, async (t) => {
  const dir = await demoDir(t);
  const recordFile = path.join(path.dirname(dir), 'record.json');
  const demo = await runDemo(dir, ['--once', '--record', recordFile]);
  t.equal(demo.code, 0, `the demo exits 0 (stderr: ${demo.stderr.trim().slice(-500)})`);
  t.comment(`the demo took ${(demo.ms / 1000).toFixed(1)} s`);
  const record = JSON.parse(await readFile(recordFile, 'utf8')) as DemoRecord;
  const stage = (name: string) => {
    const found = record.stages.find((s) => s.name === name);
    if (!found) throw new Error(`no stage ${name} in ${record.stages.map((s) => s.name).join(', ')}`);
    return found.snapshot;
  };
  const peer = (s: Snapshot, name: string) => s.peers.find((p) => p.peer === name)!;

  t.same(record.stages.map((s) => s.name), ['in-sync', 'degraded', 'degraded-more', 'in-sync-again'], 'the four stages, in order');
  t.same(record.stages.map((s) => s.snapshot.inSync), [3, 2, 2, 3], 'replicas in sync: 3, then 2 while node-c is down, then 3');
  for (const s of record.stages) {
    t.same(s.snapshot.peers.map((p) => p.peer), ['node-b', 'node-c'], `${s.name}: the primary reports both peers by name`);
    t.ok(s.snapshot.quorumMet && s.snapshot.writeQuorum === 2 && s.snapshot.quorumLostWrites === 0, `${s.name}: W=2 met, no write lost its quorum`);
  }
  for (const name of ['in-sync', 'in-sync-again']) {
    t.same(stage(name).peers.map((p) => [p.state, p.lagSeqs, p.lagBytes]), [['streaming', 0, 0], ['streaming', 0, 0]], `${name}: both peers streaming, lag 0`);
  }
  const down = peer(stage('degraded'), 'node-c');
  const downMore = peer(stage('degraded-more'), 'node-c');
  t.not(down.state, 'streaming', `node-c's link is down once it is killed (${down.state})`);
  t.ok(down.lagSeqs > 0 && down.lagBytes > 0, `node-c lags after a write (${down.lagSeqs} seqs, ${down.lagBytes} bytes)`);
  t.ok(downMore.lagSeqs > down.lagSeqs && downMore.lagBytes > down.lagBytes, `the lag grows with more writes (${downMore.lagSeqs} seqs, ${downMore.lagBytes} bytes)`);
  t.same([peer(stage('degraded'), 'node-b').lagSeqs, peer(stage('degraded-more'), 'node-b').lagSeqs], [0, 0], 'node-b keeps up meanwhile');
  t.ok(stage('in-sync-again').durableSeq >= stage('degraded-more').durableSeq, 'nothing written while node-c was down is undone');
  const [first, last] = [record.catchUp[0], record.catchUp.at(-1)];
  const route = record.catchUp.map((p) => `${p.state} lag ${p.lagSeqs}`).join(' → ');
  t.ok(first && first.state !== 'streaming' && first.lagSeqs === downMore.lagSeqs, `the catch-up starts from node-c down (${route})`);
  t.ok(last?.state === 'streaming' && last.lagSeqs === 0 && last.lagBytes === 0, 'and ends streaming with lag 0');
  t.comment(`resync observed during the catch-up: ${record.catchUp.some((p) => p.state === 'resyncing') ? 'yes' : 'no (too quick for the 200 ms polls)'}`);

  for (const heading of ['stage 1: all three replicas in sync', 'stage 2: node-c down', 'stage 3: node-c still down', 'stage 4: node-c back in sync', 'replicas in sync 2/3']) {
    t.match(demo.stdout, heading, `the output shows "${heading}"`);
  }
  t.same(record.cleanup, [], 'the agents undid everything themselves: nothing to sweep');
  t.same(await leftovers(dir), [], 'no process, mount, loop device, namespace or directory left');
});

t.test('Ctrl-C while node-c is down: everything is cleaned up, the killed node included', { skip, timeout: 180_000 }, async (t) => {
  const dir = await demoDir(t);
  const recordFile = path.join(path.dirname(dir), 'record.json');
  let interrupted = false;
  const demo = await runDemo(dir, ['--record', recordFile], (stdout, child) => {
    // Stage 2 is printed right after node-c was killed; it is restarted only after the bulk write.
    if (!interrupted && stdout.includes('stage 2:')) {
      interrupted = true;
      child.kill('SIGINT');
    }
  });
  t.ok(interrupted, 'the demo reached stage 2');
  t.equal(demo.code, 0, `Ctrl-C exits 0 (stderr: ${demo.stderr.trim().slice(-500)})`);
  t.comment(`the demo took ${(demo.ms / 1000).toFixed(1)} s`);
  const record = JSON.parse(await readFile(recordFile, 'utf8')) as DemoRecord;
  t.notOk(record.stages.some((s) => s.name === 'in-sync-again'), 'interrupted before node-c came back');
  t.ok(record.cleanup.some((line) => /^unmounted .*\/node-c\/bricks\//.test(line)), `the killed node's brick was unmounted by the demo (${record.cleanup.join('; ')})`);
  t.ok(record.cleanup.some((line) => /^detached \/dev\/loop\d+ \(node-c\/devices\//.test(line)), "and its loop device detached");
  t.notOk(record.cleanup.some((line) => /node-[ab]/.test(line)), 'the agents still running undid their own');
  t.same(await leftovers(dir), [], 'no process, mount, loop device, namespace or directory left');
});

t.test('an existing demo directory is refused and left alone', { skip }, async (t) => {
  const dir = await demoDir(t);
  await mkdir(dir);
  await writeFile(path.join(dir, 'keep'), 'mine');
  const demo = await runDemo(dir, ['--once']);
  t.equal(demo.code, 2, 'exit 2');
  t.match(demo.stderr, `${dir} exists`, 'says why');
  t.equal(await readFile(path.join(dir, 'keep'), 'utf8'), 'mine', 'its content is untouched');
  t.same(await demoNamespaces(), [], 'no namespace made');
  await rm(dir, { recursive: true });
});
