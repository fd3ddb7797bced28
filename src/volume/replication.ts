// A primary's replication of one volume: the retained queue fed by the store's onMutation,
// the record of changed regions the manager keeps (incremental resyncs, repair's min_seq), one
// ReplicaLink per peer, and the quorum tracker that decides when a mutation may be
// acknowledged. Built by the volume manager when a replica becomes primary with peers, torn
// down (close) when its settings change or the volume closes.
//
// Ordering: the manager creates and closes this object inside store.atSeqBoundary, so the
// queue starts exactly at the store's last seq and sees every later mutation once, in order.
// A write waiting for its quorum when the object closes is rejected with QUORUM_LOST: it was
// never acknowledged, which is always safe (the caller may retry it).
import { BrickdError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ChangedRegions } from '../replication/changed.js';
import { ReplicaLink, type LinkState, type ReplicaLinkOptions } from '../replication/link.js';
import { QuorumTracker } from '../replication/quorum.js';
import { RetainedQueue } from '../replication/retained.js';
import type { ResyncProgress, ResyncSourceStore } from '../replication/resync-source.js';
import { fetchFromPeers, type BlockSource } from '../replication/blocks.js';
import type { Mutation } from '../store/mutations.js';
import type { PeerConfig } from './config.js';

/** Who this node is to its peers (from the agent's configuration). */
export interface ReplicationIdentity {
  clusterId: string;
  nodeId: string;
  secret: Buffer;
}

export interface PrimaryReplicationOptions {
  identity: ReplicationIdentity;
  volumeId: string;
  /** The volume's incarnation (the store's volumeUid), if it has one: checked by every replica. */
  volumeUid?: string;
  generation: number;
  peers: readonly PeerConfig[];
  /** Replicas including this one; 0 = a majority of (peers + 1). */
  writeQuorum: number;
  /** The store's last seq (store.atSeqBoundary): the queue's first push is startSeq + 1. */
  startSeq: bigint;
  /** How long a write may wait for its quorum before QUORUM_LOST. */
  quorumTimeoutMs: number;
  log: Logger;
  /** Told of every transition of a link to a peer (events for orchestrators). */
  onPeerState?: (nodeId: string, state: LinkState, reason: string) => void;
  /** Test and bench knobs for the links (window sizes, backoff). */
  link?: Partial<ReplicaLinkOptions>;
  /** The primary's store: replicas the queue cannot catch up are resynced from it. */
  resync?: ResyncSourceStore;
  /** The primary's store: the peers' repair reads are answered from it. */
  blocks?: BlockSource;
  /** Resync data bytes per second per replica being resynced (0 or absent: unthrottled). */
  resyncRateBytesPerSec?: number;
  /** Per peer, the highest seq an earlier attach of this process sent it (sentThrough): see ReplicaLinkOptions.sentEarlier. */
  sentEarlier?: ReadonlyMap<string, bigint>;
  /**
   * The store's record of changed regions, through exactly startSeq. The manager keeps and
   * feeds it (every mutation the store takes, whatever the role); this object only reads it.
   */
  changes: ChangedRegions;
}

export interface PeerState {
  nodeId: string;
  address: string;
  state: LinkState;
  ackedSeq: bigint;
  /** Mutations the primary has that this replica does not hold durably. */
  lagSeq: bigint;
  /** Bytes of the mutation frames the peer lacks (those the retained queue still holds). */
  lagBytes: number;
  /**
   * Why the link is in its state: while it is not streaming, the last error (a refusal, a
   * refused connect...) if there is one, else the reason of its last transition.
   */
  reason: string;
  /** Mutation frames and their bytes sent on this link since the primary attached. */
  mutationsSent: number;
  bytesSent: number;
  /**
   * Resyncs started on this link since the primary attached; of those that took their
   * snapshot (where the kind is decided), how many were incremental and how many full.
   */
  resyncs: number;
  incrementalResyncs: number;
  fullResyncs: number;
  /** The current or last resync of this replica, if any. */
  resync?: Readonly<ResyncProgress>;
}

/** W for `replicas` replicas when the volume says 0: a strict majority. */
export function effectiveWriteQuorum(writeQuorum: number, replicas: number): number {
  return writeQuorum > 0 ? writeQuorum : Math.floor(replicas / 2) + 1;
}

/** "10.0.0.5:7400" or "[fd00::5]:7400" → host and port (the control API checked the shape). */
export function splitPeerAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) throw new BrickdError('INVALID_ARGUMENT', `peer address ${JSON.stringify(address)} is not host:port`);
  return { host: m[1] ?? m[2]!, port };
}

export class PrimaryReplication {
  readonly queue: RetainedQueue;
  /** The store's record of changed regions (fed by the manager): incremental resyncs, repair's min_seq. */
  readonly changes: ChangedRegions;
  readonly quorum: QuorumTracker;
  /** Writes that waited past the quorum timeout (QUORUM_LOST), since this object was made. */
  quorumLost = 0;
  private readonly links = new Map<string, { link: ReplicaLink; peer: PeerConfig; reason: string }>();
  private closed = false;
  private readonly log: Logger;

