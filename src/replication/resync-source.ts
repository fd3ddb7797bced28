// The primary side of a resync: rebuild one replica from this store's tree, shipping only
// the blocks whose CRCs differ. One ResyncSource per attempt, run by a ReplicaLink on an
// authenticated connection.
//
// How it works (a fuzzy copy plus replay, the same idea as the store's crash recovery):
//   1. snapshot  store.resyncSnapshot() lists the tree (parents first) at a seq boundary s0,
//                with no data mutation in flight. From here the retained queue keeps every
//                mutation after s0 for this link (the link's retain floor is s0).
//   2. BEGIN{s0} The replica flags itself resyncing and continues its log from s0; it takes
//                over the primary's generation history up to s0 (store/generations.ts).
//   3. entries   ENTRY for each listed entry; for each file, SUMS frames of its stored block
//                CRCs (read from the sums file, no data read; incremental, only for the
//                regions changed since the replica's seq: see changed.ts), up to maxOutstandingSums
//                unanswered. The replica answers each with a WANT bitmap of the blocks that
//                differ (within the size listed at s0); we read those blocks (verified
//                reads) and send them as DATA, throttled to rateBytesPerSec.
//   4. END       once every WANT is answered; the replica prunes what was not listed,
//                fsyncs, clears its flag and says DONE{s0}.
// The data read in step 3 may already hold mutations after s0 (the tree keeps changing).
// That is harmless: streaming then resumes at s0 + 1 and the store's apply is idempotent by
// fid, exactly as crash replay over a fuzzy checkpoint (names come from the exact s0
// listing; only bytes are fuzzy, and every byte a later mutation touched is rewritten by
// its replay). A file removed after s0 is skipped here and removed by the replay.
//
// Why per-block CRCs on the wire (not a digest per larger region): the sums files already
// hold one CRC per 4 KiB block, so comparing them costs no data read on either side, and
// the replica can want exactly the blocks that differ: bytes sent track bytes changed at
// 4 KiB granularity. The CRCs cost 4 bytes per 4 KiB block (0.1% of the file size) on the
// wire; a two-level scheme (region digests first) would cut that further for huge, mostly
// identical volumes at the price of one more round trip per region.
import { BrickdError } from '../errors.js';
import type { Logger } from '../log.js';
import type { GenerationStart } from '../store/generations.js';
import type { RenumberedRange } from '../store/renumbered.js';
import type { ResyncEntry } from '../store/resync-apply.js';
import { MAX_RESYNC_SUMS_BLOCKS, type ReplicationMessage, type ResyncWantMessage } from '../wire/replication.js';
import type { ChangedFiles } from './changed.js';

/** What a resync needs of the primary's store (ReplicaStore has it). */
export interface ResyncSourceStore {
  readonly manifest: { readonly blockSize: number };
  resyncSnapshot(): Promise<{ s0: bigint; entries: ResyncEntry[]; history: GenerationStart[] }>;
  /** The generation that made `seq` here, if known (the link compares a replica's with it). */
  generationAt(seq: bigint): number | undefined;
  /** Whether a replica's seq of that generation may be a mutation lost here in a crash and numbered again (store/renumbered.ts). */
  renumbered(seq: bigint, generation: number | undefined): boolean;
  /** Those ranges, sent to a replica that understands them (AUTH). */
  readonly renumberedSeqs: readonly RenumberedRange[];
  readSums(fid: string, firstBlock: number, count: number): Promise<Buffer | undefined>;
  read(file: { fid: string }, offset: number, length: number): Promise<Buffer>;
}

/** The connection as a resync sees it. */
export interface ResyncPort {
  /** Send one frame; returns the bytes it put on the wire. */
  send(message: ReplicationMessage): number;
  /** The socket buffer is full: wait for drained() before sending more. */
  readonly congested: boolean;
  drained(): Promise<void>;
  readonly closed: boolean;
}

