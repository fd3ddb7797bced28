// The file-tree side of a resync (docs/replication.md, "Resync"): listing a primary's tree,
// and on a replica placing each listed entry under the primary's fid, then removing what
// the primary did not list.
//
// How it works on a replica. Entries arrive parents first. placeEntry makes the entry at
// its path carry the listed fid and type, keeping whatever data the replica already has for
// that fid (the fid link under .brickd/fids holds a file's data whatever its names are, so
// a file renamed on the primary keeps its bytes here and only the differing blocks travel).
// Something else in the way at that path is moved into the attic (.brickd/resync-attic)
// rather than deleted: a directory there may hold names of files listed elsewhere later.
// pruneUnlisted then removes every name the primary did not list, the attic, and every fid
// link (with its sums) of a file no listed name uses.
//
// Crash safety: none of this is logged. The replica is flagged `resyncing` in its manifest
// before the first change (store.beginResync) and until everything here has been fsynced
// (store.endResync), so a crash at any point leaves a replica that says it needs a resync
// and is never taken for a copy of any seq. Each step is idempotent, so the next resync
// simply runs over what this one left.
import { constants } from 'node:fs';
import { chmod, lchown, link, lstat, lutimes, mkdir, open, readdir, readlink, rename, rm, symlink, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { isSystemError } from '../errors.js';
import { native } from '../native.js';
import { removeFid, type ApplyContext } from './apply.js';
import type { FileTable } from './files.js';
import { pageRange, type LockRange } from './rwlock.js';

export interface ResyncEntry {
  /** Relative to data/, never empty (the root is not listed). */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  fid: string;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  /** A file's size (0 for others). */
  size: number;
  /** A symlink's target ('' for others). */
  target: string;
}

async function lstatOrUndefined(p: string) {
  try {
    return await lstat(p);
  } catch (err) {
    if (isSystemError(err, 'ENOENT') || isSystemError(err, 'ENOTDIR')) return undefined;
    throw err;
  }
}

/** Every entry of the tree that carries a fid, parents before children, names sorted. */
export async function snapshotTree(files: FileTable): Promise<ResyncEntry[]> {
  const out: ResyncEntry[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(files.dataPath(rel))).sort()) {
      const p = rel ? `${rel}/${name}` : name;
      const abs = files.dataPath(p);
      const st = await lstatOrUndefined(abs);
      const fid = st && (await files.fidAt(abs));
      // An entry without a fid was not made by brickd: it cannot be placed by fid, skip it
      // (and, for a directory, what is under it).
      if (!st || !fid) continue;
      const type = st.isFile() ? 'file' : st.isDirectory() ? 'directory' : st.isSymbolicLink() ? 'symlink' : undefined;
      if (!type) continue;
      out.push({
        path: p,
        type,
        fid,
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        mtimeMs: st.mtimeMs,
        size: type === 'file' ? st.size : 0,
        target: type === 'symlink' ? await readlink(abs) : '',
      });
      if (type === 'directory') await walk(p);
    }
  };
  await walk('');
  return out;
}

/** The block CRCs of `fid` from `firstBlock`, at most `count`, clipped at EOF; undefined if the file is gone. */
export function readSumsRange(ctx: ApplyContext, fid: string, firstBlock: number, count: number): Promise<Buffer | undefined> {
  return ctx.locks.withRead(fid, () =>
    ctx.files.use(fid, async (f) => {
      const blocks = Math.ceil(f.size / ctx.blockSize);
      const n = Math.max(0, Math.min(count, blocks - firstBlock));
      const out = Buffer.alloc(n * 4); // a sums file shorter than the data (sparse tail) reads as holes: 0
      if (n > 0) await f.sums.read(out, 0, n * 4, firstBlock * 4);
      return out;
    }),
  );
}

export function atticDir(files: FileTable): string {
  return path.join(files.metaDir, 'resync-attic');
}

/** Move whatever is at `abs` out of the way, into the attic (same filesystem: a rename). */
async function moveAside(ctx: ApplyContext, abs: string): Promise<void> {
  const attic = atticDir(ctx.files);
  await mkdir(attic, { recursive: true });
  await rename(abs, path.join(attic, randomBytes(8).toString('hex')));
  ctx.dirtyDir(path.dirname(abs));
}

/**
 * Make `entry` exist at its path with its fid, type and attributes (times come at the end:
 * writing data and names changes them). A file is cut to its listed size; its bytes are
 * compared and fetched afterwards. The caller checked the path and that its parent is a
 * listed directory placed before.
 */
