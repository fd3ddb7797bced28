// The fio jobs run against a FUSE mount and against the raw brick filesystem beneath it:
// one definition, so every case that measures a FUSE frontend (the null filesystem of
// `fuse-null`, brickd's own mount later) runs the identical jobs and its figures compare.
//
//   seq-write     1 MiB sequential writes, one writer
//   seq-read      1 MiB sequential reads of that file (cold: see `beforeEach`)
//   sync-write-4k 4 KiB random writes, QD1, fdatasync after every write
//   par-write     4 writers, 1 MiB sequential writes, each on its own file (summed)
// All with O_DIRECT, psync, time-based over a bounded file, no fallocate (a FUSE
// filesystem need not implement it; the raw side does the same). An untimed warm-up
// (`warmUp`) runs first on every side.
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { runFio, type FioJob, type FioResult } from './fio.js';

const KiB = 1024;
const MiB = 1024 * KiB;
export const PARALLEL_WRITERS = 4;

export type FuseJobKey = 'seqWrite' | 'seqRead' | 'syncWrite4k' | 'parallelWrite';

export interface FuseJob {
  key: FuseJobKey;
  /** What the report calls it. */
  label: string;
  /** The figure the report quotes for it. */
  unit: 'MiB/s' | 'IOPS';
  job: FioJob;
}

/** The jobs, in the order they run, on files in `dir`. */
export function fuseJobs(dir: string, quick: boolean): FuseJob[] {
  const fileBytes = quick ? 128 * MiB : 1024 * MiB;
  const runtimeSeconds = quick ? 1 : 8;
  const common = { ioengine: 'psync', iodepth: 1, fallocate: 'none', runtimeSeconds } as const;
  const seqFile = path.join(dir, 'fusejob-seq.dat');
  return [
    { key: 'seqWrite', label: 'seq write 1 MiB, 1 writer', unit: 'MiB/s', job: { ...common, name: 'seq-write', filename: seqFile, rw: 'write', blockSize: MiB, size: fileBytes } },
    { key: 'seqRead', label: 'seq read 1 MiB, 1 reader', unit: 'MiB/s', job: { ...common, name: 'seq-read', filename: seqFile, rw: 'read', blockSize: MiB, size: fileBytes } },
    {
      key: 'syncWrite4k',
      label: '4 KiB random write QD1, fdatasync each',
      unit: 'IOPS',
      job: { ...common, name: 'sync-write-4k', filename: path.join(dir, 'fusejob-sync.dat'), rw: 'randwrite', blockSize: 4 * KiB, size: fileBytes, fdatasync: 1 },
    },
    {
      key: 'parallelWrite',
      label: `seq write 1 MiB, ${PARALLEL_WRITERS} writers in parallel`,
      unit: 'MiB/s',
      job: { ...common, name: 'par-write', filename: path.join(dir, 'fusejob-par'), rw: 'write', blockSize: MiB, size: fileBytes / PARALLEL_WRITERS, numjobs: PARALLEL_WRITERS },
    },
  ];
}

/** The figure a job is quoted by: IOPS for the 4 KiB sync job, MiB/s for the others. */
export function figure(key: FuseJobKey, r: FioResult): number {
  return key === 'syncWrite4k' ? r.iops : r.bytesPerSecond / MiB;
}

/** Every file a job set may leave behind (the parallel job's per-writer files included). */
function jobFiles(jobs: FuseJob[]): string[] {
  return jobs.flatMap(({ job }) =>
    job.numjobs && job.numjobs > 1 ? Array.from({ length: job.numjobs }, (_, i) => `${job.filename}.${i}`) : [job.filename],
  );
}

/**
 * Untimed, on every side alike: a short sequential write and a short 4 KiB sync write on a
 * file of their own, removed afterwards. Agents that just started (the brickd side starts
 * its three for the case) would otherwise count V8 compiling their data path as the cost
 * of the first job: measured, the first 8 s seq write after a start ran 167 MiB/s and the
 * next ones 224-238, the 4 KiB job 766 IOPS then 868-892. The replication case warms up
 * its agents the same way (bench/replicated.ts), and so brickd direct here.
 */
async function warmUp(jobs: FuseJob[], dir: string, quick: boolean): Promise<void> {
  const file = path.join(dir, 'fusejob-warm-up.dat');
  const seconds = quick ? 1 : 3;
  try {
    for (const key of ['seqWrite', 'syncWrite4k'] as const) {
      const { job } = jobs.find((j) => j.key === key)!;
      await runFio({ ...job, name: `warm-up-${job.name}`, filename: file, size: Math.min(job.size, 256 * MiB), runtimeSeconds: seconds });
    }
  } finally {
    await rm(file, { force: true });
  }
}

/**
 * Run the jobs on `dir`, in order; the files are removed afterwards, whatever happened.
 * `beforeEach` runs before every job: the cases pass dropCaches (sync, then drop the page
 * cache), so each job starts from the same state on every side: reads cold, and writes
 * without the dirty pages of the step or job before them still being written back
 * underneath (a writer that arrives during gigabytes of writeback is throttled: one side's
 * leftovers used to cost whichever side ran next, 107-194 MiB/s for one and the same
 * write, when the loop bricks' backing files were cached by the host too).
 */
export async function runFuseJobs(dir: string, quick: boolean, hooks: { beforeEach?: () => Promise<void> } = {}): Promise<Record<FuseJobKey, FioResult>> {
  const jobs = fuseJobs(dir, quick);
  const out: Partial<Record<FuseJobKey, FioResult>> = {};
  try {
    await warmUp(jobs, dir, quick);
    for (const { key, job } of jobs) {
      await hooks.beforeEach?.();
      out[key] = await runFio(job);
    }
    return out as Record<FuseJobKey, FioResult>;
  } finally {
    for (const file of new Set(jobFiles(jobs))) await rm(file, { force: true });
  }
}
