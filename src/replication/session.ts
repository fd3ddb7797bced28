// What both ends of a replication connection share: the handshake proofs and a framed
// socket.
//
// How it works. The handshake (proto/brickd/v1/replication.proto) proves to each side
// that the other knows the cluster secret, without sending it: the primary sends HELLO
// with a fresh 32-byte nonce, the replica answers CHALLENGE with its own, and each side
// then sends HMAC-SHA256(secret, transcript) where the transcript names the role ("primary"
// or "replica"), the cluster, both node ids, the volume, the generation and both nonces.
// A recorded AUTH is useless on another connection (the replica's nonce differs), a
// recorded WELCOME likewise (the primary's nonce differs), and the role keeps one side's
// proof from being reflected back as the other's. Proofs are compared in constant time.
//
// FramedSocket wraps a net.Socket with a FrameDecoder and the message codec. Incoming
// chunks become typed messages handed to `onMessage` one by one (a bad frame or message
// goes to `onBadFrame` instead, and nothing after it is read). `send` writes a frame's
// parts corked, so header, body and payload leave in one writev without being joined.
// `fail` sends an ERROR, half-closes, and destroys the socket if the peer has not closed
// its side within a grace period: a hostile peer cannot keep a refused connection open.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { BrickdError, type ErrorCode } from '../errors.js';
import { FrameDecoder, type FrameLimits } from '../wire/frames.js';
import { decodeMessage, encodeMessage, MAC_BYTES, NONCE_BYTES, type ReplicationMessage } from '../wire/replication.js';

/** The codes an ERROR frame carries (a subset of ErrorCodes, see replication.proto). */
export type WireErrorCode = Extract<
  ErrorCode,
  | 'UNAUTHENTICATED'
  | 'CLUSTER_MISMATCH'
  | 'VOLUME_MISMATCH'
  | 'VOLUME_NOT_FOUND'
  | 'GENERATION_STALE'
  | 'SEQ_GAP'
  | 'BAD_FRAME'
  | 'CHECKSUM_MISMATCH'
  | 'PROTOCOL_VIOLATION'
  | 'APPLY_FAILED'
  | 'SUPERSEDED'
  | 'TIMEOUT'
  | 'SHUTTING_DOWN'
>;

export const MIN_SECRET_BYTES = 16;

/**
 * What this agent understands beyond the frames and fields of the first version-1 agents,
 * offered in HELLO (primary) and CHALLENGE (replica). What a feature adds to the frames is
 * sent only when both sides listed it, so an agent built before a feature and one built
 * after it still replicate (decoding is strict: an unexpected field is BAD_FRAME). The lists
 * are not part of the proofs: a peer in the middle could strip them, which only makes the
 * two ends fall back to the base protocol.
 *   generation-history  WELCOME.applied_generation and RESYNC_BEGIN.history
 *                       (store/generations.ts, docs/replication.md "Generation history")
 *   volume-uid          AUTH.volume_uid, checked or adopted by the replica
 *                       (docs/replication.md "Volume incarnation")
 *   renumbered-seqs     AUTH.renumbered, kept by the replica (docs/replication.md "Seqs
 *                       numbered again after a crash")
 *   resync-resume       RESYNC_BEGIN.incremental_from, kept by the replica, and
 *                       WELCOME.resync_base_*: an incremental resync cut short is resumed
 *                       incrementally (docs/replication.md "Resuming an incremental resync")
 *   replica-suspects    WELCOME.suspects/suspect_flags: where an unclean stop may have
 *                       left the replica holding mutations its log lacks; the primary
 *                       resyncs it comparing them (docs/replication.md "After an unclean
 *                       stop")
 */
export const FEATURES: readonly string[] = ['generation-history', 'volume-uid', 'renumbered-seqs', 'resync-resume', 'replica-suspects'];

/** The features a session may use: offered by this end and by the peer (unknown names drop out). */
export function sharedFeatures(offered: readonly string[], peer: readonly string[] | undefined): Set<string> {
  return new Set((peer ?? []).filter((f) => offered.includes(f)));
}

export interface Transcript {
  clusterId: string;
  primaryNodeId: string;
  replicaNodeId: string;
  volumeId: string;
  generation: number;
  primaryNonce: Buffer;
  replicaNonce: Buffer;
}

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

export function checkSecret(secret: unknown): Buffer {
  if (!Buffer.isBuffer(secret) || secret.length < MIN_SECRET_BYTES) throw new TypeError(`secret must be a Buffer of at least ${MIN_SECRET_BYTES} bytes`);
  return secret;
}

