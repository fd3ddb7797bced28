// Load generators shared by the cases: a fixed number of operations from N concurrent
// loops, time-bounded loops that record each operation's latency, and the percentiles
// the reports quote.
import { performance } from 'node:perf_hooks';

export interface Latencies {
  p50Us: number;
  p99Us: number;
}

export function percentiles(samplesUs: readonly number[]): Latencies {
  const sorted = Float64Array.from(samplesUs).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { p50Us: at(0.5), p99Us: at(0.99) };
}

/** `count` operations from `workers` concurrent loops, each taking the next index. */
export async function inParallel(workers: number, count: number, op: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const loop = async () => {
    while (next < count) await op(next++);
  };
  await Promise.all(Array.from({ length: workers }, loop));
}

/** `workers` loops repeating `op` until `seconds` pass: operations per second and latencies. */
export async function timedLoops(workers: number, seconds: number, op: () => Promise<void>): Promise<{ iops: number; latency: Latencies; ops: number }> {
  const latenciesUs: number[] = [];
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const loop = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      await op();
      latenciesUs.push((performance.now() - t0) * 1000);
    }
  };
  await Promise.all(Array.from({ length: workers }, loop));
  const elapsedSeconds = (performance.now() - start) / 1000;
  return { iops: latenciesUs.length / elapsedSeconds, latency: percentiles(latenciesUs), ops: latenciesUs.length };
}
