// The volume replicas on this node: placing them on bricks, opening them at start-up,
// their settings (generation, role, peers), scrubs, and deleting them.
//
// Ownership: this module owns <brick>/volumes/ on every mounted brick and the open
// ReplicaStores in it. Brick placement and lifecycle belong to BrickManager.
//
// Replication follows each replica's role (attach/detach): a primary with peers gets a
// PrimaryReplication (its store's mutations are shipped, its writes wait for the quorum); a
// replica is served to primaries by the agent's ReplicaServer. Any change of role, peers,
// write quorum or generation detaches and attaches again, so the server's fencing state and
// the links' generation always come from the manifest just written; a change of the resync
// rate alone is applied in place.
//
// Every replica keeps a record of the regions its mutations changed (ChangedRegions), fed
// with each mutation the store takes, whatever the role: a primary's links use it to
// resync a replica that fell behind comparing only those regions, and a replica promoted
// after a failover continues the record it kept, so the replicas that lagged it are caught
// up the same way. A resync replaces the tree outside the mutations, so it drops the record
// (a new one starts with the next mutation). The record survives a re-attach, and a restart
// of the agent, crashes included: every checkpoint and a clean close save it to
// .brickd/changes.json, and the next open feeds it what recovery replays (changes-file.ts).
//
// Every mutating method is idempotent in its natural form: creating a replica that exists
// with the same settings returns it, deleting one that is gone reports deleted: false.
// Create and delete run under one mutex so that two retries cannot race each other.
import { randomUUID } from 'node:crypto';
import { readdir, rename, rm, statfs } from 'node:fs/promises';
import path from 'node:path';
import type { BrickManager, BrickStatus } from '../brick/manager.js';
import { BrickdError, isSystemError } from '../errors.js';
import type { EventBus } from '../events.js';
import { fsyncDir } from '../fsutil.js';
import { Mutex } from '../lock.js';
import type { Logger } from '../log.js';
import { Scrubber, type ScrubProgress } from '../store/scrub.js';
import type { Mutation } from '../store/mutations.js';
import { readReplicaManifest, VOLUME_ID_RE } from '../store/manifest.js';
import { ReplicaStore, type StoreOptions } from '../store/store.js';
import type { ReplicaServer } from '../replication/server.js';
import { ChangedRegions } from '../replication/changed.js';
import type { ReplicaLinkOptions } from '../replication/link.js';
import { readOnlyBackend, storeBackend, type VolumeBackend } from './backend.js';
import { removeChanges, saveChanges, takeChanges } from './changes-file.js';
import { effectiveWriteQuorum, PrimaryReplication, type ReplicationIdentity } from './replication.js';
import { readVolumeConfig, writeVolumeConfig, VOLUME_CONFIG_FORMAT, VOLUME_CONFIG_VERSION, type PeerConfig, type ReplicationMode, type VolumeConfig, type VolumeRole } from './config.js';

export interface LocalVolume {
  volumeId: string;
  brickId: string;
  dir: string;
  store: ReplicaStore;
  config: VolumeConfig;
  scrubber: Scrubber;
  /** Set while this replica is primary with peers. */
  primary?: PrimaryReplication;
  /**
   * The record of the regions changed by every mutation this store took since the record
   * started (see the header), whatever the role; an attached primary reads the same object.
   * Absent until the first mutation (or primary attach) after an open without a saved
   * record, and from the start of a resync to the next.
   */
  changes?: ChangedRegions;
  /** True while the ReplicaServer serves this replica to primaries. */
  served: boolean;
  /**
   * Per peer, the highest seq this process's primary sent it, kept across a detach for the
   * next attach as primary (link.ts withSuspects); dropped when the volume becomes a
   * replica (its seqs may then be renumbered by another primary).
   */
  sentTo?: Map<string, bigint>;
}

/** The agent's replication endpoint and identity; absent when replication is off. */
export interface VolumeReplicationOptions {
  identity: ReplicationIdentity;
  server: ReplicaServer;
  /** How long a write waits for its quorum before QUORUM_LOST (default 10 s). */
  quorumTimeoutMs?: number;
  /** Resync throttle of volumes that set none (data bytes per second; 0 or absent: unthrottled). */
  resyncRateBytesPerSec?: number;
  link?: Partial<ReplicaLinkOptions>;
}

