// The replica side of replication: a TCP server that takes one connection per (volume,
// primary), authenticates it, and applies the primary's mutations to the local replica.
//
// How it works.
//   hello     The peer must send HELLO first; a frame before it, or a HELLO from another
//             cluster, ends the connection. Until the peer is proven, frames are held to
//             1 KiB bodies and no payload, and the whole handshake to handshakeTimeoutMs.
//   auth      We answer CHALLENGE (our node id, a fresh nonce); the peer must answer AUTH
//             with the right HMAC (session.ts), compared in constant time. Only then are
//             the volume and the generation looked at: an unknown volume is refused, a
//             volume uid other than ours is refused (VOLUME_MISMATCH: another volume under
//             this id), a generation below the highest this replica has seen is refused
//             (GENERATION_STALE: fencing). For a session we accept, a uid we lack is
//             adopted, the primary's renumbered seq ranges kept and a higher generation
//             recorded, each durably first, so a restart cannot forget them.
//   streaming WELCOME carries our proof, the seq we have taken in (applied_seq: the primary
//             resumes after it) and the seq we hold durably. Then MUTATION frames come in
//             seq order and each one goes to store.applyReplicated at once, without
//             waiting for the one before to be durable (the store pipelines them and keeps
//             their order). A resend of a seq already taken in is skipped; a seq past the
//             next one is refused (SEQ_GAP with our applied_seq: the primary must catch
//             up). A mutation with a lower generation is refused; a higher one raises ours
//             (queued in the store before the mutation, so it is durable before the ack).
//             The frame decoder has already verified the payload CRC: the data the store
//             writes is the data the primary sent (end-to-end check).
//   acks      Completions arrive out of order; durableSeq advances over the contiguous run
//             of completed seqs and one ACK per event-loop turn carries the latest value
//             (coalesced; none while the socket's write buffer is full).
//   bounds    Each connection holds at most maxInFlightBytes / maxInFlightMutations of
//             mutations taken in but not yet durable; beyond that it stops reading the
//             socket until half has drained, which stalls the primary through TCP.
//
//   repair    Once streaming, either side may send READ_BLOCKS for blocks its store found
//             damaged (blocks.ts). We answer the primary's from our store if durable up to
//             its min_seq; the primary answers ours (fetchFromPrimary) from its store.
//
//   resync    RESYNC_BEGIN (only while streaming) hands the session to a ResyncTarget
//             (resync-target.ts) until it answers RESYNC_DONE; no MUTATION meanwhile. A
//             store flagged resyncing says so in WELCOME (seqs 0) and refuses MUTATION.
//
// Every refusal sends ERROR with a code, is counted in stats.refused, is logged once and
// closes only that connection. A refused mutation changes nothing in the store.
//
// Per-volume state (taken-in and durable seqs, pending applies) outlives a connection: the
// primary may reconnect while mutations of the old connection are still being applied, and
// their completions then go out as ACKs on the new one. A newer authenticated session for a
// volume supersedes the older one. A store given to addVolume must be idle (just opened).
import net from 'node:net';
import { BrickdError, isBrickdError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Mutation } from '../store/mutations.js';
import { MAX_BODY_BYTES, MAX_PAYLOAD_BYTES } from '../wire/frames.js';
import type { AuthMessage, HelloMessage, MutationMessage, ReplicationMessage, ResyncBeginMessage } from '../wire/replication.js';
import { BlockRequests, BlockResponder, type BlockSource } from './blocks.js';
import { ResyncTarget, type ResyncTargetStore } from './resync-target.js';
import { checkSecret, FEATURES, FramedSocket, macMatches, newNonce, sessionMac, sharedFeatures, withoutCode, type WireErrorCode } from './session.js';
import { ContiguousSeq } from '../store/contiguous.js';
import type { RenumberedRange } from '../store/renumbered.js';
import { boundedSuspects, hasSuspects, type Suspects } from '../store/activity.js';

