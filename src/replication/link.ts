// The primary's link to one replica: one TCP connection that streams a volume's mutations
// from the retained queue, in seq order, and reports what the replica holds durably.
//
// How it works. The link is an explicit state machine; each transition is logged once with
// its reason and emitted as 'state':
//
//   connecting ──connect──▶ handshake ──WELCOME ok──▶ streaming
//       ▲                       │                        │
//       └── lost, refused for a passing reason, timeout ─┘    (after a backoff delay)
//   resyncing  the replica needs mutations the queue no longer holds, is ahead of the
//            primary, says it is mid-resync, or lost what it acknowledged: with a `resync`
//            store, a ResyncSource (resync-source.ts) rebuilds it on this connection, then
//            streaming resumes at s0 + 1. A connection lost meanwhile starts a new resync on
//            the next one (cheap: most blocks then match). A replica that only needs what
//            the queue dropped, at a seq our own generation made, is compared only where
//            the primary changed since (`changes`, changed.ts), and so is one whose
//            incremental resync by this primary was cut short (canResume); any other, in full.
//            A replica that stopped uncleanly and says where its tree may hold mutations
//            its log lacks (WELCOME suspects) is resynced even if it could stream, comparing
//            those parts too (withSuspects).
//   behind   the same without a `resync` store, or the replica could not apply a mutation
//            (APPLY_FAILED) and there is no `resync` store: only an operator or a new attach
//            helps. With one, APPLY_FAILED reconnects (backoff): a replica whose brick
//            failed and that came back is caught up without an operator
//   failed   fenced (GENERATION_STALE), wrong cluster or secret, superseded, or the
//            replica failed to prove itself: retrying cannot help
//   closed   close() was called
//
// Handshake: HELLO (our nonce) → CHALLENGE (theirs) → AUTH (our proof; for a replica that
// understands them, the volume's incarnation and our store's renumbered seq ranges) →
// WELCOME (their proof, checked in constant time, and their applied and durable seqs). Streaming resumes
// at applied_seq + 1 when the queue still holds it. Mutations are sent while the window
// allows: at most maxInFlightMutations and maxInFlightBytes sent but not yet acked durable
// (one oversized mutation may go alone), and never into a full socket buffer (we wait for
// 'drain'). ACK{durable_seq} frees the window, moves ackedSeq (emitted as 'ack') and lets
// the queue drop what every replica has. PING every pingIntervalMs while streaming; no
// frame at all for idleTimeoutMs means the connection is dead and is replaced.
//
// Repair (blocks.ts): once the replica has proven itself, it may ask READ_BLOCKS for blocks
// its store found damaged; the link answers from the `blocks` store (the primary's). The
// primary asks the replica the same way with fetchBlocks, only while streaming and only if
// the replica has acknowledged min_seq durably (the replica checks it again).
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { BrickdError, ErrorCodes, isBrickdError, type ErrorCode } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Suspects } from '../store/activity.js';
import type { ResyncBase } from '../store/manifest.js';
import type { FileRange } from '../store/mutations.js';
import { encodeMessage, MAX_READ_BLOCKS_BYTES, type ChallengeMessage, type ErrorMessage, type ReplicationMessage, type WelcomeMessage } from '../wire/replication.js';
import { BlockRequests, BlockResponder, type BlockSource } from './blocks.js';
import { withRanges, type ChangedRegions } from './changed.js';
import { ResyncSource, type ResyncProgress, type ResyncSourceStore } from './resync-source.js';
import type { RetainedConsumer, RetainedQueue } from './retained.js';
import { checkSecret, FEATURES, FramedSocket, macMatches, newNonce, sessionMac, sharedFeatures, withoutCode, type Transcript, type WireErrorCode } from './session.js';

export type LinkState = 'connecting' | 'handshake' | 'resyncing' | 'streaming' | 'behind' | 'failed' | 'closed';

export interface ReplicaLinkOptions {
  host: string;
  port: number;
  clusterId: string;
  /** This (the primary's) node id. */
  nodeId: string;
  volumeId: string;
  secret: Buffer;
  queue: RetainedQueue;
  /** If set, the replica must name itself so in CHALLENGE. */
  replicaNodeId?: string;
  /** Name in logs and in the quorum tracker (default host:port). */
  name?: string;
  maxInFlightBytes?: number;
  maxInFlightMutations?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  handshakeTimeoutMs?: number;
  pingIntervalMs?: number;
  idleTimeoutMs?: number;
  /**
   * The primary's store: with it, a replica the queue cannot catch up is resynced instead
   * of left `behind`.
   */
  resync?: ResyncSourceStore;
  /** The primary's store: with it, the replica's repair reads (READ_BLOCKS) are answered with bytes. */
  blocks?: BlockSource;
  /** Resync data bytes per second (default 0: unthrottled). */
  resyncRateBytesPerSec?: number;
  /**
   * The primary's record of changed regions (fed with every mutation the queue gets): a
   * replica that only fell behind the queue is then resynced comparing just those.
   */
  changes?: ChangedRegions;
  /** Features offered in HELLO (default FEATURES; tests offer fewer to act as an older agent). */
  features?: readonly string[];
  /** The volume's incarnation (the primary store's volumeUid), sent in AUTH to a replica that offered volume-uid. */
  volumeUid?: string;
  /**
   * The highest seq an earlier link of this process sent this replica (the primary attached
   * again, same store, same role throughout): withSuspects counts it as sent by this link.
   */
  sentEarlier?: bigint;
  log?: Logger;
}

