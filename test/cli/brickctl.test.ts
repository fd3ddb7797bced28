// brickctl, the built CLI, run as a child process against three real agents (each with its
// own state dir, an embedded loop-device brick, its own control socket and zone, plus one
// extra allowlisted loop device for the provisioner to adopt): human tables, --json
// documents, exit codes, progress lines, the event stream, and `provision` across zones.
import { spawn } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import t from 'tap';
import { findLoopFor } from '../../src/brick/loop.js';
import { readMountInfo } from '../../src/brick/mountinfo.js';
import { run } from '../../src/exec.js';
import { replicationFlags, startAgent, testSecretFile, type AgentProcess } from '../helpers/agent.js';
import { loopDevice, needsRoot, tempDir } from '../helpers/loop.js';

// Three agents, five mkfs runs and about ninety brickctl processes take about a minute on
// two cores: more than the 120 s per file of .taprc leaves room for on a loaded machine.
t.setTimeout(300_000);

const BRICKCTL = path.resolve(import.meta.dirname, '../../dist/src/cli/brickctl.js');

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the built brickctl; never rejects on a non-zero exit. */
function brickctl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const { BRICKD_SOCKET: _ignored, ...base } = process.env;
    const child = spawn(process.execPath, [BRICKCTL, ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function json<T = any>(text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`not one JSON document: ${JSON.stringify(text.slice(0, 400))}`);
  }
}

interface Node {
  name: string;
  zone: string;
  stateDir: string;
  socket: string;
  extra: string;
  nodeId: string;
  /** host:port of its replication endpoint. */
  replication: string;
  agent: AgentProcess;
  /** brickctl --socket <this node> ... */
  ctl: (...args: string[]) => Promise<Result>;
}

