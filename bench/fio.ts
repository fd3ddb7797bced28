// fio as the raw-disk baseline of the storage benchmarks: one job per call, run with
// `--output-format=json`, reduced to the figures the cases compare against.
//
// Latency: fio's completion latency (clat) of a write does not include the fdatasync that
// `fdatasync=1` issues after it; fio reports those separately (the job's `sync` section).
import path from 'node:path';
import { BrickdError } from '../src/errors.js';
import { run } from '../src/exec.js';

export interface FioJob {
  name: string;
  filename: string;
  rw: 'read' | 'write' | 'randread' | 'randwrite';
  /** Block size in bytes. */
  blockSize: number;
  /** Bytes of the file the job covers. */
  size: number;
  ioengine: 'psync' | 'libaio';
  iodepth?: number;
  /** fdatasync after every this many writes. */
  fdatasync?: number;
  /** fsync the file when the job ends (counted in its bandwidth). */
  endFsync?: boolean;
  /** Run for this long, wrapping around `size` (time_based); else do `size` bytes once. */
  runtimeSeconds?: number;
  /**
   * Parallel jobs, each on its own file `<filename>.<jobnum>` of `size` bytes in the same
   * directory; the figures are their sum (group_reporting). Default 1.
   */
  numjobs?: number;
  /** How fio preallocates a file it writes (fio's default is native fallocate). */
  fallocate?: 'none' | 'native';
}

export interface FioLatency {
  p50Us: number;
  p99Us: number;
}

export interface FioResult {
  bytesPerSecond: number;
  iops: number;
  ios: number;
  runtimeMs: number;
  clat: FioLatency;
  /** Latency of the fdatasync calls, when the job issued any. */
  sync?: FioLatency;
}

/** fio's version string ("fio-3.33"), or undefined when fio is not installed. */
export async function fioVersion(): Promise<string | undefined> {
  try {
    return (await run('fio', ['--version'])).stdout.trim();
  } catch (err) {
    if (err instanceof BrickdError && err.code === 'TOOL_MISSING') return undefined;
    throw err;
  }
}

/** The command line of a job (exported so a report can quote exactly what ran). */
export function fioArgs(job: FioJob): string[] {
  const numjobs = job.numjobs ?? 1;
  const files =
    numjobs === 1
      ? [`--filename=${job.filename}`]
      : [`--directory=${path.dirname(job.filename)}`, `--filename_format=${path.basename(job.filename)}.$jobnum`, '--group_reporting'];
  const args = [
    `--name=${job.name}`,
    ...files,
    `--rw=${job.rw}`,
    `--bs=${job.blockSize}`,
    `--size=${job.size}`,
    `--ioengine=${job.ioengine}`,
    `--iodepth=${job.iodepth ?? 1}`,
    `--numjobs=${numjobs}`,
    '--direct=1',
    '--output-format=json',
  ];
  if (job.fallocate !== undefined) args.push(`--fallocate=${job.fallocate}`);
  if (job.fdatasync !== undefined) args.push(`--fdatasync=${job.fdatasync}`);
  if (job.endFsync) args.push('--end_fsync=1');
  if (job.runtimeSeconds !== undefined) args.push(`--runtime=${job.runtimeSeconds}`, '--time_based=1');
  return args;
}

interface FioPercentiles {
  percentile?: Record<string, number>;
  N?: number;
}

interface FioDirection {
  io_bytes: number;
  bw_bytes: number;
  iops: number;
  total_ios: number;
  runtime: number;
  clat_ns: FioPercentiles;
}

function latency(stats: FioPercentiles | undefined, what: string): FioLatency {
  const p = stats?.percentile;
  const p50 = p?.['50.000000'];
  const p99 = p?.['99.000000'];
  if (p50 === undefined || p99 === undefined) throw new Error(`fio output has no ${what} percentiles`);
  return { p50Us: p50 / 1000, p99Us: p99 / 1000 };
}

export async function runFio(job: FioJob): Promise<FioResult> {
  const { stdout } = await run('fio', fioArgs(job), { timeoutMs: 600_000 });
  // fio may print notes ("fio: ...") before the JSON document.
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error(`fio printed no JSON: ${stdout.slice(0, 200)}`);
  const report = JSON.parse(stdout.slice(start)) as { jobs: Array<Record<string, unknown> & { error: number }> };
  const result = report.jobs[0];
  if (!result) throw new Error('fio reported no job');
  if (result.error !== 0) throw new Error(`fio job ${job.name} failed with error ${result.error}`);
  const direction = result[job.rw.endsWith('read') ? 'read' : 'write'] as FioDirection;
  const out: FioResult = {
    bytesPerSecond: direction.bw_bytes,
    iops: direction.iops,
    ios: direction.total_ios,
    runtimeMs: direction.runtime,
    clat: latency(direction.clat_ns, 'clat'),
  };
  const sync = (result.sync as { lat_ns?: FioPercentiles } | undefined)?.lat_ns;
  if (sync?.N) out.sync = latency(sync, 'sync');
  return out;
}