/**
 * Codes after which reconnecting cannot help. VOLUME_MISMATCH among them: the replica holds
 * another volume under this id, and only an operator can tell which one is stale (the link
 * stays failed until the volume is attached again, see docs/operations.md).
 */
const FATAL: ReadonlySet<string> = new Set(['GENERATION_STALE', 'UNAUTHENTICATED', 'CLUSTER_MISMATCH', 'SUPERSEDED', 'VOLUME_MISMATCH']);
/**
 * Codes after which the replica may need a resync (it could not apply a mutation): with a
 * `resync` store the link reconnects (with backoff) and the next WELCOME decides, as the
 * replica expects (it realigns to its durable seq at the next session); without one it is
 * behind.
 */
const NEEDS_RESYNC: ReadonlySet<string> = new Set(['APPLY_FAILED']);
/**
 * Frames from a replica are small: short ERROR texts, acks, no payload (BLOCKS, once it has
 * proven itself). The largest is a WELCOME naming the most suspect ranges a replica tells
 * (MAX_SUSPECT_RANGES, 512, src/store/activity.ts): at most 38 bytes each (a 16-hex fid and
 * two offsets below 2^53), ~19.5 KB with the rest. 4 KiB used to be the limit: a replica
 * SIGKILLed after 1 GiB of writes (256 extents named in its activity log) was refused its
 * WELCOME, BAD_FRAME, at every reconnect, and never resynced (bench resync case).
 * test/wire/frames.test.ts checks the largest legal WELCOME fits.
 */
export const REPLICA_FRAME_LIMITS = { maxBodyBytes: 24 * 1024, maxPayloadBytes: 0 };

export interface ReplicaLinkStats {
  connects: number;
  sessions: number;
  mutationsSent: number;
  bytesSent: number;
  acks: number;
  /** Resyncs started and completed; restarts (connection lost or queue overrun mid-resync). */
  resyncs: number;
  resyncsCompleted: number;
  /**
   * Of the resyncs that took their snapshot (where the kind is decided), those comparing only
   * the regions changed since the replica's seq, and those comparing every block.
   */
  incrementalResyncs: number;
  fullResyncs: number;
  /** Resync bytes over all attempts: file data in RESYNC_DATA, and every resync frame byte. */
  resyncDataBytes: number;
  resyncBytesSent: number;
  /** Repair reads answered for the replica (with bytes or a code), and asked of it. */
  blockReadsServed: number;
  blockReadsRequested: number;
}

export declare interface ReplicaLink {
  on(event: 'state', listener: (state: LinkState, reason: string) => void): this;
  on(event: 'ack', listener: (durableSeq: bigint) => void): this;
}

export class ReplicaLink extends EventEmitter implements RetainedConsumer {
  readonly name: string;
  readonly stats: ReplicaLinkStats = { connects: 0, sessions: 0, mutationsSent: 0, bytesSent: 0, acks: 0, resyncs: 0, resyncsCompleted: 0, incrementalResyncs: 0, fullResyncs: 0, resyncDataBytes: 0, resyncBytesSent: 0, blockReadsServed: 0, blockReadsRequested: 0 };
  /** The resync running now, or the last one. */
  private resyncSource: ResyncSource | undefined;
  /** While resyncing from a snapshot: the queue must keep everything after it (RetainedConsumer). */
  retainFloor: bigint | undefined;
  /** Highest seq ever sent on any connection of this link (see needsResync). */
  private highestSent = 0n;

  /** The highest seq this link ever sent its replica, or resynced it to (the next attach's sentEarlier). */
  get sentThrough(): bigint {
    return this.highestSent > this.opts.sentEarlier ? this.highestSent : this.opts.sentEarlier;
  }
  /** Features both ends of the current connection offered (session.ts FEATURES). */
  private sharedFeatures = new Set<string>();
  private stateValue: LinkState = 'connecting';
  private ackedSeqValue = 0n;
  /** The error that put the link in 'failed' or 'behind', or the last connection loss. */
  lastError: Error | undefined;
  private conn: FramedSocket | undefined;
  /** Repair reads of the current connection: ours to the replica, and the replica's to us. */
  private blockRequests: BlockRequests | undefined;
  private blockResponder: BlockResponder | undefined;
  private transcript: Transcript | undefined;
  private phase: 'hello' | 'auth' | 'done' = 'hello';
  /** Next seq to send. */
  private cursor = 0n;
  /** Sent, not yet acked: seq and bytes, oldest first (a deque: `sent[sentHead..]`). */
  private sent: Array<{ seq: bigint; bytes: number }> = [];
  private sentHead = 0;
  private inFlightBytes = 0;
  private pumpScheduled = false;
  private waitingDrain = false;
  private reconnectDelay: number;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private lastHeard = 0;
  private pingId = 0;
  private lastLoggedReason = '';
  private lastLossReason = '';
  private readonly opts: Required<Omit<ReplicaLinkOptions, 'replicaNodeId' | 'name' | 'log' | 'resync' | 'blocks' | 'changes' | 'resyncRateBytesPerSec' | 'volumeUid'>> &
    Pick<ReplicaLinkOptions, 'replicaNodeId' | 'resync' | 'blocks' | 'changes' | 'volumeUid'>;
  private readonly log: Logger;
  private started = false;
  /** Resync data bytes per second (0: unthrottled); setResyncRate changes it live. */
  private resyncRate: number;

