// The replica side of a resync: one ResyncTarget per RESYNC_BEGIN, driven by the frames of
// an authenticated session (server.ts routes them here) and answering on it.
//
// How it works. Every frame is checked synchronously when it arrives, before anything is
// queued: a path that store names refuse (absolute, '..', NUL, too long) is BAD_FRAME; an
// entry whose parent directory was not listed before it, a path listed twice, a fid listed
// as two kinds (or a directory fid twice), SUMS or DATA for a fid that is not a listed
// file, DATA beyond the listed size, and an END whose entry count differs are
// PROTOCOL_VIOLATION. A refused frame changes nothing. Accepted frames become work items
// run one after another in arrival order (the store's own locks make each item safe; the
// order makes a SUMS comparison see the entry placed and the DATA that answers a WANT land
// after it). DATA items only start in that order: up to MAX_WRITES_IN_FLIGHT of them run
// side by side (the store's range locks order writes to the same blocks), and END waits
// for all of them:
//   BEGIN  store.beginResync(s0, history, base): flag the replica (with the base seq of an
//          incremental resync), drop its log, continue from s0 with the primary's
//          generation history up to s0
//   ENTRY  store.resyncEntry: the entry exists with the primary's fid, type, attributes, size
//   SUMS   compare with our stored CRCs block by block, answer RESYNC_WANT (a bitmap; blocks
//          past the listed size are never wanted: mutations after s0 bring them)
//   DATA   store.resyncWrite (the frame decoder verified the payload CRC)
//   END    store.endResync (prune, times, fsync, flag cleared), then RESYNC_DONE{s0}
// Bounds: reading pauses while more than MAX_QUEUED_ITEMS items or MAX_QUEUED_BYTES of DATA
// wait, and resumes at half (TCP then stalls the primary).
import { BrickdError } from '../errors.js';
import type { Logger } from '../log.js';
import type { GenerationStart } from '../store/generations.js';
import type { ResyncBase } from '../store/manifest.js';
import type { ResyncEntry } from '../store/resync-apply.js';
import { validatePath, validateSymlinkTarget } from '../store/names.js';
import type { ReplicationMessage, ResyncDataMessage, ResyncEndMessage, ResyncEntryMessage, ResyncSumsMessage } from '../wire/replication.js';
import type { WireErrorCode } from './session.js';

/** What a resync needs of the replica store (ReplicaStore has it). */
export interface ResyncTargetStore {
  readonly resyncing: boolean;
  /** While resyncing: where an incremental resync under way started from (beginResync's base). */
  readonly resyncBase: ResyncBase | undefined;
  readonly manifest: { readonly blockSize: number };
  beginResync(s0: bigint, history?: readonly GenerationStart[], base?: ResyncBase): Promise<void>;
  resyncEntry(entry: ResyncEntry): Promise<void>;
  readSums(fid: string, firstBlock: number, count: number): Promise<Buffer | undefined>;
  resyncWrite(fid: string, offset: number, data: Buffer): Promise<boolean>;
  endResync(listed: ReadonlyMap<string, { fid: string; mtimeMs: number }>): Promise<{ removedNames: number; removedFids: number }>;
}

export interface ResyncTargetPort {
  send(message: ReplicationMessage): void;
  refuse(code: WireErrorCode, message: string): void;
  pause(): void;
  resume(): void;
  /** Track a work item (the server waits for these before it closes or realigns). */
  track(work: Promise<void>): void;
  /** END is done: the replica is at s0 and durable there. */
  done(s0: bigint): void;
}

export interface ResyncTargetStats {
  entries: number;
  sumsFrames: number;
  blocksCompared: number;
  blocksWanted: number;
  dataBytes: number;
}

const MAX_QUEUED_ITEMS = 256;
const MAX_QUEUED_BYTES = 32 * 2 ** 20;
/** DATA writes running at once (each holds its frame's payload until done). */
const MAX_WRITES_IN_FLIGHT = 64;

export class ResyncTarget {
  readonly stats: ResyncTargetStats = { entries: 0, sumsFrames: 0, blocksCompared: 0, blocksWanted: 0, dataBytes: 0 };
  private chain: Promise<void> = Promise.resolve();
  /** DATA writes started and not yet done: they run side by side (see onData). */
  private readonly writes = new Set<Promise<void>>();
  private queuedItems = 0;
  private queuedBytes = 0;
  private paused = false;
  private cancelled = false;
  private ended = false;
  /** Listed path → its fid and time (what endResync keeps). */
  private readonly listed = new Map<string, { fid: string; mtimeMs: number }>();
  private readonly directories = new Set<string>();
  /** Listed fid → its kind, and for files the listed size. */
  private readonly fids = new Map<string, { type: ResyncEntry['type']; size: number; target: string }>();

