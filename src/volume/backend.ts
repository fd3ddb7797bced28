// What a frontend (the FUSE mount) sees of a volume: path-level, POSIX-like operations on
// its tree, with errno-shaped errors (`code: 'ENOENT'`, see store/posix.ts) and BrickdErrors
// (VOLUME_FULL carries errno ENOSPC, CHECKSUM_MISMATCH that could not be repaired, QUORUM_LOST).
//
// Contract for every mutation: it resolves once it is visible to every later read of this
// backend and durable where the volume promises it (the local replica for a volume without
// peers; the write quorum for a replicated one). `sync()` is the fsync barrier: it resolves
// once every mutation that has resolved (or is in flight) is durable on the write quorum.
// Today every mutation is already durable when it resolves, so sync() is cheap; a frontend
// must still call it on fsync, so that a later write-back mode changes nothing above.
//
// Ownership: a backend borrows its store; closing the store is the volume manager's job.
import { posixError } from '../store/posix.js';
import type { EntryStat, FileRef, ReplicaStore } from '../store/store.js';

export type SetAttrs = { mode?: number; uid?: number; gid?: number; atimeMs?: number; mtimeMs?: number };

export interface VolumeBackend {
  readonly volumeId: string;
  /** A read-only backend answers every mutation with EROFS and changes nothing. */
  readonly readOnly: boolean;
  create(filePath: string, mode?: number): Promise<{ fid: string }>;
  mkdir(dirPath: string, mode?: number): Promise<unknown>;
  symlink(target: string, linkPath: string): Promise<unknown>;
  link(existingPath: string, newPath: string): Promise<unknown>;
  /** `data` is retained until the call resolves (replication may hold it): do not reuse it before. */
  write(file: FileRef, offset: number, data: Buffer): Promise<unknown>;
  truncate(file: FileRef, size: number): Promise<unknown>;
  unlink(filePath: string): Promise<unknown>;
  rmdir(dirPath: string): Promise<unknown>;
  rename(from: string, to: string): Promise<unknown>;
  setattr(entryPath: string, attrs: SetAttrs): Promise<unknown>;
  /** Up to `length` bytes (short at EOF), every block verified (repaired from a peer when it can be). */
  read(file: FileRef, offset: number, length: number): Promise<Buffer>;
  stat(entryPath: string): Promise<EntryStat>;
  readdir(dirPath: string): Promise<string[]>;
  readlink(linkPath: string): Promise<string>;
  statfs(): { sizeLimitBytes: number; usedBytes: number; blockSize: number };
  sync(): Promise<void>;
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
}

/** A backend over one local store: a volume without peers, or a primary's local replica with `replicated`. */
export function storeBackend(store: ReplicaStore, options: StoreBackendOptions = {}): VolumeBackend {
  const quorum = options.replicated;
  const acked = quorum
    ? async <T extends { seq: bigint }>(mutation: Promise<T>): Promise<T> => {
        const result = await mutation;
        await quorum(result.seq);
        return result;
      }
    : <T>(mutation: Promise<T>) => mutation;
  const backend: VolumeBackend = {
    volumeId: store.volumeId,
    readOnly: false,
    create: (p, mode) => acked(store.create(p, mode)),
    mkdir: (p, mode) => acked(store.mkdir(p, mode)),
    symlink: (target, p) => acked(store.symlink(target, p)),
    link: (from, to) => acked(store.link(from, to)),
    write: (file, offset, data) => acked(store.write(file, offset, data)),
    truncate: (file, size) => acked(store.truncate(file, size)),
    unlink: (p) => acked(store.unlink(p)),
    rmdir: (p) => acked(store.rmdir(p)),
    rename: (from, to) => acked(store.rename(from, to)),
    setattr: (p, attrs) => acked(store.setattr(p, attrs)),
    read: (file, offset, length) => store.read(file, offset, length),
    stat: (p) => store.stat(p),
    readdir: (p) => store.readdir(p),
    readlink: (p) => store.readlink(p),
    statfs: () => store.statfs(),
    sync: async () => {
      const seq = await store.flush();
      await quorum?.(seq);
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
