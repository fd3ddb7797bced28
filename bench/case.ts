// What a benchmark case is and what it reports: the one contract between bench/run.ts,
// the cases in bench/cases/ and the report writer.
//
// A case measures its subject and a baseline in the same run (the single-chain CRC, raw
// disk through fio, loopback TCP, ...), so every figure comes with the number it should be
// compared with on this machine, and targets are stated as ratios to that baseline.

export interface BenchContext {
  /** A short smoke run: fewer and shorter rounds, the same metrics. */
  readonly quick: boolean;
  /** One progress line on stderr (stdout is kept for the report). */
  progress(message: string): void;
  /**
   * Other storage systems to measure side by side in the same run (`--peer NAME`,
   * e.g. 'gluster'); a case that has no use for one ignores it.
   */
  readonly peers: readonly string[];
  /**
   * Real block devices to run on instead of loop files (`--device /dev/X`), already checked
   * eligible under the agent's adoption rules and confirmed for destruction by the caller.
   * Empty: the embedded default (sparse files on loop devices).
   */
  readonly devices: readonly string[];
}

export interface ResultRow {
  metric: string;
  value: number;
  unit: string;
  /**
   * The same metric of the baseline, measured in the same run; `samples` are its rounds,
   * in the same order as the row's own (round i of both sides ran back to back).
   */
  baseline?: { label: string; value: number; samples?: number[] };
  /** value / baseline.value */
  ratio?: number;
  /** Every round's figure; `value` is their median. */
  samples?: number[];
}

export interface Target {
  description: string;
  /** The measured ratio the target is about. */
  ratio: number;
  /** '>=' for throughput-like ratios, '<=' for latency-like ones. */
  comparison: '>=' | '<=';
  required: number;
  pass: boolean;
}

export interface CaseResult {
  /** What was measured and how (sizes, rounds, implementation names, ...). */
  params: Record<string, unknown>;
  rows: ResultRow[];
  targets: Target[];
  /** Set when the case could not run here, with the reason; rows are then empty. */
  skipped?: string;
}

export interface BenchCase {
  /** Unique, used by `--case` and as the JSON file name. */
  name: string;
  /** Cases of one family share a table in REPORT.md. */
  family: string;
  description: string;
  run(ctx: BenchContext): Promise<CaseResult>;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new RangeError('median of no values');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function target(description: string, ratio: number, comparison: '>=' | '<=', required: number): Target {
  const pass = comparison === '>=' ? ratio >= required : ratio <= required;
  return { description, ratio, comparison, required, pass };
}

/**
 * A row whose value is the median of `samples`, beside the median of its baseline's. Both
 * lists are kept, round by round in the order given, so the report can show the ratio of
 * each round (`samples[i] / baseline.samples[i]`) as well as the ratio of the medians.
 */
export function row(metric: string, unit: string, samples: number[], baseline?: { label: string; samples: number[] }): ResultRow {
  const value = median(samples);
  const out: ResultRow = { metric, value, unit, samples: [...samples] };
  if (baseline) {
    const base = median(baseline.samples);
    out.baseline = { label: baseline.label, value: base, samples: [...baseline.samples] };
    out.ratio = value / base;
  }
  return out;
}

/**
 * The ratio of each round, subject over baseline, when both sides kept the same number of
 * rounds; undefined otherwise (a row built without samples, or from unpaired rounds).
 */
export function roundRatios(row: ResultRow): number[] | undefined {
  const own = row.samples;
  const base = row.baseline?.samples;
  if (!own || !base || own.length === 0 || own.length !== base.length) return undefined;
  return own.map((value, i) => value / base[i]!);
}
