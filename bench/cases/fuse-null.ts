// Benchmark case `fuse-null`: the ceiling of a fuse-native frontend. A null filesystem
// (bench/children/null-fuse.ts: writes discarded, reads return zeros, one huge file per
// name), mounted with big_writes,max_write=131072 in a child process, against the raw
// brick filesystem (XFS on a loop device over a sparse file on disk), running the same fio
// jobs (bench/fusejobs.ts) in the same run. Rounds alternate which side goes first; the
// page cache is dropped before each read job on both sides.
//
// The ratio null-FUSE/raw says what the kernel round trip and the JS hop cost against the
// disk path; the same jobs run against brickd's own mount are then to be read against
// both.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { run as runTool } from '../../src/exec.js';
import { dropCaches, tempBrickUnavailable, withTempBrick } from '../brick.js';
import { row, type BenchCase, type BenchContext, type CaseResult, type ResultRow } from '../case.js';
import { BenchChild } from '../child.js';
import { fioArgs, fioVersion, type FioResult } from '../fio.js';
import { figure, fuseJobs, runFuseJobs, type FuseJobKey } from '../fusejobs.js';

const GiB = 2 ** 30;
/** Room for the jobs' files (1 GiB sequential, 1 GiB sync, 4 × 256 MiB parallel) and XFS. */
const BRICK_BYTES = 4 * GiB;

type Round = Record<FuseJobKey, FioResult>;

async function isMounted(mountpoint: string): Promise<boolean> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  return mountinfo.split('\n').some((line) => line.split(' ')[4] === mountpoint);
}

/**
 * The null filesystem mounted on a fresh temp dir by a child for the body's lifetime. The
 * child unmounts when stopped; if the mount is still there afterwards (the child was
 * killed), it is detached with `fusermount -uz`, and the dir removed.
 */
export async function withNullFuse<T>(body: (mountpoint: string) => Promise<T>): Promise<T> {
  const mountpoint = await mkdtemp(path.join(os.tmpdir(), 'brickd-bench-nullfuse-'));
  let child: BenchChild | undefined;
  try {
    child = await BenchChild.start('null-fuse.js', [mountpoint], { name: 'null-fuse' });
    if (!(await isMounted(mountpoint))) throw new Error(`null-fuse child ready but nothing is mounted at ${mountpoint}`);
    return await body(mountpoint);
  } finally {
    await child?.stop();
    if (await isMounted(mountpoint)) await runTool('fusermount', ['-uz', mountpoint]);
    await rm(mountpoint, { recursive: true, force: true });
  }
}

async function run(ctx: BenchContext): Promise<CaseResult> {
  const quick = ctx.quick;
  const rounds = quick ? 1 : 3;
  const fio = await fioVersion();
  const params: Record<string, unknown> = {
    rounds,
    brickBytes: BRICK_BYTES,
    raw: 'XFS (brick mkfs and mount options) on a loop device over a sparse file in the temp dir (on disk), direct I/O on the backing file',
    nullFuse: 'fuse-native 2.2.6 in a child process, mount options fsname=brickd-bench-null,big_writes,max_write=131072; write discards, read returns zeros',
    cacheDrop: 'sync; echo 3 > /proc/sys/vm/drop_caches before each job, both sides',
    fio,
    fioJobs: fuseJobs('<dir>', quick).map(({ job }) => `fio ${fioArgs(job).join(' ')}`),
  };
  const unavailable =
    tempBrickUnavailable() ??
    (fio ? undefined : 'fio is not installed (apt-get install fio)') ??
    (process.platform === 'linux' ? undefined : 'FUSE mounts here are Linux only');
  if (unavailable) return { params, rows: [], targets: [], skipped: unavailable };

  const raw: Round[] = [];
  const nullFuse: Round[] = [];
  await withTempBrick(BRICK_BYTES, async (brick) => {
    ctx.progress(`brick ${brick.device} mounted at ${brick.root}`);
    for (let round = 0; round < rounds; round++) {
      const fuseFirst = round % 2 === 1;
      const measureFuse = async () => nullFuse.push(await withNullFuse((mnt) => runFuseJobs(mnt, quick, { beforeEach: dropCaches })));
      if (fuseFirst) await measureFuse();
      raw.push(await runFuseJobs(brick.root, quick, { beforeEach: dropCaches }));
      if (!fuseFirst) await measureFuse();
      const f = nullFuse[round]!;
      const r = raw[round]!;
      ctx.progress(
        `round ${round + 1}/${rounds}: ` +
          (['seqWrite', 'seqRead', 'syncWrite4k', 'parallelWrite'] as const)
            .map((k) => `${k} ${figure(k, f[k]).toFixed(0)} vs raw ${figure(k, r[k]).toFixed(0)}`)
            .join(', '),
      );
    }
  });

  const rows: ResultRow[] = fuseJobs('', quick).map(({ key, label, unit }) =>
    row(`null FUSE: ${label}`, unit, nullFuse.map((f) => figure(key, f[key])), { label: 'raw brick fs', samples: raw.map((r) => figure(key, r[key])) }),
  );
  // fio times a write and its fdatasync separately: their sum approximates one durable write.
  const durable = (r: Round, pick: 'p50Us' | 'p99Us') => r.syncWrite4k.clat[pick] + (r.syncWrite4k.sync?.[pick] ?? 0);
  rows.push(
    row('null FUSE: 4 KiB QD1 write clat + fdatasync p50', 'µs', nullFuse.map((f) => durable(f, 'p50Us')), { label: 'raw brick fs', samples: raw.map((r) => durable(r, 'p50Us')) }),
    row('null FUSE: 4 KiB QD1 write clat + fdatasync p99', 'µs', nullFuse.map((f) => durable(f, 'p99Us')), { label: 'raw brick fs', samples: raw.map((r) => durable(r, 'p99Us')) }),
  );
  params.rawRounds = raw;
  params.nullFuseRounds = nullFuse;
  return { params, rows, targets: [] };
}

export const fuseNullCase: BenchCase = {
  name: 'fuse-null',
  family: 'FUSE frontend',
  description:
    'null fuse-native filesystem (child process, big_writes,max_write=131072) vs the raw XFS brick filesystem, same fio jobs: ' +
    '1 MiB sequential write and read, 4 KiB random write QD1 with fdatasync, 4 parallel sequential writers',
  run,
};