export interface CreateVolumeOptions {
  volumeId: string;
  sizeLimitBytes: number;
  brickId?: string;
  generation?: number;
  role?: VolumeRole;
  peers?: PeerConfig[];
  writeQuorum?: number;
  replicationMode?: ReplicationMode;
  /** Resync throttle while primary (0: unthrottled); absent: the agent's default. */
  resyncRateBytesPerSec?: number;
  /**
   * The volume's incarnation (docs/replication.md "Volume incarnation"). Absent: a primary
   * mints a random one, a replica adopts its primary's at the first session.
   */
  volumeUid?: string;
}

export interface UpdateVolumeOptions {
  generation: number;
  role?: VolumeRole;
  peers?: PeerConfig[];
  writeQuorum?: number;
  replicationMode?: ReplicationMode;
  /** Absent: unchanged. Applied at once, to a resync in progress too. */
  resyncRateBytesPerSec?: number;
}

export interface VolumeManagerOptions {
  bricks: BrickManager;
  events: EventBus;
  log: Logger;
  store?: StoreOptions;
  /** Default scrub rate (bytes per second). */
  scrubRate?: number;
  /** Told of every durable mutation of every replica, with its latency (the agent's metrics). */
  onMutationDurable?: (volumeId: string, op: Mutation['op'], seconds: number) => void;
  replication?: VolumeReplicationOptions;
}

/**
 * The volume's record of changed regions, continued if it recorded exactly through `seq`
 * (the store's last seq: every mutation up to it went through onMutation), else a new one
 * starting there: a record that missed a mutation (none kept since a resync or an open)
 * would claim what it never saw. Called at a seq boundary or under the store's mutex.
 */
function recordThrough(volume: LocalVolume, seq: bigint): ChangedRegions {
  if (volume.changes?.recordedThrough !== seq) volume.changes = new ChangedRegions(seq);
  return volume.changes;
}

/** Save the record for the next start (changes-file.ts); none for a replica mid-resync (its tree is no copy of the seq the record ends at). */
async function saveRecord(volume: LocalVolume): Promise<void> {
  if (volume.changes && !volume.store.resyncing) await saveChanges(volume.dir, volume.changes, volume.store.manifest.generation);
}

/** Data a frontend may have written that is not yet durable on the write quorum (write-back). */
const WRITE_BACK_BYTES = 32 * 2 ** 20;

/**
 * Throw INVALID_ARGUMENT unless `volumeId` is a well-formed volume id. Every call that names
 * a volume checks it, not only create: a lookup of "../x" is bad input to refuse, not a
 * volume that happens to be missing (DeleteVolume would otherwise answer "deleted: false").
 */
export function checkVolumeId(volumeId: string, what = 'volume id'): void {
  if (!VOLUME_ID_RE.test(volumeId)) {
    throw new BrickdError('INVALID_ARGUMENT', `${what} ${JSON.stringify(volumeId)} must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit`);
  }
}

/**
 * Generations are compared as JS numbers: a value the wire decoded beyond 2^53 has lost its
 * low bits, and a replica fenced at such a generation could never be raised again.
 */
function checkGeneration(generation: number): void {
  if (!Number.isSafeInteger(generation) || generation < 0) {
    throw new BrickdError('INVALID_ARGUMENT', `generation must be a whole number from 0 to 2^53-1, got ${generation}`);
  }
}

/** A resync rate is a whole number of bytes per second (0: unthrottled). */
function checkResyncRate(rate: number | undefined): void {
  if (rate !== undefined && (!Number.isSafeInteger(rate) || rate < 0)) {
    throw new BrickdError('INVALID_ARGUMENT', `resync rate must be a whole number of bytes per second from 0 (unthrottled) to 2^53-1, got ${rate}`);
  }
}

/** Whether two configs differ in nothing that needs the replication rebuilt (the resync rate aside). */
function sameExceptResyncRate(a: VolumeConfig, b: VolumeConfig): boolean {
  return (
    a.role === b.role &&
    JSON.stringify(a.peers) === JSON.stringify(b.peers) &&
    a.writeQuorum === b.writeQuorum &&
    (a.replicationMode ?? 'sync') === (b.replicationMode ?? 'sync')
  );
}

/** A write quorum above the replica count (this one and its peers) could never be met: every write would block. */
function checkWriteQuorum(writeQuorum: number, peers: readonly PeerConfig[]): void {
  if (!Number.isSafeInteger(writeQuorum) || writeQuorum < 0 || writeQuorum > peers.length + 1) {
    throw new BrickdError('INVALID_ARGUMENT', `write quorum ${writeQuorum} is more than the ${peers.length + 1} replicas (this one and ${peers.length} peers)`);
  }
}