/** What the server needs of a replica store (ReplicaStore has it). */
export interface ReplicaTarget extends ResyncTargetStore, BlockSource {
  readonly volumeId: string;
  readonly appliedSeq: bigint;
  readonly durableSeq: bigint;
  readonly manifest: { readonly generation: number; readonly blockSize: number };
  /** Must not keep a write's `data` once the promise settles: the server reuses its memory. */
  applyReplicated(seq: bigint, mutation: Mutation, crc?: number): Promise<void>;
  raiseGeneration(generation: number): Promise<void>;
  /** The volume's incarnation, if this replica has one. */
  readonly volumeUid: string | undefined;
  /** Take the primary's incarnation if we have none; VOLUME_MISMATCH if we hold another. */
  adoptVolumeUid(uid: string): Promise<void>;
  /** Keep the primary's renumbered seq ranges (store/renumbered.ts), durably. */
  adoptRenumbered(ranges: readonly RenumberedRange[]): Promise<void>;
  /** The generation that made `seq` here, if known (store/generations.ts). */
  generationAt(seq: bigint): number | undefined;
  /** Where an unclean stop may have left mutations the log lacks (store/activity.ts). */
  readonly suspects: Readonly<Suspects>;
  /** A completed resync compared them: let them go. */
  forgetSuspects(): void;
}

export interface ReplicaServerOptions {
  clusterId: string;
  /** This node's id (sent in CHALLENGE, part of both proofs). */
  nodeId: string;
  /** The cluster's shared replication secret (at least 16 bytes). */
  secret: Buffer;
  log?: Logger;
  /** Per connection: payload bytes taken in and not yet durable before reading pauses (default 32 MiB). */
  maxInFlightBytes?: number;
  /** Per connection: mutations taken in and not yet durable before reading pauses (default 4096). */
  maxInFlightMutations?: number;
  /** Largest payload accepted from an authenticated primary (default and maximum 16 MiB). */
  maxPayloadBytes?: number;
  handshakeTimeoutMs?: number;
  /** A connection with no frame for this long is closed (the primary pings; default 30 s). */
  idleTimeoutMs?: number;
  maxConnections?: number;
  /** Features offered in CHALLENGE (default FEATURES; tests offer fewer to act as an older agent). */
  features?: readonly string[];
}

export interface ReplicaServerStats {
  connections: number;
  activeConnections: number;
  sessions: number;
  mutations: number;
  payloadBytes: number;
  duplicates: number;
  acks: number;
  pauses: number;
  /** Resyncs begun (RESYNC_BEGIN accepted) and completed (RESYNC_DONE sent). */
  resyncs: number;
  resyncsCompleted: number;
  /** Repair reads: READ_BLOCKS answered for primaries (with bytes or a code), and asked of them. */
  blockReadsServed: number;
  blockReadsRequested: number;
  /** Refusals by the ERROR code sent. */
  refused: Partial<Record<WireErrorCode, number>>;
}

const HANDSHAKE_LIMITS = { maxBodyBytes: 1024, maxPayloadBytes: 0 };
/** Rough per-mutation overhead counted against maxInFlightBytes besides the payload. */
const MUTATION_OVERHEAD_BYTES = 256;

/** One replica store served to primaries, across connections. */
class VolumeState {
  acceptedSeq: bigint;
  /**
   * The generation that made acceptedSeq (reported in WELCOME), if known. A mutation is
   * accepted at volume.generation, and the store records the generation in force when the
   * mutation takes its seq: a raise is queued in the store ahead of every mutation accepted
   * after it, so the two agree.
   */
  acceptedGeneration: number | undefined;
  generation: number;
  session: ServerSession | undefined;
  /** An apply failed: the next session realigns acceptedSeq once every pending apply settles. */
  failed = false;
  readonly pending = new Set<Promise<void>>();
  /** Applies complete out of order; durableSeq is the contiguous run of completed ones. */
  private readonly durable: ContiguousSeq;

  constructor(readonly store: ReplicaTarget) {
    this.acceptedSeq = store.appliedSeq;
    this.acceptedGeneration = store.generationAt(store.appliedSeq);
    this.durable = new ContiguousSeq(store.durableSeq < store.appliedSeq ? store.durableSeq : store.appliedSeq);
    this.generation = store.manifest.generation;
  }

  get durableSeq(): bigint {
    return this.durable.value;
  }

  /** A resync ended at s0: the store's seqs start again from there. */
  resetTo(seq: bigint): void {
    this.durable.reset(seq);
    this.acceptedSeq = seq;
    this.acceptedGeneration = this.store.generationAt(seq);
  }

