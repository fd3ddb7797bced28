// The open-file table of a mount: the number FUSE keeps as `fh` → the file it names.
//
// A handle names its file by fid, not by path, so a rename or an unlink of the path while
// it is open does not change which file the handle reads and writes. (An unlinked open
// file stays reachable because libfuse's high-level API renames it to .fuse_hidden*
// instead of unlinking it until the last release.) Handle numbers are uint32 and never 0:
// fuse-native treats 0 as "no handle".
import { constants } from 'node:fs';
import { Mutex } from '../lock.js';

export interface FileHandle {
  fid: string;
  /** The path at open time (for logs; libfuse passes the current path with every op). */
  path: string;
  /** open(2) flags as the kernel gave them. */
  flags: number;
  /** O_APPEND: every write goes to the file's current end. */
  append: boolean;
}

const MAX_HANDLE = 0xffffffff;

export class HandleTable {
  private readonly handles = new Map<number, FileHandle>();
  private readonly appendLocks = new Map<string, { mutex: Mutex; users: number }>();
  private next = 1;

  get size(): number {
    return this.handles.size;
  }

  open(fid: string, path: string, flags: number): number {
    if (this.handles.size >= MAX_HANDLE - 1) throw Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
    while (this.handles.has(this.next)) this.next = this.next >= MAX_HANDLE ? 1 : this.next + 1;
    const fh = this.next;
    this.next = this.next >= MAX_HANDLE ? 1 : this.next + 1;
    this.handles.set(fh, { fid, path, flags, append: (flags & constants.O_APPEND) !== 0 });
    return fh;
  }

  /** The handle, or an EBADF error. */
  get(fh: number): FileHandle {
    const handle = this.handles.get(fh);
    if (!handle) throw Object.assign(new Error(`EBADF: bad file handle ${fh}`), { code: 'EBADF' });
    return handle;
  }

  release(fh: number): void {
    this.handles.delete(fh);
  }

  /**
   * Run `fn` alone among the appends to `fid`: an append reads the end of the file and
   * writes there, so two appends in flight would both read the same end.
   */
  async serializeAppend<T>(fid: string, fn: () => Promise<T>): Promise<T> {
    let entry = this.appendLocks.get(fid);
    if (!entry) {
      entry = { mutex: new Mutex(), users: 0 };
      this.appendLocks.set(fid, entry);
    }
    entry.users++;
    try {
      return await entry.mutex.run(fn);
    } finally {
      if (--entry.users === 0) this.appendLocks.delete(fid);
    }
  }
}
