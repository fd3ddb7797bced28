// A replica's record of changed regions (replication/changed.ts, kept by VolumeManager
// whatever the role), kept across a clean restart of the agent: <replica>/.brickd/changes.json.
//
// Why: a replica that was down when its primary's agent restarted (an upgrade) would
// otherwise be compared block by block over the whole volume when it returns, because the
// restarted primary no longer knows what changed since that replica's seq; likewise for the
// replicas that lagged a replica restarted and then promoted.
//
// Safety rests on three rules, each enough to refuse a record that might not describe
// every change since its start:
// - written only at a clean close (VolumeManager.close, after the primary detached, so it
//   recorded every mutation the store took); a crash leaves no file (or an old one, below);
// - taken (read and deleted, the delete made durable) when the replica is opened, whatever
//   its role, so a file never outlives the one start that follows its close: a replica
//   that later changes by a stream or a resync can never pick it up;
// - used only if the store's last seq at open is exactly the record's last recorded seq
//   (ChangedRegions.recordedThrough) and the generation is the one it was saved at, and
//   never saved for a replica left mid-resync: no mutation or resync happened in between.
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