/** A frontend serving a volume (a FUSE mount): the volume cannot be deleted, nor demoted while writable. */
export interface VolumePin {
  what: string;
  writable: boolean;
}

/**
 * A replica's read-only backend that refuses reads while a resync rebuilds its tree (it
 * may start under a long mount): a partial tree is never served as the volume's content.
 */
function whileComplete(backend: VolumeBackend, store: ReplicaStore): VolumeBackend {
  const check = <A extends unknown[], R>(fn: (...args: A) => Promise<R>) => (...args: A): Promise<R> =>
    store.resyncing ? Promise.reject(new BrickdError('REPLICA_RESYNCING', `the replica of ${store.volumeId} is being resynced`, { volumeId: store.volumeId })) : fn(...args);
  return { ...backend, read: check(backend.read), stat: check(backend.stat), readdir: check(backend.readdir), readlink: check(backend.readlink) };
}

export class VolumeManager {
  private readonly volumes = new Map<string, LocalVolume>();
  private readonly pins = new Map<string, VolumePin>();
  private readonly mutex = new Mutex();

  constructor(private readonly options: VolumeManagerOptions) {}

  list(): LocalVolume[] {
    return [...this.volumes.values()].sort((a, b) => a.volumeId.localeCompare(b.volumeId));
  }

  get(volumeId: string): LocalVolume {
    const volume = this.volumes.get(volumeId);
    if (!volume) throw new BrickdError('VOLUME_NOT_FOUND', `no replica of volume ${JSON.stringify(volumeId)} on this node`, { volumeId });
    return volume;
  }

  /** Volume ids with a replica on `brickId`. */
  onBrick(brickId: string): string[] {
    return this.list()
      .filter((v) => v.brickId === brickId)
      .map((v) => v.volumeId);
  }

  /**
   * Mark `volumeId` as served by a frontend (or clear it with undefined). Under the mutex, so
   * a delete or a demotion racing a mount sees one or the other, never half of both.
   */
  pin(volumeId: string, pin: VolumePin | undefined): Promise<void> {
    return this.mutex.run(async () => {
      if (pin) {
        this.get(volumeId);
        this.pins.set(volumeId, pin);
      } else {
        this.pins.delete(volumeId);
      }
    });
  }

  /** Open every replica found on the mounted bricks (start-up). A replica that fails to open is logged and skipped. */
  recover(): Promise<LocalVolume[]> {
    return this.mutex.run(async () => {
      for (const brick of this.options.bricks.list().filter((b) => b.state === 'mounted')) {
        const volumesDir = path.join(brick.mountPath, 'volumes');
        let names: string[] = [];
        try {
          names = await readdir(volumesDir);
        } catch (err) {
          if (!isSystemError(err, 'ENOENT')) throw err;
        }
        for (const name of names) {
          if (name.startsWith('.') || this.volumes.has(name)) continue;
          try {
            await this.openLocked(name, brick, path.join(volumesDir, name));
          } catch (err) {
            this.options.log.error({ err, volume: name, brick: brick.brickId }, 'open replica failed');
          }
        }
      }
      return this.list();
    });
  }

