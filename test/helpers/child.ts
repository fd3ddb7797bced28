// A child process that writes JSON lines until it is SIGKILLed: by the test `killAfterMs`
// after its first line (the child's "open": recovery done), after `beforeKill` if given, or
// by itself at a named crash point (BRICKD_CRASH_POINT, src/store/crashpoints.ts). The crash
// tests of the store use it.
import { spawn } from 'node:child_process';
import readline from 'node:readline';

/** Run `node script ...args` until it dies; its lines, parsed (a line cut by the kill is dropped). */
export async function runUntilKilled<Line>(
  script: string,
  args: readonly string[],
  options: { killAfterMs?: number; crashPoint?: string; limitMs?: number; beforeKill?: () => Promise<void> } = {},
): Promise<Line[]> {
  const env = { ...process.env };
  if (options.crashPoint) env.BRICKD_CRASH_POINT = options.crashPoint;
  else delete env.BRICKD_CRASH_POINT;
  const child = spawn(process.execPath, [script, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  let timer: NodeJS.Timeout | undefined;
  /** From here on the child may also die of what beforeKill did to it (its filesystem gone). */
  let killing = false;
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line) as Line);
    } catch {
      // a line cut by the kill
    }
    if (lines.length === 1 && options.killAfterMs !== undefined) {
      // `beforeKill` runs first (a simulated power loss under the child), then the kill.
      timer = setTimeout(() => {
        killing = true;
        void (options.beforeKill ?? (async () => {}))().finally(() => child.kill('SIGKILL'));
      }, options.killAfterMs);
    }
  });
  const limit = setTimeout(() => child.kill('SIGKILL'), options.limitMs ?? 20_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
  clearTimeout(timer);
  clearTimeout(limit);
  if (signal !== 'SIGKILL' && !(killing && options.beforeKill)) throw new Error(`child ended with ${code}/${signal} instead of SIGKILL: ${stderr}`);
  return lines;
}
