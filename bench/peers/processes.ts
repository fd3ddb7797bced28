// Finding and stopping a peer's daemons by pid, read from /proc. Callers pass only pids
// they know they started (a child, or a process inside a network namespace they created);
// nothing here looks processes up by a name to kill them.
import { readdir, readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** A process's command name (/proc/PID/comm), or undefined once it is gone. */
export async function commOf(pid: number): Promise<string | undefined> {
  try {
    return (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** A process's command line, arguments joined by spaces ('' once it is gone). */
export async function cmdlineOf(pid: number): Promise<string> {
  try {
    return (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

/** Every running process (zombies excluded) whose command name is one of `names`, as pid → name. */
export async function processesNamed(names: readonly string[]): Promise<Map<number, string>> {
  const found = new Map<number, string>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    const comm = await commOf(pid);
    if (comm !== undefined && names.includes(comm) && (await stillRunning(pid, comm))) found.set(pid, comm);
  }
  return found;
}

/**
 * True while `pid` is still the process recorded as `comm` (a reused pid is not it) and
 * has not exited (a zombie waiting for its parent to reap it has).
 */
export async function stillRunning(pid: number, comm: string): Promise<boolean> {
  if ((await commOf(pid)) !== comm) return false;
  try {
    // /proc/PID/stat: "pid (comm) state ...": the state follows the last ')'.
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/**
 * SIGTERM each of `procs` (pid → comm recorded when it was found), SIGKILL those still
 * running after `graceMs`, and wait for them to go. Resolves with those that would not.
 */
export async function stopProcesses(procs: ReadonlyMap<number, string>, graceMs: number): Promise<number[]> {
  const alive = async () => {
    const out: number[] = [];
    for (const [pid, comm] of procs) if (await stillRunning(pid, comm)) out.push(pid);
    return out;
  };
  const waitGone = async (ms: number) => {
    const deadline = Date.now() + ms;
    while ((await alive()).length > 0 && Date.now() < deadline) await sleep(100);
  };
  for (const pid of await alive()) signal(pid, 'SIGTERM');
  await waitGone(graceMs);
  for (const pid of await alive()) signal(pid, 'SIGKILL');
  await waitGone(5_000);
  return alive();
}
