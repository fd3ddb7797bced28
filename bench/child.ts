// Child processes of the benchmarks, so that work which runs on another event loop in
// production (a replica agent, a FUSE daemon, a socket's far end) does here too.
//
// How it works. Each child is a script in bench/children/ started with fork(). It sends
// one `ready` message over the IPC channel once it serves (with what the parent needs:
// a port, a mount point), answers `stats` with its CPU time, peak RSS and its own
// counters, may send `event` messages, and ends itself on `stop` (closing what it serves
// first) or as soon as the channel closes (the bench process died: nothing is left
// running). The parent stops every child it started by its pid: `stop` first, SIGKILL if
// it has not exited within a few seconds. As a safety net, every child still running is
// known here: bench/run.ts stops them after the cases (a case that failed in between
// would otherwise leave one holding a brick, and its IPC channel would keep the bench
// process from exiting), and any left at exit are SIGKILLed by pid.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ChildStats {
  /** CPU seconds (user + system) since the child started. */
  cpuSeconds: number;
  /** The system (kernel) part of cpuSeconds. */
  cpuSystemSeconds: number;
  /** Peak resident set size since the child started, in bytes. */
  maxRssBytes: number;
  /** The child's own counters. */
  counters: Record<string, number>;
}

type ParentMessage = { type: 'stats' } | { type: 'stop' };
type ChildMessage =
  | { type: 'ready'; info: Record<string, unknown> }
  | { type: 'stats'; stats: ChildStats }
  | { type: 'event'; event: Record<string, unknown> }
  | { type: 'failed'; message: string };

const STOP_GRACE_MS = 5000;
const EXIT_ANSWER_GRACE_MS = 200;

/** Children started and not yet exited. */
const live = new Set<BenchChild>();
process.on('exit', () => {
  for (const child of live) child.kill();
});

/** Stop every child still running; resolves with how many there were. */
export async function stopLeftoverChildren(): Promise<string[]> {
  const leftovers = [...live];
  await stopChildren(leftovers);
  return leftovers.map((c) => `${c.name} (pid ${c.pid})`);
}

export class BenchChild {
  private readonly listeners = new Set<(message: ChildMessage) => void>();
  private readonly exited: Promise<void>;
  private exitedFlag = false;

  private constructor(
    private readonly child: ChildProcess,
    readonly name: string,
    readonly info: Record<string, unknown>,
  ) {
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    live.add(this);
    void this.exited.then(() => {
      this.exitedFlag = true;
      live.delete(this);
    });
    child.on('message', (message: ChildMessage) => {
      for (const listener of this.listeners) listener(message);
    });
  }

  /**
   * Fork `script` (a file name in dist/bench/children/) and wait for its `ready`. `command`
   * is a prefix that execs node in turn, e.g. `nsenter --net=/run/netns/X` to run the child
   * in a network namespace (it must exec, not fork: the pid and the IPC channel stay node's).
   */
  static start(script: string, args: string[], options: { name: string; env?: NodeJS.ProcessEnv; readyTimeoutMs?: number; command?: readonly string[] }): Promise<BenchChild> {
    const file = fileURLToPath(new URL(`./children/${script}`, import.meta.url));
    const [prefix, ...prefixArgs] = options.command ?? [];
    const viaCommand = prefix ? { execPath: prefix, execArgv: [...prefixArgs, process.execPath, ...process.execArgv] } : {};
    const child = fork(file, args, { env: { ...process.env, ...options.env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...viaCommand });
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
        reject(new Error(`bench child ${options.name} (${script}, pid ${child.pid}): ${why}`));
      };
      const timer = setTimeout(() => fail('not ready in time'), options.readyTimeoutMs ?? 30_000);
      const onExit = (code: number | null, signal: string | null) => {
        clearTimeout(timer);
        fail(`exited before it was ready (code ${code}, signal ${signal})`);
      };
      child.once('exit', onExit);
      child.once('error', (err) => {
        clearTimeout(timer);
        fail(err.message);
      });
      const onMessage = (message: ChildMessage) => {
        if (message.type === 'failed') {
          clearTimeout(timer);
          child.off('message', onMessage);
          fail(message.message);
        } else if (message.type === 'ready') {
          clearTimeout(timer);
          child.off('exit', onExit);
          child.off('message', onMessage);
          resolve(new BenchChild(child, options.name, message.info));
        }
      };
      child.on('message', onMessage);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The next `event` message that `match` accepts. */
  nextEvent(match: (event: Record<string, unknown>) => boolean, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    return this.request(undefined, (m) => (m.type === 'event' && match(m.event) ? m.event : undefined), timeoutMs);
  }

  stats(): Promise<ChildStats> {
    return this.request({ type: 'stats' }, (m) => (m.type === 'stats' ? m.stats : undefined), 10_000);
  }

  /** SIGKILL, by pid (from the exit handler, where nothing can be awaited). */
  kill(): void {
    if (!this.exitedFlag) this.child.kill('SIGKILL');
  }

  /** SIGKILL it (a node that dies) and resolve once it has exited. */
  async sigkill(): Promise<void> {
    this.kill();
    await this.exited;
  }

  /** Ask the child to stop; SIGKILL it (by pid) if it has not exited after a grace period. */
  async stop(): Promise<void> {
    if (this.exitedFlag) return;
    try {
      this.child.send({ type: 'stop' } satisfies ParentMessage);
    } catch {
      // the channel is already gone: the kill below settles it
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_GRACE_MS);
    await this.exited;
    clearTimeout(timer);
  }

  private request<T>(message: ParentMessage | undefined, pick: (m: ChildMessage) => T | undefined, timeoutMs: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(listener);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`bench child ${this.name}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const listener = (m: ChildMessage) => {
        const value = pick(m);
        if (value !== undefined) {
          done();
          resolve(value);
        }
      };
      this.listeners.add(listener);
      // A child that dies does not answer: fail now rather than at the timeout (which may be
      // long for a measurement). Messages it sent before dying may still be on their way
      // through the IPC channel when 'exit' fires: give them a moment first.
      void this.exited.then(() =>
        setTimeout(() => {
          if (!this.listeners.has(listener)) return;
          done();
          reject(new Error(`bench child ${this.name}: exited without answering`));
        }, EXIT_ANSWER_GRACE_MS),
      );
      if (message) this.child.send(message);
    });
  }
}

/** Start several children; if one fails, the ones already started are stopped. */
export async function startChildren(specs: Array<Parameters<typeof BenchChild.start>>): Promise<BenchChild[]> {
  const started: BenchChild[] = [];
  try {
    for (const spec of specs) started.push(await BenchChild.start(...spec));
    return started;
  } catch (err) {
    await stopChildren(started);
    throw err;
  }
}

export async function stopChildren(children: readonly BenchChild[]): Promise<void> {
  await Promise.all(children.map((c) => c.stop()));
}