export interface ResyncProgress {
  /** The snapshot seq (0 until the snapshot is taken). */
  s0: bigint;
  phase: 'snapshot' | 'comparing' | 'finishing' | 'done' | 'aborted';
  entries: number;
  entriesSent: number;
  /** Blocks whose CRCs were sent for comparison, and their bytes. */
  blocksCompared: number;
  bytesCompared: number;
  /**
   * The bytes this resync will compare, known once the snapshot is taken: every file's
   * size, or (incremental) its changed regions'. What progress is measured against (files
   * cut or removed after s0 make bytesCompared end below it).
   */
  bytesToCompare: number;
  /**
   * Bytes compared, answered, and whose differing blocks have all been sent: how far the
   * resync really is (bytesCompared runs up to 16 SUMS frames, 256 MiB, ahead of the data).
   */
  bytesDone: number;
  /** Blocks the replica wanted (they differed). */
  blocksWanted: number;
  /** File bytes sent as RESYNC_DATA payloads. */
  dataBytesSent: number;
  /** Every byte of every resync frame sent (headers, bodies, CRC payloads, data). */
  bytesSent: number;
  startedAt: number;
  finishedAt?: number;
  /**
   * Only the regions changed since the replica's seq are compared (not every block): decided
   * at the snapshot; until then, whether the link asked for an incremental one.
   */
  incremental: boolean;
}

export interface ResyncSourceOptions {
  /** Data bytes per second (0 = unthrottled). */
  rateBytesPerSec?: number;
  /** SUMS frames sent and not yet answered by a WANT (default 16). */
  maxOutstandingSums?: number;
  /** Largest RESYNC_DATA payload (default 1 MiB). */
  maxDataChunk?: number;
  /**
   * Compare only the regions changed after `from`: the replica holds this primary's tree as
   * it was at that seq (ReplicaLink.needsResync), give or take what an earlier resync from
   * the same seq wrote. `changed(from)` is asked right after the snapshot, so that every
   * mutation up to s0 is in it (asked earlier, a write reserved between the ask and the
   * snapshot would be in the tree at s0 and never compared); if the record no longer covers
   * `from` by then, every block is compared. `tellReplica`: BEGIN carries `from` for the
   * replica to keep (both ends have resync-resume). Absent: every block.
   */
  incremental?: { from: bigint; changed: (from: bigint) => ChangedFiles | undefined; tellReplica: boolean };
  log: Logger;
}

interface Outstanding {
  fid: string;
  firstBlock: number;
  /** The file's size at s0: nothing past it is sent. */
  size: number;
  /** The file bytes the SUMS frame covered (progress.bytesDone once answered and sent). */
  bytes: number;
}

/** Wanted chunks read ahead of the one being sent (each at most maxDataChunk bytes). */
const READ_AHEAD = 8;

export class ResyncSource {
  readonly progress: ResyncProgress;
  /** SUMS sent, no WANT yet (the replica answers in order). */
  private readonly awaitingWant: Outstanding[] = [];
  /** WANTs received whose DATA is not all sent yet. */
  private unfinishedWants = 0;
  private wantChain: Promise<void> = Promise.resolve();
  private slotWaiters: Array<() => void> = [];
  private doneWaiter: { resolve: (seq: bigint) => void; reject: (err: Error) => void } | undefined;
  private failure: Error | undefined;
  /** Earliest time (ms) the next DATA may go, at the current rate. */
  private nextSendAt = 0;
  private rate: number;
  /** Wakes a send sleeping in throttle (the rate changed, or the resync stopped). */
  private wakeThrottled: (() => void) | undefined;
  private readonly maxOutstanding: number;
  private readonly maxChunk: number;
  /** The regions compared, when incremental (set at the snapshot). */
  private changed: ChangedFiles | undefined;

  constructor(
    private readonly store: ResyncSourceStore,
    private readonly port: ResyncPort,
    private readonly options: ResyncSourceOptions,
  ) {
    this.rate = options.rateBytesPerSec ?? 0;
    this.maxOutstanding = options.maxOutstandingSums ?? 16;
    this.maxChunk = options.maxDataChunk ?? 2 ** 20;
    this.progress = { s0: 0n, phase: 'snapshot', entries: 0, entriesSent: 0, blocksCompared: 0, bytesCompared: 0, bytesToCompare: 0, bytesDone: 0, blocksWanted: 0, dataBytesSent: 0, bytesSent: 0, startedAt: Date.now(), incremental: options.incremental !== undefined };
  }

  /** The snapshot seq once taken (the link's retained queue must keep everything after it). */
  get s0(): bigint | undefined {
    return this.progress.phase === 'snapshot' ? undefined : this.progress.s0;
  }

