// File identity and the open files of one replica.
//
// Every file, directory and symlink in data/ carries a stable file id (fid: 16 hex digits)
// in the xattr trusted.brickd.fid. Regular files and symlinks also have a hard link at
// .brickd/fids/<fid[0:2]>/<fid> (the way Gluster keeps .glusterfs gfid links), so data
// operations address a file by fid and a rename costs nothing; the checksum file of a
// regular file is .brickd/sums/<fid[0:2]>/<fid>. A file is gone when its fid link is its
// last link: then the fid link and sums file are removed too.
//
// Ownership: this module owns the open FileHandles of data and sums files. A handle is
// used only inside `use()`, which pins it; only unpinned handles are closed (LRU eviction,
// removal, close), so a native call never runs on a closed descriptor.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { isSystemError } from '../errors.js';
import { native } from '../native.js';

export const FID_XATTR = 'trusted.brickd.fid';
const FID_RE = /^[0-9a-f]{16}$/;

export interface OpenFile {
  fid: string;
  data: FileHandle;
  sums: FileHandle;
  pins: number;
  /** Logical size of the data file, kept current by the store (the only writer). */
  size: number;
  /** The data file opened O_DIRECT, for large aligned writes and large reads (opened on first use). */
  direct?: FileHandle;
  /** Set with the first directHandle() call; `direct` once it has opened. */
  directOpening?: Promise<FileHandle>;
}

export class FileTable {
  readonly dataDir: string;
  readonly metaDir: string;
  private readonly open = new Map<string, OpenFile>();

  constructor(
    readonly root: string,
    private readonly maxOpen = 256,
  ) {
    this.dataDir = path.join(root, 'data');
    this.metaDir = path.join(root, '.brickd');
  }

  dataPath(relative: string): string {
    return relative === '' ? this.dataDir : path.join(this.dataDir, relative);
  }

  fidPath(fid: string): string {
    return path.join(this.metaDir, 'fids', fid.slice(0, 2), fid);
  }

  sumsPath(fid: string): string {
    return path.join(this.metaDir, 'sums', fid.slice(0, 2), fid);
  }

  async ensureFanoutDirs(fid: string): Promise<void> {
    await mkdir(path.dirname(this.fidPath(fid)), { recursive: true });
    await mkdir(path.dirname(this.sumsPath(fid)), { recursive: true });
  }

  /** A new fid no file uses yet. */
  async newFid(): Promise<string> {
    for (;;) {
      const fid = randomBytes(8).toString('hex');
      try {
        await lstat(this.fidPath(fid));
      } catch (err) {
        if (isSystemError(err, 'ENOENT')) return fid;
        throw err;
      }
    }
  }

  /** The fid of the entry at `absPath` (symlinks not followed), undefined if none or absent. */
  async fidAt(absPath: string): Promise<string | undefined> {
    try {
      const value = await native.getXattr(absPath, FID_XATTR);
      const fid = value?.toString('latin1');
      return fid && FID_RE.test(fid) ? fid : undefined;
    } catch (err) {
      if (isSystemError(err, 'ENOENT') || isSystemError(err, 'ENOTDIR')) return undefined;
      throw err;
    }
  }

  async setFid(absPath: string, fid: string): Promise<void> {
    await native.setXattr(absPath, FID_XATTR, Buffer.from(fid, 'latin1'));
  }

  /**
   * Run `fn` with the open data and sums files of `fid` pinned. Resolves undefined (without
   * calling fn) when the file does not exist.
   */
  async use<T>(fid: string, fn: (file: OpenFile) => Promise<T>): Promise<T | undefined> {
    let file = this.open.get(fid);
    if (!file) {
      let data: FileHandle;
      try {
        data = await open(this.fidPath(fid), 'r+');
      } catch (err) {
        if (isSystemError(err, 'ENOENT')) return undefined;
        throw err;
      }
      let sums: FileHandle;
      try {
        sums = await open(this.sumsPath(fid), constants.O_RDWR | constants.O_CREAT, 0o600);
      } catch (err) {
        await data.close();
        throw err;
      }
      // Another caller may have opened it while we awaited: keep theirs.
      const raced = this.open.get(fid);
      if (raced) {
        await data.close();
        await sums.close();
        file = raced;
      } else {
        file = { fid, data, sums, pins: 0, size: (await data.stat()).size };
        this.open.set(fid, file);
      }
    } else {
      // Refresh LRU position.
      this.open.delete(fid);
      this.open.set(fid, file);
    }
    file.pins++;
    try {
      return await fn(file);
    } finally {
      file.pins--;
      if (this.open.size > this.maxOpen) await this.evict();
    }
  }

  private async evict(): Promise<void> {
    for (const [fid, file] of this.open) {
      if (this.open.size <= this.maxOpen) return;
      if (file.pins > 0) continue;
      this.open.delete(fid);
      await closeFile(file);
    }
  }

  /** The O_DIRECT descriptor of an open file (call inside use()). */
  async directHandle(file: OpenFile): Promise<FileHandle> {
    // The opening promise is kept, not just its result: writes to different blocks of a file
    // apply concurrently, and two of them must not each open (and one leak) a descriptor.
    file.directOpening ??= open(this.fidPath(file.fid), constants.O_RDWR | constants.O_DIRECT).then((handle) => (file.direct = handle));
    return file.directOpening;
  }

  /** Close `fid`'s handles if open and unpinned (before its files are removed). */
  async forget(fid: string): Promise<void> {
    const file = this.open.get(fid);
    if (!file || file.pins > 0) return;
    this.open.delete(fid);
    await closeFile(file);
  }

  /** The size of `fid` if it is open now (the store keeps it current), else undefined. */
  sizeIfOpen(fid: string): number | undefined {
    return this.open.get(fid)?.size;
  }

  isOpen(fid: string): boolean {
    return this.open.has(fid);
  }

  /** Every open file (for checkpoint fsyncs); callers pin through use() before I/O. */
  openFids(): string[] {
    return [...this.open.keys()];
  }

  async closeAll(): Promise<void> {
    for (const file of this.open.values()) await closeFile(file);
    this.open.clear();
  }
}

async function closeFile(file: OpenFile): Promise<void> {
  await file.data.close();
  await file.sums.close();
  await file.direct?.close();
}
