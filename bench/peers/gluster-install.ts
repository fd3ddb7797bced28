// Getting GlusterFS onto the machine for the `gluster` benchmark peer: Debian's
// glusterfs-server and glusterfs-client packages, installed with apt-get only when a tool
// the peer runs is missing. May touch: the system's packages (apt-get install, and
// apt-get update when apt does not know the package yet). Nothing else.
//
// --no-install-recommends: glusterfs-server recommends nfs-common, whose rpcbind would be a
// service the benchmark neither needs nor stops. Installing starts no daemon here (no
// systemd; the package ships no init script), and the peer checks that anyway before it
// starts its own glusterd (gluster.ts).
import { access } from 'node:fs/promises';
import { BrickdError } from '../../src/errors.js';
import { run } from '../../src/exec.js';

export const GLUSTER_PACKAGES = ['glusterfs-server', 'glusterfs-client'] as const;

const INSTALL_COMMAND = `apt-get install -y ${GLUSTER_PACKAGES.join(' ')}`;
const INSTALL_TIMEOUT_MS = 15 * 60_000;

/** The executables the peer runs, each with a version probe (the mount helper: by path). */
const TOOLS: ReadonlyArray<{ name: string; probe: () => Promise<unknown> }> = [
  { name: 'glusterd', probe: () => run('glusterd', ['--version']) },
  { name: 'gluster', probe: () => run('gluster', ['--version']) },
  { name: 'glusterfs', probe: () => run('glusterfs', ['--version']) },
  { name: 'mount.glusterfs', probe: () => Promise.any(['/sbin/mount.glusterfs', '/usr/sbin/mount.glusterfs'].map((p) => access(p))) },
];

async function missingTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of TOOLS) {
    try {
      await tool.probe();
    } catch (err) {
      // A tool that is there but fails its version probe is not "missing": let it fail later, loudly.
      if (!(err instanceof AggregateError) && !(err instanceof BrickdError && err.code === 'TOOL_MISSING')) throw err;
      missing.push(tool.name);
    }
  }
  return missing;
}

async function aptGet(args: string[]): Promise<void> {
  await run('apt-get', args, { timeoutMs: INSTALL_TIMEOUT_MS, env: { DEBIAN_FRONTEND: 'noninteractive' } });
}

/** apt-get's words for "no such package in the lists it has" (the lists were never fetched, or are old). */
function packageUnknown(err: unknown): boolean {
  const text = err instanceof BrickdError ? String((err.details as { stderr?: string } | undefined)?.stderr ?? err.message) : '';
  return /Unable to locate package|has no installation candidate|not available/i.test(text);
}

/** The installed GlusterFS version (`glusterfs 10.3`), for the report. */
export async function glusterVersion(): Promise<string> {
  const { stdout } = await run('glusterfs', ['--version']);
  return stdout.split('\n')[0]?.trim() ?? 'unknown';
}

/**
 * Make sure GlusterFS's tools are installed. Resolves with undefined when they are (after
 * installing them if needed), or with the reason they cannot be: the peer is then skipped.
 */
export async function ensureGlusterInstalled(progress: (message: string) => void): Promise<string | undefined> {
  const missing = await missingTools();
  if (missing.length === 0) return undefined;
  const what = `GlusterFS is not installed (missing ${missing.join(', ')})`;
  if (process.getuid?.() !== 0) return `${what}; installing it needs root: ${INSTALL_COMMAND}`;
  try {
    await run('dpkg-query', ['--version']);
    await run('apt-get', ['--version']);
  } catch {
    return `${what} and this is not a Debian system (no apt-get): install glusterd, gluster and mount.glusterfs by hand`;
  }
  const started = Date.now();
  progress(`installing ${GLUSTER_PACKAGES.join(' ')} with apt-get`);
  const install = ['install', '-y', '-q', '--no-install-recommends', ...GLUSTER_PACKAGES];
  try {
    try {
      await aptGet(install);
    } catch (err) {
      if (!packageUnknown(err)) throw err;
      progress('apt-get does not know the packages yet: apt-get update');
      await aptGet(['update', '-q']);
      await aptGet(install);
    }
  } catch (err) {
    return `${what} and ${INSTALL_COMMAND} failed: ${(err as Error).message}`;
  }
  progress(`installed ${GLUSTER_PACKAGES.join(' ')} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const still = await missingTools();
  return still.length === 0 ? undefined : `${INSTALL_COMMAND} succeeded but ${still.join(', ')} is still missing`;
}
