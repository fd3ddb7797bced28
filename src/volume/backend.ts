// What a frontend (the FUSE mount) sees of a volume: path-level, POSIX-like operations on
// its tree, with errno-shaped errors (`code: 'ENOENT'`, see store/posix.ts) and BrickdErrors
// (VOLUME_FULL carries errno ENOSPC, CHECKSUM_MISMATCH that could not be repaired, QUORUM_LOST).
//
// Contract for every mutation: it resolves once it is visible to every later read of this
// backend. Namespace operations (create, mkdir, rename, unlink, setattr, ...) are also
// durable where the volume promises it (the local replica for a volume without peers; the
// write quorum for a replicated one) when they resolve. Data operations (write, truncate)
// are too, unless the backend is in write-back mode: then they resolve once applied, and
// `sync()` is their barrier, as fsync(2) is for a local filesystem. `sync()` resolves once
// every mutation that has resolved (or is in flight) is durable on the write quorum, and
// rejects if one could not be made so. Write-back keeps at most `maxUnsyncedBytes` of data
// not yet durable on the quorum: past it a write waits for the oldest (so replication's
// retained queue is never outrun by a fast writer). In write-back mode sequential writes
// are also coalesced into larger store mutations (coalesce.ts): a write then resolves once
// it is in a run, and every other operation waits until the runs before it are applied,
// so it still sees every write that resolved.
//
// Ownership: a backend borrows its store; closing the store is the volume manager's job.
import { posixError } from '../store/posix.js';
import type { EntryStat, FileRef, ReplicaStore } from '../store/store.js';
import { DEFAULT_COALESCING, WriteCoalescer, type CoalescerOptions } from './coalesce.js';
import { DEFAULT_READ_AHEAD, ReadAhead, type ReadAheadOptions } from './readahead.js';

export type SetAttrs = { mode?: number; uid?: number; gid?: number; atimeMs?: number; mtimeMs?: number };

export interface VolumeBackend {
  readonly volumeId: string;
  /** A read-only backend answers every mutation with EROFS and changes nothing. */
  readonly readOnly: boolean;
  create(filePath: string, mode?: number): Promise<{ fid: string }>;
  mkdir(dirPath: string, mode?: number): Promise<unknown>;
  symlink(target: string, linkPath: string): Promise<unknown>;
  link(existingPath: string, newPath: string): Promise<unknown>;
  /**
   * True when write() has copied `data` by the time it returns, so the caller may reuse
   * its buffer at once. Otherwise `data` is retained until the call resolves (replication
   * may hold it): do not reuse it before.
   */
  readonly copiesWrites: boolean;
  write(file: FileRef, offset: number, data: Buffer): Promise<unknown>;
  truncate(file: FileRef, size: number): Promise<unknown>;
  unlink(filePath: string): Promise<unknown>;
  rmdir(dirPath: string): Promise<unknown>;
  rename(from: string, to: string): Promise<unknown>;
  setattr(entryPath: string, attrs: SetAttrs): Promise<unknown>;
  /**
   * Up to `length` bytes (short at EOF), every block verified (repaired from a peer when it
   * can be). With `into` (a scratch buffer of at least `length` bytes, untouched until this
   * settles) the result may be a view of it instead of a new Buffer.
   */
  read(file: FileRef, offset: number, length: number, into?: Buffer): Promise<Buffer>;
  stat(entryPath: string): Promise<EntryStat>;
  readdir(dirPath: string): Promise<string[]>;
  readlink(linkPath: string): Promise<string>;
  statfs(): { sizeLimitBytes: number; usedBytes: number; blockSize: number };
  sync(): Promise<void>;
  /**
   * What close(2) waits for: every write that resolved is applied (visible to every
   * reader), and a deferred write failure is reported. Not durability: that is sync().
   */
  flush(): Promise<void>;
}

/** Every mutating method of a backend: a read-only one refuses these. */
const MUTATIONS = ['create', 'mkdir', 'symlink', 'link', 'write', 'truncate', 'unlink', 'rmdir', 'rename', 'setattr'] as const;

export interface StoreBackendOptions {
  readOnly?: boolean;
  /**
   * For a replicated volume: resolves once `seq` (durable on the local replica) is durable
   * on the write quorum, or rejects (QUORUM_LOST). Every mutation waits for it before it
   * resolves, and sync() waits for it at the last seq.
   */
  replicated?: (seq: bigint) => Promise<void>;
  /**
   * Data mutations resolve once applied; durability follows (sync() waits for it).
   * Sequential writes are coalesced (`coalescing`, default DEFAULT_COALESCING).
   */
  writeBack?: { maxUnsyncedBytes: number; coalescing?: CoalescerOptions };
  /**
   * Protocol A, asked at each call: when true, mutations and sync() wait for the local
   * replica only; `replicated` then only paces the write-back window (the peers' lag).
   */
  acknowledgeLocally?: () => boolean;
  /** Read-ahead for sequential readers (readahead.ts); default DEFAULT_READ_AHEAD, false for none. */
  readAhead?: ReadAheadOptions | false;
}

/**
 * The data a write-back backend acknowledged that is not yet durable on its quorum, oldest
 * first. add() returns once the total is back under the limit; if the oldest write it
 * waited for failed to become durable, add() rejects with that error (the caller's write
 * fails: the application hears of the loss at once, and sync() will fail too).
 */