  constructor(options: PrimaryReplicationOptions) {
    const log = options.log.child({ volume: options.volumeId });
    this.log = log;
    this.queue = new RetainedQueue({ startSeq: options.startSeq, generation: options.generation, log });
    if (options.changes.recordedThrough !== options.startSeq) {
      throw new RangeError(`the record of changed regions ends at seq ${options.changes.recordedThrough}, the queue starts at ${options.startSeq}`);
    }
    this.changes = options.changes;
    this.quorum = new QuorumTracker({
      writeQuorum: effectiveWriteQuorum(options.writeQuorum, options.peers.length + 1),
      timeoutMs: options.quorumTimeoutMs,
    });
    for (const peer of options.peers) {
      const { host, port } = splitPeerAddress(peer.address);
      const link = new ReplicaLink({
        host,
        port,
        name: peer.nodeId,
        replicaNodeId: peer.nodeId,
        clusterId: options.identity.clusterId,
        nodeId: options.identity.nodeId,
        secret: options.identity.secret,
        volumeId: options.volumeId,
        ...(options.volumeUid !== undefined ? { volumeUid: options.volumeUid } : {}),
        queue: this.queue,
        changes: this.changes,
        log,
        ...(options.resync ? { resync: options.resync } : {}),
        ...(options.blocks ? { blocks: options.blocks } : {}),
        resyncRateBytesPerSec: options.resyncRateBytesPerSec ?? 0,
        ...(options.sentEarlier?.has(peer.nodeId) ? { sentEarlier: options.sentEarlier.get(peer.nodeId)! } : {}),
        ...options.link,
      });
      const entry = { link, peer, reason: '' };
      link.on('ack', (seq) => this.quorum.setReplica(peer.nodeId, seq));
      link.on('state', (state, reason) => {
        entry.reason = reason;
        options.onPeerState?.(peer.nodeId, state, reason);
      });
      this.links.set(peer.nodeId, entry);
      link.start();
    }
  }

  /** The store's onMutation (after the manager recorded it): called synchronously in seq order. */
  push(seq: bigint, mutation: Mutation): void {
    if (this.closed) return;
    this.queue.push(seq, mutation);
  }

  /** Resolves once `seq` (durable locally: its store call resolved) is durable on W replicas. */
  waitFor(seq: bigint): Promise<void> {
    return this.quorum.waitFor(seq, true).catch((err: unknown) => {
      if (!this.closed) this.quorumLost++;
      throw err;
    });
  }

  /**
   * Resolves true once every peer whose link is up (handshake or streaming) holds `seq`
   * durably, false at `timeoutMs`. For a clean stop: a peer that is down cannot be waited
   * for, one that is merely slow can be.
   */
  async peersCaughtUp(seq: bigint, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const pending = () => [...this.links.values()].filter(({ link }) => (link.state === 'streaming' || link.state === 'handshake' || link.state === 'resyncing') && link.ackedSeq < seq);
    while (pending().length > 0) {
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return true;
  }

  get writeQuorum(): number {
    return this.quorum.writeQuorum;
  }

  peers(): PeerState[] {
    const last = this.queue.lastSeq;
    return [...this.links.values()].map(({ link, peer, reason }) => ({
      nodeId: peer.nodeId,
      address: peer.address,
      state: link.state,
      ackedSeq: link.ackedSeq,
      lagSeq: last > link.ackedSeq ? last - link.ackedSeq : 0n,
      lagBytes: this.queue.bytesAfter(link.ackedSeq),
      reason: link.state !== 'streaming' && link.lastError ? link.lastError.message : reason,
      mutationsSent: link.stats.mutationsSent,
      bytesSent: link.stats.bytesSent,
      resyncs: link.stats.resyncs,
      incrementalResyncs: link.stats.incrementalResyncs,
      fullResyncs: link.stats.fullResyncs,
      ...(link.resyncProgress ? { resync: link.resyncProgress } : {}),
    }));
  }

  /** Per peer, the highest seq its link sent it (for the next attach of this process). */
  sentThrough(): Map<string, bigint> {
    return new Map([...this.links].map(([nodeId, { link }]) => [nodeId, link.sentThrough]));
  }

  /** Throttle every link's resyncs, the ones running included (0: unthrottled). */
  setResyncRate(bytesPerSec: number): void {
    for (const { link } of this.links.values()) link.setResyncRate(bytesPerSec);
  }

  /**
   * The store's repair hook on a primary: the bytes of a damaged block from a peer that
   * holds them as they are here, peers tried in turn; undefined if none can answer. A peer
   * qualifies once durable up to the last mutation that changed the block's region (the
   * record of changed regions), not up to everything applied: under a steady write load
   * every peer lags the applied seq, but cold blocks were last changed long ago.
   * `appliedSeq` (the store's, when it found the damage) caps it.
   */
  fetchBlocks(fid: string, offset: number, length: number, appliedSeq: bigint): Promise<Buffer | undefined> {
    if (this.closed) return Promise.resolve(undefined);
    const minSeq = this.changes.repairMinSeq(fid, offset, length, appliedSeq);
    return fetchFromPeers([...this.links.values()].map(({ link }) => link), { fid, offset, length, minSeq }, {
      onFailure: (peer, err) => this.log.warn({ peer, fid, offset, err: err.message }, 'repair read refused'),
    });
  }

  /** Stop shipping: links closed, waiting writes rejected (QUORUM_LOST: not acknowledged). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.quorum.close(new BrickdError('QUORUM_LOST', 'replication of this volume was stopped or reconfigured; the write is not acknowledged'));
    await Promise.all([...this.links.values()].map(({ link }) => link.close()));
  }
}