  /** Record a completed apply; true if durableSeq advanced. */
  complete(seq: bigint): boolean {
    return this.durable.complete(seq);
  }

  /** After a failure: wait for every apply in flight, then take in again from where the store is. */
  async realign(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    this.durable.reset(this.durableSeq);
    this.acceptedSeq = this.durableSeq;
    this.acceptedGeneration = this.store.generationAt(this.acceptedSeq);
    this.failed = false;
  }

  track(p: Promise<void>): void {
    this.pending.add(p);
    void p.then(
      () => this.pending.delete(p),
      () => this.pending.delete(p),
    );
  }
}

// 'resync': between an accepted RESYNC_BEGIN and RESYNC_DONE (resync-target.ts); no MUTATION.
type SessionState = 'hello' | 'auth' | 'welcoming' | 'streaming' | 'resync' | 'closed';

class ServerSession {
  private state: SessionState = 'hello';
  private readonly conn: FramedSocket;
  private hello: HelloMessage | undefined;
  /** Features both ends offered (session.ts FEATURES): what this session may send. */
  private sharedFeatures = new Set<string>();
  /** This session's WELCOME told the primary the replica's suspects (replica-suspects). */
  private suspectsTold = false;
  private replicaNonce: Buffer | undefined;
  private volume: VolumeState | undefined;
  private inFlightBytes = 0;
  private inFlightMutations = 0;
  private ackScheduled = false;
  private ackAwaitsDrain = false;
  private lastAckSeq = -1n;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private resync: ResyncTarget | undefined;
  private readonly blockRequests: BlockRequests;
  private readonly blockResponder: BlockResponder;
  private log: Logger;

