// The fuse-native operation table over a VolumeBackend.
//
// How it works: fuse-native runs libfuse's loop on its own threads; each request parks its
// FUSE thread and is handed to the JS thread, which calls one op below; the thread wakes
// when the op's callback is called. So every op is answered exactly once, through `answer`:
// with the backend's result, with the errno of its error (errno.ts), or, if the backend
// has not settled after `timeoutMs`, with ETIMEDOUT. A late result is then dropped (and a
// late error logged at debug). A hung backend therefore costs one ETIMEDOUT per request
// and never wedges the mount or the processes using it.
//
// Paths: FUSE gives "/a/b", the backend takes "a/b" and "" for the root. Names are
// validated by the store (NAME_INVALID → EINVAL or ENAMETOOLONG).
//
// Buffers: fuse-native's read and write buffers are libfuse's own memory, valid only until
// the op answers; after that libfuse reuses it for the next request (and fuse-native
// detaches the ArrayBuffer where it can). A write is copied once, before the op can answer
// (ops run in a microtask after the request, and a timeout answers much later): by the
// backend itself when it says it copies (write-back coalescing copies into its runs),
// else here into a Buffer of our own, because the backend may keep it until its promise
// settles (replication ships it) and a timed-out write answers before that. A read copies
// the backend's Buffer into libfuse's buffer once, and only while the op is still
// unanswered: after a timeout that memory is not ours any more.
import { constants } from 'node:fs';
import type Fuse from 'fuse-native';
import { allocAligned } from '../aligned.js';
import type { Logger } from '../log.js';
import type { VolumeBackend } from '../volume/backend.js';
import type { EntryStat } from '../store/store.js';
import { ErrnoMapper, ETIMEDOUT, errnoOf } from './errno.js';
import { HandleTable } from './handles.js';

export const DEFAULT_OP_TIMEOUT_MS = 30_000;

export interface OpsOptions {
  log: Logger;
  /** Per-op deadline; the op answers ETIMEDOUT when the backend has not settled by then. */
  timeoutMs?: number;
}

// Each op's callback takes its own result types; `answer` only passes through what `reply` built.
type Reply = (result: number, ...values: never[]) => void;
type AnyReply = (result: number, ...values: unknown[]) => void;

const O_ACCMODE = 3;

/** Reads up to this size (libfuse 2 sends at most 128 KiB) use a pooled scratch buffer. */
const READ_SCRATCH_BYTES = 128 * 1024;
/** Scratch buffers kept for reuse: one per read in flight at once, for a few readers. */
const READ_SCRATCH_KEPT = 16;

/**
 * Reusable read buffers. Every new Buffer of this size counts towards V8's external memory,
 * and a full GC follows every few tens of MiB of it: reusing them keeps a streaming reader
 * from paying for a mark-compact every few hundred reads.
 */
class ScratchBuffers {
  private readonly free: Buffer[] = [];

  constructor(
    private readonly size: number,
    private readonly kept: number,
  ) {}

  /** A buffer of at least `length` bytes, or undefined when `length` is larger than the pool's. */
  take(length: number): Buffer | undefined {
    if (length > this.size) return undefined;
    // Aligned: a read of 128 KiB or more is an O_DIRECT read in the store, straight into it.
    return this.free.pop() ?? allocAligned(this.size);
  }

  give(buffer: Buffer): void {
    if (this.free.length < this.kept) this.free.push(buffer);
  }
}

const TYPE_BITS: Record<EntryStat['type'], number> = {
  file: constants.S_IFREG,
  directory: constants.S_IFDIR,
  symlink: constants.S_IFLNK,
  other: 0,
};

/** libfuse's UTIME_NOW and UTIME_OMIT arrive (tv_sec 0, tv_nsec ≈ 2^30) as this many ms. */
const UTIME_SPECIAL_MS = Math.floor(((1 << 30) - 2) / 1e6);

/** "/a/b" → "a/b", "/" → "". */
export function storePath(fusePath: string): string {
  return fusePath.replace(/^\/+/, '');
}

/** EntryStat → the stat fuse-native sends to the kernel. */
export function toFuseStat(st: EntryStat, blockSize: number): Fuse.Stat {
  return {
    mode: TYPE_BITS[st.type] | st.mode,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    nlink: st.nlink,
    ino: st.ino,
    blksize: blockSize,
    blocks: st.blocks,
    atime: new Date(st.atimeMs),
    mtime: new Date(st.mtimeMs),
    ctime: new Date(st.ctimeMs),
  };
}

