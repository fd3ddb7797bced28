// Repair reads on a replication session: READ_BLOCKS asks the other end for the bytes of
// blocks this end's store found damaged, BLOCKS answers (see docs/replication.md "Repair").
//
// How it works. Both ends of an authenticated, streaming session hold one BlockRequests
// (what this end asked and waits for) and one BlockResponder (what the other end asked).
//   asking     request() picks an id, sends READ_BLOCKS and waits for the BLOCKS with that
//              id, at most MAX_BLOCK_REQUESTS at a time and timeoutMs each. An answer with
//              an id we are not waiting for, or with more bytes than asked, is a protocol
//              violation (the caller ends the session). A lost connection fails every
//              request it carried.
//   answering  respond() checks the request against the store's block size and the
//              responder's bound, then reads through the store's checksummed read with its
//              own repair off: an answer is never assembled by asking someone else, so two
//              damaged copies cannot chain requests across the network; a damaged copy
//              answers CHECKSUM_MISMATCH. `minSeq` is the asker's freshness rule: a copy not
//              durable up to it answers SEQ_BEHIND instead of bytes that may be stale.
import { BrickdError, isBrickdError, isSystemError } from '../errors.js';
import type { BlocksMessage, ReadBlocksMessage, ReplicationMessage } from '../wire/replication.js';

/** Unanswered READ_BLOCKS per direction and connection. */
export const MAX_BLOCK_REQUESTS = 16;
/** How long an asker waits for one BLOCKS. */
export const BLOCK_REQUEST_TIMEOUT_MS = 5000;

/** What answering needs of a store (ReplicaStore has it). */
export interface BlockSource {
  readonly manifest: { readonly blockSize: number };
  read(file: { fid: string }, offset: number, length: number, options: { repair: false }): Promise<Buffer>;
}

/** The requests this end has sent and waits for. */
export class BlockRequests {
  private nextId = 1;
  private readonly pending = new Map<number, { length: number; resolve(data: Buffer): void; reject(err: Error): void; timer: NodeJS.Timeout }>();

  constructor(
    private readonly send: (message: ReplicationMessage) => void,
    private readonly peer: string,
    private readonly timeoutMs = BLOCK_REQUEST_TIMEOUT_MS,
  ) {}

  get outstanding(): number {
    return this.pending.size;
  }

  /** The verified bytes of `length` at `offset` (short at the file's end), or REPAIR_UNAVAILABLE/TIMEOUT. */
  request(fid: string, offset: number, length: number, minSeq: bigint): Promise<Buffer> {
    if (this.pending.size >= MAX_BLOCK_REQUESTS) {
      return Promise.reject(new BrickdError('REPAIR_UNAVAILABLE', `${this.peer} already has ${MAX_BLOCK_REQUESTS} repair reads unanswered`, { peer: this.peer }));
    }
    const requestId = this.nextId++;
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new BrickdError('TIMEOUT', `${this.peer} did not answer repair read ${requestId} within ${this.timeoutMs} ms`, { peer: this.peer }));
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(requestId, { length, resolve, reject, timer });
      this.send({ type: 'READ_BLOCKS', requestId, fid, offset, length, minSeq });
    });
  }

  /** Settle the request `m` answers; returns a violation to end the session with, if any. */
  answer(m: BlocksMessage): string | undefined {
    const request = this.pending.get(m.requestId);
    // A timed-out request is forgotten too: its late answer is refused like any unknown id.
    if (!request) return `BLOCKS answers request ${m.requestId}, which is not waiting`;
    this.pending.delete(m.requestId);
    clearTimeout(request.timer);
    if (m.data.length > request.length) {
      request.reject(new BrickdError('PROTOCOL_VIOLATION', `${this.peer} sent ${m.data.length} bytes for a read of ${request.length}`));
      return `BLOCKS ${m.requestId} holds ${m.data.length} bytes, more than the ${request.length} asked`;
    }
    if (m.code !== '') request.reject(new BrickdError('REPAIR_UNAVAILABLE', `${this.peer}: ${m.code}: ${m.message}`, { peer: this.peer, peerCode: m.code }));
    // A view of the socket chunk, which nothing reuses: no copy (as a MUTATION's payload).
    else request.resolve(m.data);
    return undefined;
  }

  /** The connection is gone: every request on it fails. */
  cancel(reason: string): void {
    for (const [id, request] of this.pending) {
      clearTimeout(request.timer);
      request.reject(new BrickdError('REPAIR_UNAVAILABLE', `${this.peer}: ${reason}`, { peer: this.peer }));
      this.pending.delete(id);
    }
  }
}