  constructor(
    private readonly server: ReplicaServer,
    socket: net.Socket,
    private readonly opts: Required<Omit<ReplicaServerOptions, 'log'>>,
    log: Logger,
  ) {
    this.conn = new FramedSocket(socket, HANDSHAKE_LIMITS, {
      onMessage: (m) => this.onMessage(m),
      onBadFrame: (err) => this.refuse(err.details.reason === 'payload-crc' ? 'CHECKSUM_MISMATCH' : 'BAD_FRAME', withoutCode(err)),
      onClose: () => this.onClose(),
    });
    this.log = log.child({ peer: this.conn.remote });
    this.blockRequests = new BlockRequests((m) => this.conn.send(m), `primary at ${this.conn.remote}`);
    this.blockResponder = new BlockResponder((m) => {
      this.server.stats.blockReadsServed++;
      this.conn.send(m);
    });
    this.handshakeTimer = setTimeout(() => this.refuse('TIMEOUT', `no authenticated HELLO within ${opts.handshakeTimeoutMs} ms`), opts.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    socket.setTimeout(opts.idleTimeoutMs, () => this.refuse('TIMEOUT', `no frame for ${opts.idleTimeoutMs} ms`));
  }

  get volumeId(): string | undefined {
    return this.volume?.store.volumeId;
  }

  /** End this session with an ERROR (counted, logged once). */
  refuse(code: WireErrorCode, message: string, extra: { generation?: number; appliedSeq?: bigint } = {}): void {
    if (this.state === 'closed' || this.conn.closed) return;
    this.server.countRefusal(code);
    this.log.warn({ code, volume: this.hello?.volumeId, reason: message }, 'refuse replication peer');
    this.conn.fail(code, message, extra);
    this.close();
  }

  private close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.resync?.cancel();
    this.blockRequests.cancel('the session ended');
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.volume?.session === this) this.volume.session = undefined;
  }

  private onClose(): void {
    this.close();
    this.server.forget(this);
  }

  private onMessage(m: ReplicationMessage): void {
    if (this.state === 'closed') return;
    switch (m.type) {
      case 'HELLO':
        if (this.state !== 'hello') return this.refuse('PROTOCOL_VIOLATION', `HELLO in state ${this.state}`);
        return this.onHello(m);
      case 'AUTH':
        if (this.state !== 'auth') return this.refuse('PROTOCOL_VIOLATION', `AUTH in state ${this.state}`);
        return void this.onAuth(m);
      case 'MUTATION':
        if (this.state !== 'streaming') return this.refuse('PROTOCOL_VIOLATION', `MUTATION in state ${this.state}`);
        return this.onMutation(m);
      case 'RESYNC_BEGIN':
        if (this.state !== 'streaming') return this.refuse('PROTOCOL_VIOLATION', `RESYNC_BEGIN in state ${this.state}`);
        return this.onResyncBegin(m);
      case 'RESYNC_ENTRY':
      case 'RESYNC_SUMS':
      case 'RESYNC_DATA':
      case 'RESYNC_END':
        if (this.state !== 'resync') return this.refuse('PROTOCOL_VIOLATION', `${m.type} in state ${this.state}`);
        return this.resync!.onMessage(m);
      case 'READ_BLOCKS': {
        if (this.state !== 'streaming' && this.state !== 'resync') return this.refuse('PROTOCOL_VIOLATION', `READ_BLOCKS in state ${this.state}`);
        const volume = this.volume!;
        // Mid-resync our tree is partial: answered, but never with bytes.
        const unavailable = this.state === 'resync' || volume.store.resyncing ? 'this replica is mid-resync' : undefined;
        const violation = this.blockResponder.respond(m, volume.store, () => volume.durableSeq, unavailable);
        return violation === undefined ? undefined : this.refuse('PROTOCOL_VIOLATION', violation);
      }
      case 'BLOCKS': {
        if (this.state !== 'streaming' && this.state !== 'resync') return this.refuse('PROTOCOL_VIOLATION', `BLOCKS in state ${this.state}`);
        const violation = this.blockRequests.answer(m);
        return violation === undefined ? undefined : this.refuse('PROTOCOL_VIOLATION', violation);
      }
      case 'PING':
        if (this.state !== 'streaming' && this.state !== 'resync') return this.refuse('PROTOCOL_VIOLATION', `PING in state ${this.state}`);
        this.conn.send({ type: 'PONG', id: m.id });
        return;
      case 'ERROR':
        this.log.info({ code: m.code, reason: m.message }, 'primary ended the session');
        this.conn.destroy();
        return this.close();
      default:
        return this.refuse('PROTOCOL_VIOLATION', `${m.type} is not sent to a replica`);
    }
  }

  private onHello(hello: HelloMessage): void {
    if (hello.clusterId !== this.opts.clusterId) {
      return this.refuse('CLUSTER_MISMATCH', `this replica belongs to cluster ${this.opts.clusterId}, not ${hello.clusterId}`);
    }
    this.hello = hello;
    this.replicaNonce = newNonce();
    this.state = 'auth';
    this.sharedFeatures = sharedFeatures(this.opts.features, hello.features);
    this.conn.send({ type: 'CHALLENGE', nodeId: this.opts.nodeId, nonce: this.replicaNonce, features: [...this.opts.features] });
  }

  private async onAuth({ mac, volumeUid, renumbered }: AuthMessage): Promise<void> {
    const hello = this.hello!;
    const transcript = {
      clusterId: hello.clusterId,
      primaryNodeId: hello.nodeId,
      replicaNodeId: this.opts.nodeId,
      volumeId: hello.volumeId,
      generation: hello.generation,
      primaryNonce: hello.nonce,
      replicaNonce: this.replicaNonce!,
    };
    if (!macMatches(mac, sessionMac(this.opts.secret, 'primary', transcript))) {
      return this.refuse('UNAUTHENTICATED', 'the AUTH proof does not match the cluster secret');
    }
    this.log = this.log.child({ volume: hello.volumeId, primary: hello.nodeId });
    const volume = this.server.volumeState(hello.volumeId);
    if (!volume) return this.refuse('VOLUME_NOT_FOUND', `no replica of volume ${hello.volumeId} here`);
    // Another incarnation of the volume id: refused before anything else is looked at or
    // recorded (its generation numbers are another volume's).
    const held = volume.store.volumeUid;
    if (volumeUid !== undefined && held !== undefined && volumeUid !== held) return this.refuseMismatch(hello, held, volumeUid);
    if (hello.generation < volume.generation) {
      return this.refuse('GENERATION_STALE', `generation ${hello.generation} is below ${volume.generation}, the highest this replica has seen`, { generation: volume.generation });
    }
    this.state = 'welcoming';
    try {
      // A replica without an incarnation takes the primary's, durably, before it accepts a
      // single mutation under it (and only from a session it is about to accept).
      if (volumeUid !== undefined && held === undefined) await volume.store.adoptVolumeUid(volumeUid);
    } catch (err) {
      if (isBrickdError(err) && err.code === 'VOLUME_MISMATCH') return this.refuseMismatch(hello, volume.store.volumeUid ?? '?', volumeUid!);
      return this.refuse('APPLY_FAILED', `cannot record the volume uid ${volumeUid}: ${(err as Error).message}`);
    }
    try {
      // The primary's renumbered seqs: kept before WELCOME, so this replica, promoted
      // later, resyncs the replicas that may hold lost mutations as the primary would.
      if (renumbered) await volume.store.adoptRenumbered(renumbered);
      if (hello.generation > volume.generation) {
        volume.generation = hello.generation;
        await volume.store.raiseGeneration(hello.generation);
      }
      if (volume.failed) await volume.realign();
    } catch (err) {
      return this.refuse('APPLY_FAILED', `cannot record generation ${hello.generation} or the primary's renumbered seqs: ${(err as Error).message}`);
    }
    if (this.state !== 'welcoming') return; // closed while we waited
    // A generation may have been raised by another session while we waited.
    if (hello.generation < volume.generation) {
      return this.refuse('GENERATION_STALE', `generation ${hello.generation} is below ${volume.generation}`, { generation: volume.generation });
    }
    if (volume.session && volume.session !== this) volume.session.refuse('SUPERSEDED', `a newer session from ${hello.nodeId} took over volume ${hello.volumeId}`);
    volume.session = this;
    this.volume = volume;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.conn.decoder.setLimits({ maxBodyBytes: MAX_BODY_BYTES, maxPayloadBytes: this.opts.maxPayloadBytes });
    this.state = 'streaming';
    this.server.countSession();
    const proof = sessionMac(this.opts.secret, 'replica', transcript);
    // Where an unclean stop may have left this tree holding mutations its log lacks: a
    // primary told so resyncs it, comparing them (docs/replication.md, "After an unclean stop").
    const told = this.sharedFeatures.has('replica-suspects') && hasSuspects(volume.store.suspects) ? boundedSuspects(volume.store.suspects) : undefined;
    this.suspectsTold = told !== undefined;
    const suspects = told ? { suspects: told } : {};
    if (volume.store.resyncing) {
      // A resync was cut short (here or before a restart): our seqs mean nothing until one
      // completes. Where an incremental one started from lets its primary resume it so.
      const resyncBase = this.sharedFeatures.has('resync-resume') ? volume.store.resyncBase : undefined;
      this.conn.send({ type: 'WELCOME', mac: proof, appliedSeq: 0n, durableSeq: 0n, generation: volume.generation, resyncing: true, ...(resyncBase ? { resyncBase } : {}), ...suspects });
    } else {
      const appliedGeneration = this.sharedFeatures.has('generation-history') ? volume.acceptedGeneration : undefined;
      this.conn.send({
        type: 'WELCOME',
        mac: proof,
        appliedSeq: volume.acceptedSeq,
        durableSeq: volume.durableSeq,
        generation: volume.generation,
        ...(appliedGeneration !== undefined ? { appliedGeneration } : {}),
        ...suspects,
      });
    }
    this.lastAckSeq = volume.durableSeq;
    this.log.info({ appliedSeq: String(volume.acceptedSeq), durableSeq: String(volume.durableSeq), generation: volume.generation, resyncing: volume.store.resyncing }, 'accept replication session');
  }

  private refuseMismatch(hello: HelloMessage, held: string, offered: string): void {
    this.refuse(
      'VOLUME_MISMATCH',
      `this replica of volume ${hello.volumeId} is incarnation ${held}; primary ${hello.nodeId} serves incarnation ${offered}: two volumes under one id, nothing replicated (delete the stale replica to rebuild it)`,
    );
  }

  /**
   * Start rebuilding this replica from the primary's tree at s0. The store work waits for
   * every apply still in flight (of this or an earlier session) before it drops the log.
   */
  private onResyncBegin(m: ResyncBeginMessage): void {
    const volume = this.volume!;
    if (m.generation < volume.generation) {
      return this.refuse('GENERATION_STALE', `RESYNC_BEGIN has generation ${m.generation}, below ${volume.generation}`, { generation: volume.generation });
    }
    if (m.generation > volume.generation) return this.refuse('PROTOCOL_VIOLATION', `RESYNC_BEGIN generation ${m.generation} is not the session's ${volume.generation}`);
    this.state = 'resync';
    this.server.stats.resyncs++;
    const ready = Promise.allSettled([...volume.pending]).then(() => undefined);
    // Once it completes, this resync has compared the suspects if it compares every block or
    // its primary was told them (an incremental one from a primary that was not told
    // compares only what that primary changed).
    const comparesSuspects = m.incrementalFrom === undefined || this.suspectsTold;
    this.resync = new ResyncTarget(
      volume.store,
      m.s0,
      {
        send: (message) => this.conn.send(message),
        refuse: (code, message) => this.refuse(code, message),
        pause: () => this.conn.pause('resync'),
        resume: () => this.conn.resume('resync'),
        track: (work) => volume.track(work),
        done: (s0) => {
          if (this.state !== 'resync') return;
          volume.resetTo(s0);
          if (comparesSuspects) volume.store.forgetSuspects();
          this.lastAckSeq = s0;
          this.resync = undefined;
          this.state = 'streaming';
          this.server.stats.resyncsCompleted++;
        },
      },
      this.log,
      ready,
      m.history,
      m.incrementalFrom === undefined ? undefined : { seq: m.incrementalFrom, generation: m.generation },
    );
    this.log.warn({ s0: String(m.s0) }, 'resync requested by the primary');
  }

  private onMutation(m: MutationMessage): void {
    const volume = this.volume!;
    if (m.generation < volume.generation) {
      return this.refuse('GENERATION_STALE', `mutation ${m.seq} has generation ${m.generation}, below ${volume.generation}`, { generation: volume.generation });
    }
    if (volume.failed) return this.refuse('APPLY_FAILED', 'an earlier mutation failed; reconnect to realign');
    if (volume.store.resyncing) return this.refuse('PROTOCOL_VIOLATION', 'this replica is mid-resync (it said so in WELCOME): MUTATION before a completed resync');
    if (m.seq <= volume.acceptedSeq) {
      // A resend after a reconnect: already taken in (and durable, or on its way).
      this.server.stats.duplicates++;
      return;
    }
    if (m.seq !== volume.acceptedSeq + 1n) {
      return this.refuse('SEQ_GAP', `expected seq ${volume.acceptedSeq + 1n}, got ${m.seq}`, { appliedSeq: volume.acceptedSeq });
    }
    const store = volume.store;
    if (m.generation > volume.generation) {
      // Queued in the store ahead of the mutation (its mutex is FIFO): durable before the ack.
      volume.generation = m.generation;
      const raising = store.raiseGeneration(m.generation);
      volume.track(raising);
      raising.catch((err: unknown) => this.applyFailed(volume, m.seq, err));
    }
    volume.acceptedSeq = m.seq;
    volume.acceptedGeneration = volume.generation;
    const bytes = (m.mutation.op === 'write' ? m.mutation.data.length : 0) + MUTATION_OVERHEAD_BYTES;
    this.inFlightBytes += bytes;
    this.inFlightMutations++;
    this.server.stats.mutations++;
    this.server.stats.payloadBytes += bytes - MUTATION_OVERHEAD_BYTES;
    const applying = store.applyReplicated(m.seq, m.mutation);
    volume.track(applying);
    // Once the apply settles the store has written the data (log and data file) and keeps no
    // reference to it: the decoder may fill its memory with a later payload. (A store only
    // passes it on through onMutation when it is a primary, and a volume is never served
    // here and a primary at once: the manager removes it from this server, waiting for its
    // applies, before it attaches a primary.)
    const decoder = this.conn.decoder;
    const data = m.mutation.op === 'write' ? m.mutation.data : undefined;
    applying.then(
      () => {
        if (data) decoder.recycle(data);
        this.release(bytes);
        if (volume.complete(m.seq)) volume.session?.scheduleAck();
      },
      (err: unknown) => {
        if (data) decoder.recycle(data);
        this.release(bytes);
        this.applyFailed(volume, m.seq, err);
      },
    );
    if (this.inFlightBytes > this.opts.maxInFlightBytes || this.inFlightMutations > this.opts.maxInFlightMutations) {
      if (!this.conn.isPaused) this.server.stats.pauses++;
      this.conn.pause('mutations');
    }
  }

  private applyFailed(volume: VolumeState, seq: bigint, err: unknown): void {
    if (volume.failed) return; // the first failure already ended the session
    volume.failed = true;
    const session = volume.session;
    const message = `seq ${seq}: ${(err as Error).message}`;
    if (!session) {
      this.log.warn({ err, seq: String(seq) }, 'replicated mutation failed');
      return;
    }
    if (isBrickdError(err, 'SEQ_GAP')) session.refuse('SEQ_GAP', message, { appliedSeq: volume.durableSeq });
    else if (isBrickdError(err, 'CHECKSUM_MISMATCH')) session.refuse('CHECKSUM_MISMATCH', message);
    else session.refuse('APPLY_FAILED', message);
  }

  private release(bytes: number): void {
    this.inFlightBytes -= bytes;
    this.inFlightMutations--;
    if (this.inFlightBytes <= this.opts.maxInFlightBytes / 2 && this.inFlightMutations <= this.opts.maxInFlightMutations / 2) this.conn.resume('mutations');
  }

  /** Send one ACK with the latest durable seq at the end of this event-loop turn. */
  scheduleAck(): void {
    if (this.ackScheduled || this.state !== 'streaming') return;
    this.ackScheduled = true;
    setImmediate(() => {
      this.ackScheduled = false;
      const volume = this.volume;
      if (!volume || this.state !== 'streaming' || volume.durableSeq <= this.lastAckSeq) return;
      if (this.conn.congested) {
        // The primary is not reading: one ACK with the latest value once it drains.
        if (!this.ackAwaitsDrain) {
          this.ackAwaitsDrain = true;
          this.conn.socket.once('drain', () => {
            this.ackAwaitsDrain = false;
            this.scheduleAck();
          });
        }
        return;
      }
      this.lastAckSeq = volume.durableSeq;
      this.server.stats.acks++;
      this.conn.send({ type: 'ACK', durableSeq: volume.durableSeq });
    });
  }

  /** Ask the primary for verified bytes of a block our store found damaged. */
  fetchBlocks(fid: string, offset: number, length: number): Promise<Buffer> {
    if (this.state !== 'streaming') return Promise.reject(new BrickdError('REPAIR_UNAVAILABLE', `the session with the primary is ${this.state}`));
    this.server.stats.blockReadsRequested++;
    // min_seq 0: the primary's copy is at least as new as ours (it sent us everything we hold).
    return this.blockRequests.request(fid, offset, length, 0n);
  }

  shutdown(): void {
    this.refuse('SHUTTING_DOWN', 'the replica is closing');
  }
}