/** fuse-native's statfs answer from the volume's size limit and use. */
export function toFuseStatfs(fs: { sizeLimitBytes: number; usedBytes: number; blockSize: number }, readOnly: boolean): Fuse.StatFs {
  const clamp = (n: number) => Math.min(0xffffffff, Math.max(0, Math.floor(n)));
  const blocks = clamp(fs.sizeLimitBytes / fs.blockSize);
  const free = clamp((fs.sizeLimitBytes - fs.usedBytes) / fs.blockSize);
  return {
    bsize: fs.blockSize,
    frsize: fs.blockSize,
    blocks,
    bfree: free,
    bavail: free,
    // No inode limit: report as many as there are blocks.
    files: blocks,
    ffree: free,
    favail: free,
    fsid: 0,
    flag: readOnly ? 1 /* ST_RDONLY */ : 0,
    namemax: 255,
  };
}

export interface FuseOps {
  ops: Fuse.Operations;
  handles: HandleTable;
}

export function makeOps(backend: VolumeBackend, options: OpsOptions): FuseOps {
  const log = options.log;
  const timeoutMs = options.timeoutMs ?? DEFAULT_OP_TIMEOUT_MS;
  const errors = new ErrnoMapper(log);
  const handles = new HandleTable();
  const blockSize = () => backend.statfs().blockSize;
  const scratchBuffers = new ScratchBuffers(READ_SCRATCH_BYTES, READ_SCRATCH_KEPT);

  /**
   * Answer `cb` exactly once: `reply(value)` when `work` resolves in time (its first element
   * the result: 0, or a byte count), the mapped errno when it rejects, ETIMEDOUT when it
   * has not settled after timeoutMs.
   */
  function answer<T>(op: string, path: string, cb: Reply, work: () => Promise<T>, reply: (value: T) => [number, ...unknown[]]): void {
    let answered = false;
    const timer = setTimeout(() => {
      answered = true;
      log.warn({ op, path, timeoutMs }, 'answer ETIMEDOUT: the backend did not settle in time');
      cb(ETIMEDOUT);
    }, timeoutMs);
    // A rejected promise and a synchronous throw are the same failure.
    Promise.resolve()
      .then(work)
      .then(
        (value) => {
          if (answered) return;
          answered = true;
          clearTimeout(timer);
          const [result, ...values] = reply(value);
          (cb as AnyReply)(result, ...values);
        },
        (err: unknown) => {
          if (answered) {
            log.debug({ op, path, err }, 'late failure after a timeout');
            return;
          }
          answered = true;
          clearTimeout(timer);
          const errno = errors.toErrno(err, op);
          log.debug({ op, path, errno, err }, 'op failed');
          cb(errno);
        },
      );
  }

  const ok = (): [number] => [0];

  const ops: Fuse.Operations = {
    init: (cb) => cb(0),

    getattr: (path, cb) => answer('getattr', path, cb, () => backend.stat(storePath(path)), (st) => [0, toFuseStat(st, blockSize())]),

    access: (path, mode, cb) =>
      answer('access', path, cb, async () => {
        await backend.stat(storePath(path));
        if (mode & constants.W_OK && backend.readOnly) throw Object.assign(new Error('EROFS'), { code: 'EROFS' });
      }, ok),

    statfs: (path, cb) => answer('statfs', path, cb, async () => toFuseStatfs(backend.statfs(), backend.readOnly), (s) => [0, s]),

    readdir: (path, cb) => answer('readdir', path, cb, () => backend.readdir(storePath(path)), (names) => [0, ['.', '..', ...names]]),

    opendir: (path, _flags, cb) =>
      answer('opendir', path, cb, async () => {
        const st = await backend.stat(storePath(path));
        if (st.type !== 'directory') throw Object.assign(new Error('ENOTDIR'), { code: 'ENOTDIR' });
      }, () => [0, 0]),
    releasedir: (_path, _fd, cb) => cb(0),
    fsyncdir: (path, _datasync, _fd, cb) => answer('fsyncdir', path, cb, () => backend.sync(), ok),

    open: (path, flags, cb) =>
      answer('open', path, cb, async () => {
        const p = storePath(path);
        const st = await backend.stat(p);
        if (st.type === 'directory') throw Object.assign(new Error('EISDIR'), { code: 'EISDIR' });
        if (!st.fid || st.type !== 'file') throw Object.assign(new Error('EINVAL: not a regular file'), { code: 'EINVAL' });
        const writing = (flags & O_ACCMODE) !== constants.O_RDONLY;
        if (writing && backend.readOnly) throw Object.assign(new Error('EROFS'), { code: 'EROFS' });
        // FUSE 2 without atomic_o_trunc sends O_TRUNC as a separate truncate; honour it anyway.
        if (writing && flags & constants.O_TRUNC && st.size > 0) await backend.truncate({ fid: st.fid }, 0);
        return handles.open(st.fid, p, flags);
      }, (fh) => [0, fh]),

    create: (path, mode, cb) =>
      answer('create', path, cb, async () => {
        const p = storePath(path);
        const { fid } = await backend.create(p, mode & 0o7777);
        // fuse-native passes no open flags to create: the handle is read-write, not append.
        // (An O_APPEND writer still gets the end of file: the kernel sends its i_size as offset.)
        return handles.open(fid, p, constants.O_RDWR);
      }, (fh) => [0, fh]),

    read: (path, fd, buffer, length, position, cb) => {
      let data: Buffer | undefined;
      // A scratch buffer of ours, not libfuse's: the backend may still be filling it after a timeout.
      const scratch = scratchBuffers.take(length);
      answer('read', path, cb, async () => {
        try {
          data = await backend.read({ fid: handles.get(fd).fid }, position, length, scratch);
        } finally {
          // `answer` replies (copying `data` out) in a later reaction: give it back after that.
          if (scratch) setImmediate(() => scratchBuffers.give(scratch));
        }
      }, () => [data!.copy(buffer, 0, 0, Math.min(length, data!.length))]);
    },

    write: (path, fd, buffer, length, position, cb) => {
      // One copy: libfuse reuses `buffer` as soon as this op answers (see the header).
      const view = buffer.subarray(0, length);
      answer('write', path, cb, async () => {
        const handle = handles.get(fd);
        if (!handle.append) return backend.write({ fid: handle.fid }, position, backend.copiesWrites ? view : Buffer.from(view));
        const data = Buffer.from(view); // kept across the stat below
        return handles.serializeAppend(handle.fid, async () => {
          const end = (await backend.stat(storePath(path))).size;
          return backend.write({ fid: handle.fid }, end, data);
        });
      }, () => [length]);
    },

    // close(2): every write of the file is applied and a deferred write failure is reported (not durability: fsync).
    flush: (path, _fd, cb) => answer('flush', path, cb, () => backend.flush(), ok),
    fsync: (path, _datasync, _fd, cb) => answer('fsync', path, cb, () => backend.sync(), ok),
    release: (_path, fd, cb) => {
      handles.release(fd);
      cb(0);
    },

    truncate: (path, size, cb) => answer('truncate', path, cb, () => backend.truncate(storePath(path), size), ok),
    ftruncate: (path, fd, size, cb) => answer('ftruncate', path, cb, async () => backend.truncate({ fid: handles.get(fd).fid }, size), ok),

    unlink: (path, cb) => answer('unlink', path, cb, () => backend.unlink(storePath(path)), ok),
    mkdir: (path, mode, cb) => answer('mkdir', path, cb, () => backend.mkdir(storePath(path), mode & 0o7777), ok),
    rmdir: (path, cb) => answer('rmdir', path, cb, () => backend.rmdir(storePath(path)), ok),
    rename: (src, dest, cb) => answer('rename', src, cb, () => backend.rename(storePath(src), storePath(dest)), ok),
    link: (src, dest, cb) => answer('link', dest, cb, () => backend.link(storePath(src), storePath(dest)), ok),
    symlink: (target, path, cb) => answer('symlink', path, cb, () => backend.symlink(target, storePath(path)), ok),
    readlink: (path, cb) => answer('readlink', path, cb, () => backend.readlink(storePath(path)), (target) => [0, target]),

    chmod: (path, mode, cb) => answer('chmod', path, cb, () => backend.setattr(storePath(path), { mode: mode & 0o7777 }), ok),
    chown: (path, uid, gid, cb) =>
      answer('chown', path, cb, () => {
        // (uid_t)-1 / (gid_t)-1 mean "leave as is"; they arrive as uint32.
        const attrs: { uid?: number; gid?: number } = {};
        if (uid !== 0xffffffff && uid !== -1) attrs.uid = uid;
        if (gid !== 0xffffffff && gid !== -1) attrs.gid = gid;
        return backend.setattr(storePath(path), attrs);
      }, ok),
    utimens: (path, atime, mtime, cb) =>
      answer('utimens', path, cb, () => {
        const now = Date.now();
        // UTIME_NOW and UTIME_OMIT both arrive as ~1073 ms: take either as "now".
        const ms = (t: number) => (t === UTIME_SPECIAL_MS ? now : t);
        return backend.setattr(storePath(path), { atimeMs: ms(atime), mtimeMs: ms(mtime) });
      }, ok),
  };

  return { ops, handles };
}

export { errnoOf };
