// Applying mutations to a replica's tree, idempotently.
//
// The same function applies a mutation the first time (after it was validated and logged)
// and again during recovery, when the tree may already hold it or even later mutations.
// Each step therefore checks identity (the fid) before acting and treats "already done"
// as success:
//   create/symlink: make the fid link first (O_EXCL), tag it, then link the user path to it
//     unless the file already has a name; a crash in between leaves a fid link that the
//     replay completes.
//   mkdir: mkdir then tag; an untagged directory at the path is ours (crash before tagging).
//   write/truncate: through the fid link; a fid whose file is gone was removed later: skip.
//   writeDirect (replay only): the data may be torn, so the range is re-summed from what
//     is on disk; the write was not acknowledged unless its data was synced first.
//   unlink/rmdir/rename/setattr: only if the path still carries the fid.
// After unlink and rename-over, a fid whose fid link is its last link is removed with its
// sums file.
import { link, lstat, mkdir, open, rename, rm, rmdir, symlink, unlink, chmod, lchown, lutimes } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { isSystemError } from '../errors.js';
import { native } from '../native.js';
import type { FileTable } from './files.js';
import type { Mutation } from './mutations.js';
import type { KeyedRwLock, LockRange } from './rwlock.js';

export interface ApplyContext {
  files: FileTable;
  locks: KeyedRwLock;
  blockSize: number;
  /** native.writeBlocks for a logged write, grouped with concurrent ones (block-writes.ts). */
  writeBlocks(dataFd: number, sumsFd: number, data: Uint8Array, offset: number, blockSize: number): Promise<void>;
  /** Note that a fid's data/sums or a directory needs syncing at the next checkpoint. */
  dirtyFid(fid: string): void;
  dirtyDir(absDir: string): void;
  /**
   * Change of the replica's logical bytes in use, by applying `mutation` when it is a data
   * mutation (the store then releases the room it had reserved for it, in the same step).
   */
  usage(delta: number, mutation?: Mutation): void;
  /**
   * Before a first apply (not a replay) writes anything: the activity log's enter (see
   * activity.ts), undefined when it needs no wait.
   */
  enter(m: Mutation): Promise<void> | undefined;
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch (err) {
    if (isSystemError(err, 'ENOENT') || isSystemError(err, 'ENOTDIR')) return false;
    throw err;
  }
}

/**
 * Give a new file (create/symlink) its user name unless that was done already. A fid link
 * with more than one link has its name (maybe renamed since, if this is a replay): linking
 * the original name again would resurrect it next to the renamed one.
 */
async function linkNewFile(ctx: ApplyContext, fid: string, userPath: string): Promise<void> {
  if ((await lstat(ctx.files.fidPath(fid))).nlink > 1) return;
  await linkUserPath(ctx, fid, userPath);
}

/** Link the user path to the fid link unless it already is (idempotent). */
async function linkUserPath(ctx: ApplyContext, fid: string, userPath: string): Promise<void> {
  if ((await ctx.files.fidAt(userPath)) === fid) return;
  if (await exists(userPath)) return; // taken by a later mutation: the tree is ahead of this record
  await link(ctx.files.fidPath(fid), userPath);
  ctx.dirtyDir(path.dirname(userPath));
}

/** Remove the fid link and sums of a file that has no other name left. */
async function dropFidIfUnlinked(ctx: ApplyContext, fid: string): Promise<void> {
  const fidPath = ctx.files.fidPath(fid);
  let nlink: number;
  let size = 0;
  try {
    const st = await lstat(fidPath);
    nlink = st.nlink;
    if (st.isFile()) size = st.size;
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) return;
    throw err;
  }
  if (nlink > 1) return;
  await removeFid(ctx, fid);
  ctx.usage(-size);
}

/** Forget a file and remove its fid link and sums file, under its write lock (parts already gone are fine). */
export async function removeFid(ctx: ApplyContext, fid: string): Promise<void> {
  await ctx.locks.withWrite(fid, async () => {
    await ctx.files.forget(fid);
    await rm(ctx.files.fidPath(fid), { force: true });
    await rm(ctx.files.sumsPath(fid), { force: true });
  });
  ctx.dirtyDir(path.dirname(ctx.files.fidPath(fid)));
}

/**
 * Apply `m` to the tree. `range`: for a data mutation, the part of its file to lock (the
 * store's choice, see ReplicaStore.applyRange); the whole file when absent (replay).
 */
