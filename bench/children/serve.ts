// The child side of bench/child.ts: report `ready`, answer `stats`, stop on `stop` or when
// the parent's IPC channel closes.
import type { ChildStats } from '../child.js';
import { tuneV8Heap } from '../../src/v8-heap.js';

export interface Served {
  /** What the parent needs to use the child (port, mount point, ...). */
  info: Record<string, unknown>;
  /** Close what the child serves. */
  close(): Promise<void>;
  counters?(): Record<string, number>;
}

export function sendEvent(event: Record<string, unknown>): void {
  process.send?.({ type: 'event', event });
}

/** Run `setup`, report ready, then serve the parent's requests until told to stop. */
export async function serveChild(setup: () => Promise<Served>): Promise<void> {
  tuneV8Heap(); // as the agent runs (src/v8-heap.ts)
  if (!process.send) throw new Error('a bench child must be started by bench/child.ts (fork with IPC)');
  let served: Served;
  try {
    served = await setup();
  } catch (err) {
    process.send({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  }
  let stopping = false;
  const stop = (code: number) => {
    if (stopping) return;
    stopping = true;
    void served
      .close()
      .catch((err) => process.stderr.write(`bench child ${process.pid}: close failed: ${(err as Error).message}\n`))
      .finally(() => process.exit(code));
  };
  process.on('message', (message: { type: string }) => {
    if (message.type === 'stop') stop(0);
    else if (message.type === 'stats') {
      const cpu = process.cpuUsage();
      const stats: ChildStats = {
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        cpuSystemSeconds: cpu.system / 1e6,
        maxRssBytes: process.resourceUsage().maxRSS * 1024,
        counters: served.counters?.() ?? {},
      };
      process.send!({ type: 'stats', stats });
    }
  });
  // The bench process went away without stopping us: do not outlive it.
  process.on('disconnect', () => stop(1));
  process.send({ type: 'ready', info: served.info });
}