export class ReplicaServer {
  readonly stats: ReplicaServerStats = { connections: 0, activeConnections: 0, sessions: 0, mutations: 0, payloadBytes: 0, duplicates: 0, acks: 0, pauses: 0, resyncs: 0, resyncsCompleted: 0, blockReadsServed: 0, blockReadsRequested: 0, refused: {} };
  private readonly server: net.Server;
  private readonly volumes = new Map<string, VolumeState>();
  private readonly sessions = new Set<ServerSession>();
  private readonly opts: Required<Omit<ReplicaServerOptions, 'log'>>;
  private readonly log: Logger;

  constructor(options: ReplicaServerOptions) {
    checkSecret(options.secret);
    for (const name of ['clusterId', 'nodeId'] as const) {
      if (typeof options[name] !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(options[name])) throw new TypeError(`${name} must be an id ([A-Za-z0-9._-], up to 128)`);
    }
    this.opts = {
      clusterId: options.clusterId,
      nodeId: options.nodeId,
      secret: options.secret,
      maxInFlightBytes: positive('maxInFlightBytes', options.maxInFlightBytes ?? 32 * 2 ** 20),
      maxInFlightMutations: positive('maxInFlightMutations', options.maxInFlightMutations ?? 4096),
      maxPayloadBytes: positive('maxPayloadBytes', options.maxPayloadBytes ?? MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES),
      handshakeTimeoutMs: positive('handshakeTimeoutMs', options.handshakeTimeoutMs ?? 5000),
      idleTimeoutMs: positive('idleTimeoutMs', options.idleTimeoutMs ?? 30_000),
      maxConnections: positive('maxConnections', options.maxConnections ?? 256),
      features: options.features ?? FEATURES,
    };
    this.log = (options.log ?? silentLogger).child({ node: options.nodeId, component: 'replica-server' });
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.maxConnections = this.opts.maxConnections;
  }

