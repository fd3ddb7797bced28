// Which parts of which files a primary changed after a given seq: lets the resync of a
// replica that only fell behind (its retained mutations were dropped) compare just those
// parts instead of every block of the volume.
//
// Why it is safe. A replica at seq X whose X was made by this primary's generation holds
// exactly the primary's tree at X (one generation is one primary, numbering its own
// mutations). A block no mutation after X touched is the same on both sides, so comparing
// its CRC can only find it equal: skipping it changes nothing. The link uses this only in
// that one case (see ReplicaLink.needsResync); a replica that diverged, lost its copy, is
// mid-resync, or whose history is unknown is compared in full, as before.
//
// What counts as a change of a file's bytes: write and writeDirect (the regions their range
// covers), truncate (the whole file: cutting and re-growing leaves zeros the replica may not
// have), and the local `suspect` note a primary logs after an unclean stop (the parts that
// may hold changes its log lacks; `all`: anywhere, so nothing before it is covered). Namespace mutations change no bytes: a created file is new and empty (its writes
// are recorded), and the resync's entry listing carries names, sizes and attributes in full
// whatever this says.
//
// Precise and bounded. Each changed region remembers the last seq that touched it, in one
// map kept in the order of that seq (a touched region is moved to the end), so since(X) is
// exactly the regions touched after X. Past MAX_REGIONS the oldest-touched regions are
// forgotten: seqs up to the newest forgotten one are then "not covered", and a replica
// behind them is compared in full. The default keeps 65,536 regions of 1 MiB (64 GiB of
// changed data, a few MiB of memory).
import type { FileRange, Mutation } from '../store/mutations.js';

/** Changed regions (of regionBytes each) per fid, or 'all' for the whole file. */
export interface ChangedFiles {
  readonly regionBytes: number;
  readonly files: ReadonlyMap<string, ReadonlySet<number> | 'all'>;
}

/** The first and last region a byte range touches (an empty one: its offset's region). */
function regionSpan(offset: number, length: number, regionBytes: number): [first: number, last: number] {
  return [Math.floor(offset / regionBytes), Math.floor((offset + Math.max(length, 1) - 1) / regionBytes)];
}

/**
 * `changed` with the byte ranges of `ranges` added (a replica's suspects: store/activity.ts);
 * a range without a length is its whole file. Undefined stays undefined (not covered).
 */
export function withRanges(changed: ChangedFiles | undefined, ranges: readonly FileRange[]): ChangedFiles | undefined {
  if (!changed || ranges.length === 0) return changed;
  const files = new Map<string, ReadonlySet<number> | 'all'>(changed.files);
  for (const r of ranges) {
    const had = files.get(r.fid);
    if (had === 'all') continue;
    if (r.length === undefined) {
      files.set(r.fid, 'all');
      continue;
    }
    const regions = new Set(had);
    const [first, last] = regionSpan(r.offset, r.length, changed.regionBytes);
    for (let region = first; region <= last; region++) regions.add(region);
    files.set(r.fid, regions);
  }
  return { regionBytes: changed.regionBytes, files };
}

export interface ChangedRegionsOptions {
  /** Region size in bytes (default 1 MiB): the granularity of what is compared. */
  regionBytes?: number;
  /** Regions remembered (default 65,536). */
  maxRegions?: number;
}

/** The whole file (a truncate): its key in the map. */
const ALL = -1;

/** A record as plain data (saved across a clean restart: volume/changes-file.ts). */
export interface ChangedRegionsSnapshot {
  regionBytes: number;
  maxRegions: number;
  coveredFrom: string;
  recordedThrough: string;
  /** ["fid:region", last seq], oldest first. */
  touched: Array<[string, number]>;
}

export class ChangedRegions {
  readonly regionBytes: number;
  private readonly maxRegions: number;
  /** "fid:region" (region ALL for the whole file) -> the last seq touching it, oldest first. */
  private readonly touched = new Map<string, number>();
  private covered: bigint;
  private through: bigint;

  /** Records mutations from `startSeq` + 1 on (the retained queue's start). */
  constructor(startSeq: bigint, options: ChangedRegionsOptions = {}) {
    this.regionBytes = options.regionBytes ?? 2 ** 20;
    this.maxRegions = options.maxRegions ?? 65_536;
    this.covered = startSeq + 1n;
    this.through = startSeq;
  }

  /**
   * The last seq recorded (startSeq before any). A record may be continued by a later
   * attach only if the store's last seq is still exactly this: no mutation went unrecorded.
   */
  get recordedThrough(): bigint {
    return this.through;
  }

  snapshot(): ChangedRegionsSnapshot {
    return { regionBytes: this.regionBytes, maxRegions: this.maxRegions, coveredFrom: String(this.covered), recordedThrough: String(this.through), touched: [...this.touched] };
  }

