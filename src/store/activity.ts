// The activity log: which parts of a replica may hold changes that its write log lacks.
//
// Why. A mutation is applied to data/ beside, not after, the write of its log record (see
// store.ts mutate), and the kernel may write a page-cache page back at any moment. So after
// a power loss (or a SIGKILL in a narrow window) a data file can hold the bytes of a
// mutation whose record never became durable: never acknowledged, so no promise is broken
// locally, but nothing tells the replicas, and a primary restarted on such a disk would
// serve bytes its replicas do not have. DRBD's answer, taken here: before any apply touches
// a part of the tree, that part is durably named in this log; after an unclean stop, the
// parts it names are the only places such bytes can be, and the replicas are compared
// there (store.settleSuspects, volume/manager.ts).
//
// What a part is (a key): one extent of a file (extentBytes, 4 MiB by default), a whole file
// (a truncate cuts and grows anywhere), or the namespace (a create, rename, unlink... applied
// ahead of its record: any resync compares the whole listing, so one key says "look").
//
// Protocol. `enter(mutation)` runs in the apply, under its file lock, before any byte is
// written: if every key of the mutation is already durably in the log, it pins them and
// returns undefined (the hot path: no I/O, no await); otherwise it returns a promise that
// resolves once they are, and pinned. `leave(mutation)` unpins once the mutation is
// durable (its record, and a direct write's data), or failed. Keys stay in the log after
// that (least recently used first out), so a busy region does not pay a log write per
// mutation; only unpinned keys leave, and only when the log holds more than `capacity`.
//
// Transactions. Keys asked for in one turn of the event loop go out together in one
// transaction: the whole set, written with pwritev2(RWF_DSYNC) into the older of two slots
// (so a torn write leaves the previous set intact), numbered, CRC'd. One transaction is in
// flight at a time; the keys asked for meanwhile wait for the next (group commit).
//
// On-disk format (<replica>/.brickd/activity), two slots of SLOT_BYTES at offsets 0 and
// SLOT_BYTES, the newest valid one wins:
//   header (32 bytes, little-endian): magic "BRKDACT1", u32 version (1), u32 log2 of
//   extentBytes, u64 transaction number, u32 key count, u32 CRC32C of the header (this field
//   zero) and the keys; then count keys of 12 bytes: the fid's 8 bytes, u32 extent (EXTENT_FILE
//   for the whole file; with a zero fid, EXTENT_NAMESPACE for the namespace and
//   EXTENT_EVERYTHING for everything).
// A file that exists but has no valid slot names nothing trustworthy: everything is suspect,
// and the log says so (the EXTENT_EVERYTHING key) until that is released.
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { isSystemError } from '../errors.js';
import { fsyncDir } from '../fsutil.js';
import { native } from '../native.js';
import type { FileRange, Mutation } from './mutations.js';

export const ACTIVITY_FILE = 'activity';
const MAGIC = Buffer.from('BRKDACT1', 'latin1');
const VERSION = 1;
const HEADER_BYTES = 32;
const KEY_BYTES = 12;
/** Most keys a slot holds: the hard bound on the log's size. */
export const MAX_KEYS = 4096;
/** Where the second slot starts (each transaction writes only the pages its keys fill). */
export const SLOT_BYTES = Math.ceil((HEADER_BYTES + MAX_KEYS * KEY_BYTES) / 4096) * 4096;
const EXTENT_FILE = 0xffff_ffff;
const EXTENT_NAMESPACE = 0xffff_fffe;
const EXTENT_EVERYTHING = 0xffff_fffd;
/** Extents asked for ahead of a sequential writer (askAhead). */
const ASK_AHEAD = 4;
/** The fid of the keys that name no file. */
const NO_FID = '0000000000000000';
const NAMESPACE_KEY = `${NO_FID}:${EXTENT_NAMESPACE}`;

/** What an unclean stop may have left unlogged: parts of files, the namespace, or (no readable log) anything. */
export type Suspects =
  | { all: true }
  | {
      all: false;
      ranges: FileRange[];
      namespace: boolean;
    };