  create(options: CreateVolumeOptions): Promise<LocalVolume> {
    return this.mutex.run(async () => {
      checkVolumeId(options.volumeId);
      if (options.volumeUid !== undefined) checkVolumeId(options.volumeUid, 'volume uid');
      if (!Number.isSafeInteger(options.sizeLimitBytes) || options.sizeLimitBytes <= 0) {
        throw new BrickdError('INVALID_ARGUMENT', `size limit must be a positive number of bytes, got ${options.sizeLimitBytes}`);
      }
      checkGeneration(options.generation ?? 0);
      checkWriteQuorum(options.writeQuorum ?? 0, options.peers ?? []);
      checkResyncRate(options.resyncRateBytesPerSec);
      this.checkReplicable(options.role ?? 'replica', options.peers ?? []);
      const existing = this.volumes.get(options.volumeId);
      if (existing) {
        // A retry creates nothing: it must ask for what exists (the generation may have been
        // raised since, so a lower one is not a difference).
        const peersOf = (list: PeerConfig[]) => JSON.stringify([...list].sort((a, b) => a.nodeId.localeCompare(b.nodeId)));
        const same =
          existing.store.manifest.sizeLimitBytes === options.sizeLimitBytes &&
          (!options.brickId || options.brickId === existing.brickId) &&
          (!options.role || options.role === existing.config.role) &&
          (!options.peers?.length || peersOf(options.peers) === peersOf(existing.config.peers)) &&
          (!options.writeQuorum || options.writeQuorum === existing.config.writeQuorum) &&
          (!options.replicationMode || options.replicationMode === (existing.config.replicationMode ?? 'sync')) &&
          (options.resyncRateBytesPerSec === undefined || options.resyncRateBytesPerSec === existing.config.resyncRateBytesPerSec) &&
          (options.volumeUid === undefined || options.volumeUid === existing.store.volumeUid) &&
          (options.generation ?? 0) <= existing.store.manifest.generation;
        if (!same) {
          throw new BrickdError('VOLUME_EXISTS', `volume ${options.volumeId} already has a replica here with other settings (brick ${existing.brickId}, size limit ${existing.store.manifest.sizeLimitBytes}, role ${existing.config.role}, generation ${existing.store.manifest.generation}, uid ${existing.store.volumeUid ?? 'none'})`, {
            volumeId: options.volumeId,
          });
        }
        return existing;
      }
      const brick = options.brickId ? this.mountedBrick(options.brickId) : await this.roomiest(options.sizeLimitBytes);
      const dir = path.join(brick.mountPath, 'volumes', options.volumeId);
      // A primary created without an incarnation gets a fresh one: a later volume created
      // under the same id is then told apart from this one by every replica that met it.
      const volumeUid = options.volumeUid ?? (options.role === 'primary' ? randomUUID() : undefined);
      const store = await ReplicaStore.create(
        dir,
        { volumeId: options.volumeId, sizeLimitBytes: options.sizeLimitBytes, generation: options.generation ?? 0, ...(volumeUid !== undefined ? { volumeUid } : {}) },
        this.storeOptions(options.volumeId),
      );
      const config: VolumeConfig = {
        format: VOLUME_CONFIG_FORMAT,
        version: VOLUME_CONFIG_VERSION,
        role: options.role ?? 'replica',
        peers: options.peers ?? [],
        writeQuorum: options.writeQuorum ?? 0,
        replicationMode: options.replicationMode ?? 'sync',
        ...(options.resyncRateBytesPerSec !== undefined ? { resyncRateBytesPerSec: options.resyncRateBytesPerSec } : {}),
      };
      await writeVolumeConfig(dir, config);
      const volume = this.add(options.volumeId, brick.brickId, dir, store, config);
      await this.attach(volume);
      this.options.events.emit({ kind: 'replica-created', volumeId: options.volumeId, brickId: brick.brickId, message: `replica created on brick ${brick.brickId}` });
      this.options.log.info({ volume: options.volumeId, brick: brick.brickId }, 'create replica');
      return volume;
    });
  }

  update(volumeId: string, options: UpdateVolumeOptions): Promise<LocalVolume> {
    return this.mutex.run(async () => {
      const volume = this.get(volumeId);
      const current = volume.store.manifest.generation;
      checkGeneration(options.generation);
      if (options.generation < current) {
        throw new BrickdError('GENERATION_STALE', `volume ${volumeId} is at generation ${current}; refusing generation ${options.generation}`, {
          volumeId,
          generation: current,
        });
      }
      const config: VolumeConfig = {
        ...volume.config,
        ...(options.role ? { role: options.role } : {}),
        ...(options.peers ? { peers: options.peers } : {}),
        ...(options.writeQuorum !== undefined ? { writeQuorum: options.writeQuorum } : {}),
        ...(options.replicationMode ? { replicationMode: options.replicationMode } : {}),
        ...(options.resyncRateBytesPerSec !== undefined ? { resyncRateBytesPerSec: options.resyncRateBytesPerSec } : {}),
      };
      // Checked before anything is written: a refused update must change nothing, generation included.
      checkResyncRate(options.resyncRateBytesPerSec);
      checkWriteQuorum(config.writeQuorum, config.peers);
      this.checkReplicable(config.role, config.peers);
      if (config.role === 'primary' && volume.config.role !== 'primary' && volume.store.resyncing) {
        // Its tree is a partial copy: promoting it would serve and ship that as the truth.
        throw new BrickdError('REPLICA_RESYNCING', `the replica of ${volumeId} here is mid-resync and cannot become primary; promote a complete replica`, { volumeId });
      }
      const pin = this.pins.get(volumeId);
      if (pin?.writable && config.role !== 'primary') {
        throw new BrickdError('VOLUME_MOUNTED', `volume ${volumeId} is ${pin.what} read-write; unmount it before it stops being primary here`, { volumeId });
      }
      if (config.resyncRateBytesPerSec !== volume.config.resyncRateBytesPerSec && options.generation === current && sameExceptResyncRate(config, volume.config)) {
        // Only the throttle changes: applied in place. Detaching would restart the links,
        // and with them any resync in progress. (An update that changes nothing at all still
        // re-attaches below, as it always has: a fresh queue and fresh links.)
        await writeVolumeConfig(volume.dir, config);
        volume.config = config;
        volume.primary?.setResyncRate(this.resyncRateOf(volume));
        return volume;
      }
      // Detached first: no write is acknowledged under the old settings once the new ones
      // are being written, and the server forgets the generation it had cached.
      await this.detach(volume);
      try {
        await volume.store.raiseGeneration(options.generation);
        await writeVolumeConfig(volume.dir, config);
        volume.config = config;
      } finally {
        await this.attach(volume);
      }
      return volume;
    });
  }