  constructor(
    private readonly store: ResyncTargetStore,
    readonly s0: bigint,
    private readonly port: ResyncTargetPort,
    private readonly log: Logger,
    /** Resolves when nothing of an earlier session is still applying. */
    ready: Promise<void>,
    /** The primary's generation history up to s0 (RESYNC_BEGIN). */
    history: readonly GenerationStart[] = [],
    /** Set when the resync compares only the regions changed after base.seq (RESYNC_BEGIN.incremental_from). */
    base?: ResyncBase,
  ) {
    this.chain = ready;
    this.enqueue(0, () => store.beginResync(s0, history, base));
  }

  /** The session ended: items not started yet are skipped. */
  cancel(): void {
    this.cancelled = true;
  }

  /** A resync frame from the primary (after BEGIN). */
  onMessage(m: ReplicationMessage): void {
    if (this.ended) return this.port.refuse('PROTOCOL_VIOLATION', `${m.type} after RESYNC_END`);
    switch (m.type) {
      case 'RESYNC_ENTRY':
        return this.onEntry(m);
      case 'RESYNC_SUMS':
        return this.onSums(m);
      case 'RESYNC_DATA':
        return this.onData(m);
      case 'RESYNC_END':
        return this.onEnd(m);
      default:
        return this.port.refuse('PROTOCOL_VIOLATION', `${m.type} during a resync`);
    }
  }

  private onEntry({ entry }: ResyncEntryMessage): void {
    const m = entry;
    try {
      validatePath(m.path);
      if (m.type === 'symlink') validateSymlinkTarget(m.target);
    } catch (err) {
      return this.port.refuse('BAD_FRAME', `RESYNC_ENTRY ${(err as Error).message}`);
    }
    if (this.listed.has(m.path)) return this.port.refuse('PROTOCOL_VIOLATION', `RESYNC_ENTRY ${JSON.stringify(m.path)} listed twice`);
    const slash = m.path.lastIndexOf('/');
    if (slash >= 0 && !this.directories.has(m.path.slice(0, slash))) {
      return this.port.refuse('PROTOCOL_VIOLATION', `RESYNC_ENTRY ${JSON.stringify(m.path)} before its parent directory`);
    }
    const seen = this.fids.get(m.fid);
    if (seen && (m.type === 'directory' || seen.type !== m.type || seen.size !== m.size || seen.target !== m.target)) {
      return this.port.refuse('PROTOCOL_VIOLATION', `RESYNC_ENTRY fid ${m.fid} listed again as another entry`);
    }
    this.fids.set(m.fid, { type: m.type, size: m.size, target: m.target });
    this.listed.set(m.path, { fid: m.fid, mtimeMs: m.mtimeMs });
    if (m.type === 'directory') this.directories.add(m.path);
    this.stats.entries++;
    this.enqueue(0, () => this.store.resyncEntry(entry));
  }

  private listedFile(fid: string, what: string): { size: number } | undefined {
    const f = this.fids.get(fid);
    if (f?.type === 'file') return f;
    this.port.refuse('PROTOCOL_VIOLATION', `${what} for fid ${fid}, which is not a listed file`);
    return undefined;
  }

  private onSums(m: ResyncSumsMessage): void {
    const file = this.listedFile(m.fid, 'RESYNC_SUMS');
    if (!file) return;
    // A view of the socket chunk (or the decoder's own buffer): nothing reuses either, so it
    // may outlive this call without a copy, as a MUTATION's payload does.
    const theirs = m.sums;
    const { fid, firstBlock } = m;
    this.enqueue(0, async () => {
      const blockSize = this.store.manifest.blockSize;
      const listedBlocks = Math.ceil(file.size / blockSize);
      const count = Math.max(0, Math.min(theirs.length / 4, listedBlocks - firstBlock));
      const ours = (await this.store.readSums(fid, firstBlock, count)) ?? Buffer.alloc(0);
      const bitmap = Buffer.alloc(Math.ceil(count / 8));
      let wanted = 0;
      for (let i = 0; i < count; i++) {
        const mine = i * 4 + 4 <= ours.length ? ours.readUInt32LE(i * 4) : 0;
        if (mine !== theirs.readUInt32LE(i * 4)) {
          bitmap[i >> 3]! |= 1 << (i & 7);
          wanted++;
        }
      }
      this.stats.sumsFrames++;
      this.stats.blocksCompared += count;
      this.stats.blocksWanted += wanted;
      this.port.send({ type: 'RESYNC_WANT', fid, firstBlock, blocks: wanted > 0 ? bitmap : Buffer.alloc(0) });
    });
  }