export async function placeEntry(ctx: ApplyContext, entry: ResyncEntry): Promise<void> {
  const { files } = ctx;
  const abs = files.dataPath(entry.path);
  if (entry.type === 'directory') {
    let st = await lstatOrUndefined(abs);
    if (st && !(st.isDirectory() && (await files.fidAt(abs)) === entry.fid)) {
      await moveAside(ctx, abs);
      st = undefined;
    }
    if (!st) {
      await mkdir(abs, { mode: entry.mode });
      await files.setFid(abs, entry.fid);
      ctx.dirtyDir(path.dirname(abs));
    }
    await chmod(abs, entry.mode);
    await lchown(abs, entry.uid, entry.gid);
    ctx.dirtyDir(abs);
    return;
  }

  const fidPath = files.fidPath(entry.fid);
  await files.ensureFanoutDirs(entry.fid);
  let fst = await lstatOrUndefined(fidPath);
  if (fst) {
    const same = entry.type === 'file' ? fst.isFile() : fst.isSymbolicLink() && (await readlink(fidPath)) === entry.target;
    if (!same) {
      await removeFid(ctx, entry.fid);
      fst = undefined;
    }
  }
  if (!fst) {
    if (entry.type === 'file') {
      const handle = await open(fidPath, constants.O_CREAT | constants.O_EXCL | constants.O_RDWR, entry.mode);
      await handle.close();
    } else {
      await symlink(entry.target, fidPath);
    }
    ctx.dirtyDir(path.dirname(fidPath));
    fst = await lstat(fidPath);
  }
  if ((await files.fidAt(fidPath)) !== entry.fid) await files.setFid(fidPath, entry.fid);

  const st = await lstatOrUndefined(abs);
  if (!st || st.ino !== fst.ino) {
    if (st) await moveAside(ctx, abs);
    await link(fidPath, abs);
    ctx.dirtyDir(path.dirname(abs));
  }
  if (entry.type === 'symlink') {
    await lchown(fidPath, entry.uid, entry.gid);
    return;
  }
  await chmod(fidPath, entry.mode);
  await lchown(fidPath, entry.uid, entry.gid);
  await ctx.locks.withWrite(entry.fid, () =>
    files.use(entry.fid, async (f) => {
      const before = f.size;
      if (before !== entry.size) await native.truncateBlocks(f.data.fd, f.sums.fd, entry.size, ctx.blockSize);
      f.size = entry.size;
      ctx.usage(entry.size - before);
      ctx.dirtyFid(entry.fid);
    }),
  );
}

/**
 * Write fetched bytes of a file, with their block CRCs (no log: see the module comment).
 * A resync's data lands inside entries already sized to the primary's (placeEntry), so it
 * does not grow its file and locks only its pages: the writes of one file run side by side
 * and go to the addon together (ctx.writeBlocks). A write that grows the file locks the
 * whole file (growing re-sums the old last block), and so does one of a file not open now.
 */
export async function writeFetched(ctx: ApplyContext, fid: string, offset: number, data: Buffer): Promise<boolean> {
  const end = offset + data.length;
  const size = ctx.files.sizeIfOpen(fid);
  const attempt = (range: LockRange | undefined) =>
    ctx.locks.withWrite(
      fid,
      () =>
        ctx.files.use(fid, async (f) => {
          // A whole-file lock granted between the size check and here may have shrunk the
          // file: then this write grows it, which a range lock does not cover. Retried whole.
          if (range && end > f.size) return 'grows' as const;
          const before = f.size;
          await ctx.writeBlocks(f.data.fd, f.sums.fd, data, offset, ctx.blockSize);
          f.size = Math.max(f.size, end);
          ctx.usage(f.size - before);
          ctx.dirtyFid(fid);
          return true;
        }),
      range,
    );
  let done = await attempt(size !== undefined && end <= size ? pageRange(offset, data.length, ctx.blockSize) : undefined);
  if (done === 'grows') done = await attempt(undefined);
  return done === true;
}

/**
 * Remove every name in data/ that is not listed with the fid it carries, the attic, and
 * every fid link (and sums file) of a file no listed name uses. Then stamp the listed
 * times, children's changes being done.
 */
export async function pruneUnlisted(ctx: ApplyContext, listed: ReadonlyMap<string, { fid: string; mtimeMs: number }>): Promise<{ removedNames: number; removedFids: number }> {
  const { files } = ctx;
  let removedNames = 0;
  let removedFids = 0;
  const walk = async (rel: string): Promise<void> => {
    const dirAbs = files.dataPath(rel);
    for (const name of await readdir(dirAbs)) {
      const p = rel ? `${rel}/${name}` : name;
      const abs = files.dataPath(p);
      const want = listed.get(p);
      if (!want || (await files.fidAt(abs)) !== want.fid) {
        // Files below keep their fid links: removing names here never loses listed data.
        await rm(abs, { recursive: true, force: true });
        ctx.dirtyDir(dirAbs);
        removedNames++;
        continue;
      }
      if ((await lstat(abs)).isDirectory()) await walk(p);
    }
  };
  await walk('');
  await rm(atticDir(files), { recursive: true, force: true });

  const keep = new Set<string>();
  for (const { fid } of listed.values()) keep.add(fid);
  for (const kind of ['fids', 'sums'] as const) {
    const base = path.join(files.metaDir, kind);
    for (const fan of await readdir(base)) {
      for (const fid of await readdir(path.join(base, fan))) {
        if (keep.has(fid)) continue;
        if (kind === 'fids') {
          await ctx.locks.withWrite(fid, () => files.forget(fid));
          removedFids++;
        }
        await unlink(path.join(base, fan, fid)).catch((err) => {
          if (!isSystemError(err, 'ENOENT')) throw err;
        });
        ctx.dirtyDir(path.join(base, fan));
      }
    }
  }

  for (const [p, { mtimeMs }] of listed) {
    const abs = files.dataPath(p);
    await lutimes(abs, mtimeMs / 1000, mtimeMs / 1000);
    const st = await lstat(abs);
    if (st.isDirectory()) ctx.dirtyDir(abs);
    else ctx.dirtyDir(path.dirname(abs));
  }
  return { removedNames, removedFids };
}
