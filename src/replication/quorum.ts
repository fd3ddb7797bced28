// Write quorum on the primary: a write is acknowledged only once W replicas hold it durably.
//
// How it works. Each replica link reports the highest seq its replica holds durably
// (setReplica, fed from the link's 'ack'); the local replica, if any, counts for a seq
// once the caller says so (its store.write resolved, i.e. that write is durable here) or
// once setLocal reported a durable seq at or past it. waitFor(seq) resolves as soon as
// the count of replicas durable at ≥ seq reaches writeQuorum, local included. The count
// never includes anything unproven: with W > 1 the local replica alone never acks.
// If W is not reached within timeoutMs the waiter is rejected with QUORUM_LOST and the
// write must not be acknowledged to the client (it may still become durable later; what
// matters is that nobody was told it was). Acked seqs only grow: a link that disconnects
// keeps counting for what it had acknowledged, which stays true.
//
// Cost: every update walks the pending waiters once; their number is bounded by the
// writes in flight.
import { BrickdError } from '../errors.js';

export interface QuorumOptions {
  /** W: replicas (local included) that must hold a write durably before it is acknowledged. */
  writeQuorum: number;
  /** How long a write may wait for its quorum before QUORUM_LOST. */
  timeoutMs: number;
}

interface Waiter {
  seq: bigint;
  local: boolean;
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class QuorumTracker {
  readonly writeQuorum: number;
  readonly timeoutMs: number;
  private readonly replicas = new Map<string, bigint>();
  private localSeq = 0n;
  private waiters: Waiter[] = [];
  private closedError: Error | undefined;

  constructor(options: QuorumOptions) {
    if (!Number.isSafeInteger(options.writeQuorum) || options.writeQuorum < 1) throw new RangeError(`writeQuorum must be an integer ≥ 1, got ${options.writeQuorum}`);
    if (!Number.isSafeInteger(options.timeoutMs) || options.timeoutMs < 1) throw new RangeError(`timeoutMs must be an integer ≥ 1, got ${options.timeoutMs}`);
    this.writeQuorum = options.writeQuorum;
    this.timeoutMs = options.timeoutMs;
  }

  /** A replica's durable seq (from its link's ACKs). Only ever raises it. */
  setReplica(id: string, durableSeq: bigint): void {
    const previous = this.replicas.get(id);
    if (previous !== undefined && durableSeq <= previous) return;
    this.replicas.set(id, durableSeq);
    this.settle();
  }

  /** Stop counting a replica (removed from the volume by the orchestrator). */
  removeReplica(id: string): void {
    this.replicas.delete(id);
  }

  /** The local replica's durable seq, when known as a contiguous value. Only ever raises it. */
  setLocal(durableSeq: bigint): void {
    if (durableSeq <= this.localSeq) return;
    this.localSeq = durableSeq;
    this.settle();
  }

  /** Replica durable seqs by id (diagnostics). */
  get durable(): ReadonlyMap<string, bigint> {
    return this.replicas;
  }

  get pending(): number {
    return this.waiters.length;
  }

  /**
   * Resolves once W replicas hold `seq` durably; rejects QUORUM_LOST after timeoutMs.
   * `localDurable`: this write is durable in the local replica (its store call resolved).
   */
  waitFor(seq: bigint, localDurable = false): Promise<void> {
    if (this.closedError) return Promise.reject(this.closedError);
    if (this.count(seq, localDurable) >= this.writeQuorum) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        seq,
        local: localDurable,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          const have = this.count(seq, localDurable);
          reject(
            new BrickdError('QUORUM_LOST', `seq ${seq} is durable on ${have} of the ${this.writeQuorum} replicas needed after ${this.timeoutMs} ms`, {
              seq: String(seq),
              writeQuorum: this.writeQuorum,
              durableOn: have,
              replicas: Object.fromEntries([...this.replicas].map(([id, s]) => [id, String(s)])),
            }),
          );
        }, this.timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Reject every waiter (the volume is closing or this primary was fenced). */
  close(err: Error = new BrickdError('QUORUM_LOST', 'the quorum tracker closed')): void {
    this.closedError = err;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  private count(seq: bigint, localDurable: boolean): number {
    let n = localDurable || this.localSeq >= seq ? 1 : 0;
    for (const durable of this.replicas.values()) if (durable >= seq) n++;
    return n;
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.count(w.seq, w.local) >= this.writeQuorum) {
        clearTimeout(w.timer);
        w.resolve();
      } else {
        still.push(w);
      }
    }
    this.waiters = still;
  }
}
