// Bench child: a null FUSE filesystem (fuse-native, FUSE 2): every path but the root is a
// large regular file whose writes are discarded and whose reads return zeros. It is the
// ceiling of a fuse-native frontend on this machine: the kernel round trip and the hop to
// the JS thread, with no storage behind them. It runs in its own process because its
// handlers run on this event loop: the process driving I/O into the mount must be another.
// argv: mountpoint (an existing empty directory). Mounted with big_writes and
// max_write=131072, which fuse-native has no option for (see _fuseOptions below).
import { createRequire } from 'node:module';
import { serveChild } from './serve.js';

/** What the file reports as its size: larger than any job's file. */
const NULL_FILE_BYTES = 2 ** 40;
/** Extra FUSE 2 mount options: without them the kernel sends 4 KiB writes. */
export const NULL_FUSE_EXTRA_OPTIONS = ['big_writes', 'max_write=131072'];
const FD = 42;

type Callback = (result: number, ...values: unknown[]) => void;
interface FuseInstance {
  /** fuse-native's private builder of the `-o` mount option string. */
  _fuseOptions(): string;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}
interface FuseClass {
  new (mnt: string, ops: Record<string, (...args: never[]) => void>, opts: Record<string, unknown>): FuseInstance;
}

const Fuse = createRequire(import.meta.url)('fuse-native') as FuseClass;

/** fuse-native builds its one `-o` string itself; append our options to it. */
class TunedFuse extends Fuse {
  override _fuseOptions(): string {
    const base = super._fuseOptions();
    return base ? `${base},${NULL_FUSE_EXTRA_OPTIONS.join(',')}` : `-o${NULL_FUSE_EXTRA_OPTIONS.join(',')}`;
  }
}

const epoch = new Date(0);
const rootStat = { mode: 0o40755, size: 4096, nlink: 2, uid: 0, gid: 0, mtime: epoch, atime: epoch, ctime: epoch };
const fileStat = { mode: 0o100644, size: NULL_FILE_BYTES, nlink: 1, uid: 0, gid: 0, mtime: epoch, atime: epoch, ctime: epoch };

await serveChild(async () => {
  const mountpoint = process.argv[2];
  if (!mountpoint) throw new Error('usage: null-fuse MOUNTPOINT');
  const counters = { reads: 0, readBytes: 0, writes: 0, writeBytes: 0, fsyncs: 0 };
  const ok = (cb: Callback) => cb(0);
  const ops = {
    getattr: (p: string, cb: Callback) => cb(0, p === '/' ? rootStat : fileStat),
    fgetattr: (p: string, _fd: number, cb: Callback) => cb(0, p === '/' ? rootStat : fileStat),
    readdir: (_p: string, cb: Callback) => cb(0, []),
    statfs: (_p: string, cb: Callback) =>
      cb(0, { bsize: 4096, frsize: 4096, blocks: 2 ** 30, bfree: 2 ** 30, bavail: 2 ** 30, files: 1e6, ffree: 1e6, favail: 1e6, fsid: 0, flag: 0, namemax: 255 }),
    open: (_p: string, _flags: number, cb: Callback) => cb(0, FD),
    create: (_p: string, _mode: number, cb: Callback) => cb(0, FD),
    read: (_p: string, _fd: number, buf: Buffer, len: number, _pos: number, cb: Callback) => {
      buf.fill(0, 0, len);
      counters.reads++;
      counters.readBytes += len;
      cb(len);
    },
    write: (_p: string, _fd: number, _buf: Buffer, len: number, _pos: number, cb: Callback) => {
      counters.writes++;
      counters.writeBytes += len;
      cb(len);
    },
    fsync: (_p: string, _datasync: boolean, _fd: number, cb: Callback) => {
      counters.fsyncs++;
      cb(0);
    },
    flush: (_p: string, _fd: number, cb: Callback) => ok(cb),
    release: (_p: string, _fd: number, cb: Callback) => ok(cb),
    truncate: (_p: string, _size: number, cb: Callback) => ok(cb),
    ftruncate: (_p: string, _fd: number, _size: number, cb: Callback) => ok(cb),
    utimens: (_p: string, _atime: number, _mtime: number, cb: Callback) => ok(cb),
    chmod: (_p: string, _mode: number, cb: Callback) => ok(cb),
    unlink: (_p: string, cb: Callback) => ok(cb),
  };
  const fuse = new TunedFuse(mountpoint, ops, { fsname: 'brickd-bench-null' });
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  return {
    info: { mountpoint, options: NULL_FUSE_EXTRA_OPTIONS },
    close: () => new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve()))),
    counters: () => ({ ...counters }),
  };
});