/** The proof one side sends: HMAC-SHA256 over the role and the transcript. */
export function sessionMac(secret: Buffer, role: 'primary' | 'replica', t: Transcript): Buffer {
  // Ids cannot hold "|" (ID_RE), so the joined string names exactly one transcript.
  const text = [
    'brickd-replication-v1',
    role,
    t.clusterId,
    t.primaryNodeId,
    t.replicaNodeId,
    t.volumeId,
    String(t.generation),
    t.primaryNonce.toString('hex'),
    t.replicaNonce.toString('hex'),
  ].join('|');
  return createHmac('sha256', secret).update(text).digest();
}

/** Constant-time comparison of a received proof with the expected one. */
export function macMatches(received: Buffer, expected: Buffer): boolean {
  return received.length === MAC_BYTES && expected.length === MAC_BYTES && timingSafeEqual(received, expected);
}

/** A BrickdError's message without its "CODE: " prefix (the ERROR frame carries the code apart). */
export function withoutCode(err: BrickdError): string {
  return err.message.startsWith(`${err.code}: `) ? err.message.slice(err.code.length + 2) : err.message;
}

export interface FramedSocketHandlers {
  onMessage(message: ReplicationMessage): void;
  /** A frame or message failed validation: the connection must end (the decoder is dead). */
  onBadFrame(err: BrickdError): void;
  onClose(hadError: boolean): void;
}

const FAIL_GRACE_MS = 1000;

export class FramedSocket {
  readonly decoder: FrameDecoder;
  private closing = false;
  /** Why reading is paused: each owner of a budget (mutations, resync) pauses and resumes for itself. */
  private readonly pausedBy = new Set<string>();
  private failTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: Socket,
    limits: Partial<FrameLimits>,
    private readonly handlers: FramedSocketHandlers,
  ) {
    this.decoder = new FrameDecoder(limits);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', () => {
      // 'close' follows with hadError; the owner decides what the loss means.
    });
    socket.on('close', (hadError) => {
      if (this.failTimer) clearTimeout(this.failTimer);
      this.handlers.onClose(hadError);
    });
  }

  get closed(): boolean {
    return this.closing || this.socket.destroyed;
  }

  get remote(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? '?'}`;
  }

  /** True when the socket's write buffer is full: wait for 'drain' before sending more. */
  get congested(): boolean {
    return this.socket.writableNeedDrain;
  }

  send(message: ReplicationMessage): boolean {
    return this.sendParts(encodeMessage(message));
  }

  /** Write pre-encoded frame parts (a retained mutation is encoded once for every replica). */
  sendParts(parts: Buffer[]): boolean {
    if (this.closed) return false;
    this.socket.cork();
    for (const part of parts) this.socket.write(part);
    this.socket.uncork();
    return !this.socket.writableNeedDrain;
  }

  /**
   * Stop reading for `reason` (backpressure: the kernel's receive window then fills and the
   * peer stalls). Reading resumes only once every reason that paused it has resumed, so one
   * budget draining cannot lift another's pause.
   */
  pause(reason: string): void {
    if (this.closed) return;
    if (this.pausedBy.size === 0) this.socket.pause();
    this.pausedBy.add(reason);
  }

  resume(reason: string): void {
    if (this.closed || !this.pausedBy.delete(reason)) return;
    if (this.pausedBy.size === 0) this.socket.resume();
  }

  get isPaused(): boolean {
    return this.pausedBy.size > 0;
  }

  /** Resolves once the socket can take more (a 'drain'), or is closed; no listener is left behind. */
  drained(): Promise<void> {
    if (!this.congested || this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** Send ERROR, then close: gracefully if the peer cooperates, by force after a grace period. */
  fail(code: WireErrorCode, message: string, extra: { generation?: number; appliedSeq?: bigint } = {}): void {
    if (this.closed) return;
    this.send({ type: 'ERROR', code, message, generation: extra.generation ?? 0, appliedSeq: extra.appliedSeq ?? 0n });
    this.closing = true;
    // Keep reading (and discarding, see receive) so the peer's FIN is seen and the close completes.
    this.socket.resume();
    this.socket.end();
    this.failTimer = setTimeout(() => this.socket.destroy(), FAIL_GRACE_MS);
    this.failTimer.unref();
  }

  /** Close without a word (the peer already said why, or is gone). */
  destroy(): void {
    this.closing = true;
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    if (this.closing) return;
    let frames;
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.handlers.onBadFrame(err as BrickdError);
      return;
    }
    for (const frame of frames) {
      if (this.closing) return;
      let message: ReplicationMessage;
      try {
        message = decodeMessage(frame);
      } catch (err) {
        this.handlers.onBadFrame(err as BrickdError);
        return;
      }
      this.handlers.onMessage(message);
    }
  }
}
