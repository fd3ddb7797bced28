// Per-key reader/writer locks over ranges of a file (a key is a file id), FIFO fair among
// requests that conflict. Used so a read never sees a block whose data and checksum are
// mid-update, and so the applies of one file's writes keep their seq order where they touch
// the same blocks while writes to different blocks of the file run side by side.
//
// A request is a read or a write over a range [first, end) of units the caller chooses
// (the store uses 4 KiB-aligned runs of checksum blocks), or over the whole key when no
// range is given. Two requests conflict when either writes and their ranges overlap.
// A request is granted once it conflicts with no holder and with no request queued before
// it: so conflicting requests are granted in the order they were made (the store queues a
// file's applies in seq order), and a request may pass earlier ones it does not conflict
// with. A whole-key write conflicts with everything, so it waits for every earlier holder
// and holds everything after it back.
export interface LockRange {
  first: number;
  /** Exclusive. */
  end: number;
}

/**
 * The lock range of the bytes [offset, offset + length) of a file: the run of whole 4 KiB
 * pages (or of checksum blocks, if larger) that covers them. Whole pages, because a direct
 * (O_DIRECT) write and a buffered write must never share a page: the direct write
 * invalidates the page's cached copy, and a buffered write to it at the same time could be
 * written back over the direct data. Never empty, so a zero-length write still orders.
 */
export function pageRange(offset: number, length: number, blockSize: number): LockRange {
  const unit = Math.max(blockSize, 4096);
  const first = Math.floor(offset / unit);
  return { first, end: Math.max(first + 1, Math.ceil((offset + length) / unit)) };
}

/**
 * The lock range of a write's apply, given how much it grows its file (the store plans it in
 * seq order: the size before it is end − growth), or undefined for the whole file (also when
 * the growth is unknown). A write inside the file (growth 0) locks its pages. A write that
 * grows the file locks the whole file, except an aligned extension: offset, end and the
 * size before it all on block boundaries, and no gap left between that size and the write
 * (offset ≤ size before). Such a write touches only whole blocks and re-sums no block it
 * does not write (no edge to assemble from disk, no short last block to zero-extend), so it
 * needs nothing from the file beyond its own range: a sequential writer's appends apply side
 * by side instead of one at a time (the store bench's write-back: 1 MiB appends went to the
 * device one by one while fio kept 4 in flight).
 *
 * Why nothing else can race it: the file on disk only ever has a size on a block boundary
 * while such writes are in flight. A write with an unaligned end is either a growing one
 * (whole-file lock: it waits for every earlier holder and holds every later one back) or
 * lands inside the file as planned; if the on-disk file does not reach its end yet, the
 * earlier write that will make it reach there is still to apply, and because no aligned
 * extension leaves a gap, that write's range holds the later one's end: they conflict, and
 * the later waits. Two extensions that both run still see aligned sizes, and each sums only
 * its own blocks. Writes that do leave a gap (a sparse writer) keep the whole-file lock: a
 * write landing in the gap could extend the on-disk file to an unaligned size while the
 * extension beyond it, not seeing that yet, would leave that short block's sum stale.
 */
export function applyLockRange(offset: number, length: number, growth: number | undefined, blockSize: number): LockRange | undefined {
  if (growth === undefined) return undefined;
  if (growth === 0) return pageRange(offset, length, blockSize);
  const end = offset + length;
  const sizeBefore = end - growth;
  const aligned = offset % blockSize === 0 && end % blockSize === 0 && sizeBefore % blockSize === 0;
  return aligned && offset <= sizeBefore ? pageRange(offset, length, blockSize) : undefined;
}

interface Request {
  write: boolean;
  range: LockRange | undefined;
  grant?: () => void;
}

interface Entry {
  holders: Request[];
  queue: Request[];
}

function overlaps(a: LockRange | undefined, b: LockRange | undefined): boolean {
  return !a || !b || (a.first < b.end && b.first < a.end);
}

function conflicts(a: Request, b: Request): boolean {
  return (a.write || b.write) && overlaps(a.range, b.range);
}

export class KeyedRwLock {
  private readonly entries = new Map<string, Entry>();

  /** Run `fn` holding a read of `range` of `key` (the whole key if none). */
  withRead<T>(key: string, fn: () => Promise<T>, range?: LockRange): Promise<T> {
    return this.with(key, { write: false, range }, fn);
  }

  /** Run `fn` holding a write of `range` of `key` (the whole key if none). */
  withWrite<T>(key: string, fn: () => Promise<T>, range?: LockRange): Promise<T> {
    return this.with(key, { write: true, range }, fn);
  }

  private async with<T>(key: string, request: Request, fn: () => Promise<T>): Promise<T> {
    await this.acquire(key, request);
    try {
      return await fn();
    } finally {
      this.release(key, request);
    }
  }

  /** Queued synchronously: requests made one after another are ordered as made. */
  private acquire(key: string, request: Request): Promise<void> {
    let e = this.entries.get(key);
    if (!e) {
      e = { holders: [], queue: [] };
      this.entries.set(key, e);
    }
    if (this.grantable(e, request, e.queue.length)) {
      e.holders.push(request);
      return Promise.resolve();
    }
    const entry = e;
    return new Promise((grant) => {
      request.grant = grant;
      entry.queue.push(request);
    });
  }

  /** `request` (at queue position `before`, or new) conflicts with no holder and no earlier waiter. */
  private grantable(e: Entry, request: Request, before: number): boolean {
    for (const h of e.holders) if (conflicts(h, request)) return false;
    for (let i = 0; i < before; i++) if (conflicts(e.queue[i]!, request)) return false;
    return true;
  }

  private release(key: string, request: Request): void {
    const e = this.entries.get(key)!;
    e.holders.splice(e.holders.indexOf(request), 1);
    for (let i = 0; i < e.queue.length; ) {
      const next = e.queue[i]!;
      if (!this.grantable(e, next, i)) {
        i++;
        continue;
      }
      e.queue.splice(i, 1);
      e.holders.push(next);
      next.grant!();
    }
    if (e.holders.length === 0 && e.queue.length === 0) this.entries.delete(key);
  }
}