export async function applyMutation(ctx: ApplyContext, m: Mutation, replay: boolean, range?: LockRange): Promise<void> {
  const { files } = ctx;
  // A namespace mutation applies under the store's mutex, after every data mutation in
  // flight: no file lock to keep in order, so it may wait for the activity log first.
  if (!replay && !isDataOp(m)) {
    const logged = ctx.enter(m);
    if (logged) await logged;
  }
  switch (m.op) {
    case 'create': {
      const fidPath = files.fidPath(m.fid);
      await files.ensureFanoutDirs(m.fid);
      if (!(await exists(fidPath))) {
        const handle = await open(fidPath, constants.O_CREAT | constants.O_EXCL | constants.O_RDWR, m.mode & 0o7777);
        await handle.close();
        await chmod(fidPath, m.mode & 0o7777); // not narrowed by the umask
        ctx.dirtyDir(path.dirname(fidPath));
      }
      if ((await files.fidAt(fidPath)) !== m.fid) await files.setFid(fidPath, m.fid);
      ctx.dirtyFid(m.fid);
      await linkNewFile(ctx, m.fid, files.dataPath(m.path));
      return;
    }
    case 'symlink': {
      const fidPath = files.fidPath(m.fid);
      await files.ensureFanoutDirs(m.fid);
      if (!(await exists(fidPath))) {
        await symlink(m.target, fidPath);
        ctx.dirtyDir(path.dirname(fidPath));
      }
      if ((await files.fidAt(fidPath)) !== m.fid) await files.setFid(fidPath, m.fid);
      await linkNewFile(ctx, m.fid, files.dataPath(m.path));
      return;
    }
    case 'link': {
      if (!(await exists(files.fidPath(m.fid)))) return;
      await linkUserPath(ctx, m.fid, files.dataPath(m.path));
      return;
    }
    case 'mkdir': {
      const dir = files.dataPath(m.path);
      const current = await files.fidAt(dir);
      if (current === m.fid) return;
      if (current === undefined && !(await exists(dir))) {
        await mkdir(dir, { mode: m.mode & 0o7777 });
        await chmod(dir, m.mode & 0o7777);
        ctx.dirtyDir(path.dirname(dir));
      } else if (current !== undefined) {
        return; // another directory took the name later
      }
      await files.setFid(dir, m.fid);
      ctx.dirtyDir(dir);
      return;
    }
    case 'write':
    case 'writeDirect':
    case 'truncate': {
      await ctx.locks.withWrite(m.fid, () =>
        files.use(m.fid, async (file) => {
          // Requested synchronously above (the lock queue keeps seq order); the activity
          // log names the file's part before a byte of it is written.
          if (!replay) {
            const logged = ctx.enter(m);
            if (logged) await logged;
          }
          // The size moves in one synchronous step after the I/O: two aligned extensions of
          // a file may apply side by side (rwlock.ts applyLockRange), and each must count
          // only the growth it adds to what the other already counted.
          let newSize: number;
          if (m.op === 'write') {
            await ctx.writeBlocks(file.data.fd, file.sums.fd, m.data, m.offset, ctx.blockSize);
            newSize = Math.max(file.size, m.offset + m.data.length);
          } else if (m.op === 'truncate') {
            await native.truncateBlocks(file.data.fd, file.sums.fd, m.size, ctx.blockSize);
            newSize = m.size;
          } else {
            if (!replay) throw new Error('writeDirect is applied by the store itself, not from a record');
            const first = Math.floor(m.offset / ctx.blockSize);
            const last = Math.ceil((m.offset + m.length) / ctx.blockSize);
            newSize = (await file.data.stat()).size;
            await native.resumBlocks(file.data.fd, file.sums.fd, first, last - first, ctx.blockSize);
          }
          ctx.usage(newSize - file.size, m);
          file.size = newSize;
          ctx.dirtyFid(m.fid);
        }),
        range,
      );
      return;
    }
    case 'unlink': {
      const target = files.dataPath(m.path);
      if ((await files.fidAt(target)) === m.fid) {
        await unlink(target);
        ctx.dirtyDir(path.dirname(target));
      }
      await dropFidIfUnlinked(ctx, m.fid);
      return;
    }
    case 'rmdir': {
      const target = files.dataPath(m.path);
      if ((await files.fidAt(target)) === m.fid) {
        await rmdir(target);
        ctx.dirtyDir(path.dirname(target));
      }
      return;
    }
    case 'rename': {
      const from = files.dataPath(m.from);
      const to = files.dataPath(m.to);
      if ((await files.fidAt(from)) === m.fid) {
        if ((await files.fidAt(to)) === m.fid) {
          // Both names are links to this file: only a replay gets here (a rename between
          // two names of one file is a no-op that is never logged), after an earlier
          // record re-linked the old name. rename(2) would keep both; finish the move.
          await unlink(from);
        } else {
          await rename(from, to);
        }
        ctx.dirtyDir(path.dirname(from));
        ctx.dirtyDir(path.dirname(to));
      }
      if (m.replacedFid) await dropFidIfUnlinked(ctx, m.replacedFid);
      return;
    }
    case 'setattr': {
      const target = files.dataPath(m.path);
      if ((await files.fidAt(target)) !== m.fid) return;
      const st = await lstat(target);
      if (m.mode !== undefined && !st.isSymbolicLink()) await chmod(target, m.mode & 0o7777);
      if (m.uid !== undefined || m.gid !== undefined) await lchown(target, m.uid ?? st.uid, m.gid ?? st.gid);
      if (m.atimeMs !== undefined || m.mtimeMs !== undefined) {
        await lutimes(target, (m.atimeMs ?? st.atimeMs) / 1000, (m.mtimeMs ?? st.mtimeMs) / 1000);
      }
      if (st.isDirectory()) ctx.dirtyDir(target);
      else if (st.isFile()) ctx.dirtyFid(m.fid);
      else ctx.dirtyDir(path.dirname(target));
      return;
    }
    case 'suspect':
      return; // a note for replication (mutations.ts): nothing to do to the tree
  }
}

function isDataOp(m: Mutation): boolean {
  return m.op === 'write' || m.op === 'writeDirect' || m.op === 'truncate';
}