/** The requests the other end sent this end, being answered. */
export class BlockResponder {
  private serving = 0;

  constructor(private readonly send: (message: ReplicationMessage) => void) {}

  /**
   * Answer `m` from `store` once `durableSeq()` is checked; returns a violation to end the
   * session with instead (too many unanswered, offset or length not whole blocks).
   * `unavailable` is why this end cannot answer now (mid-resync, no store), if it cannot.
   */
  respond(m: ReadBlocksMessage, store: BlockSource | undefined, durableSeq: () => bigint, unavailable?: string): string | undefined {
    if (this.serving >= MAX_BLOCK_REQUESTS) return `more than ${MAX_BLOCK_REQUESTS} READ_BLOCKS unanswered`;
    const blockSize = store?.manifest.blockSize ?? 1;
    if (m.offset % blockSize !== 0 || m.length % blockSize !== 0) return `READ_BLOCKS ${m.requestId} (offset ${m.offset}, length ${m.length}) is not whole blocks of ${blockSize}`;
    this.serving++;
    void this.read(m, store, durableSeq, unavailable).then((answer) => {
      this.serving--;
      this.send(answer);
    });
    return undefined;
  }

  private async read(m: ReadBlocksMessage, store: BlockSource | undefined, durableSeq: () => bigint, unavailable: string | undefined): Promise<BlocksMessage> {
    const refusal = (code: string, message: string): BlocksMessage => ({ type: 'BLOCKS', requestId: m.requestId, code, message, data: Buffer.alloc(0) });
    if (unavailable || !store) return refusal('UNAVAILABLE', unavailable ?? 'no store to read from');
    const durable = durableSeq();
    if (durable < m.minSeq) return refusal('SEQ_BEHIND', `durable at seq ${durable}, below the ${m.minSeq} asked`);
    try {
      const data = await store.read({ fid: m.fid }, m.offset, m.length, { repair: false });
      return { type: 'BLOCKS', requestId: m.requestId, code: '', message: '', data };
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) return refusal('NOT_FOUND', `no file ${m.fid}`);
      if (isBrickdError(err, 'CHECKSUM_MISMATCH')) return refusal('CHECKSUM_MISMATCH', 'this copy of the block is damaged too');
      return refusal('UNAVAILABLE', (err as Error).message);
    }
  }
}

/** One peer a primary can ask (a ReplicaLink). */
export interface BlockPeer {
  readonly name: string;
  readonly state: string;
  readonly ackedSeq: bigint;
  fetchBlocks(fid: string, offset: number, length: number, minSeq: bigint): Promise<Buffer>;
}

/**
 * The primary's repair: ask each streaming peer that has acknowledged `minSeq` (the
 * primary's applied seq when its store found the damage), in turn, until one answers with
 * bytes. If none has acknowledged it yet, wait up to `waitMs` for one to. Resolves
 * undefined when no peer could answer (the store then reports the block unrepaired).
 */
export async function fetchFromPeers(
  peers: readonly BlockPeer[],
  request: { fid: string; offset: number; length: number; minSeq: bigint },
  options: { waitMs?: number; onFailure?: (peer: string, err: Error) => void } = {},
): Promise<Buffer | undefined> {
  const eligible = () => peers.filter((p) => p.state === 'streaming' && p.ackedSeq >= request.minSeq);
  const deadline = Date.now() + (options.waitMs ?? 2000);
  while (eligible().length === 0 && peers.some((p) => p.state === 'streaming') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  for (const peer of eligible()) {
    try {
      return await peer.fetchBlocks(request.fid, request.offset, request.length, request.minSeq);
    } catch (err) {
      options.onFailure?.(peer.name, err as Error);
    }
  }
  return undefined;
}