  /**
   * Run the resync; resolves with s0 once the replica said DONE (it is then durable at s0
   * and takes MUTATION s0 + 1 next). `onSnapshot` is told s0 as soon as it is known.
   * `sendHistory`: both ends have the generation-history feature (else BEGIN carries none).
   */
  async run(generation: number, onSnapshot: (s0: bigint) => void, sendHistory = true): Promise<bigint> {
    const { s0, entries, history } = await this.store.resyncSnapshot();
    const incremental = this.options.incremental;
    this.changed = incremental?.changed(incremental.from);
    this.progress.incremental = this.changed !== undefined;
    const blockSize = this.store.manifest.blockSize;
    const ranges = new Map<ResyncEntry, Array<{ first: number; count: number }>>();
    for (const e of entries) {
      if (e.type !== 'file') continue;
      const r = this.sumsRanges(e.fid, Math.ceil(e.size / blockSize), blockSize);
      ranges.set(e, r);
      for (const { first, count } of r) this.progress.bytesToCompare += Math.min(count * blockSize, e.size - first * blockSize);
    }
    this.progress.s0 = s0;
    this.progress.entries = entries.length;
    this.progress.phase = 'comparing';
    onSnapshot(s0);
    this.options.log.info({ s0: String(s0), entries: entries.length }, 'resync: snapshot taken');
    const base = this.changed && incremental?.tellReplica ? { incrementalFrom: incremental.from } : {};
    await this.send({ type: 'RESYNC_BEGIN', s0, generation, history: sendHistory ? history : [], ...base });
    for (const e of entries) {
      await this.send({ type: 'RESYNC_ENTRY', entry: e });
      this.progress.entriesSent++;
      for (const { first, count } of ranges.get(e) ?? []) {
        const sums = await this.store.readSums(e.fid, first, count);
        // Gone or shorter now: mutations after s0 removed or cut it; their replay finishes it.
        if (!sums || sums.length === 0) break;
        await this.slot(this.maxOutstanding);
        const bytes = Math.min(e.size - first * blockSize, (sums.length / 4) * blockSize);
        this.awaitingWant.push({ fid: e.fid, firstBlock: first, size: e.size, bytes });
        this.progress.blocksCompared += sums.length / 4;
        this.progress.bytesCompared += bytes;
        await this.send({ type: 'RESYNC_SUMS', fid: e.fid, firstBlock: first, sums });
        if (sums.length / 4 < count) break;
      }
    }
    // Every WANT answered and its DATA sent.
    await this.slot(1);
    await this.wantChain;
    this.check();
    this.progress.phase = 'finishing';
    const done = new Promise<bigint>((resolve, reject) => (this.doneWaiter = { resolve, reject }));
    await this.send({ type: 'RESYNC_END', entries: entries.length });
    const appliedSeq = await done;
    if (appliedSeq !== s0) throw new BrickdError('PROTOCOL_VIOLATION', `RESYNC_DONE at seq ${appliedSeq}, expected ${s0}`);
    this.progress.phase = 'done';
    this.progress.finishedAt = Date.now();
    return s0;
  }

  /**
   * The block ranges of a file of `blocks` blocks whose CRCs go out in SUMS frames, in
   * ascending order, each at most MAX_RESYNC_SUMS_BLOCKS: every block, or (incremental) only
   * the changed regions' blocks, adjacent regions merged; none for a file nothing changed.
   */
  private sumsRanges(fid: string, blocks: number, blockSize: number): Array<{ first: number; count: number }> {
    const spans: Array<{ first: number; end: number }> = [];
    const only = this.changed;
    const changed = only?.files.get(fid);
    if (!only || changed === 'all') spans.push({ first: 0, end: blocks });
    else if (changed) {
      const { regionBytes } = only;
      for (const r of [...changed].sort((a, b) => a - b)) {
        const first = Math.floor((r * regionBytes) / blockSize);
        const end = Math.min(blocks, Math.ceil(((r + 1) * regionBytes) / blockSize));
        if (first >= end) continue;
        const last = spans[spans.length - 1];
        if (last && first <= last.end) last.end = Math.max(last.end, end);
        else spans.push({ first, end });
      }
    }
    const ranges: Array<{ first: number; count: number }> = [];
    for (const { first, end } of spans) {
      for (let b = first; b < end; b += MAX_RESYNC_SUMS_BLOCKS) ranges.push({ first: b, count: Math.min(MAX_RESYNC_SUMS_BLOCKS, end - b) });
    }
    return ranges;
  }

  /** A WANT from the replica: answers the oldest SUMS not yet answered. */
  onWant(m: ResyncWantMessage): void {
    const head = this.awaitingWant[0];
    if (!head || head.fid !== m.fid || head.firstBlock !== m.firstBlock) {
      return this.abort(new BrickdError('PROTOCOL_VIOLATION', `RESYNC_WANT for ${m.fid}@${m.firstBlock} answers no RESYNC_SUMS sent`));
    }
    this.awaitingWant.shift();
    this.unfinishedWants++;
    this.wantChain = this.wantChain.then(() => this.sendWanted(head, m.blocks)).catch((err: unknown) => this.abort(err as Error));
    for (const w of this.slotWaiters.splice(0)) w();
  }

