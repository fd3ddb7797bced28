// The demo's network: one network namespace per node, each with one address on
// 10.213.8.0/24, joined by a bridge inside a hub namespace, as the partition tests do it
// (test/helpers/netns.ts), with the same builder (bench/netns.ts). Nothing is added to the host's own network: the host only gains
// the named namespaces (all named `brickd-demo-*`), and removing them removes the veth
// pairs with them.
//
//   brickd-demo-node-a (eth0 10.213.8.1) ─veth─ h0 ┐
//   brickd-demo-node-b (eth0 10.213.8.2) ─veth─ h1 ┼─ br0 (brickd-demo-hub)
//   brickd-demo-node-c (eth0 10.213.8.3) ─veth─ h2 ┘
//
// Programs enter a node's namespace with `nsenter --net=/run/netns/NAME` (network only, not
// `ip netns exec`, which also unshares the mount namespace): the agents' bricks and FUSE
// mounts stay visible in the host's mount namespace.
//
// Ownership: the caller passes `created`, an array this module appends each namespace to as
// soon as it exists, so that a failure halfway still lets the caller remove exactly those.
import { run } from '../dist/src/exec.js';
import { buildBridgedNamespaces } from '../dist/bench/netns.js';

export const NETNS_PREFIX = 'brickd-demo-';
export const SUBNET = '10.213.8';

/** Names of the namespaces that exist now with the demo's prefix. */
export async function demoNamespaces() {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0])
    .filter((name) => name?.startsWith(NETNS_PREFIX));
}

/**
 * Create the hub and one namespace per node name; resolve with each node's namespace,
 * address and command prefix. Refuses if any demo namespace exists already (another demo
 * running, or one that was killed before its cleanup).
 */
export async function createNetwork(nodeNames, created) {
  const existing = await demoNamespaces();
  if (existing.length > 0) {
    throw new Error(`network namespaces ${existing.join(', ')} exist: another demo is running (or remove them: ip netns del NAME)`);
  }
  return buildBridgedNamespaces(
    `${NETNS_PREFIX}hub`,
    nodeNames.map((name) => `${NETNS_PREFIX}${name}`),
    SUBNET,
    created,
  );
}

/** Remove the namespaces in `created` (nodes first, the hub last); resolve with the errors, if any. */
export async function removeNetwork(created) {
  const errors = [];
  for (const ns of [...created].reverse()) {
    await run('ip', ['netns', 'del', ns]).catch((err) => errors.push(`${ns}: ${err.message}`));
  }
  created.length = 0;
  return errors;
}