  constructor(options: ReplicaLinkOptions) {
    super();
    checkSecret(options.secret);
    this.opts = {
      host: options.host,
      port: options.port,
      clusterId: options.clusterId,
      nodeId: options.nodeId,
      volumeId: options.volumeId,
      secret: options.secret,
      queue: options.queue,
      features: options.features ?? FEATURES,
      replicaNodeId: options.replicaNodeId,
      maxInFlightBytes: options.maxInFlightBytes ?? 8 * 2 ** 20,
      maxInFlightMutations: options.maxInFlightMutations ?? 1024,
      reconnectMinMs: options.reconnectMinMs ?? 50,
      reconnectMaxMs: options.reconnectMaxMs ?? 2000,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 5000,
      pingIntervalMs: options.pingIntervalMs ?? 2000,
      idleTimeoutMs: options.idleTimeoutMs ?? 10_000,
      sentEarlier: options.sentEarlier ?? 0n,
      resync: options.resync,
      blocks: options.blocks,
      changes: options.changes,
      volumeUid: options.volumeUid,
    };
    this.resyncRate = options.resyncRateBytesPerSec ?? 0;
    this.name = options.name ?? `${options.host}:${options.port}`;
    this.reconnectDelay = this.opts.reconnectMinMs;
    this.log = (options.log ?? silentLogger).child({ volume: options.volumeId, peer: this.name, component: 'replica-link' });
  }

  get state(): LinkState {
    return this.stateValue;
  }

  /** Highest seq the replica has reported durable. */
  get ackedSeq(): bigint {
    return this.ackedSeqValue;
  }

  /** The current or last resync's progress (undefined if none ran). */
  get resyncProgress(): Readonly<ResyncProgress> | undefined {
    return this.resyncSource?.progress;
  }

  /** Resync data bytes per second (0: unthrottled). */
  get resyncRateBytesPerSec(): number {
    return this.resyncRate;
  }

  /** Throttle resyncs to `bytesPerSec` (0: unthrottled) from now on, the one running included. */
  setResyncRate(bytesPerSec: number): void {
    if (!Number.isSafeInteger(bytesPerSec) || bytesPerSec < 0) throw new RangeError(`resync rate must be a whole number of bytes per second ≥ 0, got ${bytesPerSec}`);
    this.resyncRate = bytesPerSec;
    this.resyncSource?.setRate(bytesPerSec);
  }

  /** Highest seq sent on the current connection. */
  get sentSeq(): bigint {
    return this.cursor - 1n;
  }

  start(): this {
    if (this.started) return this;
    this.started = true;
    this.log.info({ host: this.opts.host, port: this.opts.port, generation: this.opts.queue.generation }, 'start replica link');
    this.opts.queue.attach(this);
    this.connect('start');
    return this;
  }

  /** Close for good: resolves once the connection is gone. */
  async close(): Promise<void> {
    if (this.stateValue === 'closed') return;
    this.transition('closed', 'close() called');
    await this.teardown('SHUTTING_DOWN', 'the primary closed the link');
  }

  // ── RetainedConsumer ───────────────────────────────────────────────────────────────

  onAppended(): void {
    this.schedulePump();
  }

  onEvicted(seq: bigint): void {
    if (this.stateValue === 'resyncing' && this.retainFloor !== undefined && seq > this.retainFloor) {
      // The queue could not hold every mutation since the snapshot (its maxBytes/maxEntries
      // bound): this resync cannot end in streaming. Start over from a newer snapshot.
      this.lastError = new BrickdError('RESYNC_OVERRUN', `mutations up to ${seq} left the retained queue during the resync from ${this.retainFloor}`);
      this.resyncSource?.abort(this.lastError);
      this.conn?.destroy();
      return;
    }
    // Entries already sent are not needed unless we reconnect (resume checks again then).
    if (this.stateValue === 'streaming' && this.cursor <= seq) this.fallBehind(`mutations up to ${seq} were dropped from the retained queue before they were sent`);
  }

  // ── connection ─────────────────────────────────────────────────────────────────────