  onDone(appliedSeq: bigint): void {
    if (!this.doneWaiter) return this.abort(new BrickdError('PROTOCOL_VIOLATION', 'RESYNC_DONE before RESYNC_END'));
    this.doneWaiter.resolve(appliedSeq);
  }

  /** Data bytes per second from now on (0: unthrottled), for a send already waiting too. */
  setRate(bytesPerSec: number): void {
    this.rate = bytesPerSec;
    // The pacing owed at the old rate is forgiven: the next chunk may go now.
    this.nextSendAt = 0;
    this.wakeThrottled?.();
  }

  /** Stop: the connection is gone or misbehaved. Pending waits reject. */
  abort(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.progress.phase = 'aborted';
    this.wakeThrottled?.();
    this.doneWaiter?.reject(err);
    for (const w of this.slotWaiters.splice(0)) w();
  }

  private async sendWanted(o: Outstanding, bitmap: Buffer): Promise<void> {
    const blockSize = this.store.manifest.blockSize;
    const bits = bitmap.length * 8;
    // The wanted runs of blocks, cut into chunks of at most maxChunk bytes.
    const chunks: Array<{ offset: number; length: number }> = [];
    for (let i = 0; i < bits; ) {
      if (!(bitmap[i >> 3]! & (1 << (i & 7)))) {
        i++;
        continue;
      }
      let j = i;
      while (j < bits && bitmap[j >> 3]! & (1 << (j & 7))) j++;
      this.progress.blocksWanted += j - i;
      const end = Math.min((o.firstBlock + j) * blockSize, o.size);
      for (let offset = (o.firstBlock + i) * blockSize; offset < end; offset += this.maxChunk) chunks.push({ offset, length: Math.min(this.maxChunk, end - offset) });
      i = j;
    }
    // Up to READ_AHEAD reads in flight, sent in order: scattered changes are many small
    // chunks, and one read round trip per chunk before its send made them crawl.
    const reads: Array<Promise<Buffer | undefined>> = [];
    let next = 0;
    const startRead = (): void => {
      const { offset, length } = chunks[next++]!;
      const read = this.store.read({ fid: o.fid }, offset, length).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // removed after s0
        throw err;
      });
      read.catch(() => undefined); // awaited below in order; an abandoned one must not go unhandled
      reads.push(read);
    };
    for (const { offset, length } of chunks) {
      while (reads.length < READ_AHEAD && next < chunks.length) startRead();
      this.check();
      const data = await reads.shift()!;
      if (!data || data.length === 0) break;
      await this.throttle(data.length);
      await this.send({ type: 'RESYNC_DATA', fid: o.fid, offset, data });
      this.progress.dataBytesSent += data.length;
      if (data.length < length) break; // cut short after s0: the replay finishes it
    }
    this.progress.bytesDone += o.bytes;
    this.answered();
  }

  private answered(): void {
    this.unfinishedWants--;
    for (const w of this.slotWaiters.splice(0)) w();
  }

  /** Wait until fewer than `limit` SUMS frames are unanswered or have DATA still to send. */
  private async slot(limit: number): Promise<void> {
    for (;;) {
      this.check();
      if (this.awaitingWant.length + this.unfinishedWants < limit) return;
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
  }

  /**
   * Wait until `bytes` of DATA may go at the current rate, then book them: the next chunk
   * may go bytes/rate later. The wait is woken early by setRate (re-evaluated at the new
   * rate) and by abort (the caller's next check throws), so neither waits out a sleep
   * computed at an old, possibly very low, rate.
   */
  private async throttle(bytes: number): Promise<void> {
    for (;;) {
      this.check();
      if (this.rate <= 0) return;
      const now = Date.now();
      if (this.nextSendAt <= now) {
        this.nextSendAt = now + (bytes / this.rate) * 1000;
        return;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(wake, this.nextSendAt - now);
        function wake(): void {
          clearTimeout(timer);
          resolve();
        }
        this.wakeThrottled = wake;
      });
      this.wakeThrottled = undefined;
    }
  }

  private async send(message: ReplicationMessage): Promise<void> {
    this.check();
    this.progress.bytesSent += this.port.send(message);
    if (this.port.congested) await this.port.drained();
    this.check();
  }

  private check(): void {
    if (this.failure) throw this.failure;
    if (this.port.closed) throw (this.failure = new BrickdError('TIMEOUT', 'the connection closed during the resync'));
  }
}
