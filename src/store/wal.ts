// The replica's write log: an append-only sequence of records in fixed-size segment files,
// made durable by group commit.
//
// How it works
// - Record = 32-byte header + body (small JSON: what the mutation is) + payload (raw data).
//   Header, little-endian: magic u32 'BWAL' | version u16 | type u16 | seq u64 |
//   bodyLen u32 | payloadLen u32 | payloadCrc u32 | headerCrc u32, where headerCrc covers
//   header bytes 0..28 and the body. A record is valid only if its magic, version and
//   headerCrc check and its payload matches payloadCrc.
// - Appends reserve a byte range synchronously (so records are laid out in seq order) and
//   join the open write batch, written with one pwritev. `writtenSeq` is the highest seq
//   whose record, and every earlier one, has been written. A batch written when everything
//   before it is already durable goes with RWF_DSYNC and is durable when its write returns.
//   Otherwise a sync round snapshots writtenSeq, fdatasyncs the segment, then declares
//   everything up to the snapshot durable. A round starts whenever someone waits for
//   durability and none is running.
// - A batch someone waits on ("eager") ends on a page boundary: the rest of its last page
//   is written as zeros (the next record overwrites them). A write that ended mid-page
//   would make the kernel read that page from disk first whenever it is not cached (a
//   recycled segment, or one evicted under memory pressure): measured on an XFS loop
//   brick, ~70 µs more per 4 KiB durable write. The first page of a write is the previous
//   write's last one, just written, so normally cached. While a padded write is in flight
//   no other write is issued (it must not zero bytes that the next write puts there): the
//   next batch gathers every record reserved meanwhile (group commit). Write-back batches
//   (nobody waits yet: bulk writes answered once applied) are not padded and are written
//   side by side, several in the pool at once.
// - A segment that fills up is synced completely before the next one is used, so durable
//   order across segments is log order.
// - Segments whose records are all checkpointed (applied to data files that were then
//   synced) are recycled: renamed and overwritten from the start, so the file is already
//   allocated and a sync flushes data only, never allocation metadata. Stale records in a
//   recycled segment have old seqs and end any scan that reaches them.
// - Recovery scans segments in order of their first seq, takes the contiguous run of valid
//   records after the checkpoint, and truncates the segment where the run ends, so a stale
//   record behind a torn one can never be mistaken for a new one later. Appends leave that
//   cut segment for a spare one as soon as there is a spare (the cut one would need a new
//   file size in every flush); a spare that was cut is filled up with zeros before reuse.
import { open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { BrickdError } from '../errors.js';
import { fsyncDir } from '../fsutil.js';
import { native } from '../native.js';
import { ContiguousSeq } from './contiguous.js';

export const WAL_MAGIC = 0x4c415742; // 'BWAL' little-endian
export const WAL_VERSION = 1;
export const HEADER_SIZE = 32;
/** The largest record the log accepts (a body plus a payload of at most 16 MiB). */
export const MAX_RECORD_PAYLOAD = 16 * 2 ** 20;
export const MAX_RECORD_BODY = 64 * 1024;

export interface WalRecord {
  seq: bigint;
  type: number;
  body: Buffer;
  payload: Buffer;
  payloadCrc: number;
}

/** Records reserved one after another in one segment, written together (see queueWrite). */
interface WriteBatch {
  seg: Segment;
  /** Byte range [offset, end) of the segment the batch covers. */
  offset: number;
  end: number;
  firstSeq: bigint;
  lastSeq: bigint;
  parts: Uint8Array[];
  /** Some record's caller will wait for durability (see appendStart's `lazy`). */
  eager: boolean;
  /** Every record's `written`: settles once the batch's one write has. */
  written: Promise<void>;
  settle: { resolve: () => void; reject: (err: unknown) => void };
}

/** A batch stops growing at this many buffers (well under IOV_MAX per syscall) or bytes. */
const MAX_BATCH_PARTS = 512;
const MAX_BATCH_BYTES = 8 * 2 ** 20;
/** Writes are padded with zeros to a multiple of this (the page size). */
export const LOG_PAGE_BYTES = 4096;
const ZERO_PAGE = Buffer.alloc(LOG_PAGE_BYTES);

interface Segment {
  name: string;
  handle: FileHandle;
  /** Next free byte. */
  tail: number;
  /** First and last seq written in this use of the segment (0n when none). */
  firstSeq: bigint;
  lastSeq: bigint;
  /** The file is allocated to the segment size (false for one that recovery cut short). */
  allocated: boolean;
}

export interface WalOptions {
  dir: string;
  segmentBytes: number;
  /** Test hook: called with a named point in the write path (crash-point tests). */
  crashPoint?: (name: string) => void;
}

function encodeHeader(type: number, seq: bigint, body: Uint8Array, payloadLen: number, payloadCrc: number): Buffer {
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt32LE(WAL_MAGIC, 0);
  header.writeUInt16LE(WAL_VERSION, 4);
  header.writeUInt16LE(type, 6);
  header.writeBigUInt64LE(seq, 8);
  header.writeUInt32LE(body.length, 16);
  header.writeUInt32LE(payloadLen, 20);
  header.writeUInt32LE(payloadCrc >>> 0, 24);
  const crc = native.crc32c(body, native.crc32c(header.subarray(0, 28)));
  header.writeUInt32LE(crc >>> 0, 28);
  return header;
}

/** Parse a header at the start of `buf`; undefined if it is not a valid record header (given its body). */
function decodeHeader(buf: Buffer): { type: number; seq: bigint; bodyLen: number; payloadLen: number; payloadCrc: number; headerCrc: number } | undefined {
  if (buf.length < HEADER_SIZE || buf.readUInt32LE(0) !== WAL_MAGIC || buf.readUInt16LE(4) !== WAL_VERSION) return undefined;
  const bodyLen = buf.readUInt32LE(16);
  const payloadLen = buf.readUInt32LE(20);
  if (bodyLen > MAX_RECORD_BODY || payloadLen > MAX_RECORD_PAYLOAD) return undefined;
  return { type: buf.readUInt16LE(6), seq: buf.readBigUInt64LE(8), bodyLen, payloadLen, payloadCrc: buf.readUInt32LE(24), headerCrc: buf.readUInt32LE(28) };
}

const SEGMENT_RE = /^seg-([0-9a-f]{8})\.wal$/;
const segmentName = (n: number) => `seg-${n.toString(16).padStart(8, '0')}.wal`;

/** Sequential reader of one segment, used by recovery. */
async function* readSegment(handle: FileHandle, size: number): AsyncGenerator<WalRecord & { offset: number; end: number }> {
  let offset = 0;
  const header = Buffer.alloc(HEADER_SIZE);
  while (offset + HEADER_SIZE <= size) {
    if ((await native.readInto(handle.fd, header, offset)) < HEADER_SIZE) return;
    const h = decodeHeader(header);
    if (!h || offset + HEADER_SIZE + h.bodyLen + h.payloadLen > size) return;
    const rest = Buffer.alloc(h.bodyLen + h.payloadLen);
    if ((await native.readInto(handle.fd, rest, offset + HEADER_SIZE)) < rest.length) return;
    const body = rest.subarray(0, h.bodyLen);
    const payload = rest.subarray(h.bodyLen);
    if ((native.crc32c(body, native.crc32c(header.subarray(0, 28))) >>> 0) !== h.headerCrc) return;
    if (h.payloadLen > 0 && native.crc32c(payload) >>> 0 !== h.payloadCrc) return;
    const end = offset + HEADER_SIZE + h.bodyLen + h.payloadLen;
    yield { seq: h.seq, type: h.type, body, payload, payloadCrc: h.payloadCrc, offset, end };
    offset = end;
  }
}

export class WriteLog {
  private segments: Segment[] = [];
  /** Recycled segment files ready for reuse (already allocated on disk). */
  private spare: string[] = [];
  private nextSegmentNumber = 0;
  private reservedSeq = 0n;
  /** Highest seq with it and every earlier record written (not yet necessarily durable). */
  private readonly written = new ContiguousSeq(0n);
  private durableSeqValue = 0n;
  private syncing: Promise<void> | undefined;
  /** A sync round with nothing new to flush sleeps here until the next record is written. */
  private readonly onWritten: Array<() => void> = [];
  private readonly waiters: Array<{ seq: bigint; resolve: () => void; reject: (e: unknown) => void }> = [];
  private failed: unknown;
  /** An fdatasync of a sync round is in progress. */
  private flushing = false;
  private rollover: Promise<void> = Promise.resolve();
  private rollingOver = false;
  /** The batch still taking records: written at the next process.nextTick, or when the write in flight ends. */
  private batch: WriteBatch | undefined;
  /** Batches that stopped taking records (full, or not adjacent), in log order, not yet written. */
  private readonly closed: WriteBatch[] = [];
  /** A padded write is in flight: no other is issued until it ends (see the header). */
  private paddedInFlight = false;

  private constructor(private readonly options: WalOptions) {}

  /** Highest seq that is durable in the log (it and all before it). */
  get durableSeq(): bigint {
    return this.durableSeqValue;
  }

  get lastSeq(): bigint {
    return this.reservedSeq;
  }

  /**
   * Open the log in `dir`, returning it and the records after `checkpointSeq` to replay,
   * in seq order. The log continues from the last of them (or from checkpointSeq).
   */
  static async open(options: WalOptions, checkpointSeq: bigint): Promise<{ log: WriteLog; replay: WalRecord[] }> {
    const log = new WriteLog(options);
    const names = (await readdir(options.dir)).filter((n) => SEGMENT_RE.test(n));
    const found: Array<{ name: string; handle: FileHandle; firstSeq: bigint; records: Array<WalRecord & { offset: number; end: number }>; size: number }> = [];
    for (const name of names) {
      log.nextSegmentNumber = Math.max(log.nextSegmentNumber, parseInt(SEGMENT_RE.exec(name)![1]!, 16) + 1);
      const handle = await open(path.join(options.dir, name), 'r+');
      const size = (await handle.stat()).size;
      const records: Array<WalRecord & { offset: number; end: number }> = [];
      let prev: bigint | undefined;
      for await (const r of readSegment(handle, size)) {
        if (prev !== undefined && r.seq !== prev + 1n) break;
        records.push(r);
        prev = r.seq;
      }
      found.push({ name, handle, firstSeq: records[0]?.seq ?? 0n, records, size });
    }
    found.sort((a, b) => (a.firstSeq < b.firstSeq ? -1 : a.firstSeq > b.firstSeq ? 1 : 0));

    // Walk segments in seq order taking the contiguous run after the checkpoint. Segments
    // holding part of that run stay in use (recycled only after the next checkpoint); the
    // others are fully checkpointed or stale and become spares.
    const replay: WalRecord[] = [];
    let expected = checkpointSeq + 1n;
    let ended = false;
    let endOffset = 0;
    for (const seg of found) {
      const start = ended ? -1 : seg.records.findIndex((r) => r.seq === expected);
      if (start < 0) {
        // Records past `expected` with no way to reach them lie beyond a gap: the log ended
        // before them, and durability is contiguous, so none of them was ever acknowledged.
        if (seg.records.some((r) => r.seq > expected)) ended = true;
        await seg.handle.close();
        log.spare.push(seg.name);
        continue;
      }
      const run = seg.records.slice(start);
      for (const r of run) replay.push(r);
      expected = run[run.length - 1]!.seq + 1n;
      endOffset = run[run.length - 1]!.end;
      log.segments.push({ name: seg.name, handle: seg.handle, tail: endOffset, firstSeq: seg.firstSeq, lastSeq: expected - 1n, allocated: true });
    }
    log.reservedSeq = log.durableSeqValue = expected - 1n;
    log.written.reset(expected - 1n);
    const last = log.active;
    if (last) {
      // Cut off whatever follows the last valid record, so nothing stale can ever follow it.
      // Appends past the cut grow the file, so each flush carries a new size too: the next
      // append moves to a spare segment if there is one (see appendStart).
      await last.handle.truncate(endOffset);
      await last.handle.sync();
      last.allocated = endOffset >= options.segmentBytes;
    }
    return { log, replay };
  }

  private get active(): Segment | undefined {
    return this.segments[this.segments.length - 1];
  }

  private async newSegmentLocked(): Promise<Segment> {
    const name = segmentName(this.nextSegmentNumber++);
    const file = path.join(this.options.dir, name);
    const spare = this.spare.shift();
    if (spare) await rename(path.join(this.options.dir, spare), file);
    const handle = await open(file, spare ? 'r+' : 'w+');
    // A spare is normally allocated already; one that recovery cut short is filled up first.
    const size = spare ? (await handle.stat()).size : 0;
    if (size < this.options.segmentBytes) await this.zeroFill(handle, size);
    await fsyncDir(this.options.dir);
    const seg: Segment = { name, handle, tail: 0, firstSeq: 0n, lastSeq: 0n, allocated: true };
    this.segments.push(seg);
    return seg;
  }

  /**
   * Write zeros from `from` to the segment size and sync them: the segment is allocated, so
   * syncs later flush data, not allocation metadata (nor a new file size).
   */
  private async zeroFill(handle: FileHandle, from: number): Promise<void> {
    const zeros = Buffer.alloc(2 ** 20);
    for (let off = from; off < this.options.segmentBytes; off += zeros.length) {
      await native.writev(handle.fd, [zeros.subarray(0, Math.min(zeros.length, this.options.segmentBytes - off))], off);
    }
    await native.fdatasync(handle.fd);
  }

  /** Append one record with the next seq; resolves with the seq once it is written (not yet durable). */
  async append(type: number, body: Uint8Array, payload: Uint8Array = Buffer.alloc(0)): Promise<bigint> {
    const { seq, written } = await this.appendStart(type, body, payload);
    await written;
    return seq;
  }

  /**
   * Reserve the next seq and its place in the log, and start writing the record. The outer
   * promise resolves once the place is reserved (after a segment rollover, if one was
   * needed): callers that reserve one after another get ascending seqs in that order.
   * `written` resolves when the record is written (not yet durable: see waitDurable).
   * `lazy`: the caller does not wait for durability now (write-back), so the record is never
   * written with RWF_DSYNC; a later sync round makes it durable.
   */
  async appendStart(type: number, body: Uint8Array, payload: Uint8Array = Buffer.alloc(0), lazy = false): Promise<{ seq: bigint; written: Promise<void> }> {
    if (this.failed) throw this.failed;
    if (body.length > MAX_RECORD_BODY || payload.length > MAX_RECORD_PAYLOAD) {
      throw new RangeError(`record too large: body ${body.length} (max ${MAX_RECORD_BODY}), payload ${payload.length} (max ${MAX_RECORD_PAYLOAD})`);
    }
    const size = HEADER_SIZE + body.length + payload.length;
    if (size > this.options.segmentBytes) throw new RangeError(`record of ${size} bytes exceeds the segment size ${this.options.segmentBytes}`);
    // Reserve seq and offset together, with no await between the check and the reservation.
    // A full segment is first synced completely, then replaced (one rollover at a time).
    let seg: Segment | undefined;
    for (;;) {
      await this.rollover;
      seg = this.active;
      // A segment cut short by recovery is left for a spare as soon as there is one.
      if (seg && seg.tail + size <= this.options.segmentBytes && (seg.allocated || this.spare.length === 0)) break;
      if (!this.rollingOver) {
        this.rollingOver = true;
        const full = seg;
        this.rollover = (async () => {
          try {
            if (full) await this.waitDurable(this.reservedSeq);
            await this.newSegmentLocked();
          } finally {
            this.rollingOver = false;
          }
        })();
      }
    }
    const seq = ++this.reservedSeq;
    const offset = seg.tail;
    seg.tail += size;
    if (seg.firstSeq === 0n) seg.firstSeq = seq;
    seg.lastSeq = seq;
    const crc = payload.length === 0 ? 0 : native.crc32c(payload);
    const header = encodeHeader(type, seq, body, payload.length, crc);
    const parts = payload.length ? [header, body, payload] : [header, body];
    return { seq, written: this.queueWrite(seg, offset, size, seq, parts, lazy) };
  }

  /**
   * Add a reserved record to the open write batch, opening one if needed. The batch is
   * written by one pwritev at process.nextTick (queued from a promise continuation, that
   * runs once the microtask queue is empty) or, if a write is in flight then, as soon as it
   * ends: N concurrent appends cost one pool job and one syscall, not N. Records reserved
   * back to back are adjacent in the segment, so a batch is one contiguous range; a record
   * that is not (a new segment), or that would make the batch too large, closes it and
   * starts the next.
   */
  private queueWrite(seg: Segment, offset: number, size: number, seq: bigint, parts: Uint8Array[], lazy: boolean): Promise<void> {
    let batch = this.batch;
    if (!batch || batch.seg !== seg || batch.end !== offset || batch.parts.length + parts.length > MAX_BATCH_PARTS || batch.end - batch.offset + size > MAX_BATCH_BYTES) {
      if (batch) this.closed.push(batch);
      let settle!: WriteBatch['settle'];
      const written = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
      batch = { seg, offset, end: offset, firstSeq: seq, lastSeq: seq, parts: [], eager: false, written, settle };
      this.batch = batch;
      process.nextTick(() => this.writeNext());
    }
    batch.parts.push(...parts);
    batch.end += size;
    batch.lastSeq = seq;
    batch.eager ||= !lazy;
    return batch.written;
  }

  /**
   * Write the batches not yet written, oldest first, until one is padded (see the header):
   * nothing is issued while a padded write is in flight; its end calls this again. A
   * batch's records are written, in one syscall, when its `written` resolves.
   */
  private writeNext(): void {
    while (!this.paddedInFlight) {
      const batch = this.closed.shift() ?? this.batch;
      if (!batch) return;
      if (batch === this.batch) this.batch = undefined;
      this.writeBatch(batch);
    }
  }

  private writeBatch(batch: WriteBatch): void {
    // A batch with everything before it durable, and no flush running, is written with
    // RWF_DSYNC: write and flush in one syscall, for a lone synchronous writer and for
    // each group of concurrent ones alike. A batch of write-back records only (nobody
    // waits for them yet) leaves its flush to a later sync round, as does one written
    // behind records that are not durable yet.
    const dsync = batch.eager && this.durableSeqValue === batch.firstSeq - 1n && !this.flushing;
    // Someone waits on an eager batch: it ends on a page boundary, and the next batch waits
    // for it. Write-back batches (bulk writes answered once applied) are written side by
    // side instead, unpadded: their throughput needs several in the pool at once.
    const padTo = batch.eager ? Math.min(Math.ceil(batch.end / LOG_PAGE_BYTES) * LOG_PAGE_BYTES, this.options.segmentBytes) : batch.end;
    const padded = padTo > batch.end;
    const parts = padded ? [...batch.parts, ZERO_PAGE.subarray(0, padTo - batch.end)] : batch.parts;
    this.paddedInFlight = padded;
    native.writev(batch.seg.handle.fd, parts, batch.offset, dsync).then(
      () => {
        this.options.crashPoint?.('wal.appended');
        for (let seq = batch.firstSeq; seq <= batch.lastSeq; seq++) this.markWritten(seq);
        if (dsync && this.durableSeqValue === batch.firstSeq - 1n) {
          this.options.crashPoint?.('wal.synced');
          this.markDurable(batch.lastSeq);
        }
        batch.settle.resolve();
        if (padded) {
          this.paddedInFlight = false;
          this.writeNext();
        }
      },
      (err: unknown) => {
        this.fail(err);
        batch.settle.reject(err);
        // The log has stopped: batches not yet written fail with it, unwritten.
        for (const later of this.closed.splice(0)) later.settle.reject(err);
        this.batch?.settle.reject(err);
        this.batch = undefined;
      },
    );
  }

  private markWritten(seq: bigint): void {
    if (this.written.complete(seq)) for (const wake of this.onWritten.splice(0)) wake();
  }

  /** Highest seq with it and every earlier record written (not yet necessarily durable). */
  private get writtenSeq(): bigint {
    return this.written.value;
  }

  /** Resolves once every record up to `seq` is durable (fdatasync'd). */
  waitDurable(seq: bigint): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    if (seq <= this.durableSeqValue) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ seq, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.syncing || this.waiters.length === 0) return;
    this.syncing = this.syncRound().finally(() => {
      this.syncing = undefined;
      this.kick();
    });
  }

  private async syncRound(): Promise<void> {
    const target = this.writtenSeq;
    if (target <= this.durableSeqValue) {
      // Waiters are ahead of what is written: sleep until the next write lands, then retry.
      await new Promise<void>((resolve) => this.onWritten.push(resolve));
      return;
    }
    this.flushing = true;
    try {
      // Only the segments holding records in (durable, target] need a flush; normally one.
      for (const seg of this.segments) {
        if (seg.lastSeq > this.durableSeqValue && seg.firstSeq !== 0n) await native.fdatasync(seg.handle.fd);
      }
    } catch (err) {
      this.fail(err);
      return;
    } finally {
      this.flushing = false;
    }
    this.options.crashPoint?.('wal.synced');
    this.markDurable(target);
  }

  /** Everything up to `seq` is durable: wake its waiters. */
  private markDurable(seq: bigint): void {
    if (seq <= this.durableSeqValue) return;
    this.durableSeqValue = seq;
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      if (w.seq <= seq) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  /** After an I/O error the log stops: nothing more may be acknowledged from it. */
  private fail(err: unknown): void {
    this.failed ??= err;
    for (const w of this.waiters.splice(0)) w.reject(err);
    for (const wake of this.onWritten.splice(0)) wake();
  }

  /**
   * Everything up to `seq` is applied and synced in the data files: segments holding only
   * such records become spares for reuse.
   */
  async checkpointed(seq: bigint): Promise<void> {
    while (this.segments.length > 1 && this.segments[0]!.lastSeq <= seq) {
      const seg = this.segments.shift()!;
      await seg.handle.close();
      this.spare.push(seg.name);
    }
  }

  /** Remove spare segments beyond `keep` (disk space back after a burst). */
  async trimSpares(keep = 1): Promise<void> {
    while (this.spare.length > keep) await unlink(path.join(this.options.dir, this.spare.pop()!));
  }

  async close(): Promise<void> {
    await this.rollover.catch(() => {});
    // Every reserved record is in a batch that will be written (or fail with the log).
    if (!this.failed && this.reservedSeq > this.durableSeqValue) await this.waitDurable(this.reservedSeq).catch(() => {});
    for (const seg of this.segments) await seg.handle.close();
    this.segments = [];
    this.failed ??= new BrickdError('STORE_CLOSED', 'the write log is closed');
  }
}
