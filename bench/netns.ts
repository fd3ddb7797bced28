// Network namespaces for benchmarks: one namespace per node, each with one address in
// 10.213.10.0/24, all joined by a bridge in a hub namespace, so that agents talk over veth
// pairs and a bridge (as containers on one host do) instead of the loopback device.
//
//   <prefix>-n0 (eth0 10.213.10.1) ─veth─ h0 ┐
//   <prefix>-n1 (eth0 10.213.10.2) ─veth─ h1 ┼─ br0 (<prefix>-hub)
//   <prefix>-n2 (eth0 10.213.10.3) ─veth─ h2 ┘
//
// What it may touch: only namespaces named `brickd-bench-ns-<pid>-…` (the bench process's
// pid, so two bench runs never share one); nothing is added to the host's own network
// namespace. `withNetns` deletes every namespace it created whatever the body did
// (deleting a namespace removes the veth ends in it), and at start those a killed bench
// run left behind (their pid no longer runs). Processes run in a node's namespace through
// `nsenter --net` (not `ip netns exec`, which would also give them a private mount
// namespace: their bricks must stay visible to the bench).
//
// The veths keep their default MTU (1500, like a plain Ethernet network), while loopback's
// is 65536: the namespaces' TCP carries its data in many more, smaller packets.
import { run } from '../src/exec.js';

export const NETNS_PREFIX = 'brickd-bench-ns';
export const NETNS_SUBNET = '10.213.10';
export const NETNS_MTU = 1500;

export interface NetnsNode {
  ns: string;
  address: string;
  /** Command prefix that runs a program in this node's namespace (execs it: same pid). */
  command: string[];
}

/** Why namespaces cannot be made here (root, iproute2 and nsenter needed), or undefined. */
export async function netnsUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces';
  try {
    await run('ip', ['-V']);
    await run('nsenter', ['--version']);
    return undefined;
  } catch {
    return 'needs iproute2 (ip) and util-linux (nsenter)';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Delete the namespaces of bench runs that died without their teardown (SIGKILLed): ours
 * by name, and only those whose pid no longer runs.
 */
async function removeStale(): Promise<void> {
  const { stdout } = await run('ip', ['netns', 'list']);
  const pattern = new RegExp(`^(${NETNS_PREFIX}-(\\d+)-(?:hub|n\\d+))\\b`);
  for (const line of stdout.split('\n')) {
    const m = pattern.exec(line.trim());
    if (m && !alive(Number(m[2]))) await run('ip', ['netns', 'del', m[1]!]).catch(() => {});
  }
}

/**
 * The hub namespace (named `hub`, holding bridge br0) and one namespace per name in
 * `nodeNames`: node i gets eth0 with `${subnet}.${i + 1}/24`, its veth peer h<i> on the
 * bridge, and lo up. Each namespace is appended to `created` as soon as it exists, so after
 * a failure halfway the caller deletes exactly what was made (in reverse: nodes, then the
 * hub). Nothing is added to the host's own namespace. The one builder behind the bench's
 * namespaces, the tests' partition cluster (test/helpers/netns.ts) and the demo's network
 * (scripts/demo-netns.mjs); each names its own namespaces and subnet.
 */
export async function buildBridgedNamespaces(hub: string, nodeNames: readonly string[], subnet: string, created: string[]): Promise<NetnsNode[]> {
  const ip = (...args: string[]) => run('ip', args);
  const addNs = async (ns: string) => {
    await ip('netns', 'add', ns);
    created.push(ns);
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
  };
  await addNs(hub);
  await ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge');
  await ip('-n', hub, 'link', 'set', 'br0', 'up');
  const nodes: NetnsNode[] = [];
  for (const [i, ns] of nodeNames.entries()) {
    await addNs(ns);
    await ip('link', 'add', 'name', `h${i}`, 'netns', hub, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await ip('-n', hub, 'link', 'set', `h${i}`, 'master', 'br0');
    await ip('-n', hub, 'link', 'set', `h${i}`, 'up');
    const address = `${subnet}.${i + 1}`;
    await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    await ip('-n', ns, 'link', 'set', 'eth0', 'up');
    nodes.push({ ns, address, command: ['nsenter', `--net=/run/netns/${ns}`] });
  }
  return nodes;
}

/** `count` nodes on one bridge for the body's lifetime; every namespace is deleted afterwards. */
export async function withNetns<T>(count: number, body: (nodes: NetnsNode[]) => Promise<T>): Promise<T> {
  if (count < 1 || count > 250) throw new RangeError(`withNetns: 1 to 250 nodes, got ${count}`);
  await removeStale();
  const tag = `${NETNS_PREFIX}-${process.pid}`;
  const created: string[] = [];
  let bodyFailed = true;
  try {
    const nodes = await buildBridgedNamespaces(`${tag}-hub`, Array.from({ length: count }, (_, i) => `${tag}-n${i}`), NETNS_SUBNET, created);
    const result = await body(nodes);
    bodyFailed = false;
    return result;
  } finally {
    const failures: string[] = [];
    for (const ns of created.reverse()) await run('ip', ['netns', 'del', ns]).catch((err: Error) => failures.push(`${ns}: ${err.message}`));
    if (failures.length > 0) {
      const message = `network namespace teardown failed: ${failures.join('; ')}`;
      if (bodyFailed) process.stderr.write(`[bench] ${message}\n`);
      else throw new Error(message);
    }
  }
}