  /** Delete this node's replica and its data. Resolves false if there was none. */
  delete(volumeId: string): Promise<boolean> {
    return this.mutex.run(async () => {
      const volume = this.volumes.get(volumeId);
      if (!volume) return false;
      const pin = this.pins.get(volumeId);
      if (pin) throw new BrickdError('VOLUME_MOUNTED', `volume ${volumeId} is ${pin.what}; unmount it before deleting its replica`, { volumeId });
      await this.detach(volume);
      await volume.scrubber.stop();
      await volume.store.close();
      this.volumes.delete(volumeId);
      // Rename first (atomic): a crash during the recursive delete leaves a hidden
      // directory that start-up ignores, never a half-deleted replica that looks whole.
      const trash = path.join(path.dirname(volume.dir), `.deleted-${volumeId}-${Date.now()}`);
      await rename(volume.dir, trash);
      await fsyncDir(path.dirname(volume.dir));
      await rm(trash, { recursive: true, force: true });
      this.options.events.emit({ kind: 'replica-deleted', volumeId, brickId: volume.brickId, message: 'replica deleted' });
      this.options.log.info({ volume: volumeId, brick: volume.brickId }, 'delete replica');
      return true;
    });
  }

  /** Start or resume the scrub of a replica (a new rate applies from the next start). */
  async startScrub(volumeId: string, rateBytesPerSec?: number): Promise<Scrubber> {
    const volume = this.get(volumeId);
    if (rateBytesPerSec && rateBytesPerSec !== volume.scrubber.rate && volume.scrubber.progress.state !== 'running') {
      // The new scrubber picks up the saved cursor of a paused pass.
      volume.scrubber = new Scrubber(volume.store, { rateBytesPerSec, log: this.options.log });
      await volume.scrubber.load();
    }
    volume.scrubber.start();
    void volume.scrubber.whenIdle().then((p: ScrubProgress) => {
      if (p.state === 'done') {
        this.options.events.emit({ kind: 'scrub-done', volumeId, message: `scrub done: ${p.bytesScanned} bytes, ${p.findings.length} bad blocks` });
      }
    });
    return volume.scrubber;
  }

  async close(): Promise<void> {
    await this.mutex.run(async () => {
      // All primaries drain at once: the stop takes at most one drain timeout, not one per volume.
      await Promise.all([...this.volumes.values()].map((volume) => this.drain(volume)));
      for (const volume of this.volumes.values()) {
        await this.detach(volume);
        // For the next start (a checkpoint at close saves it only if the checkpoint moves).
        await saveRecord(volume).catch((err: unknown) =>
          this.options.log.warn({ err, volume: volume.volumeId }, 'could not save the record of changed regions (the next resync of a lagging replica compares everything)'),
        );
        await volume.scrubber.pause();
        await volume.store.close();
      }
      this.volumes.clear();
    });
  }