/** Whether anything is suspect. */
export function hasSuspects(s: Suspects): boolean {
  return s.all || s.namespace || s.ranges.length > 0;
}

/** Most ranges suspects are told as (a store's `suspect` record, a replica's WELCOME). */
export const MAX_SUSPECT_RANGES = 512;

/** `s` in at most MAX_SUSPECT_RANGES ranges: past that many, whole files; past that many files, everything. */
export function boundedSuspects(s: Suspects): Suspects {
  if (s.all || s.ranges.length <= MAX_SUSPECT_RANGES) return s;
  const fids = [...new Set(s.ranges.map((r) => r.fid))];
  if (fids.length <= MAX_SUSPECT_RANGES) return { all: false, ranges: fids.map((fid) => ({ fid, offset: 0 })), namespace: s.namespace };
  return { all: true };
}

export interface ActivityLogOptions {
  /** Bytes per extent, a power of two (default 4 MiB). */
  extentBytes?: number;
  /** Keys kept once unpinned (default 1024: 4 GiB of extents); at most MAX_KEYS. */
  capacity?: number;
}

interface Entry {
  pins: number;
  used: number;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export class ActivityLog {
  readonly extentBytes: number;
  private readonly capacity: number;
  /**
   * Keys durably in the log (or in the transaction being written), each with its pins (the
   * applies in flight that entered it, and the suspects until released: a pinned key never
   * leaves) and when it was last used (a counter): the hot path updates both in place.
   */
  private readonly active = new Map<string, Entry>();
  private uses = 0;
  /** Keys asked for and not yet durable, each with what its waiters wait on. */
  private readonly asked = new Map<string, Deferred>();
  /** The entries each entered mutation pinned, for leave(). */
  private readonly entered = new Map<Mutation, Entry[]>();
  private suspectEntries: Entry[] = [];
  /** Per file (at most 1,024 remembered), where its last write entered ended: askAhead. */
  private readonly cursors = new Map<string, number>();
  private txNumber: bigint;
  /** The last run() of transactions (close waits for it); `writing` while it runs. */
  private running: Promise<void> | undefined;
  private writing = false;
  private scheduled = false;
  private failure: unknown;
  /** A full log's transaction waiting for some key's last pin to go. */
  private onUnpinned: (() => void) | undefined;
  private closed = false;

  private constructor(
    private readonly fd: FileHandle,
    extentBytes: number,
    options: ActivityLogOptions,
    txNumber: bigint,
  ) {
    this.extentBytes = extentBytes;
    this.capacity = options.capacity ?? 1024;
    if (!Number.isInteger(this.capacity) || this.capacity < 1 || this.capacity > MAX_KEYS) throw new RangeError(`activity log capacity must be 1..${MAX_KEYS}, got ${this.capacity}`);
    this.txNumber = txNumber;
  }

  /**
   * Open the log at `file` (created empty if absent: a replica made before this log existed
   * was left by an agent that had none, and nothing can be said about it). Returns what the
   * log names from before: the suspects of the last stop, empty after a clean one (close()).
   * They stay pinned in the log until releaseSuspects().
   */
  static async open(file: string, options: ActivityLogOptions = {}): Promise<{ log: ActivityLog; suspects: Suspects }> {
    const extentBytes = options.extentBytes ?? 4 * 2 ** 20;
    if (!Number.isInteger(Math.log2(extentBytes)) || extentBytes < 4096 || extentBytes > 2 ** 30) throw new RangeError(`extentBytes must be a power of two in 4 KiB..1 GiB, got ${extentBytes}`);
    const shift = Math.log2(extentBytes);
    let fd: FileHandle;
    let found: LoggedSet = { tx: 0n, extentShift: shift, keys: [] };
    let created = false;
    try {
      fd = await open(file, 'r+');
      const bytes = Buffer.alloc(2 * SLOT_BYTES);
      const { bytesRead } = await fd.read(bytes, 0, bytes.length, 0);
      if (bytesRead > 0) found = readSlots(bytes.subarray(0, bytesRead), shift);
    } catch (err) {
      if (!isSystemError(err, 'ENOENT')) throw err;
      fd = await open(file, 'w+', 0o600);
      created = true;
    }
    const log = new ActivityLog(fd, extentBytes, options, found.tx);
    const suspects = log.adopt(found.keys, found.extentShift);
    // From now on the log is in this process's format: write the adopted set once, so a
    // crash before any mutation still finds the suspects (an empty file gets its first slot).
    try {
      await log.writeTx();
      // Its name too: a log lost with its directory entry would read as "nothing suspect".
      if (created) await fsyncDir(path.dirname(file));
    } catch (err) {
      await fd.close();
      throw err;
    }
    return { log, suspects };
  }

  /** The keys a mutation touches. */
  keysOf(m: Mutation): string[] {
    switch (m.op) {
      case 'write':
      case 'writeDirect': {
        const length = Math.max(m.op === 'write' ? m.data.length : m.length, 1);
        const first = Math.floor(m.offset / this.extentBytes);
        const last = Math.floor((m.offset + length - 1) / this.extentBytes);
        // An extent index a key cannot hold (tiny extents, huge offsets): the whole file.
        if (last >= EXTENT_EVERYTHING) return [`${m.fid}:${EXTENT_FILE}`];
        const keys: string[] = [];
        for (let e = first; e <= last; e++) keys.push(`${m.fid}:${e}`);
        return keys;
      }
      case 'truncate':
        return [`${m.fid}:${EXTENT_FILE}`];
      case 'suspect':
        return [];
      default:
        return [NAMESPACE_KEY];
    }
  }

  /**
   * Before applying `m`: undefined if its keys were already durably logged (now pinned),
   * else a promise that resolves once they are (and pinned), or rejects if the log cannot
   * be written (the apply must then not happen).
   */
  enter(m: Mutation): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    const keys = this.keysOf(m);
    if (m.op === 'write' || m.op === 'writeDirect') this.askAhead(m.fid, m.offset, m.op === 'write' ? m.data.length : m.length);
    const entries = this.covered(keys);
    if (entries) {
      this.pin(m, entries);
      return undefined;
    }
    return this.ask(m, keys);
  }