  /** Serve a replica store (idle, just opened) to primaries. */
  addVolume(store: ReplicaTarget): void {
    if (this.volumes.has(store.volumeId)) throw new BrickdError('VOLUME_EXISTS', `volume ${store.volumeId} is already served`, { volume: store.volumeId });
    this.volumes.set(store.volumeId, new VolumeState(store));
  }

  /** Stop serving a volume: its session ends; resolves once its applies in flight settle. */
  async removeVolume(volumeId: string): Promise<void> {
    const volume = this.volumes.get(volumeId);
    if (!volume) return;
    this.volumes.delete(volumeId);
    volume.session?.shutdown();
    while (volume.pending.size > 0) await Promise.allSettled([...volume.pending]);
  }

  /** Where a volume stands: the seq taken in, the seq durable, the highest generation seen. */
  volumeStatus(volumeId: string): { appliedSeq: bigint; durableSeq: bigint; generation: number; connected: boolean } | undefined {
    const v = this.volumes.get(volumeId);
    return v && { appliedSeq: v.acceptedSeq, durableSeq: v.durableSeq, generation: v.generation, connected: v.session !== undefined };
  }

  /**
   * The store's repair hook on a replica: the verified bytes of a damaged block from the
   * primary streaming this volume to us now. REPAIR_UNAVAILABLE when none is (or this
   * replica is mid-resync: the resync rewrites it anyway), TIMEOUT when it does not answer.
   */
  fetchFromPrimary(volumeId: string, fid: string, offset: number, length: number): Promise<Buffer> {
    const volume = this.volumes.get(volumeId);
    if (!volume?.session) return Promise.reject(new BrickdError('REPAIR_UNAVAILABLE', `no primary is connected for volume ${volumeId}`, { volume: volumeId }));
    if (volume.store.resyncing) return Promise.reject(new BrickdError('REPAIR_UNAVAILABLE', `volume ${volumeId} is mid-resync here`, { volume: volumeId }));
    return volume.session.fetchBlocks(fid, offset, length);
  }