  /**
   * The volume as a frontend sees it. A primary's backend acknowledges a namespace mutation
   * once the write quorum has it, and a data mutation once applied (write-back: the
   * frontend's fsync waits for the quorum); it asks for the quorum object of the moment, as
   * settings may change under a long mount. In async mode (protocol A) the local replica
   * alone acknowledges; the write-back window still bounds how far the peers may lag. A
   * replica's backend is read-only: it serves its local data, which may lag, and nothing
   * while a resync rebuilds it.
   */
  backend(volumeId: string, options: { readOnly?: boolean } = {}): VolumeBackend {
    const volume = this.get(volumeId);
    if (volume.store.resyncing) {
      throw new BrickdError('REPLICA_RESYNCING', `the replica of ${volumeId} here is mid-resync: its tree is partial`, { volumeId });
    }
    if (volume.config.role !== 'primary') return whileComplete(storeBackend(volume.store, { readOnly: true }), volume.store);
    const backend = storeBackend(volume.store, {
      // Below the retained queue's bound (64 MiB): a fast writer cannot outrun replication.
      writeBack: { maxUnsyncedBytes: WRITE_BACK_BYTES },
      // Read at each call: UpdateVolume may switch the mode under a long mount.
      acknowledgeLocally: () => volume.config.replicationMode === 'async',
      replicated: async (seq) => {
        if (volume.config.peers.length === 0) return;
        if (!volume.primary) throw new BrickdError('QUORUM_LOST', `volume ${volumeId} is not replicating (reconfiguring or closing); the write is not acknowledged`, { volumeId });
        await volume.primary.waitFor(seq);
      },
    });
    return options.readOnly ? readOnlyBackend(backend) : backend;
  }

  /** Per-peer replication state of a primary ([] for a replica or a primary without peers). */
  peerStates(volumeId: string) {
    return this.get(volumeId).primary?.peers() ?? [];
  }

  /** The resync throttle `volume` runs with: its own, else the agent's default (0: unthrottled). */
  resyncRateOf(volume: LocalVolume): number {
    return volume.config.resyncRateBytesPerSec ?? this.options.replication?.resyncRateBytesPerSec ?? 0;
  }

  /** A primary with peers needs this agent's replication endpoint (secret and cluster id). */
  private checkReplicable(role: VolumeRole, peers: readonly PeerConfig[]): void {
    if (role === 'primary' && peers.length > 0 && !this.options.replication) {
      throw new BrickdError('INVALID_ARGUMENT', 'a primary with peers needs replication, which is off on this agent (set replicationAddress and replicationSecretFile)');
    }
  }

  /** Start replicating `volume` as its role says. Called with the manager's mutex held. */
  private async attach(volume: LocalVolume): Promise<void> {
    const replication = this.options.replication;
    if (!replication) return;
    const { role, peers, writeQuorum } = volume.config;
    if (role === 'replica') {
      volume.sentTo = undefined;
      // The record goes on: the primary's stream reaches the store as mutations (recorded in
      // storeOptions' onMutation) and a resync drops it (onResyncBegin).
      replication.server.addVolume(volume.store);
      volume.served = true;
    } else if (peers.length > 0) {
      // After an unclean stop, the parts of the tree that may hold changes the log lacks get
      // a seq of their own before anything is shipped (store.settleSuspects, never shipped
      // itself): replicas at or before the recovered seq are then behind the queue below and
      // resynced, comparing those parts (and the whole listing) with the rest of what changed.
      const suspectSeq = await volume.store.settleSuspects();
      if (suspectSeq !== undefined) this.options.log.warn({ volume: volume.volumeId, seq: String(suspectSeq) }, 'replicas will be compared where the unclean stop may have left changes');
      volume.primary = await volume.store.atSeqBoundary(
        (lastSeq) =>
          new PrimaryReplication({
            identity: replication.identity,
            volumeId: volume.volumeId,
            ...(volume.store.volumeUid !== undefined ? { volumeUid: volume.store.volumeUid } : {}),
            generation: volume.store.manifest.generation,
            peers,
            writeQuorum,
            startSeq: lastSeq,
            quorumTimeoutMs: replication.quorumTimeoutMs ?? 10_000,
            log: this.options.log,
            resync: volume.store,
            onPeerState: (peer, state, reason) => this.peerEvent(volume.volumeId, peer, state, reason),
            blocks: volume.store,
            resyncRateBytesPerSec: this.resyncRateOf(volume),
            ...(volume.sentTo ? { sentEarlier: volume.sentTo } : {}),
            changes: recordThrough(volume, lastSeq),
            ...(replication.link ? { link: replication.link } : {}),
          }),
      );
      this.options.log.info(
        { volume: volume.volumeId, peers: peers.map((p) => p.nodeId), writeQuorum: effectiveWriteQuorum(writeQuorum, peers.length + 1) },
        'replicate volume as primary',
      );
    }
  }

