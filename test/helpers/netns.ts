// Network namespaces for partition tests: one namespace per node, each with one address on
// a private subnet, all joined by a bridge inside a hub namespace the test also creates.
// Nothing is added to the host's own network: the host namespace only gains the named
// namespaces, and all of them are deleted at teardown (deleting a namespace removes its
// veth ends). Agents run in a node's namespace through `nsenter --net` (not `ip netns
// exec`, which would also give them a private mount namespace: their bricks and FUSE
// mounts must be visible to the test).
//
//   node0 (eth0 10.213.7.1) ─veth─ h0 ┐
//   node1 (eth0 10.213.7.2) ─veth─ h1 ┼─ br0 (hub namespace)
//   node2 (eth0 10.213.7.3) ─veth─ h2 ┘
//
// partition(i) takes node i's port on the bridge down: its TCP connections stall as with a
// pulled cable (no RST); heal(i) brings it back.
import { randomBytes } from 'node:crypto';
import type { Test } from 'tap';
import { run } from '../../src/exec.js';

export const SUBNET = '10.213.7';

export interface NetNode {
  ns: string;
  address: string;
  /** Command prefix that runs a program in this node's network namespace. */
  command: string[];
}

export interface NetCluster {
  nodes: NetNode[];
  partition(i: number): Promise<void>;
  heal(i: number): Promise<void>;
}

/** Why netns tests skip: they need root and the ip and nsenter tools. */
export async function needsNetns(): Promise<string | false> {
  if (process.getuid?.() !== 0) return 'needs root to create network namespaces';
  try {
    await run('ip', ['-V']);
    await run('nsenter', ['--version']);
    return false;
  } catch {
    return 'needs iproute2 (ip) and util-linux (nsenter)';
  }
}

export async function netnsCluster(t: Test, count: number): Promise<NetCluster> {
  const tag = `bkd${randomBytes(3).toString('hex')}`;
  const hub = `${tag}-hub`;
  const created: string[] = [];
  t.teardown(async () => {
    for (const ns of created.reverse()) await run('ip', ['netns', 'del', ns]).catch(() => {});
  });
  const ip = (...args: string[]) => run('ip', args);
  await ip('netns', 'add', hub);
  created.push(hub);
  await ip('-n', hub, 'link', 'set', 'lo', 'up');
  await ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge');
  await ip('-n', hub, 'link', 'set', 'br0', 'up');
  const nodes: NetNode[] = [];
  for (let i = 0; i < count; i++) {
    const ns = `${tag}-n${i}`;
    await ip('netns', 'add', ns);
    created.push(ns);
    await ip('link', 'add', 'name', `h${i}`, 'netns', hub, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await ip('-n', hub, 'link', 'set', `h${i}`, 'master', 'br0');
    await ip('-n', hub, 'link', 'set', `h${i}`, 'up');
    const address = `${SUBNET}.${i + 1}`;
    await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    await ip('-n', ns, 'link', 'set', 'eth0', 'up');
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
    nodes.push({ ns, address, command: ['nsenter', `--net=/run/netns/${ns}`] });
  }
  return {
    nodes,
    partition: async (i) => {
      await ip('-n', hub, 'link', 'set', `h${i}`, 'down');
    },
    heal: async (i) => {
      await ip('-n', hub, 'link', 'set', `h${i}`, 'up');
    },
  };
}