  /** After `m` is durable or failed: its keys may leave the log again. */
  leave(m: Mutation): void {
    const entries = this.entered.get(m);
    if (!entries) return;
    this.entered.delete(m);
    this.unpin(entries);
  }

  /** The suspects reported by open() no longer need to stay: the replicas will be compared there. */
  releaseSuspects(): void {
    const entries = this.suspectEntries;
    this.suspectEntries = [];
    this.unpin(entries);
  }

  /** Keys in the log now (tests, status). */
  get size(): number {
    return this.active.size;
  }

  /**
   * With `clean`, every mutation is durable: write a last set holding only what is still
   * pinned (the suspects not yet released), so that the next open finds nothing else.
   * Without (the store failed), the log stays as it is for the next open. Then close.
   */
  async close(clean = true): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.running;
    try {
      if (clean && !this.failure) {
        for (const [key, e] of this.active) if (e.pins === 0) this.active.delete(key);
        await this.writeTx();
      }
    } finally {
      await this.fd.close();
    }
  }

  // ── internals ───────────────────────────────────────────────────────────────────────

  /** Take the keys found at open as this process's, pinned until releaseSuspects(). */
  private adopt(keys: LoggedSet['keys'], extentShift: number): Suspects {
    const ranges: FileRange[] = [];
    let namespace = false;
    let all = false;
    const extentBytes = 2 ** extentShift;
    for (const [fid, extent] of keys) {
      if (extent === EXTENT_EVERYTHING) all = true;
      else if (extent === EXTENT_NAMESPACE) namespace = true;
      else if (extent === EXTENT_FILE) ranges.push({ fid, offset: 0 });
      else ranges.push({ fid, offset: extent * extentBytes, length: extentBytes });
      // In this process's extents (an extent of another size is kept as its whole file).
      const key = extent >= EXTENT_EVERYTHING || extentBytes === this.extentBytes ? `${fid}:${extent}` : `${fid}:${EXTENT_FILE}`;
      if (this.active.has(key)) continue;
      const e: Entry = { pins: 1, used: ++this.uses };
      this.active.set(key, e);
      this.suspectEntries.push(e);
    }
    return all ? { all: true } : { all: false, ranges, namespace };
  }

  /**
   * A sequential writer (this write starts where the file's last one entered ended) past
   * the middle of its extent: the next ASK_AHEAD extents not yet logged are asked for now,
   * in the background (nobody waits for them), so that the writer finds them logged when it
   * gets there instead of waiting for a transaction per extent. Random writers ask nothing.
   */
  private askAhead(fid: string, offset: number, length: number): void {
    const end = offset + length;
    const sequential = this.cursors.get(fid) === offset;
    if (this.cursors.size >= 1024 && !this.cursors.has(fid)) this.cursors.clear();
    this.cursors.set(fid, end);
    const lastByte = end - 1;
    if (!sequential || length === 0 || lastByte % this.extentBytes < this.extentBytes / 2) return;
    const next = Math.floor(lastByte / this.extentBytes) + 1;
    if (this.active.has(`${fid}:${next}`)) return;
    let asked = false;
    for (let e = next; e < next + ASK_AHEAD && e < EXTENT_EVERYTHING; e++) {
      const key = `${fid}:${e}`;
      if (this.active.has(key) || this.asked.has(key)) continue;
      const d = deferred();
      d.promise.catch(() => undefined); // nobody may wait for it: a failed transaction is reported to those who do
      this.asked.set(key, d);
      asked = true;
    }
    if (asked) this.schedule();
  }

  /** The entries of `keys` if every one is durably logged, else undefined. */
  private covered(keys: string[]): Entry[] | undefined {
    const entries: Entry[] = [];
    for (const k of keys) {
      const e = this.active.get(k);
      if (!e || (this.asked.size > 0 && this.asked.has(k))) return undefined;
      entries.push(e);
    }
    return entries;
  }

  private pin(m: Mutation, entries: Entry[]): void {
    const used = ++this.uses;
    for (const e of entries) {
      e.pins++;
      e.used = used;
    }
    const already = this.entered.get(m);
    this.entered.set(m, already ? already.concat(entries) : entries);
  }

  private unpin(entries: Entry[]): void {
    let freed = false;
    for (const e of entries) if (--e.pins === 0) freed = true;
    if (freed && this.onUnpinned) {
      const wake = this.onUnpinned;
      this.onUnpinned = undefined;
      wake();
    }
  }

  /**
   * Wait until every key is durably logged, then pin them in the same step (a transaction
   * run in between could otherwise let an unpinned one go). The set may change while this
   * waits for several transactions: checked again each time.
   */
  private async ask(m: Mutation, keys: string[]): Promise<void> {
    for (;;) {
      const entries = this.covered(keys);
      if (entries) {
        this.pin(m, entries);
        return;
      }
      const waits: Array<Promise<void>> = [];
      for (const k of keys) {
        if (this.active.has(k) && !this.asked.has(k)) continue;
        let d = this.asked.get(k);
        if (!d) {
          d = deferred();
          this.asked.set(k, d);
        }
        waits.push(d.promise);
      }
      this.schedule();
      // A key logged by an earlier transaction may be let go by a later one while this
      // mutation waits for another key: the loop asks again.
      await Promise.all(waits);
    }
  }

  private schedule(): void {
    if (this.scheduled || this.writing) return;
    this.scheduled = true;
    // Like the write log's batches: every key asked for in this turn goes in one transaction.
    process.nextTick(() => {
      this.scheduled = false;
      if (!this.writing) this.running = this.run();
    });
  }

  /**
   * Transactions until nothing is asked for; one at a time. `writing` is cleared in the same
   * step as the last look at `asked`, so a key asked for later schedules a new run.
   */
  private async run(): Promise<void> {
    this.writing = true;
    try {
      while (this.asked.size > 0 && !this.failure && !this.closed) {
        // Make room: unpinned keys leave, least recently used first, until the set with
        // what is asked fits the capacity (pinned ones and asked ones never leave here).
        let room = this.capacity - this.asked.size;
        if (this.active.size > room) {
          const idle = [...this.active].filter(([, e]) => e.pins === 0).sort(([, a], [, b]) => a.used - b.used);
          for (const [key] of idle) {
            if (this.active.size <= room) break;
            this.active.delete(key);
          }
        }
        // A log full of pinned keys takes what still fits; the rest wait for applies to end.
        room = MAX_KEYS - this.active.size;
        if (room <= 0) {
          await new Promise<void>((resolve) => (this.onUnpinned = resolve));
          continue;
        }
        const batch = [...this.asked.entries()].slice(0, room);
        for (const [key] of batch) this.active.set(key, { pins: 0, used: ++this.uses });
        try {
          await this.writeTx();
        } catch (err) {
          this.failure = err;
          for (const [key, d] of this.asked) {
            this.asked.delete(key);
            d.reject(err);
          }
          break;
        }
        for (const [key, d] of batch) {
          this.asked.delete(key);
          d.resolve();
        }
      }
    } finally {
      this.writing = false;
    }
  }

  /** The whole set, durably, into the older slot. */
  private async writeTx(): Promise<void> {
    const keys = [...this.active.keys()];
    if (keys.length > MAX_KEYS) throw new RangeError(`activity log of ${keys.length} keys`);
    const bytes = Math.ceil((HEADER_BYTES + keys.length * KEY_BYTES) / 4096) * 4096;
    const buf = Buffer.alloc(bytes);
    const tx = this.txNumber + 1n;
    MAGIC.copy(buf, 0);
    buf.writeUInt32LE(VERSION, 8);
    buf.writeUInt32LE(Math.log2(this.extentBytes), 12);
    buf.writeBigUInt64LE(tx, 16);
    buf.writeUInt32LE(keys.length, 24);
    keys.forEach((key, i) => {
      const at = HEADER_BYTES + i * KEY_BYTES;
      buf.write(key.slice(0, 16), at, 8, 'hex');
      buf.writeUInt32LE(Number(key.slice(17)), at + 8);
    });
    buf.writeUInt32LE(native.crc32c(buf.subarray(0, HEADER_BYTES + keys.length * KEY_BYTES)), 28);
    await native.writev(this.fd.fd, [buf], Number(tx % 2n) * SLOT_BYTES, true);
    this.txNumber = tx;
  }
}