  /**
   * Events orchestrators watch for about a primary's peers: behind (it needs or is getting a
   * resync), caught up again (streaming after that), fenced (the peer refused this primary:
   * someone raised the generation elsewhere). Connection churn is not an event: metrics and
   * status show it.
   */
  private readonly peersBehind = new Set<string>();
  private peerEvent(volumeId: string, peer: string, state: string, reason: string): void {
    const key = `${volumeId}/${peer}`;
    if (state === 'behind' || state === 'resyncing') {
      if (this.peersBehind.has(key)) return;
      this.peersBehind.add(key);
      this.options.events.emit({ kind: 'replica-behind', volumeId, message: `replica on node ${peer} is ${state}: ${reason}` });
    } else if (state === 'streaming' && this.peersBehind.delete(key)) {
      this.options.events.emit({ kind: 'replica-caught-up', volumeId, message: `replica on node ${peer} caught up and is streaming` });
    } else if (state === 'failed') {
      this.options.events.emit({ kind: 'replica-fenced', volumeId, message: `replica on node ${peer} refused this primary: ${reason}` });
    }
  }

  /**
   * Before a clean stop: give every connected peer of a primary a bounded time to hold what
   * the store holds (write-back data a frontend has not synced yet included, and beyond the
   * write quorum: a slow replica too), so a restart or an upgrade of this agent leaves no
   * replica behind. Failing that, it is logged.
   */
  private async drain(volume: LocalVolume, timeoutMs = 5000): Promise<void> {
    const primary = volume.primary;
    if (!primary) return;
    try {
      const seq = await volume.store.flush();
      if (!(await primary.peersCaughtUp(seq, timeoutMs))) {
        this.options.log.warn({ volume: volume.volumeId, seq: String(seq), peers: primary.peers().map((p) => `${p.nodeId}:${p.state}@${p.ackedSeq}`) }, 'stop without every peer caught up');
      }
    } catch (err) {
      this.options.log.warn({ err, volume: volume.volumeId }, 'stop without every peer caught up');
    }
  }

  /** Stop replicating `volume` (waiting writes fail QUORUM_LOST; the server's applies in flight settle). */
  private async detach(volume: LocalVolume): Promise<void> {
    const replication = this.options.replication;
    if (volume.served && replication) {
      await replication.server.removeVolume(volume.volumeId);
      volume.served = false;
    }
    const primary = volume.primary;
    if (primary) {
      // At a seq boundary: no mutation is between getting its seq and reaching the queue.
      await volume.store.atSeqBoundary(() => {
        volume.primary = undefined;
      });
      await primary.close();
      volume.sentTo = primary.sentThrough();
    }
  }

  /** `replayInto`: the saved record being restored at open, fed the mutations recovery replays past it. */
  private storeOptions(volumeId: string, replayInto?: ChangedRegions): StoreOptions {
    const events = this.options.events;
    const onMutationDurable = this.options.onMutationDurable;
    return {
      log: this.options.log,
      ...this.options.store,
      ...(onMutationDurable ? { onMutationDurable: (op: Mutation['op'], seconds: number) => onMutationDurable(volumeId, op, seconds) } : {}),
      ...(replayInto
        ? {
            onReplay: (seq: bigint, mutation: Mutation) => {
              if (seq > replayInto.recordedThrough) replayInto.record(seq, mutation);
            },
          }
        : {}),
      // In seq order, under the store's mutex: recorded (whatever the role), then shipped
      // by the primary of the moment, if any.
      onMutation: (seq, mutation) => {
        const volume = this.volumes.get(volumeId);
        if (!volume) return;
        recordThrough(volume, seq - 1n).record(seq, mutation);
        volume.primary?.push(seq, mutation);
      },
      // A resync replaces the tree outside the mutations: what the record says is void,
      // in memory and on disk (changes-file.ts).
      onResyncBegin: async () => {
        const volume = this.volumes.get(volumeId);
        if (!volume) return;
        volume.changes = undefined;
        await removeChanges(volume.dir);
      },
      // Before the log stops replaying what the checkpoint covers: the record, durably.
      onCheckpoint: async () => {
        const volume = this.volumes.get(volumeId);
        if (volume) await saveRecord(volume);
      },
      // A damaged block: a primary asks its peers (one durable up to the seq it has applied),
      // a served replica asks the primary streaming to it. Each read waits at most the
      // request timeout (blocks.ts); no answer leaves the block unrepaired. A repair source
      // given in the options (tests) is asked when replication has none.
      repair: async (request) => {
        const { fid, offset, length } = request;
        const volume = this.volumes.get(volumeId);
        if (volume?.primary) return volume.primary.fetchBlocks(fid, offset, length, volume.store.appliedSeq);
        const server = this.options.replication?.server;
        if (volume?.served && server) return server.fetchFromPrimary(volumeId, fid, offset, length);
        return this.options.store?.repair?.(request);
      },
      onChecksumError: (info) =>
        events.emit({
          kind: info.repaired ? 'checksum-repaired' : 'checksum-error',
          volumeId,
          message: `block ${info.block} of ${info.file ?? info.fid} ${info.repaired ? 'repaired' : 'does not match its checksum'}`,
        }),
    };
  }

