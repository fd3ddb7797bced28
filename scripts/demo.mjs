#!/usr/bin/env node
// `npm run demo`: a three-node brickd cluster on this machine, to see the whole data path.
//
// Starts three agents on loopback (each with one embedded loop-file brick under
// $BRICKD_DEMO_DIR, default /tmp/brickd-demo, and replication on 127.0.0.1), writes a
// Heketi-style topology for them, provisions a 3-replica volume with `brickctl provision`
// (zone-spread placement, W=2), mounts it through FUSE on the primary, writes a file with
// fsync, and prints each node's view of the volume. Then it waits: use the mount from
// another shell; Ctrl-C stops the agents (they unmount the volume and their bricks and
// detach their loop devices) and removes the demo directory.
//
// Needs root (loop devices, mkfs, mount, FUSE). Built code only: run `npm install` first.
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const brickd = path.join(root, 'dist/src/cli/brickd.js');
const brickctl = path.join(root, 'dist/src/cli/brickctl.js');
const base = process.env.BRICKD_DEMO_DIR ?? '/tmp/brickd-demo';
if (process.getuid?.() !== 0) {
  console.error('npm run demo needs root: it makes loop devices, XFS bricks and a FUSE mount.');
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
mkdirSync(base, { recursive: true, mode: 0o700 });

const freePort = () =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
const ctl = (socket, ...args) => execFileSync(process.execPath, [brickctl, '--socket', socket, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const secretFile = path.join(base, 'replication-secret');
writeFileSync(secretFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
const nodes = [];
for (const [i, name] of ['a', 'b', 'c'].entries()) {
  const socket = path.join(base, `${name}.sock`);
  const replication = `127.0.0.1:${await freePort()}`;
  const args = [
    brickd, '--state-dir', path.join(base, name), '--control-socket', socket, '--metrics-address', 'off',
    '--embedded', '--embedded-count', '1', '--embedded-size-bytes', '2GiB', '--unmount-on-exit', '--log-level', 'error', '--zone', String(i + 1),
    '--replication-address', replication, '--replication-secret-file', secretFile, '--cluster-id', 'demo',
  ];
  const node = { name: `node-${name}`, socket, replication, args };
  node.start = () => (node.proc = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] }));
  node.start();
  nodes.push(node);
}
const waitSocket = async (n) => {
  for (let i = 0; i < 300; i++) {
    try {
      ctl(n.socket, 'node', 'info');
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error(`${n.name} did not come up`);
};
const peersLine = () => ctl(nodes[0].socket, 'volume', 'status', 'demo').split('\n').filter((l) => /^(health|peers):/.test(l)).join('\n');

let stopping = false;
async function stop(code) {
  if (stopping) return;
  stopping = true;
  console.log('\nstopping the agents (they unmount and detach what they made) ...');
  await Promise.all(
    nodes.map(({ proc }) => (proc.exitCode !== null ? undefined : new Promise((resolve) => {
      proc.once('exit', resolve);
      proc.kill('SIGTERM');
    }))),
  );
  rmSync(base, { recursive: true, force: true });
  process.exit(code);
}
process.on('SIGINT', () => void stop(0));
process.on('SIGTERM', () => void stop(0));

try {
  for (const n of nodes) await waitSocket(n);
  const topology = {
    clusters: [{ nodes: nodes.map((n, i) => ({ node: { name: n.name, zone: i + 1, hostnames: { manage: [`unix://${n.socket}`], storage: ['127.0.0.1'] }, replication: n.replication }, devices: [] })) }],
  };
  const topologyFile = path.join(base, 'topology.json');
  writeFileSync(topologyFile, JSON.stringify(topology, null, 2));
  const mnt = path.join(base, 'mnt');
  console.log(`\n$ brickctl provision --topology ${topologyFile} --volume demo --size 512MiB --replicas 3 --mount-on node-a --path ${mnt}`);
  console.log(execFileSync(process.execPath, [brickctl, 'provision', '--topology', topologyFile, '--volume', 'demo', '--size', '512MiB', '--replicas', '3', '--mount-on', 'node-a', '--path', mnt], { encoding: 'utf8' }));
  execFileSync('sh', ['-c', `echo "hello from brickd, $(date)" > ${mnt}/hello.txt && sync ${mnt}/hello.txt`]);
  console.log(`wrote ${mnt}/hello.txt (fsynced: on 2 of 3 replicas at least)\n`);
  for (const n of nodes) {
    console.log(`$ brickctl --socket ${n.socket} volume status demo    # ${n.name}`);
    console.log(ctl(n.socket, 'volume', 'status', 'demo'));
  }
  // A node dies: writes go on with W=2 of the two left; the volume is degraded.
  console.log('$ kill -9 node-c    # a node dies');
  nodes[2].proc.kill('SIGKILL');
  await new Promise((r) => nodes[2].proc.once('exit', r));
  execFileSync('sh', ['-c', `cp -a ${path.join(root, 'src')} ${mnt}/src && sync -f ${mnt}`]);
  console.log(`copied the source tree into the volume with node-c down (fsynced on node-a and node-b)\n${peersLine()}\n`);
  console.log('$ restart node-c    # it comes back and catches up');
  nodes[2].start();
  await waitSocket(nodes[2]);
  const caughtUp = (text) => /health: +healthy/.test(text) && !/lag [1-9]/.test(text);
  for (let i = 0; i < 300 && !caughtUp(peersLine()); i++) await new Promise((r) => setTimeout(r, 100));
  console.log(`${peersLine()}\n`);
  console.log(`The volume is mounted at ${mnt}. Try: cp -a /etc ${mnt}/ ; ls ${mnt} ; brickctl --socket ${nodes[0].socket} volume status demo`);
  console.log('Ctrl-C stops the demo and removes everything it made.');
} catch (err) {
  console.error(`demo failed: ${err.message}`);
  await stop(1);
}
