// Write coalescing for a write-back backend: sequential writes to one file are gathered
// into runs of up to `runBytes` and handed to the store as one mutation each.
//
// Why: FUSE delivers writes of at most 128 KiB (libfuse 2's max_write), and every store
// mutation costs the same whatever its size: a log record, a checksum pass, a data and a
// sums sync, a replication frame and an apply plus three syncs on every replica. A 1 MiB
// run costs one eighth of what eight 128 KiB writes cost, on the primary and the replicas.
//
// How it works. Each file being written has at most one open run: { offset, bytes so far }
// in a buffer of our own (at most `maxOpenRuns` files at once: parallel writers each keep
// theirs, the oldest run is dispatched past that). A write that continues its file's run
// (offset at its end, room left) is copied in and answered at once. A write elsewhere in
// the file dispatches that run and opens a new one; a full run, `lingerMs` without a
// following write, and a barrier dispatch it too. Dispatching calls the backend's own
// write-back write with the run (applied, then durable in the background, under the
// unsynced window), without waiting: up to `maxRunsInFlight` runs apply at once, past
// that a writer waits for the oldest. A run's first write is copied at its own size; the
// run-sized buffer comes only when a second write continues it (random writes stay cheap).
//
// Barriers: every other operation of the backend (reads, stats, namespace changes,
// truncate, sync, close) first dispatches the open runs and waits until every dispatched
// run is applied, so it sees (and is ordered after) every write that was answered.
//
// Errors: a write is copied before write() returns, so the caller may reuse its buffer at
// once. A run that fails to apply has already been answered to its writers: the failure
// is deferred, thrown by the next write or barrier, and kept for sync() forever after (as
// the store keeps a durability failure), the way a local filesystem reports a failed
// write-back on the next fsync or close. To keep ENOSPC where applications expect it, a
// write that could take the volume past its size limit is not coalesced: it waits for the
// runs before it and goes to the store on its own, which answers it VOLUME_FULL at once.
import { allocAligned } from '../aligned.js';
import type { FileRef } from '../store/store.js';

export interface CoalescerOptions {
  /** Largest run (bytes): one store mutation. */
  runBytes: number;
  /** An open run is dispatched when no write continued it for this long. */
  lingerMs: number;
  /** Dispatched runs applying at once before a writer waits for the oldest. */
  maxRunsInFlight: number;
  /** Files with an open run at once (parallel writers); past it the oldest run is dispatched. */
  maxOpenRuns: number;
}

export const DEFAULT_COALESCING: CoalescerOptions = { runBytes: 1024 * 1024, lingerMs: 1, maxRunsInFlight: 4, maxOpenRuns: 8 };

interface OpenRun {
  fid: string;
  offset: number;
  buffer: Buffer;
  length: number;
  timer: NodeJS.Timeout;
}

export class WriteCoalescer {
  /** Open runs by file id, oldest first (Map keeps insertion order). */
  private readonly open = new Map<string, OpenRun>();
  /** Dispatched runs, oldest first; each resolves once applied or failed (never rejects: a failure goes to pendingError). */
  private readonly inFlight: Array<Promise<void>> = [];
  /** Bytes of dispatched runs not yet applied, and of the open run: not yet in the store's use. */
  private unappliedBytes = 0;
  /** A run's failure not yet thrown to anyone. */
  private pendingError: unknown;
  /** The first run failure ever: sync() reports it from then on. */
  private stickyError: unknown;

  /**
   * @param write    the backend's write-back write: resolves once applied (and the unsynced window has room)
   * @param capacity the volume's size limit and use, for the ENOSPC rule above
   */
  constructor(
    private readonly write: (file: FileRef, offset: number, data: Buffer, flushFollows: boolean) => Promise<unknown>,
    private readonly capacity: () => { sizeLimitBytes: number; usedBytes: number },
    private readonly opts: CoalescerOptions = DEFAULT_COALESCING,
  ) {}

  /** A failure of an earlier run, if any, kept for sync(). */
  get failure(): unknown {
    return this.stickyError;
  }