  listen(port = 0, host = '127.0.0.1'): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const address = this.server.address() as net.AddressInfo;
        this.log.info({ address: address.address, port: address.port }, 'listen for replication');
        resolve(address);
      });
    });
  }

  get address(): net.AddressInfo | undefined {
    return (this.server.address() as net.AddressInfo | null) ?? undefined;
  }

  /** Stop listening, end every session, and wait for the applies in flight. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) session.shutdown();
    for (const volume of this.volumes.values()) while (volume.pending.size > 0) await Promise.allSettled([...volume.pending]);
    await closed;
  }

  // ── for sessions ────────────────────────────────────────────────────────────────────

  /** @internal */
  volumeState(volumeId: string): VolumeState | undefined {
    return this.volumes.get(volumeId);
  }

  /** @internal */
  countRefusal(code: WireErrorCode): void {
    this.stats.refused[code] = (this.stats.refused[code] ?? 0) + 1;
  }

  /** @internal */
  countSession(): void {
    this.stats.sessions++;
  }

  /** @internal */
  forget(session: ServerSession): void {
    if (this.sessions.delete(session)) this.stats.activeConnections--;
  }

  private accept(socket: net.Socket): void {
    this.stats.connections++;
    this.stats.activeConnections++;
    this.sessions.add(new ServerSession(this, socket, this.opts, this.log));
  }
}

function positive(name: string, value: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || value <= 0 || value > max) throw new RangeError(`${name} must be an integer in [1, ${max}], got ${value}`);
  return value;
}
