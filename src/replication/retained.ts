// The primary's retained queue: the recent mutations of one volume, encoded once as
// MUTATION frames, kept in memory so every replica link can stream them and a replica that
// reconnects can resume from the seq it reports.
//
// How it works. The primary store's onMutation hook calls push(seq, mutation) in seq order
// (synchronously, inside the store's mutex, so push never blocks or throws). push encodes
// the frame right away (protobuf body, CRC32C of a write's data) and tells every attached
// consumer (a ReplicaLink) that there is more to send. An entry is dropped when every
// attached consumer has it durable (its acked seq), and also, oldest first, whenever the
// queue exceeds maxBytes or maxEntries: then a consumer that still needed it is told
// (onEvicted) and falls 'behind', to be rebuilt by resync. So memory is bounded whatever
// the replicas do; a slow replica costs only itself.
//
// Ownership: an entry keeps a reference to a write's data buffer (no copy). The caller of
// store.write must not reuse that buffer while the mutation may still be retained.
import { silentLogger, type Logger } from '../log.js';
import type { Mutation } from '../store/mutations.js';
import { encodeMessage } from '../wire/replication.js';

export interface RetainedEntry {
  seq: bigint;
  generation: number;
  /** The MUTATION frame: [header, body, payload?]. Shared by every link: never modified. */
  parts: Buffer[];
  bytes: number;
  /** Bytes of every frame pushed so far, this one included (for bytesAfter in constant time). */
  pushedThrough: number;
}

export interface RetainedConsumer {
  /** Highest seq this consumer no longer needs (its replica has it durably). */
  readonly ackedSeq: bigint;
  /**
   * When set, used instead of ackedSeq to decide what this consumer still needs: a link
   * resyncing from snapshot s0 needs every entry after s0 and none before (see link.ts).
   */
  readonly retainFloor?: bigint;
  /** New entries were pushed. */
  onAppended(): void;
  /** Entries up to `seq` are gone without this consumer's ack. */
  onEvicted(seq: bigint): void;
}

export interface RetainedQueueOptions {
  /** The seq the store stood at when the queue started: the first push is startSeq + 1. */
  startSeq: bigint;
  /** The primary's generation, stamped on every mutation. */
  generation: number;
  maxBytes?: number;
  maxEntries?: number;
  log?: Logger;
}

/** The seq up to which a consumer needs nothing more. */
function floorOf(c: RetainedConsumer): bigint {
  return c.retainFloor ?? c.ackedSeq;
}

export class RetainedQueue {
  /** The seq the queue started at: it never held anything at or before it. */
  readonly startSeq: bigint;
  private entries: RetainedEntry[] = [];
  private head = 0;
  private bytesValue = 0;
  /** Bytes of every frame ever pushed (a running total; see RetainedEntry.pushedThrough). */
  private pushedBytes = 0;
  private last: bigint;
  private generationValue: number;
  private readonly consumers = new Set<RetainedConsumer>();
  private readonly maxBytes: number;
  private readonly maxEntries: number;
  private readonly log: Logger;

  constructor(options: RetainedQueueOptions) {
    this.last = options.startSeq;
    this.startSeq = options.startSeq;
    this.generationValue = options.generation;
    this.maxBytes = options.maxBytes ?? 64 * 2 ** 20;
    this.maxEntries = options.maxEntries ?? 65_536;
    this.log = options.log ?? silentLogger;
  }

  get generation(): number {
    return this.generationValue;
  }

  /** The oldest seq still retained (lastSeq + 1 when empty). */
  get firstSeq(): bigint {
    const first = this.entries[this.head];
    return first ? first.seq : this.last + 1n;
  }

  get lastSeq(): bigint {
    return this.last;
  }

  /** Bytes of the retained frames after `seq`: what a consumer durable at `seq` still lacks (of what is retained). */
  bytesAfter(seq: bigint): number {
    if (seq >= this.last) return 0;
    const entry = this.get(seq);
    // Not retained (older than the queue, or dropped): all that is retained comes after it.
    return entry ? this.pushedBytes - entry.pushedThrough : this.bytesValue;
  }

  get size(): number {
    return this.entries.length - this.head;
  }

  get bytes(): number {
    return this.bytesValue;
  }

  get(seq: bigint): RetainedEntry | undefined {
    const first = this.entries[this.head];
    if (!first || seq < first.seq || seq > this.last) return undefined;
    return this.entries[this.head + Number(seq - first.seq)];
  }

  /** The store's onMutation hook. */
  push(seq: bigint, mutation: Mutation): void {
    if (seq !== this.last + 1n) {
      // Cannot happen with the store's ordering; if it does, nothing retained is usable.
      this.log.error({ expected: String(this.last + 1n), got: String(seq) }, 'retained queue out of order; dropping it');
      this.dropThrough(this.last);
      this.last = seq - 1n;
    }
    let parts: Buffer[];
    try {
      parts = encodeMessage({ type: 'MUTATION', seq, generation: this.generationValue, mutation });
    } catch (err) {
      // A mutation the wire cannot carry: every consumer needs a resync past it.
      this.log.error({ err, seq: String(seq) }, 'cannot encode mutation for replication');
      this.last = seq;
      this.dropThrough(seq);
      return;
    }
    let bytes = 0;
    for (const part of parts) bytes += part.length;
    this.pushedBytes += bytes;
    this.entries.push({ seq, generation: this.generationValue, parts, bytes, pushedThrough: this.pushedBytes });
    this.bytesValue += bytes;
    this.last = seq;
    this.enforceBounds();
    for (const consumer of this.consumers) consumer.onAppended();
  }

  attach(consumer: RetainedConsumer): void {
    this.consumers.add(consumer);
  }

  detach(consumer: RetainedConsumer): void {
    this.consumers.delete(consumer);
    this.trim();
  }

  /** Drop what every attached consumer has durably (call after a consumer's ack advanced). */
  trim(): void {
    if (this.consumers.size === 0) return;
    let floor: bigint | undefined;
    for (const c of this.consumers) if (floor === undefined || floorOf(c) < floor) floor = floorOf(c);
    while (this.size > 0 && this.entries[this.head]!.seq <= floor!) this.shift();
    this.compact();
  }

  private enforceBounds(): void {
    let dropped: bigint | undefined;
    while (this.size > 1 && (this.bytesValue > this.maxBytes || this.size > this.maxEntries)) dropped = this.shift().seq;
    if (dropped === undefined) return;
    this.compact();
    for (const c of this.consumers) if (floorOf(c) < dropped) c.onEvicted(dropped);
  }

  private dropThrough(seq: bigint): void {
    while (this.size > 0 && this.entries[this.head]!.seq <= seq) this.shift();
    this.compact();
    for (const c of this.consumers) if (floorOf(c) < seq) c.onEvicted(seq);
  }

  private shift(): RetainedEntry {
    const entry = this.entries[this.head]!;
    this.entries[this.head] = undefined as unknown as RetainedEntry;
    this.head++;
    this.bytesValue -= entry.bytes;
    return entry;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }
}
