// Real brickd agent processes for tests: spawn the built daemon, read its JSON log lines,
// stop it with a signal. Every process started here is killed (by pid) at teardown, and
// cleanupAgentState removes what an agent leaves on the machine (mounts, loop devices).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import type { Test } from 'tap';
import { findLoopFor } from '../../src/brick/loop.js';
import { readMountInfo } from '../../src/brick/mountinfo.js';
import { run } from '../../src/exec.js';
import { freePort } from './http.js';

export const BRICKD = path.resolve(import.meta.dirname, '../../dist/src/cli/brickd.js');

export interface AgentProcess {
  child: ChildProcess;
  lines: Array<Record<string, unknown>>;
  stderr: string[];
  /** Resolves with the first log line for which `match` is true (rejects on exit or timeout). */
  waitFor(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited: Promise<number | null>;
}

export function startAgent(t: Test, args: string[], options: { env?: NodeJS.ProcessEnv; command?: string[] } = {}): AgentProcess {
  // Agents in tests never take the default metrics port: several run at once.
  const withMetrics = args.includes('--metrics-address') ? args : [...args, '--metrics-address', 'off'];
  const command = [...(options.command ?? []), process.execPath, BRICKD, ...withMetrics];
  const child = spawn(command[0]!, command.slice(1), { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Array<Record<string, unknown>> = [];
  const stderr: string[] = [];
  const waiters: Array<() => void> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as Record<string, unknown>);
    } catch {
      lines.push({ msg: text });
    }
    for (const w of waiters) w();
  });
  readline.createInterface({ input: child.stderr! }).on('line', (text) => stderr.push(text));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return exited.then(() => undefined);
  });
  const waitFor = (match: (line: Record<string, unknown>) => boolean, timeoutMs = 60_000) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const found = lines.find(match);
        if (found) {
          clearTimeout(timer);
          resolve(found);
        }
      };
      const timer = setTimeout(() => reject(new Error(`timed out; log: ${JSON.stringify(lines.slice(-5))} stderr: ${stderr.join('\n')}`)), timeoutMs);
      waiters.push(check);
      void exited.then((code) => reject(new Error(`agent exited ${code}; log: ${JSON.stringify(lines.slice(-5))} stderr: ${stderr.join('\n')}`)));
      check();
    });
  return { child, lines, stderr, waitFor, exited };
}

/**
 * At teardown, remove what agents on `stateDir` leave behind even when killed: every mount
 * under the state dir (bricks), innermost first, and the loop devices backed by the
 * embedded device files in <stateDir>/devices/ (only those: the agent attached them).
 * Register it before starting agents on the state dir: teardowns run last-registered
 * first, so the agents are killed before their mounts are removed.
 */
export function cleanupAgentState(t: Test, stateDir: string): void {
  t.teardown(async () => {
    for (const m of (await readMountInfo()).filter((m) => m.target === stateDir || m.target.startsWith(stateDir + '/')).reverse()) {
      // A plain unmount first (the agent is dead, nothing should hold it); lazy if busy.
      await run('umount', [m.target]).catch(() => run('umount', ['-l', m.target]).catch(() => {}));
    }
    const devicesDir = path.join(stateDir, 'devices');
    for (const file of await readdir(devicesDir).catch(() => [] as string[])) {
      const loop = await findLoopFor(path.join(devicesDir, file)).catch(() => undefined);
      if (loop) await run('losetup', ['-d', loop]).catch(() => {});
    }
  });
}

/** The cluster secret agents in tests share (a 0600 file in a temp dir) and the cluster id they use. */
export const TEST_CLUSTER = 'brickd-test';

export async function testSecretFile(t: Test): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'brickd-secret-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'replication-secret');
  await writeFile(file, 'brickd-test-cluster-secret-0123456789\n', { mode: 0o600 });
  return file;
}

/** Daemon flags that turn replication on at `address` (default: a free loopback port) with `secretFile`. */
export async function replicationFlags(secretFile: string, address?: string): Promise<string[]> {
  return ['--replication-address', address ?? `127.0.0.1:${await freePort()}`, '--replication-secret-file', secretFile, '--cluster-id', TEST_CLUSTER];
}
