// Benchmark case `crc32c`: throughput of the addon's CRC32C paths as JavaScript sees them
// (the napi call included): the fast path (`crc32c`, three interleaved SSE4.2 chains)
// against one serial SSE4.2 chain (the baseline) and the table fallback.
//
// Buffers are at most 1 MiB, so they stay in L2 on the machines we target: this measures
// the checksum, not memory bandwidth. Implementations take turns within every round (the
// starting one rotates), so a clock or frequency drift during the run hits all of them alike.
import { randomFillSync } from 'node:crypto';
import { native } from '../../src/native.js';
import { median, target, type BenchCase, type BenchContext, type CaseResult, type ResultRow, type Target } from '../case.js';

type Crc32cFn = (data: Uint8Array, initial?: number) => number;

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZES = [4 * KiB, 64 * KiB, MiB];
const REQUIRED_RATIO_AT_1MIB = 2;

const sizeLabel = (bytes: number) => (bytes >= MiB ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`);

interface Impl {
  label: string;
  fn: Crc32cFn;
}

// Every CRC is folded in here, so no call can be treated as dead code.
let sink = 0;

/** GB/s (10^9 bytes per second) of `iterations` calls over `data`. */
function timeCalls(fn: Crc32cFn, data: Uint8Array, iterations: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink ^= fn(data);
  const ns = Number(process.hrtime.bigint() - start);
  return (iterations * data.length) / ns;
}

/** Calls per round so a round lasts about `roundMs`; doubles as a warm-up. */
function calibrate(fn: Crc32cFn, data: Uint8Array, roundMs: number): number {
  for (let iterations = 1; ; iterations *= 2) {
    const gbPerSecond = timeCalls(fn, data, iterations);
    const elapsedMs = (iterations * data.length) / gbPerSecond / 1e6;
    if (elapsedMs >= roundMs / 5) return Math.max(1, Math.round((iterations * roundMs) / elapsedMs));
  }
}

async function run(ctx: BenchContext): Promise<CaseResult> {
  const rounds = ctx.quick ? 3 : 9;
  const roundMs = ctx.quick ? 15 : 80;
  const fast: Impl = { label: `crc32c (${native.crc32cImpl})`, fn: native.crc32c };
  const single: Impl = { label: 'single chain', fn: native.crc32cSingleChain };
  const table: Impl = { label: 'table', fn: native.crc32cTable };
  const impls = [fast, single, table];
  const params = { sizes: SIZES, rounds, roundMs, impl: native.crc32cImpl, unit: 'GB/s = 10^9 bytes/s' };

  try {
    native.crc32cSingleChain(new Uint8Array(1));
  } catch (err) {
    return { params, rows: [], targets: [], skipped: `no single-chain baseline: ${(err as Error).message}` };
  }

  const rows: ResultRow[] = [];
  const targets: Target[] = [];
  for (const size of SIZES) {
    const data = randomFillSync(new Uint8Array(size));
    const expected = native.crc32cTable(data);
    for (const impl of impls) {
      if (impl.fn(data) !== expected) throw new Error(`${impl.label} disagrees with the table at ${sizeLabel(size)}`);
    }
    const iterations = impls.map((impl) => calibrate(impl.fn, data, roundMs));
    const samples: number[][] = impls.map(() => []);
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < impls.length; k++) {
        const index = (round + k) % impls.length;
        samples[index]!.push(timeCalls(impls[index]!.fn, data, iterations[index]!));
      }
    }
    const medians = samples.map(median);
    const [fastGbps, singleGbps, tableGbps] = medians as [number, number, number];
    const at = sizeLabel(size);
    impls.forEach((impl, i) => {
      const row: ResultRow = { metric: `${impl.label}, ${at}`, value: medians[i]!, unit: 'GB/s', samples: samples[i]! };
      if (impl === single) row.metric = `${impl.label} (baseline), ${at}`;
      else Object.assign(row, { baseline: { label: single.label, value: singleGbps }, ratio: medians[i]! / singleGbps });
      rows.push(row);
    });
    ctx.progress(`${at}: ${fast.label} ${fastGbps.toFixed(2)} GB/s, single chain ${singleGbps.toFixed(2)}, table ${tableGbps.toFixed(2)}`);
    if (size === MiB) {
      const description = `${fast.label} ≥ ${REQUIRED_RATIO_AT_1MIB}× single chain at 1 MiB`;
      targets.push(target(description, fastGbps / singleGbps, '>=', REQUIRED_RATIO_AT_1MIB));
    }
  }
  return { params, rows, targets };
}

export const crc32cCase: BenchCase = {
  name: 'crc32c',
  family: 'checksum',
  description: 'CRC32C throughput from JS of the fast path vs one SSE4.2 chain (baseline) vs the table, in-cache buffers',
  run,
};
