// A network namespace of its own for a benchmark peer whose servers refuse loopback
// addresses (glusterd will not put a brick on localhost or 127.0.0.1): one private address
// on a veth pair whose both ends live inside the namespace, and lo up. The host's own
// network is not touched: deleting the namespace removes the pair with it.
//
// Programs run inside through `nsenter --net=/run/netns/NAME` (not `ip netns exec`, which
// also gives them a private mount namespace: a FUSE mount made inside must be visible to
// the host, where fio runs). May touch: only the namespace it creates.
import { randomBytes } from 'node:crypto';
import { run } from '../../src/exec.js';

export interface Netns {
  name: string;
  /** The namespace's one address (no prefix length). */
  address: string;
  /** Command prefix running a program in the namespace: [...nsenterArgs, program, ...args]. */
  nsenter: string[];
}

/**
 * Create `<prefix>-<random hex>` with `address`/24 on a veth end inside it. A kernel without
 * the dummy module still has veth, hence the pair. On failure, whatever was made is deleted.
 */
export async function createNetns(prefix: string, address: string): Promise<Netns> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await run('ip', ['netns', 'add', name]);
  try {
    const ip = (...args: string[]) => run('ip', ['-n', name, ...args]);
    await ip('link', 'set', 'lo', 'up');
    await ip('link', 'add', 'gl0', 'type', 'veth', 'peer', 'name', 'gl1');
    await ip('addr', 'add', `${address}/24`, 'dev', 'gl0');
    await ip('link', 'set', 'gl1', 'up');
    await ip('link', 'set', 'gl0', 'up');
  } catch (err) {
    await deleteNetns(name).catch(() => {});
    throw err;
  }
  return { name, address, nsenter: ['nsenter', `--net=/run/netns/${name}`] };
}

/** The pids of every process whose network namespace is `name` (`ip netns pids`). */
export async function netnsPids(name: string): Promise<number[]> {
  const { stdout } = await run('ip', ['netns', 'pids', name]);
  return stdout.split('\n').filter(Boolean).map(Number);
}

export async function netnsExists(name: string): Promise<boolean> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').some((line) => line.split(' ')[0] === name);
}

export async function deleteNetns(name: string): Promise<void> {
  await run('ip', ['netns', 'del', name]);
}