  private connect(reason: string): void {
    if (this.terminal()) return;
    if (this.stateValue !== 'connecting') this.transition('connecting', reason);
    this.stats.connects++;
    this.phase = 'hello';
    this.transcript = undefined;
    const socket = net.connect({ host: this.opts.host, port: this.opts.port });
    const conn = new FramedSocket(socket, REPLICA_FRAME_LIMITS, {
      onMessage: (m) => this.onMessage(conn, m),
      onBadFrame: (err) => {
        this.lastError = err;
        conn.fail(err.details.reason === 'payload-crc' ? 'CHECKSUM_MISMATCH' : 'BAD_FRAME', withoutCode(err));
      },
      onClose: () => this.onConnectionClosed(conn),
    });
    this.conn = conn;
    this.blockRequests = new BlockRequests((m) => conn.send(m), this.name);
    this.blockResponder = new BlockResponder((m) => {
      this.stats.blockReadsServed++;
      conn.send(m);
    });
    socket.once('connect', () => {
      if (this.conn !== conn || this.terminal()) return;
      this.transition('handshake', 'connected');
      const nonce = newNonce();
      this.transcript = {
        clusterId: this.opts.clusterId,
        primaryNodeId: this.opts.nodeId,
        replicaNodeId: '',
        volumeId: this.opts.volumeId,
        generation: this.opts.queue.generation,
        primaryNonce: nonce,
        replicaNonce: Buffer.alloc(0),
      };
      this.sharedFeatures = new Set();
      conn.send({ type: 'HELLO', clusterId: this.opts.clusterId, nodeId: this.opts.nodeId, volumeId: this.opts.volumeId, generation: this.opts.queue.generation, nonce, features: [...this.opts.features] });
    });
    socket.on('error', (err) => {
      if (this.conn === conn) this.lastError = err;
    });
    socket.on('drain', () => {
      if (this.conn !== conn) return;
      this.waitingDrain = false;
      this.schedulePump();
    });
    this.handshakeTimer = setTimeout(() => {
      if (this.conn === conn && this.stateValue !== 'streaming') {
        this.lastError = new BrickdError('TIMEOUT', `no WELCOME from ${this.name} within ${this.opts.handshakeTimeoutMs} ms`);
        conn.fail('TIMEOUT', 'handshake took too long');
      }
    }, this.opts.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    this.lastHeard = Date.now();
  }

  private onMessage(conn: FramedSocket, m: ReplicationMessage): void {
    if (this.conn !== conn || this.terminal()) return;
    this.lastHeard = Date.now();
    switch (m.type) {
      case 'CHALLENGE':
        if (this.phase !== 'hello') return this.violation(conn, 'CHALLENGE out of turn');
        return this.onChallenge(conn, m);
      case 'WELCOME':
        if (this.phase !== 'auth') return this.violation(conn, 'WELCOME out of turn');
        return this.onWelcome(conn, m);
      case 'ACK':
        // ACKs of mutations applied before a resync began may still arrive: nothing to learn.
        if (this.stateValue === 'resyncing') return;
        if (this.stateValue !== 'streaming') return this.violation(conn, 'ACK before WELCOME');
        return this.onAck(conn, m.durableSeq);
      case 'RESYNC_WANT':
        if (this.stateValue !== 'resyncing') return this.violation(conn, 'RESYNC_WANT outside a resync');
        return this.resyncSource!.onWant(m);
      case 'RESYNC_DONE':
        if (this.stateValue !== 'resyncing') return this.violation(conn, 'RESYNC_DONE outside a resync');
        return this.resyncSource!.onDone(m.appliedSeq);
      case 'READ_BLOCKS': {
        if (this.phase !== 'done' || (this.stateValue !== 'streaming' && this.stateValue !== 'resyncing')) return this.violation(conn, 'READ_BLOCKS before WELCOME');
        const store = this.opts.blocks;
        // The primary's copy is the newest there is; its seq is the queue's last.
        const violation = this.blockResponder!.respond(m, store, () => this.opts.queue.lastSeq, store ? undefined : 'this link has no store to read from');
        return violation === undefined ? undefined : this.violation(conn, violation);
      }
      case 'BLOCKS': {
        if (this.phase !== 'done') return this.violation(conn, 'BLOCKS before WELCOME');
        const violation = this.blockRequests!.answer(m);
        return violation === undefined ? undefined : this.violation(conn, violation);
      }
      case 'PONG':
        return;
      case 'ERROR':
        return this.onError(conn, m);
      default:
        return this.violation(conn, `${m.type} is not sent to a primary`);
    }
  }

  private onChallenge(conn: FramedSocket, m: ChallengeMessage): void {
    if (this.opts.replicaNodeId !== undefined && m.nodeId !== this.opts.replicaNodeId) {
      return this.fail(new BrickdError('UNAUTHENTICATED', `expected replica ${this.opts.replicaNodeId}, ${this.name} says it is ${m.nodeId}`), conn);
    }
    const t = this.transcript!;
    t.replicaNodeId = m.nodeId;
    t.replicaNonce = m.nonce;
    this.sharedFeatures = sharedFeatures(this.opts.features, m.features);
    this.phase = 'auth';
    const volumeUid = this.sharedFeatures.has('volume-uid') ? this.opts.volumeUid : undefined;
    const renumbered = this.sharedFeatures.has('renumbered-seqs') ? this.opts.resync?.renumberedSeqs : undefined;
    conn.send({
      type: 'AUTH',
      mac: sessionMac(this.opts.secret, 'primary', t),
      ...(volumeUid !== undefined ? { volumeUid } : {}),
      ...(renumbered?.length ? { renumbered: [...renumbered] } : {}),
    });
  }

  private onWelcome(conn: FramedSocket, m: WelcomeMessage): void {
    if (!macMatches(m.mac, sessionMac(this.opts.secret, 'replica', this.transcript!))) {
      return this.fail(new BrickdError('UNAUTHENTICATED', `${this.name} did not prove it knows the cluster secret`), conn);
    }
    this.phase = 'done';
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    // A proven replica may now send BLOCKS with bytes (answers to our repair reads).
    conn.decoder.setLimits({ maxPayloadBytes: MAX_READ_BLOCKS_BYTES });
    this.stats.sessions++;
    if (m.durableSeq > m.appliedSeq) return this.violation(conn, `WELCOME durable_seq ${m.durableSeq} is past applied_seq ${m.appliedSeq}`);
    // Checked before anything the replica says is believed: a replica ahead of this primary
    // holds mutations this primary never made; its durable seq must not count for quorum.
    const suspects = this.sharedFeatures.has('replica-suspects') ? m.suspects : undefined;
    const resync = this.withSuspects(this.needsResync(m), m, suspects);
    if (resync) return this.opts.resync ? this.startResync(conn, resync.reason, resync.from, resync.suspect ?? []) : this.fallBehind(resync.reason);
    this.setAcked(m.durableSeq);
    this.startStreaming(conn, m.appliedSeq, m.durableSeq);
  }

  /**
   * Why the replica cannot be caught up from the queue, or undefined if it can. `from` is
   * set only when the replica is known to hold exactly this primary's tree at that seq and
   * merely fell behind the queue: a resync then need compare only what changed after it
   * (changed.ts). Every other reason means the replica's copy may differ anywhere.
   */
  private needsResync(m: WelcomeMessage): { reason: string; from?: bigint } | undefined {
    const why = (reason: string) => ({ reason });
    const queue = this.opts.queue;
    if (m.resyncing) {
      const base = this.sharedFeatures.has('resync-resume') ? m.resyncBase : undefined;
      if (base && this.canResume(base)) return { reason: `the replica is in the middle of a resync (incremental from seq ${base.seq}: resumed so)`, from: base.seq };
      return why('the replica is in the middle of a resync');
    }
    if (m.durableSeq < this.ackedSeqValue) return why(`the replica reports durable seq ${m.durableSeq}, below the ${this.ackedSeqValue} it acknowledged: it lost or replaced its copy`);
    if (m.appliedSeq > queue.lastSeq) return why(`the replica is at seq ${m.appliedSeq}, ahead of the primary's ${queue.lastSeq}`);
    // A generation names one primary, which numbers its own mutations: if another generation
    // made the replica's last seq than made ours, the same numbers hold other mutations
    // (store/generations.ts). Unknown on either side (histories predating this check, or
    // trimmed): the seq-range rules below still apply.
    const ourGeneration = this.opts.resync?.generationAt(m.appliedSeq);
    if (m.appliedGeneration !== undefined && ourGeneration !== undefined && m.appliedGeneration !== ourGeneration) {
      return why(`the replica's seq ${m.appliedSeq} was made by generation ${m.appliedGeneration}, this primary's by generation ${ourGeneration}: another primary's mutations`);
    }
    // Seqs this primary numbered again after a crash lost them here: the replica may hold
    // the lost mutation under a seq that now names another (store/renumbered.ts). Not if
    // this link gave it that seq (sent it, or resynced it past it): a replica never takes a
    // seq it already holds, so it holds ours.
    if (m.appliedSeq > this.highestSent && this.opts.resync?.renumbered(m.appliedSeq, m.appliedGeneration)) {
      return why(`the replica's seq ${m.appliedSeq} lies where this primary numbered seqs again after a crash: it may hold a mutation lost here`);
    }
    // Seqs past where this primary's queue started that this link never sent came from
    // another primary (one that died after shipping them): same numbers, other mutations.
    const ours = queue.startSeq > this.highestSent ? queue.startSeq : this.highestSent;
    if (m.appliedSeq > ours) return why(`the replica is at seq ${m.appliedSeq}, past the ${ours} this primary ever sent it: another primary's mutations`);
    if (m.appliedSeq + 1n < queue.firstSeq) {
      const reason = `the replica is at seq ${m.appliedSeq}; the retained queue starts at ${queue.firstSeq}`;
      // Its seq was made by our own generation (both known and equal, checked above): its
      // tree is ours at that seq. Durable is what survives on it; applied may be more.
      return m.appliedGeneration !== undefined && ourGeneration !== undefined ? { reason, from: m.durableSeq } : why(reason);
    }
    return undefined;
  }

  /**
   * The replica's suspects (replica-suspects: where an unclean stop may have left its tree
   * holding mutations its log lacks) make a replica that could stream resync instead,
   * comparing them beside what changed since its durable seq (`suspect`, added by
   * startResync); when it cannot tell where (`all`), every block is compared.
   *
   * Not when this link sent it everything it may hold: a replica takes seqs only from its
   * session, and every seq past its durable one that it may have applied without a record
   * was sent by this link (its seq is at most highestSent, this process's own, never
   * renumbered), which sends them again from the queue or compares where they changed (an
   * incremental resync from that seq): nothing the suspects name can be left. That is a
   * replica that crashed while this primary ran on (an earlier link of this process, before
   * the primary attached again, counts: sentEarlier); one that comes back to a restarted or
   * another primary has them compared.
   */
  private withSuspects(
    resync: { reason: string; from?: bigint } | undefined,
    m: WelcomeMessage,
    suspects: Suspects | undefined,
  ): { reason: string; from?: bigint; suspect?: readonly FileRange[] } | undefined {
    if (!suspects) return resync;
    const sent = this.sentThrough;
    if (!suspects.all && !m.resyncing && sent > 0n && m.appliedSeq <= sent) return resync;
    const where = suspects.all ? 'anywhere' : `in ${suspects.ranges.length} file ranges${suspects.namespace ? ' and its namespace' : ''}`;
    const reason = `the replica stopped uncleanly: its tree may hold mutations its log lacks ${where}`;
    if (suspects.all) return { reason: resync ? `${resync.reason}; ${reason}` : reason };
    if (resync) return { ...resync, suspect: suspects.ranges };
    // It could stream: its seq is this primary's (needsResync checked the generations when
    // both are known), so its tree is ours at its durable seq except where it is suspect.
    const known = m.appliedGeneration !== undefined && this.opts.resync?.generationAt(m.appliedSeq) !== undefined;
    return known ? { reason, from: m.durableSeq, suspect: suspects.ranges } : { reason };
  }

  /**
   * May an incremental resync that was cut short be resumed comparing only what changed after
   * its base seq (docs/replication.md "Resuming an incremental resync")? The replica's tree is
   * this primary's at that seq plus blocks that resync wrote, all read from this primary's
   * tree and all inside regions changed after the base: comparing those regions again finds
   * every difference, provided that
   * - this primary began it (a generation names one primary), so the blocks came from the
   *   tree whose record of changes is asked; another primary's tree may differ anywhere;
   * - this primary lost no mutation to a crash since the base (no seq numbered again past
   *   it: store/renumbered.ts), for blocks read before such a crash may hold one that no
   *   record names now;
   * - the base is not past this primary's last seq.
   * Whether the record still covers the base is asked at the snapshot (resync-source.ts).
   */
  private canResume(base: ResyncBase): boolean {
    if (base.generation !== this.opts.queue.generation || base.seq > this.opts.queue.lastSeq) return false;
    return !(this.opts.resync?.renumberedSeqs ?? []).some((range) => range.toSeq > base.seq);
  }

  /**
   * Rebuild the replica from the store's tree on this connection; then stream from s0 + 1.
   * With `from`, only the regions changed after it are compared when the record of changes
   * still covers it at the snapshot (see needsResync).
   */
  private startResync(conn: FramedSocket, reason: string, from: bigint | undefined, suspect: readonly FileRange[]): void {
    const changes = this.opts.changes;
    const incremental =
      from !== undefined && changes ? { from, changed: (seq: bigint) => withRanges(changes.since(seq), suspect), tellReplica: this.sharedFeatures.has('resync-resume') } : undefined;
    this.transition('resyncing', incremental ? `${reason} (incremental: comparing only the regions changed since seq ${from}, if still recorded at the snapshot)` : reason);
    this.stats.resyncs++;
    this.startHeartbeat(conn);
    const source = new ResyncSource(
      this.opts.resync!,
      {
        send: (message) => {
          const parts = encodeMessage(message);
          conn.sendParts(parts);
          let bytes = 0;
          for (const part of parts) bytes += part.length;
          this.stats.resyncBytesSent += bytes;
          if (message.type === 'RESYNC_DATA') this.stats.resyncDataBytes += message.data.length;
          return bytes;
        },
        get congested() {
          return conn.congested;
        },
        drained: () => conn.drained(),
        get closed() {
          return conn.closed;
        },
      },
      { rateBytesPerSec: this.resyncRate, log: this.log, ...(incremental ? { incremental } : {}) },
    );
    this.resyncSource = source;
    source
      .run(
        this.opts.queue.generation,
        (s0) => {
          // From the snapshot on, the queue keeps every mutation after s0 for this link.
          this.retainFloor = s0;
          if (source.progress.incremental) this.stats.incrementalResyncs++;
          else this.stats.fullResyncs++;
        },
        this.sharedFeatures.has('generation-history'),
      )
      .then(
        (s0) => {
          if (this.conn !== conn || this.stateValue !== 'resyncing') return;
          this.retainFloor = undefined;
          this.stats.resyncsCompleted++;
          const p = source.progress;
          this.log.info({ s0: String(s0), entries: p.entries, bytesCompared: p.bytesCompared, blocksWanted: p.blocksWanted, dataBytes: p.dataBytesSent, bytesSent: p.bytesSent, ms: (p.finishedAt ?? Date.now()) - p.startedAt }, 'resync done');
          if (s0 + 1n < this.opts.queue.firstSeq) {
            this.lastError = new BrickdError('RESYNC_OVERRUN', `mutations after the resync's s0 ${s0} left the retained queue`);
            conn.destroy();
            return;
          }
          // The replica now holds this primary's history up to s0, as if this link had sent it.
          if (s0 > this.highestSent) this.highestSent = s0;
          this.setAcked(s0);
          this.startStreaming(conn, s0, s0);
        },
        (err: Error) => {
          if (this.conn !== conn) return;
          this.lastError = err;
          this.retainFloor = undefined;
          if (isBrickdError(err, 'PROTOCOL_VIOLATION')) return this.violation(conn, err.message);
          conn.destroy();
        },
      );
  }

  private startStreaming(conn: FramedSocket, appliedSeq: bigint, durableSeq: bigint): void {
    const queue = this.opts.queue;
    const m = { appliedSeq, durableSeq };
    this.cursor = m.appliedSeq + 1n;
    // What the replica took in but has not made durable yet still occupies the window.
    this.sent = [];
    this.sentHead = 0;
    this.inFlightBytes = 0;
    for (let seq = m.durableSeq + 1n; seq <= m.appliedSeq; seq++) {
      const bytes = queue.get(seq)?.bytes ?? 0;
      this.sent.push({ seq, bytes });
      this.inFlightBytes += bytes;
    }
    this.reconnectDelay = this.opts.reconnectMinMs;
    this.transition('streaming', `resume after seq ${m.appliedSeq} (durable ${m.durableSeq})`);
    this.startHeartbeat(conn);
    this.schedulePump();
  }

  private startHeartbeat(conn: FramedSocket): void {
    if (this.pingTimer) return;
    this.pingTimer = setInterval(() => this.heartbeat(conn), this.opts.pingIntervalMs);
    this.pingTimer.unref();
  }

  private onAck(conn: FramedSocket, durableSeq: bigint): void {
    if (durableSeq > this.cursor - 1n) return this.violation(conn, `ACK of seq ${durableSeq}, beyond the ${this.cursor - 1n} sent`);
    if (durableSeq <= this.ackedSeqValue) return;
    while (this.sentHead < this.sent.length && this.sent[this.sentHead]!.seq <= durableSeq) this.inFlightBytes -= this.sent[this.sentHead++]!.bytes;
    if (this.sentHead > 1024 && this.sentHead * 2 > this.sent.length) {
      this.sent = this.sent.slice(this.sentHead);
      this.sentHead = 0;
    }
    this.stats.acks++;
    this.setAcked(durableSeq);
    this.opts.queue.trim();
    this.schedulePump();
  }

  private onError(conn: FramedSocket, m: ErrorMessage): void {
    const code = (m.code in ErrorCodes ? m.code : 'REPLICA_REFUSED') as ErrorCode;
    const err = new BrickdError(code, `${this.name} ended the session: ${m.code}: ${m.message}`, { replicaCode: m.code, generation: m.generation, appliedSeq: String(m.appliedSeq) });
    conn.destroy();
    if (FATAL.has(m.code)) return this.fail(err, conn);
    if (NEEDS_RESYNC.has(m.code) && !this.opts.resync) {
      this.lastError = err;
      return this.fallBehind(err.message);
    }
    // SEQ_GAP, TIMEOUT, SHUTTING_DOWN, VOLUME_NOT_FOUND, CHECKSUM_MISMATCH...: reconnect
    // (with backoff); the next WELCOME says where the replica stands.
    this.lastError = err;
  }

  private violation(conn: FramedSocket, message: string): void {
    this.lastError = new BrickdError('PROTOCOL_VIOLATION', `${this.name}: ${message}`);
    conn.fail('PROTOCOL_VIOLATION', message);
  }

  private heartbeat(conn: FramedSocket): void {
    if (this.conn !== conn || (this.stateValue !== 'streaming' && this.stateValue !== 'resyncing')) return;
    if (Date.now() - this.lastHeard > this.opts.idleTimeoutMs) {
      this.lastError = new BrickdError('TIMEOUT', `nothing from ${this.name} for ${this.opts.idleTimeoutMs} ms`);
      conn.destroy();
      return;
    }
    if (!conn.congested) conn.send({ type: 'PING', id: ++this.pingId });
  }

  private onConnectionClosed(conn: FramedSocket): void {
    if (this.conn !== conn) return;
    this.conn = undefined;
    this.blockRequests?.cancel('the connection closed');
    this.blockRequests = this.blockResponder = undefined;
    this.clearTimers();
    this.resyncSource?.abort(new BrickdError('TIMEOUT', 'the connection closed during the resync'));
    this.retainFloor = undefined;
    if (this.terminal()) return;
    const reason = this.lastError ? this.lastError.message : 'connection closed';
    this.transition('connecting', `lost: ${reason}`);
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, this.opts.reconnectMaxMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect(`retry after ${delay} ms`);
    }, delay);
    this.reconnectTimer.unref();
  }

  // ── repair ─────────────────────────────────────────────────────────────────────────

  /**
   * The replica's verified bytes of `length` at `offset` of `fid`, for a block the primary's
   * store found damaged. Only from a streaming replica that has acknowledged `minSeq`
   * durably (and says so again when it answers): a lagging copy may hold stale bytes.
   */
  fetchBlocks(fid: string, offset: number, length: number, minSeq: bigint): Promise<Buffer> {
    if (this.stateValue !== 'streaming' || !this.blockRequests) return Promise.reject(new BrickdError('REPAIR_UNAVAILABLE', `${this.name} is ${this.stateValue}`, { peer: this.name }));
    if (this.ackedSeqValue < minSeq) return Promise.reject(new BrickdError('REPAIR_UNAVAILABLE', `${this.name} acknowledged seq ${this.ackedSeqValue}, below ${minSeq}`, { peer: this.name }));
    this.stats.blockReadsRequested++;
    return this.blockRequests.request(fid, offset, length, minSeq);
  }

  // ── streaming ──────────────────────────────────────────────────────────────────────

  private schedulePump(): void {
    if (this.pumpScheduled || this.stateValue !== 'streaming') return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Send what the window allows, in seq order. */
  private pump(): void {
    const conn = this.conn;
    const queue = this.opts.queue;
    if (!conn || this.stateValue !== 'streaming' || this.waitingDrain) return;
    while (this.cursor <= queue.lastSeq) {
      const inFlight = this.sent.length - this.sentHead;
      if (inFlight >= this.opts.maxInFlightMutations) return;
      if (inFlight > 0 && this.inFlightBytes >= this.opts.maxInFlightBytes) return;
      const entry = queue.get(this.cursor);
      if (!entry) return this.fallBehind(`mutation ${this.cursor} is no longer in the retained queue`);
      const roomLeft = conn.sendParts(entry.parts);
      this.sent.push({ seq: entry.seq, bytes: entry.bytes });
      if (entry.seq > this.highestSent) this.highestSent = entry.seq;
      this.inFlightBytes += entry.bytes;
      this.stats.mutationsSent++;
      this.stats.bytesSent += entry.bytes;
      this.cursor++;
      if (!roomLeft) {
        this.waitingDrain = true;
        return;
      }
    }
  }

  // ── state ──────────────────────────────────────────────────────────────────────────

  private setAcked(seq: bigint): void {
    if (seq <= this.ackedSeqValue) return;
    this.ackedSeqValue = seq;
    this.emit('ack', seq);
  }

  private terminal(): boolean {
    return this.stateValue === 'behind' || this.stateValue === 'failed' || this.stateValue === 'closed';
  }

  private fallBehind(reason: string): void {
    if (this.terminal()) return;
    this.transition('behind', reason);
    void this.teardown();
  }

  private fail(err: BrickdError, conn?: FramedSocket): void {
    if (this.terminal()) return;
    this.lastError = err;
    this.transition('failed', err.message);
    if (conn && err.code === 'UNAUTHENTICATED') conn.fail('UNAUTHENTICATED', 'the replica did not prove itself');
    void this.teardown();
  }

  private async teardown(code?: WireErrorCode, message?: string): Promise<void> {
    this.resyncSource?.abort(new BrickdError('SHUTTING_DOWN', 'the link stopped'));
    this.retainFloor = undefined;
    this.opts.queue.detach(this);
    this.clearTimers();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const conn = this.conn;
    if (!conn) return;
    const closed = new Promise<void>((resolve) => {
      if (conn.socket.destroyed) resolve();
      else conn.socket.once('close', () => resolve());
    });
    // An ERROR already on its way (conn.fail) closes the socket itself after a grace period.
    if (!conn.closed) {
      if (code) conn.fail(code, message ?? code);
      else conn.destroy();
    }
    await closed;
  }

  private clearTimers(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.handshakeTimer = this.pingTimer = undefined;
    this.waitingDrain = false;
  }

  /**
   * Change state; each transition is logged once and emitted. Staying in 'connecting' while
   * retries fail is not a transition: a new failure reason is logged at debug, and only once.
   */
  private transition(next: LinkState, reason: string): void {
    const previous = this.stateValue;
    if (previous === next) {
      if (reason !== this.lastLoggedReason) this.log.debug({ state: next, reason }, 'replica link still ' + next);
      this.lastLoggedReason = reason;
      return;
    }
    this.stateValue = next;
    this.lastLoggedReason = reason;
    // A replica that refuses every attempt for the same reason is reported once, not per retry.
    const repeatedLoss = next === 'connecting' && reason === this.lastLossReason;
    if (next === 'connecting') this.lastLossReason = reason;
    if (next === 'streaming') this.lastLossReason = '';
    const level = next === 'failed' || next === 'behind' ? 'warn' : next === 'handshake' || repeatedLoss ? 'debug' : 'info';
    this.log[level]({ from: previous, to: next, reason }, 'replica link state');
    this.emit('state', next, reason);
  }
}