class UnsyncedWindow {
  private bytes = 0;
  private readonly entries: Array<Promise<unknown>> = [];

  constructor(private readonly limit: number) {}

  async add(bytes: number, durable: Promise<void>): Promise<void> {
    const settled = durable.then(
      () => undefined,
      (err: unknown) => err ?? new Error('durability failed'),
    );
    this.bytes += bytes;
    this.entries.push(settled);
    // Registered first, so it runs before any waiter below resumes.
    void settled.then(() => {
      this.bytes -= bytes;
      this.entries.splice(this.entries.indexOf(settled), 1);
    });
    while (this.bytes > this.limit && this.entries.length > 0) {
      const err = await this.entries[0];
      if (err) throw err;
    }
  }
}

/** A backend over one local store: a volume without peers, or a primary's local replica with `replicated`. */
export function storeBackend(store: ReplicaStore, options: StoreBackendOptions = {}): VolumeBackend {
  const replicated = options.replicated;
  const local = options.acknowledgeLocally ?? (() => false);
  /** The quorum wait an acknowledgement needs now: none in async mode. */
  const quorum = replicated && ((seq: bigint) => (local() ? Promise.resolve() : replicated(seq)));
  const window = options.writeBack ? new UnsyncedWindow(options.writeBack.maxUnsyncedBytes) : undefined;
  /** A data mutation in write-back mode: resolves once applied and the window has room. */
  const applied = async <T extends { seq: bigint; durable: Promise<void> }>(mutation: Promise<T>, bytes: number): Promise<T> => {
    const result = await mutation;
    // The window always waits for the peers (in async mode too): it bounds their lag.
    await window!.add(bytes, replicated ? result.durable.then(() => replicated(result.seq)) : result.durable);
    return result;
  };
  const acked = quorum
    ? async <T extends { seq: bigint }>(mutation: Promise<T>): Promise<T> => {
        const result = await mutation;
        await quorum(result.seq);
        return result;
      }
    : <T>(mutation: Promise<T>) => mutation;
  const coalescer = options.writeBack
    ? new WriteCoalescer(
        (file, offset, data, flushFollows) => applied(store.write(file, offset, data, undefined, { wait: 'applied', flushFollows }), data.length),
        () => store.statfs(),
        options.writeBack.coalescing ?? DEFAULT_COALESCING,
      )
    : undefined;
  /** `op` once every write answered before it is applied (write-back), else at once. */
  // Reads and stats come far more often than writes: with nothing pending they go straight on.
  const after = coalescer
    ? <T>(op: () => Promise<T>): Promise<T> => (coalescer.idle ? op() : coalescer.barrier().then(op))
    : <T>(op: () => Promise<T>) => op();
  // Behind the barrier (`after`): every write answered before a read has settled in the store
  // when the read-ahead checks the store's readStamp.
  const readAhead =
    options.readAhead === false
      ? undefined
      : new ReadAhead({ read: (file, offset, length, into) => store.read(file, offset, length, { into }), get readStamp() { return store.readStamp; } }, options.readAhead ?? DEFAULT_READ_AHEAD);
  const backend: VolumeBackend = {
    volumeId: store.volumeId,
    readOnly: false,
    copiesWrites: coalescer !== undefined,
    create: (p, mode) => after(() => acked(store.create(p, mode))),
    mkdir: (p, mode) => after(() => acked(store.mkdir(p, mode))),
    symlink: (target, p) => after(() => acked(store.symlink(target, p))),
    link: (from, to) => after(() => acked(store.link(from, to))),
    write: (file, offset, data) => (coalescer ? coalescer.add(file, offset, data) : acked(store.write(file, offset, data))),
    // A truncate counts as one block against the window: it carries no data.
    truncate: (file, size) => (window ? after(() => applied(store.truncate(file, size, { wait: 'applied' }), 4096)) : acked(store.truncate(file, size))),
    unlink: (p) => after(() => acked(store.unlink(p))),
    rmdir: (p) => after(() => acked(store.rmdir(p))),
    rename: (from, to) => after(() => acked(store.rename(from, to))),
    setattr: (p, attrs) => after(() => acked(store.setattr(p, attrs))),
    read: (file, offset, length, into) => after(() => (readAhead ? readAhead.read(file, offset, length, into) : store.read(file, offset, length, { into }))),
    stat: (p) => after(() => store.stat(p)),
    // A listing and a link target do not depend on file data: no barrier.
    readdir: (p) => store.readdir(p),
    readlink: (p) => store.readlink(p),
    statfs: () => store.statfs(),
    sync: async () => {
      await coalescer?.barrier(true);
      const seq = await store.flush();
      await quorum?.(seq);
      if (coalescer?.failure !== undefined) throw coalescer.failure;
    },
    flush: async () => {
      await coalescer?.barrier();
    },
  };
  return options.readOnly ? readOnlyBackend(backend) : backend;
}

/** `backend` with every mutation refused with EROFS (reads and sync pass through). */
export function readOnlyBackend(backend: VolumeBackend): VolumeBackend {
  const ro: VolumeBackend = { ...backend, readOnly: true };
  for (const name of MUTATIONS) {
    (ro as unknown as Record<string, unknown>)[name] = (target: unknown) =>
      Promise.reject(posixError('EROFS', name, typeof target === 'string' ? target : JSON.stringify(target), `volume ${backend.volumeId} is mounted read-only`));
  }
  return ro;
}