/** What a slot holds. */
interface LoggedSet {
  tx: bigint;
  extentShift: number;
  keys: Array<[fid: string, extent: number]>;
}

/**
 * The newest valid slot's set; if neither slot is valid, the "everything" key alone (in
 * `extentShift`, this process's extents).
 */
function readSlots(bytes: Buffer, extentShift: number): LoggedSet {
  let best: LoggedSet | undefined;
  for (const at of [0, SLOT_BYTES]) {
    const slot = bytes.subarray(at, at + SLOT_BYTES);
    if (slot.length < HEADER_BYTES || !slot.subarray(0, 8).equals(MAGIC) || slot.readUInt32LE(8) !== VERSION) continue;
    const shift = slot.readUInt32LE(12);
    const tx = slot.readBigUInt64LE(16);
    const count = slot.readUInt32LE(24);
    const end = HEADER_BYTES + count * KEY_BYTES;
    if (count > MAX_KEYS || end > slot.length || shift < 12 || shift > 30) continue;
    const crc = slot.readUInt32LE(28);
    const body = Buffer.from(slot.subarray(0, end));
    body.writeUInt32LE(0, 28);
    if (native.crc32c(body) !== crc) continue;
    if (best && best.tx >= tx) continue;
    const keys: LoggedSet['keys'] = [];
    for (let i = 0; i < count; i++) keys.push([body.toString('hex', HEADER_BYTES + i * KEY_BYTES, HEADER_BYTES + i * KEY_BYTES + 8), body.readUInt32LE(HEADER_BYTES + i * KEY_BYTES + 8)]);
    best = { tx, extentShift: shift, keys };
  }
  return best ?? { tx: 0n, extentShift, keys: [[NO_FID, EXTENT_EVERYTHING]] };
}