  private onData(m: ResyncDataMessage): void {
    const file = this.listedFile(m.fid, 'RESYNC_DATA');
    if (!file) return;
    if (m.offset + m.data.length > file.size) {
      return this.port.refuse('PROTOCOL_VIOLATION', `RESYNC_DATA for fid ${m.fid} ends at ${m.offset + m.data.length}, past its listed size ${file.size}`);
    }
    const data = m.data; // kept without a copy, see onSums
    const { fid, offset } = m;
    // Started in arrival order but not awaited: the writes of a file's blocks run side by
    // side and reach the addon in batches (the store's range locks keep any two that touch
    // the same blocks in order). Its ENTRY, an earlier item, has sized the file; END waits
    // for every write.
    this.enqueue(
      data.length,
      async () => {
        await this.store.resyncWrite(fid, offset, data);
        this.stats.dataBytes += data.length;
      },
      true,
    );
  }

  private onEnd(m: ResyncEndMessage): void {
    if (m.entries !== this.stats.entries) return this.port.refuse('PROTOCOL_VIOLATION', `RESYNC_END says ${m.entries} entries, ${this.stats.entries} came`);
    this.ended = true;
    this.enqueue(0, async () => {
      await this.allWritten();
      // A write that failed meanwhile has ended the resync: the replica must stay flagged.
      if (this.cancelled) return;
      const removed = await this.store.endResync(this.listed);
      this.log.info({ s0: String(this.s0), ...this.stats, ...removed }, 'resync complete');
      this.port.send({ type: 'RESYNC_DONE', appliedSeq: this.s0 });
      this.port.done(this.s0);
    });
  }

  /**
   * Queue a work item behind the ones before it. A `background` item (a DATA write) only
   * starts in turn: the chain goes on at once, at most MAX_WRITES_IN_FLIGHT of them run,
   * and its bytes stay counted (for the read pause) until it is done.
   */
  private enqueue(bytes: number, work: () => Promise<unknown>, background = false): void {
    this.queuedItems++;
    this.queuedBytes += bytes;
    if (!this.paused && (this.queuedItems > MAX_QUEUED_ITEMS || this.queuedBytes > MAX_QUEUED_BYTES)) {
      this.paused = true;
      this.port.pause();
    }
    const settled = () => {
      this.queuedItems--;
      this.queuedBytes -= bytes;
      if (this.paused && this.queuedItems <= MAX_QUEUED_ITEMS / 2 && this.queuedBytes <= MAX_QUEUED_BYTES / 2) {
        this.paused = false;
        this.port.resume();
      }
    };
    const run = this.chain.then(async () => {
      if (!background) {
        try {
          if (!this.cancelled) await work();
        } finally {
          settled();
        }
        return;
      }
      while (this.writes.size >= MAX_WRITES_IN_FLIGHT) await Promise.race(this.writes);
      if (this.cancelled) return settled();
      const write = (async () => {
        try {
          await work();
        } finally {
          settled();
        }
      })();
      this.writes.add(write);
      this.port.track(write.catch(() => undefined));
      write.then(
        () => this.writes.delete(write),
        (err: unknown) => {
          this.writes.delete(write);
          this.fail(err);
        },
      );
    });
    // A failed item ends the resync (and the session); later items are skipped.
    this.chain = run.catch((err: unknown) => this.fail(err));
    this.port.track(this.chain);
  }

  /** Every DATA write started so far is done (a failed one has already ended the resync). */
  private async allWritten(): Promise<void> {
    while (this.writes.size > 0) await Promise.allSettled([...this.writes]);
  }

  private fail(err: unknown): void {
    if (this.cancelled) return;
    this.cancelled = true;
    const message = err instanceof BrickdError ? err.message : (err as Error).message;
    this.port.refuse('APPLY_FAILED', `resync: ${message}`);
  }
}
