// Types for fuse-native 2.2.6 (it ships none): only the surface brickd uses.
//
// Every op gets a callback that must be called exactly once: `cb(0, ...results)` on success,
// `cb(-errno)` on failure. read and write answer with the byte count instead of 0. Paths
// are absolute inside the mount ("/a/b"). Numbers that the kernel gives as 64 bits
// (offsets, sizes, times in ms) arrive as two uint32 halves recombined into a JS number.
declare module 'fuse-native' {
  namespace Fuse {
    type Callback = (result: number, ...values: unknown[]) => void;

    interface Stat {
      mode: number;
      uid: number;
      gid: number;
      size: number;
      nlink: number;
      ino: number;
      blksize: number;
      blocks: number;
      /** Dates or ms since the epoch. */
      atime: Date | number;
      mtime: Date | number;
      ctime: Date | number;
      dev?: number;
      rdev?: number;
    }

    /** Sent to the kernel as uint32 fields. */
    interface StatFs {
      bsize: number;
      frsize: number;
      blocks: number;
      bfree: number;
      bavail: number;
      files: number;
      ffree: number;
      favail: number;
      fsid: number;
      flag: number;
      namemax: number;
    }

    interface Operations {
      init?(cb: (err: number) => void): void;
      access?(path: string, mode: number, cb: (err: number) => void): void;
      statfs?(path: string, cb: (err: number, statfs?: StatFs) => void): void;
      getattr?(path: string, cb: (err: number, stat?: Stat) => void): void;
      /** fuse-native answers fgetattr with the getattr op (by path). */
      fgetattr?(path: string, fd: number, cb: (err: number, stat?: Stat) => void): void;
      flush?(path: string, fd: number, cb: (err: number) => void): void;
      fsync?(path: string, datasync: number, fd: number, cb: (err: number) => void): void;
      fsyncdir?(path: string, datasync: number, fd: number, cb: (err: number) => void): void;
      readdir?(path: string, cb: (err: number, names?: string[], stats?: Stat[]) => void): void;
      truncate?(path: string, size: number, cb: (err: number) => void): void;
      ftruncate?(path: string, fd: number, size: number, cb: (err: number) => void): void;
      readlink?(path: string, cb: (err: number, target?: string) => void): void;
      chown?(path: string, uid: number, gid: number, cb: (err: number) => void): void;
      chmod?(path: string, mode: number, cb: (err: number) => void): void;
      /** Times in ms since the epoch (fuse-native 2.2.6 passes the atime as both: see docs/fuse.md). */
      utimens?(path: string, atime: number, mtime: number, cb: (err: number) => void): void;
      open?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
      opendir?(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
      /** `buffer` is libfuse's memory: valid only until cb is called. Answer with the bytes read. */
      read?(path: string, fd: number, buffer: Buffer, length: number, position: number, cb: (bytesOrErr: number) => void): void;
      /** `buffer` is libfuse's memory: valid only until cb is called. Answer with the bytes written. */
      write?(path: string, fd: number, buffer: Buffer, length: number, position: number, cb: (bytesOrErr: number) => void): void;
      release?(path: string, fd: number, cb: (err: number) => void): void;
      releasedir?(path: string, fd: number, cb: (err: number) => void): void;
      /** No open flags are passed (fuse-native gives only the mode). */
      create?(path: string, mode: number, cb: (err: number, fd?: number) => void): void;
      unlink?(path: string, cb: (err: number) => void): void;
      rename?(src: string, dest: string, cb: (err: number) => void): void;
      link?(src: string, dest: string, cb: (err: number) => void): void;
      /** `target` is the link's content, `path` the new link. */
      symlink?(target: string, path: string, cb: (err: number) => void): void;
      mkdir?(path: string, mode: number, cb: (err: number) => void): void;
      rmdir?(path: string, cb: (err: number) => void): void;
    }

    interface Options {
      /** ms, or false for none; on expiry fuse-native answers ETIMEDOUT itself. */
      timeout?: number | false;
      force?: boolean;
      mkdir?: boolean;
      debug?: boolean;
      allowOther?: boolean;
      defaultPermissions?: boolean;
      fsname?: string;
      subtype?: string;
    }
  }

  class Fuse {
    constructor(mnt: string, ops: Fuse.Operations, opts?: Fuse.Options);
    readonly mnt: string;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    /** The `-o` argument handed to fuse_mount (private in fuse-native; brickd overrides it). */
    protected _fuseOptions(): string;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    static readonly ENOENT: number;
    static readonly EIO: number;
  }

  export = Fuse;
}