  /** A record from snapshot(); throws RangeError on anything that is not one. */
  static restore(s: ChangedRegionsSnapshot): ChangedRegions {
    const seq = (v: unknown) => {
      if (typeof v !== 'string' || !/^\d{1,20}$/.test(v)) throw new RangeError(`not a seq: ${JSON.stringify(v)}`);
      return BigInt(v);
    };
    const positive = (v: unknown) => Number.isSafeInteger(v) && (v as number) > 0;
    if (!s || !positive(s.regionBytes) || !positive(s.maxRegions) || !Array.isArray(s.touched) || s.touched.length > s.maxRegions) throw new RangeError('not a record of changed regions');
    const covered = seq(s.coveredFrom);
    const through = seq(s.recordedThrough);
    if (covered > through + 1n) throw new RangeError('covered past what was recorded');
    const c = new ChangedRegions(covered - 1n, { regionBytes: s.regionBytes, maxRegions: s.maxRegions });
    c.through = through;
    let previous = -1;
    for (const entry of s.touched) {
      const [key, last] = Array.isArray(entry) ? entry : [];
      // Keys as touch() makes them; seqs rising (the map's order) and within the record (a
      // write over several regions may have lost some to the bound and kept others, so a
      // kept one may be covered - 1).
      if (typeof key !== 'string' || !/^[0-9a-f]{16}:(-1|\d{1,15})$/.test(key) || !Number.isSafeInteger(last) || (last as number) < previous || BigInt(last as number) > through || BigInt(last as number) + 1n < covered) {
        throw new RangeError(`bad entry ${JSON.stringify(entry)}`);
      }
      if (c.touched.has(key)) throw new RangeError(`${key} twice`);
      previous = last as number;
      c.touched.set(key, last as number);
    }
    return c;
  }

  /**
   * End the record at `seq` after a crash lost the mutations recorded past it (numbered and
   * recorded, never durable): the regions they touched stay, as changed at `seq`, since
   * their bytes may have reached the files. False (the record is useless) if it no longer
   * covers `seq` itself.
   */
  truncateTo(seq: bigint): boolean {
    if (this.through <= seq) return true;
    if (this.covered > seq + 1n) return false;
    const at = Number(seq);
    // Those past seq are the last in the map (last-touched order): set in place, still in order.
    for (const [key, last] of this.touched) if (last > at) this.touched.set(key, at);
    this.through = seq;
    return true;
  }

  /** The oldest seq whose changes, and every later one's, are all recorded. */
  get coveredFrom(): bigint {
    return this.covered;
  }

  /** Record mutation `seq` (called in seq order, for every mutation). */
  record(seq: bigint, m: Mutation): void {
    this.through = seq;
    if (m.op === 'truncate') this.touch(m.fid, ALL, seq);
    else if (m.op === 'write' || m.op === 'writeDirect') this.touchRange(m.fid, m.offset, m.op === 'write' ? m.data.length : m.length, seq);
    else if (m.op === 'suspect') {
      // What an unclean stop may have left unlogged (store/activity.ts), as changed now.
      if (m.all) {
        // Anywhere: no replica before this seq can be compared in part.
        this.touched.clear();
        this.covered = seq + 1n;
        return;
      }
      for (const r of m.ranges) {
        if (r.length === undefined) this.touch(r.fid, ALL, seq);
        else this.touchRange(r.fid, r.offset, r.length, seq);
      }
    } else return;
    if (this.touched.size <= this.maxRegions) return;
    // Over budget: forget the regions touched longest ago; their seqs are no longer covered.
    for (const [key, last] of this.touched) {
      if (this.touched.size <= this.maxRegions) break;
      this.touched.delete(key);
      if (BigInt(last) + 1n > this.covered) this.covered = BigInt(last) + 1n;
    }
  }

  private touchRange(fid: string, offset: number, length: number, seq: bigint): void {
    const [first, last] = regionSpan(offset, length, this.regionBytes);
    for (let r = first; r <= last; r++) this.touch(fid, r, seq);
  }

  /**
   * The regions touched by the mutations after `seq`, or undefined when some of those are
   * no longer recorded (seq + 1 < coveredFrom).
   */
  since(seq: bigint): ChangedFiles | undefined {
    if (seq + 1n < this.covered) return undefined;
    const after = Number(seq);
    const out = new Map<string, Set<number> | 'all'>();
    for (const [key, last] of this.touched) {
      if (last <= after) continue;
      const colon = key.lastIndexOf(':');
      const fid = key.slice(0, colon);
      const region = Number(key.slice(colon + 1));
      const have = out.get(fid);
      if (have === 'all') continue;
      if (region === ALL) out.set(fid, 'all');
      else if (have) have.add(region);
      else out.set(fid, new Set([region]));
    }
    return { regionBytes: this.regionBytes, files: out };
  }

  /**
   * A seq after which no mutation changed bytes [offset, offset + length) of `fid`: the last
   * one that touched a region of that range (or the whole file), else coveredFrom - 1 (the
   * range was not changed while recorded). A copy durable up to it holds those bytes as
   * they are now: what a repair needs of a peer (PrimaryReplication.fetchBlocks).
   */
  lastChange(fid: string, offset: number, length: number): bigint {
    let last = this.touched.get(`${fid}:${ALL}`) ?? -1;
    const first = Math.floor(offset / this.regionBytes);
    const end = Math.floor((offset + Math.max(length, 1) - 1) / this.regionBytes);
    for (let r = first; r <= end; r++) last = Math.max(last, this.touched.get(`${fid}:${r}`) ?? -1);
    return last >= 0 ? BigInt(last) : this.covered - 1n;
  }

  /**
   * The min_seq a repair of those bytes asks of a peer: their last change, capped at the
   * store's applied seq when it found the damage (a change reserved but not yet applied
   * must not make every peer too old; the file lock orders the repair with it anyway).
   */
  repairMinSeq(fid: string, offset: number, length: number, appliedSeq: bigint): bigint {
    const changed = this.lastChange(fid, offset, length);
    return changed < appliedSeq ? changed : appliedSeq;
  }

  private touch(fid: string, region: number, seq: bigint): void {
    const key = `${fid}:${region}`;
    // Deleted first so that the key moves to the end: the map stays in last-touched order.
    this.touched.delete(key);
    this.touched.set(key, Number(seq));
  }
}
