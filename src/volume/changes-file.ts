// A replica's record of changed regions (replication/changed.ts, kept by VolumeManager
// whatever the role), kept across a restart of the agent, clean or not:
// <replica>/.brickd/changes.json.
//
// Why: a replica that was down when its primary's agent restarted (an upgrade, a crash)
// would otherwise be compared block by block over the whole volume when it returns, because
// the restarted primary no longer knows what changed since that replica's seq; likewise for
// the replicas that lagged a replica restarted and then promoted.
//
// Safety rests on these rules, each enough to refuse a record that might not describe every
// change since its start:
// - written by every checkpoint, before the checkpoint moves (store onCheckpoint), and at a
//   clean close: the file always records at least up to the store's checkpoint, and the log
//   replays every mutation after it (fed to the record at open, store onReplay); so the
//   record plus the replay is complete, whatever the crash;
// - removed, durably, when a resync starts (store onResyncBegin): the tree it described is
//   being replaced; never written while the store is flagged resyncing;
// - taken (read and deleted, the delete made durable) when the replica is opened, so a file
//   never outlives the one start that follows it;
// - used only if it records at least up to the checkpoint found at open and the generation
//   is the one it was saved at; mutations it recorded past the recovered log (lost in the
//   crash) stay as changes at the last recovered seq (ChangedRegions.truncateTo).
// A file that cannot be read or parsed is deleted and ignored: the next resync is a full one.
import { readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { isSystemError } from '../errors.js';
import { fsyncDir, writeFileAtomic } from '../fsutil.js';
import type { Logger } from '../log.js';
import { ChangedRegions, type ChangedRegionsSnapshot } from '../replication/changed.js';

const FORMAT = 'brickd-changed-regions';
const VERSION = 1;

const file = (replicaDir: string) => path.join(replicaDir, '.brickd', 'changes.json');

/** Save `changes`, made while the store was at `generation`. */
export async function saveChanges(replicaDir: string, changes: ChangedRegions, generation: number): Promise<void> {
  await writeFileAtomic(file(replicaDir), JSON.stringify({ format: FORMAT, version: VERSION, generation, record: changes.snapshot() }));
}

/** Remove the saved record, durably (a resync is replacing the tree it describes). */
export async function removeChanges(replicaDir: string): Promise<void> {
  try {
    await unlink(file(replicaDir));
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) return;
    throw err;
  }
  await fsyncDir(path.dirname(file(replicaDir)));
}

/**
 * Take the saved record, if any: the file is deleted (durably) whether or not it is usable.
 * Returns the record with the generation it was saved at.
 */
export async function takeChanges(replicaDir: string, log: Logger): Promise<{ changes: ChangedRegions; generation: number } | undefined> {
  let text: string;
  try {
    text = await readFile(file(replicaDir), 'utf8');
    // Gone for good before it is used: a crash from here on cannot find it again.
    await unlink(file(replicaDir));
    await fsyncDir(path.dirname(file(replicaDir)));
  } catch (err) {
    // Never a reason not to open the replica: without the record, resyncs compare everything.
    if (!isSystemError(err, 'ENOENT')) log.warn({ err, file: file(replicaDir) }, 'cannot take the record of changed regions; not using it');
    return undefined;
  }
  try {
    const parsed = JSON.parse(text) as { format?: unknown; version?: unknown; generation?: unknown; record?: ChangedRegionsSnapshot };
    if (parsed.format !== FORMAT || parsed.version !== VERSION || !Number.isSafeInteger(parsed.generation)) throw new RangeError('not a saved record of changed regions');
    return { changes: ChangedRegions.restore(parsed.record!), generation: parsed.generation as number };
  } catch (err) {
    log.warn({ err, file: file(replicaDir) }, 'ignoring an unreadable record of changed regions (the next resync compares everything)');
    return undefined;
  }
}
