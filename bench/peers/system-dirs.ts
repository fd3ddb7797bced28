// What a peer's daemons leave in system directories they write to whatever they are told.
// glusterd keeps its state, logs and pid files where the benchmark says (gluster.ts), but
// still creates a few things at fixed paths: /run/gluster/snaps, the bricks' sockets in
// /run/gluster, /var/lib/glusterd/{ss_brick,geo-replication/gsyncd_template.conf}.
//
// A snapshot of those trees is taken before the daemon starts; afterwards exactly the
// entries that were not there before are removed (files, then the directories once empty),
// deepest first. Entries that existed before are never touched. The caller makes sure no
// daemon it did not start could have made the new entries (gluster.ts refuses to run
// beside a foreign GlusterFS process). May touch: only entries absent from the snapshot.
import { lstat, readdir, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { isSystemError } from '../../src/errors.js';

export interface DirSnapshot {
  roots: readonly string[];
  entries: ReadonlySet<string>;
}

/** Every path under `root` (root included, symlinks not followed); none when it does not exist. */
async function walk(root: string, out: Set<string>): Promise<void> {
  let stat;
  try {
    stat = await lstat(root);
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) return;
    throw err;
  }
  out.add(root);
  if (!stat.isDirectory()) return;
  for (const name of await readdir(root)) await walk(path.join(root, name), out);
}

export async function snapshotDirs(roots: readonly string[]): Promise<DirSnapshot> {
  const entries = new Set<string>();
  for (const root of roots) await walk(root, entries);
  return { roots, entries };
}

/** The paths under the snapshot's roots that it does not hold, deepest first. */
export async function newEntries(before: DirSnapshot): Promise<string[]> {
  const now = (await snapshotDirs(before.roots)).entries;
  return [...now].filter((p) => !before.entries.has(p)).sort((a, b) => b.length - a.length);
}

/**
 * Remove what appeared since `before`; resolves with what could not be removed (a
 * directory that still holds entries of its own, ...), each with the reason.
 */
export async function removeNewEntries(before: DirSnapshot): Promise<string[]> {
  const failures: string[] = [];
  for (const entry of await newEntries(before)) {
    try {
      const stat = await lstat(entry);
      await (stat.isDirectory() ? rmdir(entry) : rm(entry));
    } catch (err) {
      if (!isSystemError(err, 'ENOENT')) failures.push(`${entry}: ${(err as Error).message}`);
    }
  }
  return failures;
}
