// ReplicaStore: one volume's replica on a brick — a crash-safe, checksummed file tree.
//
// Layout of <brick>/volumes/<volumeId>/:
//   data/                 the user's tree as-is (an admin can read it without brickd)
//   .brickd/replica.json  manifest: volume id, size limit, block size, generation, checkpoint
//   .brickd/fids/xx/<fid> hard link per file (see files.ts)
//   .brickd/sums/xx/<fid> one CRC32C per block of the file (see native brickio)
//   .brickd/log/          the write log (see wal.ts)
//
// How a mutation flows (all mutations pass one mutex, so validation sees the state that
// the mutation will apply to, and seq order is apply order):
//   validate (errno errors, nothing changed) → append to the log → apply to data/ + sums →
//   [mutex released] → wait until durable → resolve with its seq.
// Durable means the log record is fdatasync'd (group commit: concurrent mutations share
// one flush). Large writes (≥ directWriteBytes) do not copy their data into the log: the
// record holds only their range and the data goes straight to the data file, which is
// fdatasync'd (coalesced per file) before the write resolves. Because replay re-applies
// logged writes and truncates but only re-sums direct ones, a file that had a logged data
// mutation since the checkpoint takes its large writes through the log too, until the next
// checkpoint: otherwise replaying the earlier record could overwrite the later data.
//
// Crash safety: recovery replays the log after the checkpoint (manifest.appliedSeq) with
// the idempotent apply of apply.ts, re-summing the ranges of direct writes, then
// checkpoints. Data and checksums therefore agree after any crash, and every mutation that
// resolved is present. A checkpoint fsyncs every file and directory dirtied since the last
// one, then records the new appliedSeq, then lets the log recycle older segments.
//
// Reads verify every block against its CRC. A mismatch is repaired through the repair hook
// (replication fills it with a fetch from a healthy replica) or fails CHECKSUM_MISMATCH:
// bad bytes are never returned.
import { lstat, mkdir, readdir, readlink, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import { BrickdError, isSystemError } from '../errors.js';
import { fsyncDir } from '../fsutil.js';
import { Mutex } from '../lock.js';
import { silentLogger, type Logger } from '../log.js';
import { native } from '../native.js';
import { applyMutation, type ApplyContext } from './apply.js';
import type { CrashPoint } from './crashpoints.js';
import { ACTIVITY_FILE, ActivityLog, boundedSuspects, hasSuspects, type ActivityLogOptions, type Suspects } from './activity.js';
import { FileTable } from './files.js';
import { generationAt, historyProblem, historyThrough, parseStoredHistory, storedHistory, withGenerationStart, type GenerationStart } from './generations.js';
import { afterRecovery, isRenumbered, mergeRanges, parseRanges, parseReservation, SEQ_RESERVATION, storedRanges, storedReservation, type RenumberedRange, type SeqReservation } from './renumbered.js';
import { placeEntry, pruneUnlisted, readSumsRange, snapshotTree, writeFetched, type ResyncEntry } from './resync-apply.js';
import { BlockWriteBatcher } from './block-writes.js';
import { applyLockRange, KeyedRwLock, pageRange, type LockRange } from './rwlock.js';
import { readReplicaManifest, REPLICA_FORMAT, REPLICA_VERSION, VOLUME_ID_RE, writeReplicaManifest, type ReplicaManifest, type ResyncBase } from './manifest.js';
import { decodeMutation, encodeMutation, type FileRange, type Mutation } from './mutations.js';
import { validatePath, validateSymlinkTarget } from './names.js';
import { posixError, volumeFull } from './posix.js';
import { ContiguousSeq } from './contiguous.js';
import { SyncCoalescer } from './sync.js';
import { MAX_RECORD_PAYLOAD, WriteLog } from './wal.js';

export const DEFAULT_BLOCK_SIZE = 4096;

/** Fetches the good content of a damaged block from elsewhere (a healthy replica). */
export type RepairHook = (request: { volumeId: string; fid: string; path?: string; offset: number; length: number }) => Promise<Buffer | undefined>;

export interface StoreOptions {
  log?: Logger;
  /** Write-log segment size (default 64 MiB). */
  segmentBytes?: number;
  /** Writes at least this large go straight to the data file (default 64 KiB). */
  directWriteBytes?: number;
  /**
   * Reads at least this large bypass the page cache (default 128 KiB; Infinity: never). See
   * read() for why.
   */
  directReadBytes?: number;
  /** Checkpoint once this many bytes were logged since the last one (default 128 MiB). */
  checkpointBytes?: number;
  /** Checkpoint at least this often while dirty (default 10 s; 0 disables the timer). */
  checkpointIntervalMs?: number;
  /** Free space kept on the brick beyond what writes need (default 32 MiB). */
  brickReserveBytes?: number;
  /**
   * Most small block writes sent to the addon as one job (default 128; see
   * block-writes.ts). 1 sends each alone, so concurrent applies run on parallel pool
   * threads: tests use it to race them.
   */
  blockWriteBatch?: number;
  repair?: RepairHook;
  /**
   * Told of every mutation as soon as it has its seq, in seq order (replication ships them
   * from here). A large write arrives as a `write` with its data, whichever way the store
   * itself takes it. Called synchronously: it must not throw or block.
   */
  onMutation?: (seq: bigint, mutation: Mutation) => void;
  /**
   * Told when a resync starts to replace the tree with a primary's at `s0` (beginResync,
   * under the store's mutex, before anything is dropped): the tree then changes outside
   * onMutation, so whatever was derived from the mutations seen so far (a record of changed
   * regions) no longer describes it. Called synchronously: it must not throw or block.
   */
  onResyncBegin?: (s0: bigint) => void | Promise<void>;
  /**
   * Called by every checkpoint once the data up to `seq` is synced and before the
   * checkpoint moves to `seq` (after which the log no longer replays what came before): what
   * a caller derives from the mutations and wants to survive a crash must be durable, and
   * cover at least `seq`, when this resolves. Its failure fails the checkpoint.
   */
  onCheckpoint?: (seq: bigint) => Promise<void>;
  /** Told of every mutation recovery replays at open (after the checkpoint), in seq order. */
  onReplay?: (seq: bigint, mutation: Mutation) => void;
  /**
   * Told of every mutation once it has resolved durable, with the seconds since it was
   * called (queueing for the mutex included: what the caller waited). For latency metrics;
   * called synchronously, it must not throw or block.
   */
  onMutationDurable?: (op: Mutation['op'], seconds: number) => void;
  /** Told of every checksum mismatch found (on read or scrub) and whether it was repaired. */
  onChecksumError?: (info: { fid: string; file?: string; block: number; repaired: boolean }) => void;
  /** The activity log's extent size and capacity (activity.ts; tests make them small). */
  activity?: ActivityLogOptions;
  crashPoint?: CrashPoint;
}

const NO_SUSPECTS: Suspects = { all: false, ranges: [], namespace: false };

export interface CreateReplicaOptions {
  volumeId: string;
  sizeLimitBytes: number;
  blockSize?: number;
  generation?: number;
  /** The volume's incarnation (manifest.ts `volumeUid`); absent: none yet. */
  volumeUid?: string;
}

/**
 * How long a data mutation (write, truncate) makes its caller wait: 'durable' (default) until
 * it is durable; 'applied' until reads see it, durability following (the returned `durable`
 * promise, and flush()). The applied mode is a frontend's write-back: fsync is its barrier.
 */
export interface MutateOptions {
  wait?: 'durable' | 'applied';
  /**
   * In the applied mode: a flush follows at once (a frontend's fsync handing over a write it
   * had held back). Its log record is then written as a durable mutation's is (with
   * RWF_DSYNC when every record before it is durable), so the flush finds it durable:
   * one syscall instead of a write and then a sync round.
   */
  flushFollows?: boolean;
}

/** A write's target: a path in the volume or a fid (what a FUSE file handle holds). */
export type FileRef = string | { fid: string };

export interface EntryStat {
  fid?: string;
  type: 'file' | 'directory' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  blocks: number;
}

export interface StoreStats {
  checksumErrors: number;
  repaired: number;
  /** Mutations since open. */
  mutations: number;
}

function entryType(st: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): EntryStat['type'] {
  return st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : 'other';
}

/** The `suspect` mutation for `s`, listing at most MAX_SUSPECT_RANGES ranges (its JSON body stays far below the log's 64 KiB). */
function suspectRecord(s: Suspects): Extract<Mutation, { op: 'suspect' }> {
  const b = boundedSuspects(s);
  return b.all ? { op: 'suspect', ranges: [], namespace: true, all: true } : { op: 'suspect', ranges: b.ranges, namespace: b.namespace, all: false };
}

function checkInteger(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new RangeError(`${name} must be an integer in [${min}, ${max}], got ${value}`);
}

export class ReplicaStore {
  readonly files: FileTable;
  readonly stats: StoreStats = { checksumErrors: 0, repaired: 0, mutations: 0 };
  private readonly mutex = new Mutex();
  private readonly checkpointMutex = new Mutex();
  private readonly manifestMutex = new Mutex();
  private readonly locks = new KeyedRwLock();
  private readonly dataSyncs = new Map<string, SyncCoalescer>();
  private dirtyFids = new Set<string>();
  /** Files with a logged write or truncate after the checkpoint (fid → latest such seq). */
  private readonly loggedDataSince = new Map<string, bigint>();
  /** Data mutations applying outside the mutex (see mutate). */
  private readonly inFlight = new Set<Promise<void>>();
  /** Every accepted mutation until it is durable (what flush waits for). */
  private readonly becomingDurable = new Set<Promise<void>>();
  /** A mutation acknowledged as applied (not yet durable) failed to become durable: flush() reports it. */
  private unsyncedError: unknown;
  /** Per file with data mutations in flight: its size once they are applied, and their growth. */
  private readonly pending = new Map<string, { size: number; ops: number }>();
  private pendingGrowth = 0;
  private readonly growthOf = new WeakMap<Mutation, number>();
  private dirtyDirs = new Set<string>();
  /** Every mutation up to applied.value is applied (completions arrive out of order). */
  private readonly applied = new ContiguousSeq(0n);
  private checkpointSeq = 0n;
  /** Which generation made which seqs (generations.ts); mirrors the manifest's `generations`. */
  private history: readonly GenerationStart[];
  /** Seqs that may be numbered locally before the manifest is written again (renumbered.ts). */
  private reservation: SeqReservation | undefined;
  /** Seq ranges numbered again after a crash (renumbered.ts). */
  private renumberedRanges: readonly RenumberedRange[];
  private loggedSinceCheckpoint = 0;
  private usedBytesValue = 0;
  private brickFree = { bytes: Number.MAX_SAFE_INTEGER, at: 0 };
  private checkpointTimer: NodeJS.Timeout | undefined;
  private failure: unknown;
  private closed = false;
  private readonly applyContext: ApplyContext;
  /** Names durably what applies may be writing (activity.ts); set by open. */
  private activity!: ActivityLog;
  /** What the last stop may have left unlogged, until settleSuspects(). */
  private suspectsValue: Suspects = NO_SUSPECTS;
  /** See readStamp. */
  private changes = 0;
  private readonly blockWrites: BlockWriteBatcher;
  private readonly opts: Required<Omit<StoreOptions, 'repair' | 'crashPoint' | 'onChecksumError' | 'onMutation' | 'onMutationDurable' | 'onResyncBegin' | 'onCheckpoint' | 'onReplay' | 'activity'>> &
    Pick<StoreOptions, 'repair' | 'crashPoint' | 'onChecksumError' | 'onMutation' | 'onMutationDurable' | 'onResyncBegin' | 'onCheckpoint' | 'onReplay' | 'activity'>;

  private constructor(
    readonly dir: string,
    private manifestValue: ReplicaManifest,
    private wal: WriteLog,
    options: StoreOptions,
  ) {
    this.opts = {
      log: options.log ?? silentLogger,
      segmentBytes: options.segmentBytes ?? 64 * 2 ** 20,
      directWriteBytes: options.directWriteBytes ?? 64 * 1024,
      directReadBytes: options.directReadBytes ?? 128 * 1024,
      checkpointBytes: options.checkpointBytes ?? 128 * 2 ** 20,
      checkpointIntervalMs: options.checkpointIntervalMs ?? 10_000,
      brickReserveBytes: options.brickReserveBytes ?? 32 * 2 ** 20,
      blockWriteBatch: options.blockWriteBatch ?? 128,
      repair: options.repair,
      onChecksumError: options.onChecksumError,
      onMutation: options.onMutation,
      onMutationDurable: options.onMutationDurable,
      onResyncBegin: options.onResyncBegin,
      onCheckpoint: options.onCheckpoint,
      onReplay: options.onReplay,
      activity: options.activity,
      crashPoint: options.crashPoint,
    };
    this.history = parseStoredHistory(manifestValue.generations, dir);
    this.reservation = parseReservation(manifestValue.seqReservation, dir);
    this.renumberedRanges = parseRanges(manifestValue.renumbered, dir);
    this.files = new FileTable(dir);
    this.blockWrites = new BlockWriteBatcher(this.opts.blockWriteBatch);
    this.applyContext = {
      files: this.files,
      locks: this.locks,
      blockSize: manifestValue.blockSize,
      writeBlocks: (...args) => this.blockWrites.write(...args),
      // Called once a change is made, by every apply path (resync's included): see readStamp.
      dirtyFid: (fid) => {
        this.changes++;
        this.dirtyFids.add(fid);
      },
      dirtyDir: (d) => {
        this.changes++;
        this.dirtyDirs.add(d);
      },
      usage: (delta, mutation) => this.countUsage(delta, mutation),
      enter: (m) => this.activity.enter(m),
    };
  }

  /** Make a new, empty replica in `dir`. Idempotent for the same volume id and settings. */
  static async create(dir: string, replica: CreateReplicaOptions, options: StoreOptions = {}): Promise<ReplicaStore> {
    if (!VOLUME_ID_RE.test(replica.volumeId)) throw new RangeError(`volumeId must match ${VOLUME_ID_RE}, got ${JSON.stringify(replica.volumeId)}`);
    if (replica.volumeUid !== undefined && !VOLUME_ID_RE.test(replica.volumeUid)) throw new RangeError(`volumeUid must match ${VOLUME_ID_RE}, got ${JSON.stringify(replica.volumeUid)}`);
    checkInteger('sizeLimitBytes', replica.sizeLimitBytes, 1);
    const blockSize = replica.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (![512, 1024, 2048, 4096, 8192, 16384, 32768, 65536].includes(blockSize)) throw new RangeError(`blockSize must be a power of two from 512 to 65536, got ${blockSize}`);
    try {
      const existing = await readReplicaManifest(dir);
      if (
        existing.volumeId !== replica.volumeId ||
        existing.blockSize !== blockSize ||
        existing.sizeLimitBytes !== replica.sizeLimitBytes ||
        (replica.volumeUid !== undefined && existing.volumeUid !== replica.volumeUid)
      ) {
        throw new BrickdError('VOLUME_EXISTS', `${dir} holds a replica of ${existing.volumeId} with other settings`, { dir });
      }
      return ReplicaStore.open(dir, options);
    } catch (err) {
      if (!(err instanceof BrickdError) || err.code !== 'VOLUME_NOT_FOUND') throw err;
    }
    for (const sub of ['data', '.brickd/log', '.brickd/fids', '.brickd/sums']) await mkdir(path.join(dir, sub), { recursive: true, mode: 0o755 });
    await fsyncDir(path.join(dir, '.brickd'));
    await fsyncDir(dir);
    await writeReplicaManifest(dir, {
      format: REPLICA_FORMAT,
      version: REPLICA_VERSION,
      volumeId: replica.volumeId,
      sizeLimitBytes: replica.sizeLimitBytes,
      blockSize,
      generation: replica.generation ?? 0,
      appliedSeq: '0',
      createdAt: new Date().toISOString(),
      ...(replica.volumeUid !== undefined ? { volumeUid: replica.volumeUid } : {}),
    });
    return ReplicaStore.open(dir, options);
  }

  /** Open an existing replica, replaying its log after a crash. */
  static async open(dir: string, options: StoreOptions = {}): Promise<ReplicaStore> {
    const manifest = await readReplicaManifest(dir);
    const checkpointSeq = BigInt(manifest.appliedSeq);
    const { log, replay } = await WriteLog.open(
      { dir: path.join(dir, '.brickd', 'log'), segmentBytes: options.segmentBytes ?? 64 * 2 ** 20, crashPoint: options.crashPoint },
      checkpointSeq,
    );
    const store = new ReplicaStore(dir, manifest, log, options);
    store.checkpointSeq = checkpointSeq;
    store.applied.reset(checkpointSeq);
    store.usedBytesValue = await store.measureUsage();
    const log0 = store.opts.log.child({ volume: manifest.volumeId });
    if (replay.length > 0) log0.info({ from: String(replay[0]!.seq), to: String(replay[replay.length - 1]!.seq) }, 'replay write log');
    for (const record of replay) {
      const mutation = decodeMutation(record.type, record.body, record.payload);
      try {
        await applyMutation(store.applyContext, mutation, true);
      } catch (err) {
        await log.close();
        await store.files.closeAll();
        throw new BrickdError('LOG_CORRUPT', `replay of seq ${record.seq} (${mutation.op}) failed: ${(err as Error).message}`, { seq: String(record.seq) }, err);
      }
      store.applied.reset(record.seq);
      store.opts.onReplay?.(record.seq, mutation);
    }
    // What the last stop may have left in data/ without a record: nothing after a clean one.
    const activity = await ActivityLog.open(path.join(dir, '.brickd', ACTIVITY_FILE), options.activity);
    store.activity = activity.log;
    store.suspectsValue = activity.suspects;
    if (hasSuspects(activity.suspects)) {
      log0.warn(
        activity.suspects.all ? { all: true } : { ranges: activity.suspects.ranges.length, namespace: activity.suspects.namespace },
        'unclean stop: parts of the tree may hold unacknowledged changes the log lacks; replicas will be compared there',
      );
      // A power loss can tear such a change between its data and its CRC, in a block it may
      // share with acknowledged bytes: there, data wins (the checkpoint below syncs it).
      if (!activity.suspects.all) {
        const resummed = await store.resumTorn(activity.suspects.ranges);
        if (resummed > 0) log0.warn({ blocks: resummed }, 're-summed blocks an unclean stop left with data and checksum apart');
      }
    }
    // Seqs numbered here before a crash past the recovered log may sit on replicas: the
    // range is recorded before this store numbers anything again (renumbered.ts).
    const ranges = afterRecovery(store.renumberedRanges, store.reservation, store.applied.value);
    if (ranges !== store.renumberedRanges || store.reservation) {
      if (ranges !== store.renumberedRanges) log0.warn({ range: storedRanges(ranges.slice(-1)) }, 'seqs numbered before a crash were lost here: replicas holding them will be resynced');
      await store.saveManifest(({ seqReservation: _r, ...m }) => ({ ...m, ...(ranges.length ? { renumbered: storedRanges(ranges) } : {}) }));
      store.renumberedRanges = ranges;
      store.reservation = undefined;
    }
    await store.checkpoint();
    if (store.opts.checkpointIntervalMs > 0) {
      store.checkpointTimer = setInterval(() => void store.checkpointIfDirty(), store.opts.checkpointIntervalMs);
      store.checkpointTimer.unref();
    }
    return store;
  }

  get manifest(): Readonly<ReplicaManifest> {
    return this.manifestValue;
  }

  get volumeId(): string {
    return this.manifestValue.volumeId;
  }

  /**
   * Changes after every change to the tree's content (a mutation settled, a resync step
   * made). A read that started and was used with the same stamp saw content that no change
   * since has touched: read-ahead (volume/readahead.ts) keeps data only while it holds.
   */
  get readStamp(): number {
    return this.changes;
  }

  /** Highest seq that is durable (in the log or checkpointed). */
  get durableSeq(): bigint {
    return this.wal.durableSeq > this.checkpointSeq ? this.wal.durableSeq : this.checkpointSeq;
  }

  /** Highest seq applied to data/ (visible to reads). */
  get appliedSeq(): bigint {
    return this.applied.value;
  }

  /** The generation whose primary made `seq`, or undefined if this replica cannot tell (see generations.ts). */
  generationAt(seq: bigint): number | undefined {
    return generationAt(this.history, seq);
  }

  /** The generation that made durableSeq (what an orchestrator ranks replicas by), if known. */
  get durableGeneration(): number | undefined {
    return this.generationAt(this.durableSeq);
  }

  /** Which generation made which seqs, as far back as this replica knows. */
  get generationHistory(): readonly GenerationStart[] {
    return this.history;
  }

  /** Logical bytes in use (file sizes, each inode once). */
  get usedBytes(): number {
    return this.usedBytesValue;
  }

  // ── mutations ───────────────────────────────────────────────────────────────────────

  async create(filePath: string, mode = 0o644): Promise<{ seq: bigint; fid: string }> {
    validatePath(filePath);
    const m = await this.mutate(async () => {
      await this.expectAbsent(filePath, 'create');
      return { op: 'create', path: filePath, fid: await this.files.newFid(), mode: mode & 0o7777 };
    });
    return { seq: m.seq, fid: (m.mutation as { fid: string }).fid };
  }

  async mkdir(dirPath: string, mode = 0o755): Promise<{ seq: bigint; fid: string }> {
    validatePath(dirPath);
    const m = await this.mutate(async () => {
      await this.expectAbsent(dirPath, 'mkdir');
      return { op: 'mkdir', path: dirPath, fid: await this.files.newFid(), mode: mode & 0o7777 };
    });
    return { seq: m.seq, fid: (m.mutation as { fid: string }).fid };
  }

  async symlink(target: string, linkPath: string): Promise<{ seq: bigint; fid: string }> {
    validateSymlinkTarget(target);
    validatePath(linkPath);
    const m = await this.mutate(async () => {
      await this.expectAbsent(linkPath, 'symlink');
      return { op: 'symlink', path: linkPath, fid: await this.files.newFid(), target };
    });
    return { seq: m.seq, fid: (m.mutation as { fid: string }).fid };
  }

  async link(existingPath: string, newPath: string): Promise<{ seq: bigint }> {
    validatePath(existingPath);
    validatePath(newPath);
    return this.mutate(async () => {
      const st = await this.lstatOrThrow(existingPath, 'link');
      if (st.isDirectory()) throw posixError('EPERM', 'link', existingPath, 'hard links to directories are not allowed');
      await this.expectAbsent(newPath, 'link');
      return { op: 'link', path: newPath, fid: await this.requireFid(existingPath, 'link') };
    });
  }

  /**
   * Write `data` at `offset`. `crc`, if given, is the CRC32C of `data` as it left the client
   * (or came off the wire): it is verified before anything is written.
   */
  async write(file: FileRef, offset: number, data: Uint8Array, crc?: number, options: MutateOptions = {}): Promise<{ seq: bigint; durable: Promise<void> }> {
    checkInteger('offset', offset, 0);
    if (!(data instanceof Uint8Array)) throw new TypeError('data must be a Buffer or Uint8Array');
    if (data.length > MAX_RECORD_PAYLOAD) throw new RangeError(`data must be at most ${MAX_RECORD_PAYLOAD} bytes, got ${data.length}`);
    checkInteger('offset + data.length', offset + data.length, 0);
    if (crc !== undefined) {
      // Accept the CRC as unsigned or as a signed 32-bit view of the same bits.
      checkInteger('crc', crc, -(2 ** 31), 2 ** 32 - 1);
      crc = crc >>> 0;
    }
    const payload = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const label = typeof file === 'string' ? file : file.fid;
    const badCrc = () => new BrickdError('CHECKSUM_MISMATCH', `incoming data for ${label} at ${offset} does not match its CRC32C`, { file: label, offset });
    const result = await this.mutate(async () => {
      const fid = await this.resolveFile(file, 'write');
      // The payload is checked before it gets a seq, so corrupted data never reaches the log,
      // the data file, nor onMutation (replication would ship it).
      if (crc !== undefined && native.crc32c(payload) >>> 0 !== crc) throw badCrc();
      return this.planWriteLocked(fid, offset, payload, label);
    }, payload, undefined, options);
    return { seq: result.seq, durable: result.durable };
  }

  async truncate(file: FileRef, size: number, options: MutateOptions = {}): Promise<{ seq: bigint; durable: Promise<void> }> {
    checkInteger('size', size, 0);
    const label = typeof file === 'string' ? file : file.fid;
    const result = await this.mutate(async () => this.planTruncateLocked(await this.resolveFile(file, 'truncate'), size, label), undefined, undefined, options);
    return { seq: result.seq, durable: result.durable };
  }

  async unlink(filePath: string): Promise<{ seq: bigint }> {
    validatePath(filePath);
    return this.mutate(async () => {
      const st = await this.lstatOrThrow(filePath, 'unlink');
      if (st.isDirectory()) throw posixError('EISDIR', 'unlink', filePath);
      return { op: 'unlink', path: filePath, fid: await this.requireFid(filePath, 'unlink') };
    });
  }

  async rmdir(dirPath: string): Promise<{ seq: bigint }> {
    validatePath(dirPath);
    return this.mutate(async () => {
      const st = await this.lstatOrThrow(dirPath, 'rmdir');
      if (!st.isDirectory()) throw posixError('ENOTDIR', 'rmdir', dirPath);
      if ((await readdir(this.files.dataPath(dirPath))).length > 0) throw posixError('ENOTEMPTY', 'rmdir', dirPath);
      return { op: 'rmdir', path: dirPath, fid: await this.requireFid(dirPath, 'rmdir') };
    });
  }

  /** rename(2) semantics: atomically replaces an existing target of a compatible type. */
  async rename(from: string, to: string): Promise<{ seq: bigint }> {
    validatePath(from);
    validatePath(to);
    return this.mutate(async () => {
      const src = await this.lstatOrThrow(from, 'rename');
      await this.parentDir(to, 'rename');
      if (src.isDirectory() && (to === from || to.startsWith(from + '/'))) {
        throw posixError('EINVAL', 'rename', from, `cannot move a directory into itself (${to})`);
      }
      const fid = await this.requireFid(from, 'rename');
      const dst = await this.lstatOrUndefined(to);
      let replacedFid: string | undefined;
      if (dst) {
        if (src.isDirectory() && !dst.isDirectory()) throw posixError('ENOTDIR', 'rename', to);
        if (!src.isDirectory() && dst.isDirectory()) throw posixError('EISDIR', 'rename', to);
        if (dst.isDirectory() && (await readdir(this.files.dataPath(to))).length > 0) throw posixError('ENOTEMPTY', 'rename', to);
        const dstFid = await this.files.fidAt(this.files.dataPath(to));
        if (dstFid === fid) return undefined; // same file (hard links to one inode): rename(2) does nothing
        if (!dst.isDirectory()) replacedFid = dstFid;
      }
      const m: Mutation = { op: 'rename', from, to, fid };
      if (replacedFid) m.replacedFid = replacedFid;
      return m;
    });
  }

  async setattr(entryPath: string, attrs: { mode?: number; uid?: number; gid?: number; atimeMs?: number; mtimeMs?: number }): Promise<{ seq: bigint }> {
    validatePath(entryPath, { allowRoot: true });
    if (attrs.mode !== undefined) checkInteger('mode', attrs.mode, 0, 0o7777);
    if (attrs.uid !== undefined) checkInteger('uid', attrs.uid, 0, 0xfffffffe);
    if (attrs.gid !== undefined) checkInteger('gid', attrs.gid, 0, 0xfffffffe);
    for (const key of ['atimeMs', 'mtimeMs'] as const) {
      if (attrs[key] !== undefined && !Number.isFinite(attrs[key])) throw new RangeError(`${key} must be a finite number`);
    }
    return this.mutate(async () => {
      await this.lstatOrThrow(entryPath, 'setattr');
      return { op: 'setattr', path: entryPath, fid: await this.requireFid(entryPath, 'setattr'), ...attrs };
    });
  }

  /**
   * Apply a mutation that a primary validated and numbered (the replica side of replication).
   * `seq` must be the next one (SEQ_GAP otherwise: the replica needs catch-up), or one this
   * replica already has (then nothing happens: a resend after a reconnect). Names are
   * checked again; a write's data must match `crc` when given. Resolves once durable.
   */
  async applyReplicated(seq: bigint, mutation: Mutation, crc?: number): Promise<void> {
    // File ids become paths under .brickd/: only the exact fid shape is accepted.
    for (const fid of ['fid' in mutation ? mutation.fid : undefined, mutation.op === 'rename' ? mutation.replacedFid : undefined]) {
      if (fid !== undefined && !/^[0-9a-f]{16}$/.test(fid)) throw new BrickdError('NAME_INVALID', `replicated ${mutation.op} carries a malformed file id ${JSON.stringify(fid)}`);
    }
    switch (mutation.op) {
      case 'create':
      case 'mkdir':
      case 'unlink':
      case 'rmdir':
      case 'setattr':
      case 'link':
        validatePath(mutation.path, { allowRoot: mutation.op === 'setattr' });
        break;
      case 'symlink':
        validatePath(mutation.path);
        validateSymlinkTarget(mutation.target);
        break;
      case 'rename':
        validatePath(mutation.from);
        validatePath(mutation.to);
        break;
      case 'write':
        if (crc !== undefined && native.crc32c(mutation.data) >>> 0 !== crc >>> 0) {
          throw new BrickdError('CHECKSUM_MISMATCH', `replicated write seq ${seq} does not match its CRC32C`, { seq: String(seq) });
        }
        break;
      case 'writeDirect':
        throw new RangeError('a replicated write carries its data (op "write")');
      default:
        break;
    }
    const data = mutation.op === 'write' ? mutation.data : undefined;
    await this.mutate(
      async () => {
        // Each replica chooses its own way to store a write, by the same rule as write().
        if (mutation.op === 'write') return this.planWriteLocked(mutation.fid, mutation.offset, mutation.data, mutation.fid);
        if (mutation.op === 'truncate') return this.planTruncateLocked(mutation.fid, mutation.size, mutation.fid);
        return mutation;
      },
      data,
      seq,
    );
  }

  /**
   * At open after an unclean stop: every block of `ranges` (the activity log's suspects, the
   * only places an apply may have been writing) whose CRC does not match its data gets its
   * CRC from the data. Such a block holds an unacknowledged change torn by a power loss
   * between its data page and its CRC (and maybe acknowledged bytes beside it); the log
   * replayed every acknowledged one already. Blocks outside the ranges are not touched:
   * damage there stays damage. Returns how many blocks were re-summed.
   */
  private async resumTorn(ranges: readonly FileRange[]): Promise<number> {
    const blockSize = this.manifestValue.blockSize;
    let resummed = 0;
    for (const r of ranges) {
      const bad = await this.files.use(r.fid, async (f) => {
        const first = Math.floor(r.offset / blockSize);
        const end = Math.ceil((r.length === undefined ? f.size : Math.min(f.size, r.offset + r.length)) / blockSize);
        if (end <= first) return [];
        const torn = await native.verifyBlocks(f.data.fd, f.sums.fd, first, end - first, blockSize, end - first);
        for (const block of torn) await native.resumBlocks(f.data.fd, f.sums.fd, block, 1, blockSize);
        return torn;
      });
      if (bad?.length) {
        resummed += bad.length;
        this.dirtyFids.add(r.fid);
      }
    }
    return resummed;
  }

  /** What the last stop may have left in data/ without a record (activity.ts), until settleSuspects(). */
  get suspects(): Readonly<Suspects> {
    return this.suspectsValue;
  }

  /**
   * Give the suspects a seq of their own: a local `suspect` mutation (it changes nothing in
   * the tree), durable when this resolves, so that the record of changed regions names them
   * as changed after the last recovered seq and every replica at or before that seq is
   * compared there (replication/changed.ts). Only for a store about to ship as primary, and
   * before it does: the mutation is never shipped (volume/manager.ts attach). Then the
   * activity log may let them go. Resolves the seq, or undefined when nothing was suspect.
   */
  async settleSuspects(): Promise<bigint | undefined> {
    const s = this.suspectsValue;
    if (!hasSuspects(s)) return undefined;
    const mutation = suspectRecord(s);
    const { seq } = await this.mutate(async () => (this.suspectsValue === s ? mutation : undefined));
    if (this.suspectsValue !== s) return undefined; // settled meanwhile by another call
    this.forgetSuspects();
    return seq;
  }

  /**
   * A replica's suspects were compared by a resync that has just completed (every block, or
   * its primary was told them: replication/server.ts): the activity log may let them go.
   */
  forgetSuspects(): void {
    if (!hasSuspects(this.suspectsValue)) return;
    this.suspectsValue = NO_SUSPECTS;
    this.activity.releaseSuspects();
  }

  /**
   * Resolves once every mutation that has resolved or is in flight is durable (fsync), with
   * the last seq. Rejects if a mutation acknowledged in the applied mode could not be made
   * durable: that failure stays (an fsync never reports success over lost data).
   */
  async flush(): Promise<bigint> {
    this.checkOpen();
    const seq = this.wal.lastSeq;
    await Promise.allSettled([...this.becomingDurable]);
    await this.wal.waitDurable(seq);
    if (this.unsyncedError) throw this.unsyncedError;
    return seq;
  }

  // ── reads ───────────────────────────────────────────────────────────────────────────

  /**
   * Read up to `length` bytes at `offset`, every block verified (short at EOF). A damaged
   * block goes through the repair hook unless `options.repair` is false (a repair read
   * served to a peer: it must not ask peers in turn). With `into` (at least `length` bytes)
   * the data is read into it and a view of it is returned: a caller with a scratch buffer
   * of its own saves an allocation per read (every one counts towards V8's external memory
   * and so brings the next full GC closer). `into` must not be touched until this settles.
   * A read of directReadBytes or more goes through the file's O_DIRECT descriptor: see
   * docs/store.md "Reads" for what that was measured against.
   */
  async read(file: FileRef, offset: number, length: number, options: { repair?: boolean; into?: Buffer } = {}): Promise<Buffer> {
    checkInteger('offset', offset, 0);
    checkInteger('length', length, 0, MAX_RECORD_PAYLOAD);
    this.checkOpen();
    const fid = await this.resolveFile(file, 'read');
    const label = typeof file === 'string' ? file : undefined;
    const into = options.into;
    const buffer = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    for (let attempt = 0; ; attempt++) {
      const result = await this.locks.withRead(
        fid,
        () =>
          this.files.use(fid, async (f) => {
            const direct = length >= this.opts.directReadBytes ? (await this.files.directHandle(f)).fd : undefined;
            return native.readBlocks(f.data.fd, f.sums.fd, buffer, offset, this.manifestValue.blockSize, direct);
          }),
        pageRange(offset, length, this.manifestValue.blockSize),
      );
      if (!result) throw posixError('ENOENT', 'read', label ?? fid);
      if (result.badBlock < 0) return buffer.subarray(0, result.bytes);
      this.stats.checksumErrors++;
      const repaired = attempt === 0 && options.repair !== false && (await this.repairBlock(fid, result.badBlock, label));
      if (!repaired) {
        const blockOffset = result.badBlock * this.manifestValue.blockSize;
        throw new BrickdError(
          'CHECKSUM_MISMATCH',
          `${label ?? `fid ${fid}`}: block ${result.badBlock} (offset ${blockOffset}) does not match its checksum`,
          { volume: this.volumeId, file: label, fid, block: result.badBlock, offset: blockOffset },
        );
      }
    }
  }

  async stat(entryPath: string): Promise<EntryStat> {
    validatePath(entryPath, { allowRoot: true });
    const st = await this.lstatOrThrow(entryPath, 'stat');
    const abs = this.files.dataPath(entryPath);
    const fid = await this.files.fidAt(abs);
    const out: EntryStat = {
      type: entryType(st),
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      size: st.size,
      // The fid link is brickd's own name for a file, not one the user made.
      nlink: st.isFile() || st.isSymbolicLink() ? Math.max(1, st.nlink - 1) : st.nlink,
      atimeMs: st.atimeMs,
      mtimeMs: st.mtimeMs,
      ctimeMs: st.ctimeMs,
      ino: st.ino,
      blocks: st.blocks,
    };
    if (fid) out.fid = fid;
    return out;
  }

  async readdir(dirPath: string): Promise<string[]> {
    validatePath(dirPath, { allowRoot: true });
    const st = await this.lstatOrThrow(dirPath, 'readdir');
    if (!st.isDirectory()) throw posixError('ENOTDIR', 'readdir', dirPath);
    return (await readdir(this.files.dataPath(dirPath))).sort();
  }

  async readlink(linkPath: string): Promise<string> {
    validatePath(linkPath);
    const st = await this.lstatOrThrow(linkPath, 'readlink');
    if (!st.isSymbolicLink()) throw posixError('EINVAL', 'readlink', linkPath);
    return readlink(this.files.dataPath(linkPath));
  }

  /** The volume's capacity as its size limit, and what is in use. */
  statfs(): { sizeLimitBytes: number; usedBytes: number; blockSize: number } {
    return { sizeLimitBytes: this.manifestValue.sizeLimitBytes, usedBytes: this.usedBytesValue, blockSize: this.manifestValue.blockSize };
  }

  // ── scrub support ──────────────────────────────────────────────────────────────────

  /** Every regular file's fid, in a stable order (the scrub's walk order). */
  async listFids(): Promise<string[]> {
    const fidsDir = path.join(this.files.metaDir, 'fids');
    const out: string[] = [];
    for (const fan of (await readdir(fidsDir)).sort()) {
      for (const name of (await readdir(path.join(fidsDir, fan))).sort()) {
        if ((await lstat(path.join(fidsDir, fan, name))).isFile()) out.push(name);
      }
    }
    return out;
  }

  /**
   * Verify `count` blocks of `fid` from `firstBlock` (clipped at EOF), repairing bad ones
   * through the repair hook. Resolves undefined if the file is gone, else the file's block
   * count and what was found.
   */
  async scrubBlocks(fid: string, firstBlock: number, count: number): Promise<{ blocks: number; bad: number[]; repaired: number[] } | undefined> {
    this.checkOpen();
    const blockSize = this.manifestValue.blockSize;
    const found = await this.locks.withRead(fid, () =>
      this.files.use(fid, async (f) => ({
        blocks: Math.ceil(f.size / blockSize),
        bad: await native.verifyBlocks(f.data.fd, f.sums.fd, firstBlock, count, blockSize, count),
      })),
    );
    if (!found) return undefined;
    const repaired: number[] = [];
    for (const block of found.bad) {
      this.stats.checksumErrors++;
      if (await this.repairBlock(fid, block, undefined)) repaired.push(block);
    }
    return { ...found, repaired };
  }

  // ── durability ──────────────────────────────────────────────────────────────────────

  /** Make everything applied so far durable in data/ and move the checkpoint up to it. */
  checkpoint(): Promise<void> {
    return this.checkpointMutex.run(async () => {
      const { seq, fids, dirs } = await this.mutex.run(async () => {
        const snapshot = { seq: this.applied.value, fids: this.dirtyFids, dirs: this.dirtyDirs };
        this.dirtyFids = new Set();
        this.dirtyDirs = new Set();
        this.loggedSinceCheckpoint = 0;
        return snapshot;
      });
      try {
        await this.wal.waitDurable(seq);
        for (const fid of fids) {
          await this.files.use(fid, (f) => Promise.all([native.fsync(f.data.fd), native.fdatasync(f.sums.fd)]));
        }
        for (const dir of dirs) {
          await fsyncDir(dir).catch((err) => {
            if (!isSystemError(err, 'ENOENT')) throw err;
          });
        }
        this.opts.crashPoint?.('checkpoint.synced');
        if (seq > this.checkpointSeq) await this.opts.onCheckpoint?.(seq);
        if (seq > this.checkpointSeq) {
          await this.saveManifest((m) => ({ ...m, appliedSeq: String(seq) }));
          this.checkpointSeq = seq;
        }
        for (const [fid, logged] of this.loggedDataSince) if (logged <= seq) this.loggedDataSince.delete(fid);
        this.opts.crashPoint?.('checkpoint.written');
        await this.wal.checkpointed(seq);
      } catch (err) {
        // What was not synced stays dirty for the next checkpoint.
        for (const fid of fids) this.dirtyFids.add(fid);
        for (const dir of dirs) this.dirtyDirs.add(dir);
        throw err;
      }
    });
  }

  /**
   * Run `fn` while no mutation can get a seq, with the highest seq given out so far. Every
   * seq up to it has already been reported to onMutation (that call happens under the same
   * mutex), and the next mutation will be lastSeq + 1: the point where replication can
   * start or stop listening without losing or duplicating a mutation.
   */
  atSeqBoundary<T>(fn: (lastSeq: bigint) => T | Promise<T>): Promise<T> {
    return this.mutex.run(async () => fn(this.wal.lastSeq));
  }

  /** Record a higher generation (fencing). Lower or equal generations are ignored. */
  async raiseGeneration(generation: number): Promise<void> {
    checkInteger('generation', generation, 0);
    await this.mutex.run(async () => {
      if (generation <= this.manifestValue.generation) return;
      await this.saveManifest((m) => ({ ...m, generation: Math.max(m.generation, generation) }));
    });
  }

  /** The volume's incarnation, if this replica has one (manifest.ts `volumeUid`). */
  get volumeUid(): string | undefined {
    return this.manifestValue.volumeUid;
  }

  /**
   * Take `uid` as this replica's incarnation if it has none yet (durably, before this
   * resolves); VOLUME_MISMATCH if it has another. Serialized with the other manifest
   * writers, so of two primaries racing to give a uid-less replica theirs, one wins and the
   * other is refused.
   */
  async adoptVolumeUid(uid: string): Promise<void> {
    if (!VOLUME_ID_RE.test(uid)) throw new RangeError(`volumeUid must match ${VOLUME_ID_RE}, got ${JSON.stringify(uid)}`);
    await this.mutex.run(async () => {
      this.checkOpen();
      const held = this.manifestValue.volumeUid;
      if (held === undefined) await this.saveManifest((m) => ({ ...m, volumeUid: uid }));
      else if (held !== uid) {
        throw new BrickdError('VOLUME_MISMATCH', `this replica of ${this.volumeId} is incarnation ${held}, not ${uid}: another volume under the same id`, {
          volume: this.volumeId,
          held,
          offered: uid,
        });
      }
    });
  }

  /** Whether the durable reservation covers `seq` at the current generation (renumbered.ts). */
  private isReserved(seq: bigint): boolean {
    const held = this.reservation;
    return held !== undefined && held.generation === this.manifestValue.generation && seq <= held.throughSeq;
  }

  /** Reserve the next SEQ_RESERVATION seqs from `seq`, about to be numbered here, durably (under the mutex). */
  private async reserveSeq(seq: bigint): Promise<void> {
    const reservation = { generation: this.manifestValue.generation, throughSeq: seq + SEQ_RESERVATION - 1n };
    await this.saveManifest((m) => ({ ...m, seqReservation: storedReservation(reservation) }));
    this.reservation = reservation;
  }

  /**
   * Whether a replica's `seq`, made by `generation` (undefined: unknown), lies where this
   * store (or a primary it replicated) numbered seqs again after a crash: that replica may
   * hold a mutation lost there.
   */
  renumbered(seq: bigint, generation: number | undefined): boolean {
    return isRenumbered(this.renumberedRanges, seq, generation);
  }

  /** The renumbered ranges this store knows (its own and those adopted from its primaries). */
  get renumberedSeqs(): readonly RenumberedRange[] {
    return this.renumberedRanges;
  }

  /**
   * Add a primary's renumbered ranges to ours, durably (a replica, before it welcomes that
   * primary): promoted later, this store resyncs the replicas holding such seqs too.
   */
  async adoptRenumbered(ranges: readonly RenumberedRange[]): Promise<void> {
    await this.mutex.run(async () => {
      this.checkOpen();
      const merged = mergeRanges(this.renumberedRanges, ranges);
      if (merged === this.renumberedRanges) return;
      await this.saveManifest((m) => ({ ...m, renumbered: storedRanges(merged) }));
      this.renumberedRanges = merged;
    });
  }

  /** Record a new generation history (under the mutex, or with nothing else applying). */
  private async saveHistory(history: readonly GenerationStart[]): Promise<void> {
    await this.saveManifest((m) => ({ ...m, generations: storedHistory(history) }));
    this.history = history;
  }

  /**
   * The one way the manifest is rewritten: one writer at a time, each write carrying every
   * earlier change, so a checkpoint and a generation raise can never undo each other on disk.
   */
  private saveManifest(update: (m: ReplicaManifest) => ReplicaManifest): Promise<void> {
    return this.manifestMutex.run(async () => {
      const next = update(this.manifestValue);
      await writeReplicaManifest(this.dir, next);
      this.manifestValue = next;
    });
  }

  // ── resync (docs/replication.md, "Resync"; the tree work is in resync-apply.ts) ──────

  /** True while a resync rebuilds this replica: its tree is no copy of any seq. */
  get resyncing(): boolean {
    return this.manifestValue.resyncing === true;
  }

  /**
   * While resyncing: where the resync under way started from, when it compares only the
   * regions changed after a seq (see beginResync); undefined for a full comparison.
   */
  get resyncBase(): ResyncBase | undefined {
    const base = this.resyncing ? this.manifestValue.resyncBase : undefined;
    return base && { seq: BigInt(base.seq), generation: base.generation };
  }

  /**
   * Primary: the tree as of a seq boundary and that seq (s0). Taken under the mutex once the
   * data mutations in flight have applied, so the listing is exactly the state after s0 (no
   * mutation can start meanwhile: writes wait while the tree is listed).
   */
  resyncSnapshot(): Promise<{ s0: bigint; entries: ResyncEntry[]; history: GenerationStart[] }> {
    return this.mutex.run(async () => {
      this.checkOpen();
      await Promise.allSettled([...this.inFlight]);
      const s0 = this.wal.lastSeq;
      return { s0, entries: await snapshotTree(this.files), history: historyThrough(this.history, s0) };
    });
  }

  /** The stored block CRCs of `fid` from `firstBlock` (at most `count`, clipped at EOF); undefined if gone. */
  readSums(fid: string, firstBlock: number, count: number): Promise<Buffer | undefined> {
    checkInteger('firstBlock', firstBlock, 0);
    checkInteger('count', count, 0);
    this.checkOpen();
    return readSumsRange(this.applyContext, fid, firstBlock, count);
  }

  /**
   * Replica: start (or restart) a resync whose first mutation afterwards will be s0 + 1.
   * Crash safety, in this order: (1) the manifest is flagged `resyncing`, so from here a
   * crash leaves a replica that reports it needs a resync; (2) every log segment is deleted:
   * their records belong to the replica's old history and must never be replayed onto the
   * new one; (3) the checkpoint moves to s0 and an empty log continues from it, with the
   * primary's generation history up to s0 in place of ours (written together: the flag is
   * still set, so nothing trusts either before the resync ends).
   * `base`: the resync compares only the regions changed after `base.seq` (this replica's
   * tree was generation `base.generation`'s primary's at that seq); kept with the flag, and
   * dropped by a BEGIN without one, in the same manifest write, before anything changes.
   */
  async beginResync(s0: bigint, history: readonly GenerationStart[] = [], base?: ResyncBase): Promise<void> {
    if (typeof s0 !== 'bigint' || s0 < 0n) throw new RangeError(`s0 must be a non-negative bigint, got ${String(s0)}`);
    if (base && !(typeof base.seq === 'bigint' && base.seq >= 0n && base.seq <= s0 && Number.isSafeInteger(base.generation) && base.generation >= 0)) {
      throw new RangeError(`resync base must be a seq in [0, s0 ${s0}] and a generation, got ${String(base.seq)} / ${String(base.generation)}`);
    }
    const inherited = historyThrough(history, s0);
    const problem = historyProblem(inherited);
    if (problem) throw new RangeError(`generation history: ${problem}`);
    await this.checkpointMutex.run(() =>
      this.mutex.run(async () => {
        this.checkOpen();
        await Promise.allSettled([...this.inFlight]);
        await Promise.allSettled([...this.becomingDurable]);
        await this.opts.onResyncBegin?.(s0);
        await this.saveManifest(({ resyncBase: _old, ...m }) => ({
          ...m,
          resyncing: true,
          ...(base ? { resyncBase: { seq: String(base.seq), generation: base.generation } } : {}),
        }));
        const logDir = path.join(this.files.metaDir, 'log');
        await this.wal.close();
        for (const name of await readdir(logDir)) await unlink(path.join(logDir, name));
        await fsyncDir(logDir);
        await this.saveManifest((m) => ({ ...m, appliedSeq: String(s0), generations: storedHistory(inherited) }));
        this.history = inherited;
        this.wal = (await WriteLog.open({ dir: logDir, segmentBytes: this.opts.segmentBytes, crashPoint: this.opts.crashPoint }, s0)).log;
        this.checkpointSeq = s0;
        this.applied.reset(s0);
        this.loggedDataSince.clear();
        this.loggedSinceCheckpoint = 0;
        this.opts.log.warn({ volume: this.volumeId, s0: String(s0) }, 'begin resync');
      }),
    );
  }

  /** Replica, mid-resync: make a listed entry exist with the primary's fid (see placeEntry). */
  resyncEntry(entry: ResyncEntry): Promise<void> {
    return this.mutex.run(async () => {
      this.checkResyncing();
      validatePath(entry.path);
      if (entry.type === 'symlink') validateSymlinkTarget(entry.target);
      await placeEntry(this.applyContext, { ...entry, mode: entry.mode & 0o7777 });
    });
  }

  /** Replica, mid-resync: store fetched bytes of a listed file with their CRCs; false if it is gone. */
  async resyncWrite(fid: string, offset: number, data: Buffer): Promise<boolean> {
    checkInteger('offset', offset, 0);
    this.checkResyncing();
    return writeFetched(this.applyContext, fid, offset, data);
  }

  /**
   * Replica: finish a resync. Removes what the primary did not list, stamps the listed
   * times, fsyncs everything the resync touched (a checkpoint at s0), and only then clears
   * the flag: the replica is a copy of s0 from that write on.
   */
  async endResync(listed: ReadonlyMap<string, { fid: string; mtimeMs: number }>): Promise<{ removedNames: number; removedFids: number }> {
    const removed = await this.mutex.run(async () => {
      this.checkResyncing();
      const result = await pruneUnlisted(this.applyContext, listed);
      this.usedBytesValue = await this.measureUsage();
      return result;
    });
    await this.checkpoint();
    await this.saveManifest(({ resyncing: _flag, resyncBase: _base, ...m }) => m);
    this.opts.log.warn({ volume: this.volumeId, s0: String(this.checkpointSeq), ...removed }, 'end resync');
    return removed;
  }

  private checkResyncing(): void {
    this.checkOpen();
    if (!this.resyncing) throw new BrickdError('PROTOCOL_VIOLATION', `replica ${this.volumeId} is not resyncing`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    // Let the mutations already accepted finish before their files are closed.
    await this.mutex.run(async () => {
      await Promise.allSettled([...this.inFlight]);
    });
    if (!this.failure) await this.checkpoint().catch((err) => this.opts.log.error({ err, volume: this.volumeId }, 'final checkpoint failed'));
    this.closed = true;
    await this.mutex.run(async () => {
      // Every seq numbered here is durable: nothing can have left the store that the log
      // lacks, so the next open has no range to record.
      if (this.reservation && !this.failure && this.wal.durableSeq === this.wal.lastSeq) {
        await this.saveManifest(({ seqReservation: _r, ...m }) => m).then(
          () => (this.reservation = undefined),
          (err: unknown) => this.opts.log.warn({ err, volume: this.volumeId }, 'could not drop the seq reservation (the next open records its range as renumbered)'),
        );
      }
      await this.wal.close();
      // Every mutation is durable; after a failure the log keeps naming what it names.
      await this.activity.close(!this.failure);
      await this.files.closeAll();
    });
  }

  // ── internals ───────────────────────────────────────────────────────────────────────

  private checkOpen(): void {
    if (this.closed) throw new BrickdError('STORE_CLOSED', `replica ${this.volumeId} is closed`);
    if (this.failure) throw new BrickdError('STORE_CLOSED', `replica ${this.volumeId} stopped after an I/O error: ${(this.failure as Error).message}`, {}, this.failure);
  }

  /**
   * The one path of every mutation. `validate` runs under the mutex and returns the
   * mutation to apply (or undefined for a no-op); for a direct write `directData` is the
   * data that goes to the data file.
   *
   * Data mutations (write, writeDirect, truncate) are pipelined: under the mutex they only
   * reserve their seq and queue for their file's lock, in seq order; the log write and the
   * apply then run outside it, concurrently with each other and with other mutations. The
   * per-file lock queue keeps applies to one file in seq order. Any other mutation first
   * drains the data mutations in flight, then logs and applies under the mutex, so
   * namespace changes are serial and see every earlier write applied.
   *
   * `wait`: 'durable' (the default) resolves once the mutation is durable; 'applied' once it
   * is visible to reads, with `durable` telling when it is durable (a later flush() reports
   * a durability failure).
   */
  private async mutate(
    validate: () => Promise<Mutation | undefined>,
    directData?: Buffer,
    expectSeq?: bigint,
    options: MutateOptions = {},
  ): Promise<{ seq: bigint; mutation?: Mutation; durable: Promise<void> }> {
    const wait = options.wait ?? 'durable';
    const calledAt = performance.now();
    const started = await this.mutex.run(async () => {
      this.checkOpen();
      if (expectSeq !== undefined) {
        // A mutation numbered by a primary: exactly the next seq, or one we already have.
        if (expectSeq <= this.wal.lastSeq) return undefined;
        if (expectSeq !== this.wal.lastSeq + 1n) {
          throw new BrickdError('SEQ_GAP', `replica ${this.volumeId} is at seq ${this.wal.lastSeq}, got seq ${expectSeq}`, {
            volume: this.volumeId,
            lastSeq: String(this.wal.lastSeq),
          });
        }
      }
      const mutation = await validate();
      if (!mutation) return undefined;
      // The first mutation of a generation: its start is durable before the mutation's log
      // record can be, so no seq ever lacks its generation (generations.ts).
      const last = this.history[this.history.length - 1];
      if (last?.generation !== this.manifestValue.generation) {
        await this.saveHistory(withGenerationStart(this.history, this.wal.lastSeq + 1n, this.manifestValue.generation));
      }
      // A seq numbered here is reserved durably before it can be shipped (renumbered.ts).
      if (expectSeq === undefined && !this.isReserved(this.wal.lastSeq + 1n)) await this.reserveSeq(this.wal.lastSeq + 1n);
      const isData = mutation.op === 'write' || mutation.op === 'writeDirect' || mutation.op === 'truncate';
      if (!isData) await Promise.all(this.inFlight);
      const { type, body, payload } = encodeMutation(mutation);
      const { seq, written } = await this.wal.appendStart(type, body, payload, wait === 'applied' && !options.flushFollows);
      this.loggedSinceCheckpoint += body.length + (payload?.length ?? 0) + 32;
      // Replication hears of every mutation here, in seq order, with the data of a write.
      this.opts.onMutation?.(seq, mutation.op === 'writeDirect' ? { op: 'write', fid: mutation.fid, offset: mutation.offset, data: directData! } : mutation);
      if (mutation.op === 'write' || mutation.op === 'truncate') this.loggedDataSince.set(mutation.fid, seq);
      this.opts.crashPoint?.('apply.before');
      // Called synchronously here, so the file lock is queued in seq order.
      const range = this.applyRange(mutation);
      const applying = mutation.op === 'writeDirect' ? this.applyDirect(mutation, directData!, range) : applyMutation(this.applyContext, mutation, false, range);
      const done = this.settleApply(seq, mutation, written, applying);
      if (!isData) {
        await done;
        return { seq, mutation };
      }
      this.inFlight.add(done);
      void done.catch(() => undefined).finally(() => this.inFlight.delete(done));
      return { seq, mutation, done };
    });
    if (!started) {
      // Nothing new (a resent seq, a rename onto itself): durable when what is there is.
      const durable = this.flush().then(() => undefined);
      void durable.catch(() => undefined);
      return { seq: this.wal.lastSeq, durable };
    }
    const { seq, mutation } = started;
    // The apply's own failure is the caller's answer; kept apart from a later durability
    // failure, which only an fsync (flush) can report in the applied mode.
    let applyError: unknown;
    const applied = (started.done ?? Promise.resolve()).catch((err: unknown) => {
      applyError = err;
      throw err;
    });
    const durable = (async () => {
      await applied;
      const waits: Array<Promise<void>> = [this.wal.waitDurable(seq)];
      if (mutation.op === 'writeDirect') waits.push(this.syncData(mutation.fid));
      await Promise.all(waits);
    })();
    this.becomingDurable.add(durable);
    const whenDurable = durable.then(
      () => {
        this.opts.crashPoint?.('mutation.durable');
        this.opts.onMutationDurable?.(mutation.op, (performance.now() - calledAt) / 1000);
        if (this.loggedSinceCheckpoint >= this.opts.checkpointBytes) void this.checkpointIfDirty();
      },
      (err: unknown) => {
        if (err !== applyError) this.unsyncedError ??= err;
        throw err;
      },
    );
    void whenDurable
      .catch(() => undefined)
      .finally(() => {
        this.becomingDurable.delete(durable);
        // Its record (and a direct write's data) is durable, or it failed: recovery needs
        // no hint for it any more (activity.ts).
        this.activity.leave(mutation);
      });
    if (wait === 'applied') {
      await applied;
      return { ...started, durable: whenDurable };
    }
    await whenDurable;
    return { ...started, durable: whenDurable };
  }

  /** Wait for a mutation's log write and apply; on failure decide between a clean refusal and stopping. */
  private async settleApply(seq: bigint, mutation: Mutation, written: Promise<void>, applying: Promise<void>): Promise<void> {
    const [log, apply] = await Promise.allSettled([written, applying]);
    this.changes++; // applied or not, the tree may differ now (see readStamp)
    this.releaseGrowth(mutation);
    if (log.status === 'rejected') {
      // The log stopped (it fails every later append too): nothing more is acknowledged.
      this.failure ??= log.reason;
      throw log.reason;
    }
    if (apply.status === 'rejected') {
      const err: unknown = apply.reason;
      if (mutation.op === 'writeDirect' && isSystemError(err, 'ENOSPC') && (await this.resumAfterFailedWrite(mutation))) {
        // The brick filled up under us (past the reserve, e.g. another writer on it). The
        // range may hold part of the data: it is re-summed so it reads back consistently,
        // exactly as recovery would do with its logged range. The write is not acknowledged.
        this.applied.complete(seq);
        throw volumeFull(`write of ${mutation.length} bytes at ${mutation.offset}: the brick is full`, { volume: this.volumeId, fid: mutation.fid });
      }
      // The log holds a mutation the tree does not: stop acknowledging; reopen replays it.
      this.failure ??= err;
      this.opts.log.error({ err, volume: this.volumeId, seq: String(seq), op: mutation.op }, 'apply failed; replica stopped');
      throw err;
    }
    this.applied.complete(seq);
    this.stats.mutations++;
    this.opts.crashPoint?.('apply.after');
  }

  /**
   * Apply a direct write: the file lock is requested synchronously (seq order), see mutate().
   * Its aligned part bypasses the page cache (O_DIRECT) in both modes, 'applied' included:
   * the FUSE frontend answers its writers before the apply (coalesce.ts), so the device's
   * latency is not theirs, and the mount keeps its own page cache of what was written, so
   * caching it again here would hold every written byte twice. Measured through a 3-replica
   * FUSE mount (docs/fuse.md): less CPU per GiB on the primary, and no slow start
   * while the kernel learns a new brick's writeback bandwidth (dirty pages throttled the
   * first 8 s of writes on a fresh volume to 137-162 MiB/s; 223-226 MiB/s direct).
   */
  private async applyDirect(m: Extract<Mutation, { op: 'writeDirect' }>, data: Buffer, range: LockRange | undefined): Promise<void> {
    await this.locks.withWrite(m.fid, () =>
      this.files.use(m.fid, async (file) => {
        // Named in the activity log before a byte of it can reach the data file.
        const logged = this.activity.enter(m);
        if (logged) await logged;
        const direct = await this.files.directHandle(file);
        await native.writeBlocks(file.data.fd, file.sums.fd, data, m.offset, this.manifestValue.blockSize, undefined, direct.fd);
        // In one synchronous step after the I/O (see apply.ts: extensions may apply side by side).
        const before = file.size;
        file.size = Math.max(file.size, m.offset + data.length);
        this.countUsage(file.size - before, m);
        this.dirtyFids.add(m.fid);
      }),
      range,
    );
  }

  /**
   * What the apply of a data mutation locks (rwlock.ts applyLockRange, from the growth
   * reserveRoom planned): a write that does not grow its file locks only the blocks it
   * touches, so writes to different blocks of one file apply side by side and reach the
   * addon together (block-writes.ts); so does an aligned extension without a gap. Anything
   * else locks the whole file: another write that grows the file moves its size and may
   * re-sum blocks beyond its own, a truncate cuts blocks. Called in seq order,
   * synchronously with the lock request (see mutate), under the mutex.
   */
  private applyRange(m: Mutation): LockRange | undefined {
    if (m.op !== 'write' && m.op !== 'writeDirect') return undefined;
    return applyLockRange(m.offset, m.op === 'write' ? m.data.length : m.length, this.growthOf.get(m), this.manifestValue.blockSize);
  }

  /** Re-sum the range of a direct write that failed part way; false if that fails too. */
  private async resumAfterFailedWrite(m: Extract<Mutation, { op: 'writeDirect' }>): Promise<boolean> {
    const blockSize = this.manifestValue.blockSize;
    const first = Math.floor(m.offset / blockSize);
    const count = Math.ceil((m.offset + m.length) / blockSize) - first;
    try {
      await this.locks.withWrite(m.fid, () =>
        this.files.use(m.fid, async (file) => {
          const size = (await file.data.stat()).size;
          this.usedBytesValue += size - file.size;
          file.size = size;
          await native.resumBlocks(file.data.fd, file.sums.fd, first, count, blockSize);
          this.dirtyFids.add(m.fid);
        }),
      );
      return true;
    } catch {
      return false;
    }
  }

  private syncData(fid: string): Promise<void> {
    let coalescer = this.dataSyncs.get(fid);
    if (!coalescer) {
      coalescer = new SyncCoalescer(async () => {
        await this.files.use(fid, (f) => native.fdatasync(f.data.fd));
      });
      this.dataSyncs.set(fid, coalescer);
    }
    return coalescer.request().finally(() => {
      if (this.dataSyncs.size > 1024) this.dataSyncs.delete(fid);
    });
  }

  private async checkpointIfDirty(): Promise<void> {
    if (this.closed || this.failure) return;
    if (this.applied.value === this.checkpointSeq && this.dirtyFids.size === 0 && this.dirtyDirs.size === 0) return;
    await this.checkpoint().catch((err) => this.opts.log.error({ err, volume: this.volumeId }, 'checkpoint failed'));
  }

  private async repairBlock(fid: string, block: number, label: string | undefined): Promise<boolean> {
    const log = this.opts.log.child({ volume: this.volumeId });
    const blockSize = this.manifestValue.blockSize;
    const offset = block * blockSize;
    const report = (repaired: boolean) => this.opts.onChecksumError?.({ fid, ...(label ? { file: label } : {}), block, repaired });
    if (!this.opts.repair) {
      log.error({ fid, file: label, block }, 'checksum mismatch, no repair source');
      report(false);
      return false;
    }
    const good = await this.opts.repair({ volumeId: this.volumeId, fid, ...(label ? { path: label } : {}), offset, length: blockSize }).catch((err) => {
      log.error({ err, fid, block }, 'repair fetch failed');
      return undefined;
    });
    if (!good) {
      report(false);
      return false;
    }
    // Under the file's write lock, so no write of ours interleaves: the block is checked
    // again (a write that covered it since has re-summed it: nothing to repair, and the
    // fetched bytes may be older than that write), and only the block's extent within the
    // file as it is here is written, so a copy of another length changes no size. A copy
    // shorter than that extent cannot fill the block: not repaired.
    const outcome = await this.locks.withWrite(fid, () =>
      this.files.use(fid, async (f): Promise<'written' | 'healed' | 'short'> => {
        if ((await native.verifyBlocks(f.data.fd, f.sums.fd, block, 1, blockSize, 1)).length === 0) return 'healed';
        const extent = Math.max(0, Math.min(blockSize, f.size - offset));
        if (good.length < extent) return 'short';
        await native.writeBlocks(f.data.fd, f.sums.fd, good.subarray(0, extent), offset, blockSize);
        await native.fdatasync(f.data.fd);
        await native.fdatasync(f.sums.fd);
        return 'written';
      }),
    );
    if (outcome === 'short' || outcome === undefined) {
      log.error({ fid, file: label, block, bytes: good.length }, outcome === undefined ? 'repair target is gone' : 'repair copy is shorter than the block');
      report(false);
      return false;
    }
    if (outcome === 'healed') return true;
    this.stats.repaired++;
    log.warn({ fid, file: label, block }, 'repair block from healthy copy');
    report(true);
    return true;
  }

  /**
   * The mutation that stores a write (caller holds the mutex: a `validate` of mutate()),
   * with its room reserved. A direct write cannot follow a logged data mutation of the same
   * file before the next checkpoint: replaying that earlier record would overwrite the
   * direct write's data, which is not in the log. Such writes carry their data in the log.
   */
  private async planWriteLocked(fid: string, offset: number, data: Buffer, label: string): Promise<Mutation> {
    const direct = data.length >= this.opts.directWriteBytes && !this.loggedDataSince.has(fid);
    const end = offset + data.length;
    await this.checkEdgeBlocks(fid, label, (size, bs) => [
      offset % bs !== 0 ? Math.floor(offset / bs) : -1, // head: the bytes before `offset` stay
      end % bs !== 0 ? Math.floor(end / bs) : -1, // tail: the bytes after `end` stay
      size % bs !== 0 && offset > size ? Math.floor(size / bs) : -1, // the old last block, zero-extended
    ]);
    const growth = await this.reserveRoom(fid, (size) => Math.max(size, end), data.length * (direct ? 1 : 2), 'write', label);
    const m: Mutation = direct ? { op: 'writeDirect', fid, offset, length: data.length } : { op: 'write', fid, offset, data };
    this.growthOf.set(m, growth);
    return m;
  }

  /**
   * A write or truncate that covers a block only in part re-sums that block over the bytes
   * already on disk. Were those bytes damaged, the new sum would certify them and no read
   * or scrub could find them again. So before such a mutation gets a seq, its edge blocks
   * (chosen by `edges` from the file's size once its writes in flight have applied; -1 for
   * none) are verified once those writes have applied, repaired from a peer if bad, and the
   * mutation is refused with CHECKSUM_MISMATCH, nothing logged, if one cannot be. A mutation
   * without edges costs nothing here. Caller holds the mutex.
   */
  private async checkEdgeBlocks(fid: string, label: string, edges: (size: number, blockSize: number) => number[]): Promise<void> {
    const bs = this.manifestValue.blockSize;
    // Chosen from the size the file will have once its writes in flight apply, so that a
    // mutation without edges neither reads nor waits for them (the pipeline stays full).
    const size = await this.plannedSize(fid);
    const blocks = [...new Set(edges(size, bs))].filter((b) => b >= 0 && b * bs < size);
    if (blocks.length === 0) return;
    const bad = await this.locks.withRead(fid, () =>
      this.files.use(fid, async (f) => {
        const found: number[] = [];
        for (const b of blocks) if ((await native.verifyBlocks(f.data.fd, f.sums.fd, b, 1, bs, 1)).length > 0) found.push(b);
        return found;
      }),
    );
    for (const block of bad ?? []) {
      this.stats.checksumErrors++;
      if (!(await this.repairBlock(fid, block, label))) {
        throw new BrickdError('CHECKSUM_MISMATCH', `${label}: block ${block} (offset ${block * bs}) does not match its checksum; a write that covers it only in part is refused`, {
          volume: this.volumeId,
          file: label,
          fid,
          block,
          offset: block * bs,
        });
      }
    }
  }

  /** The mutation that truncates a file, with its room reserved (caller holds the mutex). */
  private async planTruncateLocked(fid: string, size: number, label: string): Promise<Mutation> {
    await this.checkEdgeBlocks(fid, label, (oldSize, bs) => [
      size % bs !== 0 && size < oldSize ? Math.floor(size / bs) : -1, // the new last block, cut short
      oldSize % bs !== 0 && size > oldSize ? Math.floor(oldSize / bs) : -1, // the old last block, zero-extended
    ]);
    const m: Mutation = { op: 'truncate', fid, size };
    this.growthOf.set(m, await this.reserveRoom(fid, () => size, 0, 'truncate', label));
    return m;
  }

  /**
   * Enforce the volume size limit and keep the brick from filling up mid-apply, counting
   * the data mutations still in flight. Records the file's size once this mutation is
   * applied; returns the growth it reserved (released by releaseGrowth after the apply).
   */
  private async reserveRoom(fid: string, newSizeOf: (sizeBefore: number) => number, bytesWritten: number, syscall: string, label: string): Promise<number> {
    const before = await this.plannedSize(fid);
    const newSize = newSizeOf(before);
    const growth = Math.max(0, newSize - before);
    const inUse = this.usedBytesValue + this.pendingGrowth;
    if (growth > 0 && inUse + growth > this.manifestValue.sizeLimitBytes) {
      throw volumeFull(`${syscall} '${label}': ${growth} more bytes would exceed the volume size limit ${this.manifestValue.sizeLimitBytes} (in use ${inUse})`, {
        volume: this.volumeId,
        file: label,
      });
    }
    const now = Date.now();
    const need = bytesWritten + this.opts.brickReserveBytes;
    if (now - this.brickFree.at > 1000 || this.brickFree.bytes < need * 4) {
      const s = await statfs(this.dir);
      this.brickFree = { bytes: s.bavail * s.bsize, at: now };
    }
    if (this.brickFree.bytes < need) {
      throw volumeFull(`${syscall} '${label}': the brick has ${this.brickFree.bytes} bytes free, under the ${need} this write needs with its reserve`, {
        volume: this.volumeId,
        file: label,
      });
    }
    this.brickFree.bytes -= bytesWritten;
    const entry = this.pending.get(fid) ?? { size: before, ops: 0 };
    entry.size = newSize;
    entry.ops++;
    this.pending.set(fid, entry);
    this.pendingGrowth += growth;
    return growth;
  }

  /** The size of `fid` once its data mutations in flight have applied (0 if it is gone). Caller holds the mutex. */
  private async plannedSize(fid: string): Promise<number> {
    return this.pending.get(fid)?.size ?? (await this.files.use(fid, async (f) => f.size)) ?? 0;
  }

  /**
   * Usage changed by applying `mutation`: counted, and the growth it reserved released in
   * the same step. Released any later (settleApply), the growth would be counted twice in
   * between, and a concurrent reservation (a replica applies data mutations in parallel)
   * could be refused VOLUME_FULL although the volume has room.
   */
  private countUsage(delta: number, mutation?: Mutation): void {
    this.usedBytesValue += delta;
    if (mutation) this.releaseGrowth(mutation);
  }

  /** Release the growth `mutation` reserved (once: later calls do nothing). */
  private releaseGrowth(mutation: Mutation): void {
    const growth = this.growthOf.get(mutation);
    if (growth === undefined || !('fid' in mutation)) return;
    this.growthOf.delete(mutation);
    this.pendingGrowth -= growth;
    const entry = this.pending.get(mutation.fid);
    if (entry && --entry.ops === 0) this.pending.delete(mutation.fid);
  }

  private async measureUsage(): Promise<number> {
    let total = 0;
    const fidsDir = path.join(this.files.metaDir, 'fids');
    for (const fan of await readdir(fidsDir)) {
      for (const name of await readdir(path.join(fidsDir, fan))) {
        const st = await lstat(path.join(fidsDir, fan, name));
        if (st.isFile()) total += st.size;
      }
    }
    return total;
  }

  private async lstatOrUndefined(entryPath: string) {
    try {
      return await lstat(this.files.dataPath(entryPath));
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) return undefined;
      if (isSystemError(err, 'ENOTDIR')) return undefined;
      throw err;
    }
  }

  private async lstatOrThrow(entryPath: string, syscall: string) {
    const st = await this.lstatOrUndefined(entryPath);
    if (!st) throw posixError('ENOENT', syscall, entryPath);
    return st;
  }

  private async parentDir(entryPath: string, syscall: string): Promise<void> {
    const parent = path.posix.dirname(entryPath);
    if (parent === '.') return;
    const st = await this.lstatOrUndefined(parent);
    if (!st) throw posixError('ENOENT', syscall, entryPath, `parent ${parent} does not exist`);
    if (!st.isDirectory()) throw posixError('ENOTDIR', syscall, entryPath, `parent ${parent} is not a directory`);
  }

  private async expectAbsent(entryPath: string, syscall: string): Promise<void> {
    await this.parentDir(entryPath, syscall);
    if (await this.lstatOrUndefined(entryPath)) throw posixError('EEXIST', syscall, entryPath);
  }

  private async requireFid(entryPath: string, syscall: string): Promise<string> {
    const fid = await this.files.fidAt(this.files.dataPath(entryPath));
    if (!fid) throw posixError('EIO', syscall, entryPath, 'entry has no brickd file id (made outside brickd?)');
    return fid;
  }

  private async resolveFile(file: FileRef, syscall: string): Promise<string> {
    if (typeof file !== 'string') {
      if (typeof file.fid !== 'string' || !/^[0-9a-f]{16}$/.test(file.fid)) throw posixError('EINVAL', syscall, String(file.fid), 'not a file id');
      // An open file is known to exist (removal closes it first, under its write lock).
      if (this.files.isOpen(file.fid)) return file.fid;
      const st = await lstat(this.files.fidPath(file.fid)).catch(() => undefined);
      if (!st) throw posixError('ENOENT', syscall, file.fid);
      if (!st.isFile()) throw posixError('EINVAL', syscall, file.fid, 'not a regular file');
      return file.fid;
    }
    validatePath(file);
    const st = await this.lstatOrThrow(file, syscall);
    if (st.isDirectory()) throw posixError('EISDIR', syscall, file);
    if (!st.isFile()) throw posixError('EINVAL', syscall, file, 'not a regular file');
    return this.requireFid(file, syscall);
  }
}