t.test('brickctl against three real agents', { skip: needsRoot(), timeout: 300_000 }, async (t) => {
  const base = await tempDir(t, 'brickctl-e2e-');
  // Extra devices: one per node for the provisioner, one with an ext4 signature on node a.
  const extras = await Promise.all([0, 1, 2].map(() => loopDevice(t, 320, base)));
  const signed = await loopDevice(t, 320, base);
  await run('mkfs.ext4', ['-q', signed]);

  // Whatever happens, no mount or embedded loop device of this test stays behind.
  t.teardown(async () => {
    for (const m of (await readMountInfo()).filter((m) => m.target.startsWith(base)).reverse()) await run('umount', ['-l', m.target]).catch(() => {});
    for (const name of ['a', 'b', 'c']) {
      const dir = path.join(base, name, 'devices');
      for (const file of await readdir(dir).catch(() => [] as string[])) {
        const loop = await findLoopFor(path.join(dir, file)).catch(() => undefined);
        if (loop) await run('losetup', ['-d', loop]).catch(() => {});
      }
    }
  });

  const nodes: Node[] = [];
  const secretFile = await testSecretFile(t);
  for (const [i, name] of ['a', 'b', 'c'].entries()) {
    const stateDir = path.join(base, name);
    const socket = path.join(stateDir, 'control.sock');
    const allow = i === 0 ? ['--allow', extras[i]!, '--allow', signed] : ['--allow', extras[i]!];
    const replication = await replicationFlags(secretFile);
    const agent = startAgent(t, [
      '--state-dir', stateDir, '--embedded', '--embedded-count', '1', '--embedded-size-bytes', '320MiB',
      ...allow, '--control-socket', socket, '--zone', String(i + 1), '--unmount-on-exit', ...replication,
    ]);
    nodes.push({ name: `node-${name}`, zone: String(i + 1), stateDir, socket, extra: extras[i]!, nodeId: '', replication: replication[1]!, agent, ctl: (...args) => brickctl(['--socket', socket, ...args]) });
  }
  // Stop the agents cleanly first (they unmount their bricks and detach their embedded devices).
  t.teardown(async () => {
    await Promise.all(
      nodes.map(async (n) => {
        if (n.agent.child.exitCode !== null || n.agent.child.signalCode !== null) return;
        n.agent.child.kill('SIGTERM');
        await Promise.race([n.agent.exited, new Promise((r) => setTimeout(r, 20_000))]);
      }),
    );
  });
  for (const n of nodes) n.nodeId = (await n.agent.waitFor((l) => l.msg === 'agent running')).nodeId as string;
  const [a, b, c] = nodes as [Node, Node, Node];

  await t.test('usage errors exit 2 and say what is wrong', async (t) => {
    const none = await brickctl([]);
    t.equal(none.code, 2, 'no command');
    t.match(none.stderr, /usage: brickctl/);
    const missing = await a.ctl('volume', 'create', 'v1');
    t.equal(missing.code, 2);
    t.match(missing.stderr, /brickctl: volume create: --size is required; usage: brickctl volume create <id> --size SIZE/);
    t.equal((await a.ctl('volume', 'frobnicate')).code, 2);
    t.equal((await a.ctl('--timeout', 'soon', 'node', 'info')).code, 2);
    t.equal((await a.ctl('volume', 'create', 'v1', '--size', 'ten')).code, 2);
    t.equal((await a.ctl('device', 'adopt', '/dev/x', '--fs', 'btrfs')).code, 2);
    const asJson = await a.ctl('--json', 'volume', 'list', '--bogus');
    t.equal(asJson.code, 2);
    t.same(json(asJson.stderr).error, { reason: 'USAGE', message: "volume list: Unknown option '--bogus'", exitCode: 2 });
    t.equal(asJson.stdout, '', 'nothing on stdout');
    const rejected = await a.ctl('volume', 'create', '../x', '--size', '1MiB');
    t.equal(rejected.code, 2, 'INVALID_ARGUMENT from the agent is a usage error');
    t.match(rejected.stderr, /INVALID_ARGUMENT: volume id "..\/x" must be/);
  });

  await t.test('--help lists the commands and the exit codes', async (t) => {
    const help = await brickctl(['--help']);
    t.equal(help.code, 0);
    for (const line of ['0  ok', '2  usage error', '3  not found', '4  refused', '5  agent unreachable', '6  unimplemented']) t.match(help.stdout, line);
    t.match(help.stdout, /provision +Reference provisioner/);
    const one = await brickctl(['provision', '--help']);
    t.equal(one.code, 0);
    t.match(one.stdout, /usage: brickctl provision --topology FILE --volume ID --size SIZE --replicas N \[--spread-zones prefer\|strict\]/);
  });

  await t.test('an unreachable socket exits 5', async (t) => {
    const gone = path.join(base, 'nobody.sock');
    const human = await brickctl(['--socket', gone, 'node', 'info']);
    t.equal(human.code, 5);
    t.match(human.stderr, `agent unreachable at ${gone}`);
    const machine = await brickctl(['--json', '--socket', gone, 'volume', 'delete', 'v1']);
    t.equal(machine.code, 5, 'a mutating call too, after its one retry');
    t.match(json(machine.stderr).error, { reason: 'UNAVAILABLE', status: 'UNAVAILABLE', exitCode: 5 });
    const env = await brickctl(['node', 'info'], { BRICKD_SOCKET: a.socket });
    t.equal(env.code, 0, 'BRICKD_SOCKET chooses the agent');
    t.match(env.stdout, a.nodeId);
  });

  await t.test('node info and lists: tables for people, JSON for scripts', async (t) => {
    const info = await a.ctl('node', 'info');
    t.equal(info.code, 0);
    t.match(info.stdout, new RegExp(`^node id: +${a.nodeId}$`, 'm'));
    t.match(info.stdout, /^zone: +1$/m);
    const infoJson = json((await a.ctl('--json', 'node', 'info')).stdout);
    t.match(infoJson, { nodeId: a.nodeId, zone: '1', brickFormatVersion: 1, replicaFormatVersion: 1 });
    t.ok(infoJson.capabilities.includes('embedded-devices'));

    const bricks = await a.ctl('brick', 'list');
    t.equal(bricks.code, 0);
    t.match(bricks.stdout, /^BRICK +STATE +DEVICE +FS +SIZE +USED +VOLUMES +MOUNTPOINT$/m);
    t.match(bricks.stdout, /^[0-9a-f-]{36} +mounted +\/dev\/loop\d+ +xfs +\d+ MiB/m);
    const bricksJson = json((await a.ctl('brick', 'list', '--json')).stdout);
    t.equal(bricksJson.bricks.length, 1);
    t.match(bricksJson.bricks[0], { state: 'mounted', fsType: 'xfs', volumes: [], tags: {} });

    const devices = await a.ctl('device', 'list');
    t.match(devices.stdout, /^DEVICE +SIZE +ELIGIBLE +BRICK +SIGNATURES +REASONS$/m);
    t.match(devices.stdout, new RegExp(`^${a.extra} +320 MiB +yes +- +- +-$`, 'm'), 'the extra device is eligible');
    t.match(devices.stdout, new RegExp(`^${signed} +320 MiB +no +- +ext4 +HAS_SIGNATURE$`, 'm'));
    const devicesJson = json((await a.ctl('--json', 'device', 'list')).stdout);
    t.match(
      devicesJson.devices.find((d: any) => d.path === signed),
      { eligible: false, reasons: [{ code: 'HAS_SIGNATURE' }], signatures: [{ type: 'ext4' }] },
    );
    t.same(json((await a.ctl('--json', 'volume', 'list')).stdout), { volumes: [] });
  });

  await t.test('a volume on one node: create, list, status, update, scrub, mount, delete', async (t) => {
    const create = ['volume', 'create', 'life', '--size', '64MiB', '--generation', '1', '--role', 'primary', '--peer', `${b.nodeId}=127.0.0.1:7402`, '--quorum', '2'];
    const made = await a.ctl(...create);
    t.equal(made.code, 0, made.stderr);
    t.match(made.stdout, /^role: +primary$/m);
    t.match(made.stdout, /^size limit: +64 MiB$/m);
    const uid = /^uid: +([0-9a-f-]{36})$/m.exec(made.stdout)?.[1];
    t.ok(uid, 'a primary gets a uid (its incarnation)');
    t.equal((await a.ctl(...create)).code, 0, 'the same create again is idempotent');
    const otherUid = await a.ctl('volume', 'create', 'life', '--size', '64MiB', '--uid', 'pv-other-0001');
    t.equal(otherUid.code, 4, 'the same id with another uid: refused');
    t.match(otherUid.stderr, /VOLUME_EXISTS/);
    const conflict = await a.ctl('volume', 'create', 'life', '--size', '32MiB');
    t.equal(conflict.code, 4, 'other settings: refused');
    t.match(conflict.stderr, /VOLUME_EXISTS/);

    const list = await a.ctl('volume', 'list');
    t.match(list.stdout, /^VOLUME +ROLE +GEN +SIZE +BRICK +QUORUM +PEERS$/m);
    t.match(list.stdout, new RegExp(`^life +primary +1 +64 MiB +[0-9a-f-]{36} +2 +${b.nodeId}=127.0.0.1:7402$`, 'm'));
    // Nothing serves the peer's address: the primary's link to it keeps reconnecting.
    const status = await a.ctl('volume', 'status', 'life');
    t.match(status.stdout, /^health: +degraded$/m);
    t.match(status.stdout, new RegExp(`^uid: +${uid}$`, 'm'), 'status names the uid');
    t.match(status.stdout, new RegExp(`^peers: +${b.nodeId} (connecting|handshake) \\[.+\\] acked 0`, 'm'), 'and why the peer is not streaming');
    t.match(json((await a.ctl('--json', 'volume', 'status', 'life')).stdout), {
      volume: { volumeId: 'life', generation: 1, role: 'primary' },
      health: 'degraded',
      checksumErrors: 0,
      peers: [{ nodeId: b.nodeId, state: /connecting|handshake/ }],
    });

    // The resync throttle: the agent's default, then the volume's own, changed in place.
    t.match(status.stdout, /^resync rate: +100 MiB\/s per replica$/m, "the agent's default rate");
    const throttled = await a.ctl('volume', 'update', 'life', '--generation', '1', '--resync-rate', '50MiB/s');
    t.equal(throttled.code, 0, throttled.stderr);
    t.match(throttled.stdout, /^resync rate: +50 MiB\/s per replica$/m);
    const unthrottled = await a.ctl('--json', 'volume', 'update', 'life', '--generation', '1', '--resync-rate', 'unlimited');
    t.equal(unthrottled.code, 0, unthrottled.stderr);
    t.equal(json(unthrottled.stdout).resyncRateBytesPerSec ?? 0, 0, 'unlimited: 0');
    t.match((await a.ctl('volume', 'status', 'life')).stdout, /^resync rate: +unthrottled$/m);
    const badRate = await a.ctl('volume', 'update', 'life', '--generation', '1', '--resync-rate', 'fast');
    t.equal(badRate.code, 2, 'a rate that is no size: usage error');
    t.match(badRate.stderr, /--resync-rate: expected a size/);

    const stale = await a.ctl('volume', 'update', 'life', '--generation', '0');
    t.equal(stale.code, 4, 'a lower generation is fenced off');
    t.match(stale.stderr, /GENERATION_STALE/);
    const updated = await a.ctl('--json', 'volume', 'update', 'life', '--generation', '2', '--role', 'replica', '--clear-peers', '--quorum', '1');
    t.equal(updated.code, 0, updated.stderr);
    t.match(json(updated.stdout), { volumeId: 'life', generation: 2, role: 'replica', peers: [] });

    const scrub = await a.ctl('scrub', 'start', 'life', '--wait', '--rate', '50');
    t.equal(scrub.code, 0, scrub.stderr);
    t.match(scrub.stderr, /^scrub life: succeeded 100%/m, 'plain progress lines when stderr is not a terminal');
    t.notMatch(scrub.stderr, /\r|\[#/, 'no bar, no carriage return');
    t.match(scrub.stdout, /^state: +succeeded$/m);
    const started = json((await a.ctl('--json', 'scrub', 'start', 'life')).stdout);
    t.match(started, { kind: 'scrub', target: 'life' });
    const got = await a.ctl('--json', 'op', 'get', started.operationId);
    t.equal(json(got.stdout).operationId, started.operationId);
    const watched = await a.ctl('--json', 'op', 'watch', started.operationId);
    t.equal(watched.code, 0);
    const states = watched.stdout.trim().split('\n').map((l) => json(l));
    t.equal(states.at(-1).state, 'succeeded', 'op watch --json: NDJSON, the last line final');
    t.equal((await a.ctl('scrub', 'stop', 'life')).code, 0);

    // life is a replica here now: read-write is refused, read-only is served.
    const mnt = path.join(base, 'mnt');
    const mount = await a.ctl('volume', 'mount', 'life', mnt);
    t.equal(mount.code, 4, 'a replica cannot be mounted read-write');
    t.match(mount.stderr, /NOT_PRIMARY/);
    const mountJson = await a.ctl('--json', 'volume', 'mount', 'life', mnt, '--read-only');
    t.equal(mountJson.code, 0, mountJson.stderr);
    t.same(json(mountJson.stdout), { mountPath: mnt });
    t.match((await a.ctl('volume', 'status', 'life')).stdout, new RegExp(`^mounted at: +${mnt}$`, 'm'));
    const fsType = await run('findmnt', ['-n', '-o', 'FSTYPE,OPTIONS', mnt]);
    t.match(fsType.stdout, /^fuse\.brickd +ro,/, 'a read-only FUSE mount');
    const busy = await a.ctl('volume', 'delete', 'life');
    t.equal(busy.code, 4, 'a mounted volume cannot be deleted');
    t.match(busy.stderr, /VOLUME_MOUNTED/);
    t.equal((await a.ctl('volume', 'unmount', 'life')).code, 0);
    t.equal((await a.ctl('volume', 'unmount', 'life')).code, 0, 'unmount again: nothing to do');
    t.equal((await run('findmnt', ['-n', mnt]).catch(() => ({ stdout: '' }))).stdout, '', 'nothing mounted there any more');

    const deleted = await a.ctl('volume', 'delete', 'life');
    t.match(deleted.stdout, 'deleted volume life');
    const again = await a.ctl('--json', 'volume', 'delete', 'life');
    t.equal(again.code, 0, 'deleting a gone volume succeeds');
    t.same(json(again.stdout), { volumeId: 'life', deleted: false });
    const gone = await a.ctl('volume', 'status', 'life');
    t.equal(gone.code, 3, 'not found');
    t.match(gone.stderr, /VOLUME_NOT_FOUND/);
    t.equal((await a.ctl('op', 'get', 'no-such-op')).code, 3);
    t.equal((await a.ctl('scrub', 'start', 'life')).code, 3);
  });

  await t.test('device adopt: refusals, --force --wait with progress, release', async (t) => {
    const refused = await a.ctl('device', 'adopt', signed);
    t.equal(refused.code, 4);
    t.match(refused.stderr, `DEVICE_HAS_SIGNATURE: ${signed} carries ext4`);
    const refusedJson = await a.ctl('--json', 'device', 'adopt', signed);
    t.match(json(refusedJson.stderr).error, { reason: 'DEVICE_HAS_SIGNATURE', status: 'FAILED_PRECONDITION', exitCode: 4 });
    const notAllowed = await a.ctl('device', 'adopt', b.extra);
    t.equal(notAllowed.code, 4, 'a device off the allowlist is refused');
    t.match(notAllowed.stderr, /DEVICE_NOT_ALLOWED/);
    t.equal((await a.ctl('device', 'adopt', '/dev/brickd-no-such-device')).code, 3, 'no such device');

    const adopted = await a.ctl('device', 'adopt', signed, '--force', '--wait', '--fs', 'ext4', '--tag', 'purpose=test');
    t.equal(adopted.code, 0, adopted.stderr);
    t.match(adopted.stderr, new RegExp(`^adopt-device ${signed}: succeeded 100%`, 'm'));
    const brickId = /brick ([0-9a-f-]{36}) mounted at/.exec(adopted.stdout)?.[1];
    t.ok(brickId, adopted.stdout);
    const bricks = json((await a.ctl('--json', 'brick', 'list')).stdout).bricks;
    t.match(bricks.find((x: any) => x.brickId === brickId), { device: signed, fsType: 'ext4', state: 'mounted', tags: { purpose: 'test' } });
    const again = json((await a.ctl('--json', 'device', 'adopt', signed, '--wait')).stdout);
    t.match(again, { state: 'succeeded', brick: { brickId } }, 'adopting our own brick again returns it');

    // A brick that holds a replica cannot be released.
    t.equal((await a.ctl('volume', 'create', 'pinned', '--size', '16MiB', '--brick', brickId!)).code, 0);
    const inUse = await a.ctl('device', 'release', signed);
    t.equal(inUse.code, 4);
    t.match(inUse.stderr, /BRICK_IN_USE/);
    t.equal((await a.ctl('volume', 'delete', 'pinned')).code, 0);
    const released = await a.ctl('device', 'release', brickId!);
    t.equal(released.code, 0, released.stderr);
    t.match(released.stdout, `released brick ${brickId}`);
    t.equal((await a.ctl('device', 'release', brickId!)).code, 3, 'released: gone');
  });

  await t.test('events stream until interrupted', async (t) => {
    const child = spawn(process.execPath, [BRICKCTL, '--socket', a.socket, '--json', 'events'], { stdio: ['ignore', 'pipe', 'pipe'] });
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const events: any[] = [];
    readline.createInterface({ input: child.stdout }).on('line', (line) => events.push(json(line)));
    // The stream starts when the child has connected: create volumes until one is seen.
    const deadline = Date.now() + 20_000;
    let n = 0;
    while (!events.some((e) => e.kind === 'replica-created') && Date.now() < deadline) {
      await a.ctl('volume', 'create', `ev${n}`, '--size', '8MiB');
      await a.ctl('volume', 'delete', `ev${n++}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    t.match(events.find((e) => e.kind === 'replica-created'), { kind: 'replica-created', volumeId: /^ev\d+$/, brickId: /^[0-9a-f-]{36}$/ });
    child.kill('SIGINT');
    t.equal(await exited, 0, 'Ctrl-C ends the stream with 0');
  });

  // ---- provision ----------------------------------------------------------------------

  const topologyNode = (n: Node, zone: number | string, devices: unknown[] = [n.extra]) => ({
    node: { hostnames: { manage: [`unix://${n.socket}`], storage: ['127.0.0.1'] }, zone, name: n.name, replication: n.replication },
    devices,
  });
  const topology = path.join(base, 'topology.json');
  await writeFile(topology, JSON.stringify({ clusters: [{ nodes: [topologyNode(a, 1), topologyNode(b, 2), topologyNode(c, 3)] }] }, null, 2));
  const provision = (...args: string[]) => brickctl(['provision', '--topology', topology, ...args]);
  const volumesOn = async (n: Node) => json((await n.ctl('--json', 'volume', 'list')).stdout).volumes as any[];

  await t.test('provision --dry-run changes nothing', async (t) => {
    const dry = await provision('--volume', 'pv', '--size', '100MiB', '--replicas', '3', '--dry-run', '--json');
    t.equal(dry.code, 0, dry.stderr);
    const report = json(dry.stdout);
    t.match(report, { dryRun: true, changed: false, replicas: 3, writeQuorum: 2 });
    t.same(report.placement.map((p: any) => p.action), ['would-create', 'would-create', 'would-create']);
    t.same(report.nodes.map((n: any) => n.devices[0].action), ['would-adopt', 'would-adopt', 'would-adopt']);
    for (const n of nodes) t.equal(json((await n.ctl('--json', 'brick', 'list')).stdout).bricks.length, 1, `${n.name}: nothing adopted`);
  });

  await t.test('provision: three replicas on three nodes in three zones', async (t) => {
    const first = await provision('--volume', 'pv', '--size', '100MiB', '--replicas', '3');
    t.equal(first.code, 0, first.stderr);
    t.match(first.stdout, /^NODE +ZONE +ROLE +GEN +BRICK +REPLICATION +ACTION$/m);
    t.match(first.stdout, /^provisioned pv: 3 replicas of 100 MiB in zones .*, write quorum 2$/m);
    t.match(first.stderr, /node node-a: adopting/);

    const replicas = await Promise.all(nodes.map(async (n) => ({ n, volumes: await volumesOn(n) })));
    const addressOf = (n: Node) => n.replication;
    for (const { n, volumes } of replicas) {
      const pv = volumes.find((v) => v.volumeId === 'pv');
      t.ok(pv, `${n.name} holds a replica`);
      t.match(pv, { sizeLimitBytes: 100 * 2 ** 20, generation: 1, writeQuorum: 2 });
      const others = nodes.filter((o) => o !== n).map((o) => ({ nodeId: o.nodeId, address: addressOf(o) }));
      t.same([...pv.peers].sort((x: any, y: any) => x.nodeId.localeCompare(y.nodeId)), others.sort((x, y) => x.nodeId.localeCompare(y.nodeId)), `${n.name}: peers are the other two`);
      const bricks = json((await n.ctl('--json', 'brick', 'list')).stdout).bricks;
      t.ok(bricks.some((x: any) => x.device === n.extra && x.state === 'mounted'), `${n.name}: the topology device was adopted`);
    }
    t.equal(replicas.filter(({ volumes }) => volumes.find((v) => v.volumeId === 'pv').role === 'primary').length, 1, 'exactly one primary');

    const rerun = await provision('--volume', 'pv', '--size', '100MiB', '--replicas', '3', '--json');
    t.equal(rerun.code, 0, rerun.stderr);
    const report = json(rerun.stdout);
    t.equal(report.changed, false, 'a rerun changes nothing');
    t.same(report.placement.map((p: any) => p.action), ['exists', 'exists', 'exists']);
    t.same(report.nodes.map((n: any) => n.devices[0].action), ['brick', 'brick', 'brick']);
    t.same(new Set(report.placement.map((p: any) => p.zone)), new Set(['1', '2', '3']));
    for (const n of nodes) t.equal((await volumesOn(n)).filter((v) => v.volumeId === 'pv').length, 1, `${n.name}: still one replica`);

    const recount = await provision('--volume', 'pv', '--size', '100MiB', '--replicas', '2');
    t.equal(recount.code, 4, 'another replica count for an existing volume is refused');
    t.match(recount.stderr, /brickctl: volume pv: VOLUME_EXISTS: exists with 3 replicas \(on node-., node-., node-.\), not 2; provision does not change the replica count/);
  });

  await t.test('provision: a lost replica is recreated from the recorded replica set', async (t) => {
    // Lose a replica that is not the primary (recreating a primary would need a new generation).
    const victim = (await Promise.all(nodes.map(async (n) => ({ n, pv: (await volumesOn(n)).find((v) => v.volumeId === 'pv') })))).find((x) => x.pv.role === 'replica')!.n;
    t.equal((await victim.ctl('volume', 'delete', 'pv')).code, 0);
    const repair = await provision('--volume', 'pv', '--size', '100MiB', '--replicas', '3', '--json');
    t.equal(repair.code, 0, repair.stderr);
    const report = json(repair.stdout);
    t.equal(report.changed, true);
    t.match(report.placement.find((p: any) => p.node === victim.name), { action: 'created', role: 'replica', nodeId: victim.nodeId, generation: 1 });
    t.same(report.placement.filter((p: any) => p.action === 'exists').length, 2, 'the others are kept');
    t.ok((await volumesOn(victim)).some((v) => v.volumeId === 'pv'));
  });

  await t.test('provision refuses what it cannot place, with exit 4 and the reason', async (t) => {
    const four = await provision('--volume', 'pv4', '--size', '100MiB', '--replicas', '4', '--json');
    t.equal(four.code, 4);
    const error = json(four.stderr).error;
    t.equal(error.reason, 'NOT_ENOUGH_NODES');
    t.match(error.message, /cannot place pv4: NOT_ENOUGH_NODES: 4 replicas need 4 nodes \(never two on one node\); there are 3 \(node-a, node-b, node-c\)/);
    t.equal(four.stdout, '');
    for (const n of nodes) t.notOk((await volumesOn(n)).some((v) => v.volumeId === 'pv4'), `${n.name}: nothing created`);

    const big = await provision('--volume', 'pvbig', '--size', '10GiB', '--replicas', '3');
    t.equal(big.code, 4);
    t.match(big.stderr, /brickctl: cannot place pvbig: NOT_ENOUGH_CAPACITY: 3 replicas of 10 GiB need 3 nodes with a brick of 10 GiB free; 0 have one/);

    // Two zones for three replicas.
    const twoZones = path.join(base, 'two-zones.json');
    await writeFile(twoZones, JSON.stringify({ clusters: [{ nodes: [topologyNode(a, 1), topologyNode(b, 1), topologyNode(c, 2)] }] }));
    const strict = await brickctl(['provision', '--topology', twoZones, '--volume', 'pvz', '--size', '50MiB', '--replicas', '3', '--spread-zones', 'strict']);
    t.equal(strict.code, 4);
    t.match(strict.stderr, /brickctl: cannot place pvz: NOT_ENOUGH_ZONES: --spread-zones strict: 3 replicas need 3 zones; the nodes are in 2 zones \(1, 2\)/);
    const prefer = await brickctl(['provision', '--topology', twoZones, '--volume', 'pvz', '--size', '50MiB', '--replicas', '3', '--dry-run', '--json']);
    t.equal(prefer.code, 0, prefer.stderr);
    const report = json(prefer.stdout);
    t.match(report.warnings.join('\n'), /zone 1 holds 2 of 3 replicas/);
    t.match(report.warnings.join('\n'), /agent reports zone "2", the topology says "1"/, 'a zone that differs from the agent\'s is a warning');
  });

  await t.test('provision: mount on a chosen node, written through FUSE, replicated', async (t) => {
    const mnt = path.join(base, 'mnt-pvm');
    const mounted = await provision('--volume', 'pvm', '--size', '32MiB', '--replicas', '2', '--mount-on', b.name, '--path', mnt, '--json');
    t.equal(mounted.code, 0, mounted.stderr);
    const report = json(mounted.stdout);
    t.equal(report.placement[0].node, b.name, 'the mount node holds the primary');
    t.equal(report.placement[0].role, 'primary');
    t.not(report.placement[1].zone, report.placement[0].zone);
    t.match(report.mount, { node: b.name, path: mnt, state: 'mounted' });
    // Written by another process, as a pod would (FUSE ops run in the agent).
    await run('sh', ['-c', `printf 'hello from a pod' > ${mnt}/greeting && sync ${mnt}/greeting`]);
    t.equal((await run('cat', [`${mnt}/greeting`])).stdout, 'hello from a pod');
    const other = nodes.find((n) => n.name === report.placement[1].node)!;
    const replicaStatus = json((await other.ctl('--json', 'volume', 'status', 'pvm')).stdout);
    const primaryStatus = json((await b.ctl('--json', 'volume', 'status', 'pvm')).stdout);
    t.equal(primaryStatus.mountPath, mnt);
    t.equal(primaryStatus.health, 'healthy', 'the primary streams to its replica');
    t.ok(Number(replicaStatus.durableSeq) >= 1 && replicaStatus.durableSeq === primaryStatus.peers[0].ackedSeq, 'the replica holds what the primary shipped');
    const generation = Number(primaryStatus.volume.generation);
    t.same([Number(primaryStatus.durableGeneration), Number(replicaStatus.durableGeneration)], [generation, generation], 'both report the durable seq made by the primary\'s generation');
    t.match((await other.ctl('volume', 'status', 'pvm')).stdout, new RegExp(`durable seq made by generation:\\s+${generation}`));
    t.equal((await b.ctl('volume', 'unmount', 'pvm')).code, 0);
    for (const n of [b, other]) t.equal((await n.ctl('volume', 'delete', 'pvm')).code, 0);
    t.equal((await provision('--volume', 'x', '--size', '1MiB', '--replicas', '1', '--mount-on', 'node-z', '--path', '/mnt/x')).code, 2, 'unknown mount node');
    t.equal((await provision('--volume', 'x', '--size', '1MiB', '--replicas', '1', '--mount-on', 'node-a')).code, 2, '--mount-on needs --path');
  });

  await t.test('provision: bad topology files and unreachable nodes', async (t) => {
    const bad = path.join(base, 'bad.json');
    await writeFile(bad, JSON.stringify({ clusters: [{ nodes: [{ node: { hostnames: { manage: ['tcp://x:1'], storage: ['h'] }, zone: 1 } }] }] }));
    const invalid = await brickctl(['provision', '--topology', bad, '--volume', 'x', '--size', '1MiB', '--replicas', '1']);
    t.equal(invalid.code, 2);
    t.match(invalid.stderr, `${bad}: clusters[0].nodes[0].node.hostnames.manage[0]: "tcp://x:1": only Unix-socket control endpoints are supported`);
    t.equal((await brickctl(['provision', '--topology', path.join(base, 'none.json'), '--volume', 'x', '--size', '1MiB', '--replicas', '1'])).code, 2);

    const withDown = path.join(base, 'with-down.json');
    const down = { node: { hostnames: { manage: [path.join(base, 'down.sock')], storage: ['127.0.0.9'] }, zone: 4, name: 'node-down' } };
    await writeFile(withDown, JSON.stringify({ clusters: [{ nodes: [topologyNode(a, 1), topologyNode(b, 2), topologyNode(c, 3), down] }] }));
    const dry = await brickctl(['provision', '--topology', withDown, '--volume', 'pvd', '--size', '32MiB', '--replicas', '3', '--dry-run', '--json']);
    t.equal(dry.code, 0, dry.stderr);
    const report = json(dry.stdout);
    t.match(report.warnings[0], /node node-down .* is unreachable and left out/);
    t.same(report.placement.map((p: any) => p.node).sort(), ['node-a', 'node-b', 'node-c']);
  });
});