  /**
   * Take one write. `data` is copied (or handed on) before this returns; the promise
   * resolves once the write is in a run (or applied, when it went on its own).
   */
  add(file: FileRef, offset: number, data: Buffer): Promise<void> {
    if (this.pendingError !== undefined) return Promise.reject(this.takeError());
    if (typeof file === 'string' || data.length >= this.opts.runBytes || this.mightFill(data.length)) {
      // Not coalesced: ordered after every run before it, answered by the store itself.
      // (Page-aligned: a large write goes to the store's O_DIRECT path in place, aligned.ts.)
      const copy = allocAligned(data.length);
      data.copy(copy);
      return this.barrier().then(() => this.write(file, offset, copy, false).then(() => undefined));
    }
    const fid = file.fid;
    const run = this.open.get(fid);
    if (run && run.offset + run.length === offset && run.length + data.length <= this.opts.runBytes) {
      if (run.buffer.length < run.length + data.length) {
        // The run continues: now it gets a buffer of the full run size (page-aligned, as above).
        const grown = allocAligned(this.opts.runBytes);
        run.buffer.copy(grown, 0, 0, run.length);
        run.buffer = grown;
      }
      data.copy(run.buffer, run.length);
      run.length += data.length;
      this.unappliedBytes += data.length;
      if (run.length === this.opts.runBytes) this.dispatch(fid);
      else run.timer.refresh();
      return this.pace();
    }
    if (run) this.dispatch(fid);
    else if (this.open.size >= this.opts.maxOpenRuns) this.dispatch(this.open.keys().next().value!);
    // A run's first write gets a buffer of its own size: a lone small write (random I/O)
    // must not cost a run-sized allocation (V8 counts every one towards its next full GC).
    const buffer = Buffer.from(data);
    this.unappliedBytes += data.length;
    this.open.set(fid, { fid, offset, buffer, length: data.length, timer: setTimeout(() => this.dispatch(fid), this.opts.lingerMs) });
    return this.pace();
  }

  /** Nothing open, nothing applying, no failure to report: a barrier would have nothing to do. */
  get idle(): boolean {
    return this.open.size === 0 && this.inFlight.length === 0 && this.pendingError === undefined;
  }

  /**
   * Dispatch the open run and wait until every run is applied; throws a run failure
   * nobody has heard of yet. Every non-write operation of the backend calls this first.
   * `flushFollows`: the caller flushes next (sync), which the open runs are told.
   */
  async barrier(flushFollows = false): Promise<void> {
    for (const fid of [...this.open.keys()]) this.dispatch(fid, flushFollows);
    // Only the runs dispatched so far: later writes must not hold this barrier up.
    await Promise.all([...this.inFlight]);
    if (this.pendingError !== undefined) throw this.takeError();
  }

  /** Hand the file's open run to the store (if it has one). */
  private dispatch(fid: string, flushFollows = false): void {
    const run = this.open.get(fid);
    if (!run) return;
    this.open.delete(fid);
    clearTimeout(run.timer);
    // The run's buffer is the store's until the write resolves (replication may ship it).
    const data = run.buffer.subarray(0, run.length);
    const applied = this.write({ fid: run.fid }, run.offset, data, flushFollows).then(
      () => undefined,
      (err: unknown) => {
        this.pendingError ??= err;
        this.stickyError ??= err;
      },
    );
    const settled = applied.finally(() => {
      this.unappliedBytes -= run.length;
      this.inFlight.splice(this.inFlight.indexOf(settled), 1);
    });
    this.inFlight.push(settled);
  }

  /** Wait while too many runs are applying; a failure among them is this writer's answer. */
  private async pace(): Promise<void> {
    while (this.inFlight.length > this.opts.maxRunsInFlight) await this.inFlight[0];
    if (this.pendingError !== undefined) throw this.takeError();
  }

  /** True when `bytes` more could take the volume past its limit (counting every unapplied byte as growth). */
  private mightFill(bytes: number): boolean {
    const { sizeLimitBytes, usedBytes } = this.capacity();
    return usedBytes + this.unappliedBytes + bytes > sizeLimitBytes;
  }

  private takeError(): unknown {
    const err = this.pendingError;
    this.pendingError = undefined;
    return err;
  }
}