  private async openLocked(volumeId: string, brick: BrickStatus, dir: string): Promise<LocalVolume> {
    // The saved record of changed regions (changes-file.ts), taken (deleted) whatever happens
    // next. It must reach the checkpoint the log replays from; recovery then feeds it every
    // replayed mutation it had not recorded.
    const saved = await takeChanges(dir, this.options.log);
    const checkpoint = saved ? BigInt((await readReplicaManifest(dir)).appliedSeq) : 0n;
    const savedThrough = saved?.changes.recordedThrough ?? 0n;
    const usable = saved !== undefined && savedThrough >= checkpoint;
    const store = await ReplicaStore.open(dir, this.storeOptions(volumeId, usable ? saved.changes : undefined));
    const config = await readVolumeConfig(dir);
    const volume = this.add(volumeId, brick.brickId, dir, store, config);
    if (usable && saved.generation === store.manifest.generation && saved.changes.truncateTo(store.appliedSeq)) {
      volume.changes = saved.changes;
      if (savedThrough !== store.appliedSeq) this.options.log.info({ volume: volumeId, saved: String(savedThrough), recovered: String(store.appliedSeq) }, 'record of changed regions continued across a crash');
      // Saved again at once (the open's checkpoint ran before the record was restored): a
      // crash before the next checkpoint would otherwise find none and compare everything.
      await saveRecord(volume);
    }
    await volume.scrubber.load();
    await this.attach(volume);
    this.options.log.info({ volume: volumeId, brick: brick.brickId, durableSeq: String(store.durableSeq) }, 'open replica');
    return volume;
  }

  private add(volumeId: string, brickId: string, dir: string, store: ReplicaStore, config: VolumeConfig): LocalVolume {
    const scrubber = new Scrubber(store, { log: this.options.log, ...(this.options.scrubRate ? { rateBytesPerSec: this.options.scrubRate } : {}) });
    const volume: LocalVolume = { volumeId, brickId, dir, store, config, scrubber, served: false };
    this.volumes.set(volumeId, volume);
    return volume;
  }

  private mountedBrick(brickId: string): BrickStatus {
    const brick = this.options.bricks.get(brickId);
    if (!brick) throw new BrickdError('BRICK_NOT_FOUND', `no brick ${brickId} on this node`, { brickId });
    if (brick.state !== 'mounted') throw new BrickdError('NO_BRICK', `brick ${brickId} is ${brick.state}, not mounted`, { brickId });
    return brick;
  }

  /** The mounted brick with the most free space, if it can hold `sizeLimitBytes`. */
  private async roomiest(sizeLimitBytes: number): Promise<BrickStatus> {
    let best: { brick: BrickStatus; free: number } | undefined;
    for (const brick of this.options.bricks.list().filter((b) => b.state === 'mounted')) {
      const s = await statfs(brick.mountPath);
      const free = s.bavail * s.bsize;
      if (!best || free > best.free) best = { brick, free };
    }
    if (!best) throw new BrickdError('NO_BRICK', 'no mounted brick on this node');
    if (best.free < Math.min(sizeLimitBytes, 64 * 2 ** 20)) {
      throw new BrickdError('NO_BRICK', `the roomiest brick (${best.brick.brickId}) has ${best.free} bytes free`, { brickId: best.brick.brickId });
    }
    return best.brick;
  }
}
