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
// pulled cable (no RST); heal(i) brings it back. The namespaces are built by the bench's
// buildBridgedNamespaces (bench/netns.ts), with this file's names and subnet.
import { randomBytes } from 'node:crypto';
import type { Test } from 'tap';
import { run } from '../../src/exec.js';
import { buildBridgedNamespaces, netnsUnavailable, type NetnsNode } from '../../bench/netns.js';

export const SUBNET = '10.213.7';

/** A node: its namespace, its address, and the command prefix that runs a program in it. */
export type NetNode = NetnsNode;

export interface NetCluster {
  nodes: NetNode[];
  partition(i: number): Promise<void>;
  heal(i: number): Promise<void>;
}

/** Why netns tests skip: they need root and the ip and nsenter tools. */
export async function needsNetns(): Promise<string | false> {
  return (await netnsUnavailable()) ?? false;
}

export async function netnsCluster(t: Test, count: number): Promise<NetCluster> {
  const tag = `bkd${randomBytes(3).toString('hex')}`;
  const hub = `${tag}-hub`;
  const created: string[] = [];
  t.teardown(async () => {
    for (const ns of created.reverse()) await run('ip', ['netns', 'del', ns]).catch(() => {});
  });
  const ip = (...args: string[]) => run('ip', args);
  const nodes: NetNode[] = await buildBridgedNamespaces(hub, Array.from({ length: count }, (_, i) => `${tag}-n${i}`), SUBNET, created);
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
