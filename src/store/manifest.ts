// The replica manifest: .brickd/replica.json in a replica directory.
//
// It names the volume, its size limit, checksum block size and generation, and records
// `appliedSeq`, the checkpoint: every mutation up to it is applied to data/ and synced, so
// recovery replays the log only after it. Rewritten atomically (fsutil.writeFileAtomic);
// the format version is checked on open and a newer one is refused.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BrickdError, isSystemError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';
import { parseStoredHistory, type StoredGenerationStart } from './generations.js';
import { parseRanges, parseReservation, type StoredRenumberedRange, type StoredSeqReservation } from './renumbered.js';

/** Volume ids and volume uids: what the control API and the replication wire accept as ids. */
export const VOLUME_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const REPLICA_FORMAT = 'brickd-replica';
export const REPLICA_VERSION = 1;

export interface ReplicaManifest {
  format: typeof REPLICA_FORMAT;
  version: number;
  volumeId: string;
  sizeLimitBytes: number;
  /** Checksum block size in bytes (a power of two). */
  blockSize: number;
  /** Highest generation this replica has seen (fencing, see DESIGN.md invariant 5). */
  generation: number;
  /** Checkpoint: every mutation with seq ≤ appliedSeq is applied and synced. Decimal string (u64). */
  appliedSeq: string;
  createdAt: string;
  /**
   * Present (true) while a resync is rebuilding this replica from a primary (see
   * docs/replication.md, Resync): the tree is then no copy of any seq and must not be
   * trusted or served until the resync ends. Absent otherwise.
   */
  resyncing?: true;
  /**
   * Present only with `resyncing`, when the resync under way compares only the regions
   * changed after a seq (docs/replication.md, "Resuming an incremental resync"): the tree was
   * generation `generation`'s primary's tree at `seq` when it began, plus whatever the resync
   * has written since, so the same primary can resume it the same way after a cut.
   */
  resyncBase?: StoredResyncBase;
  /**
   * Which generation made which seqs (see generations.ts): present once this replica has
   * taken a mutation, absent in manifests of agents that predate it (their seqs then have no
   * known generation, and replication falls back to comparing seq ranges).
   */
  generations?: StoredGenerationStart[];
  /**
   * The volume's incarnation (docs/replication.md "Volume incarnation"): set at creation
   * (given by the orchestrator, or minted for a primary) or adopted once from the first
   * primary that sends one; never changed after. Absent in replicas of agents that predate
   * it, and in a replica that has not met a primary with one yet.
   */
  volumeUid?: string;
  /**
   * Seqs this store may number locally before the manifest is written again (renumbered.ts):
   * present while it numbers mutations as a primary, dropped at a clean close.
   */
  seqReservation?: StoredSeqReservation;
  /** Seq ranges numbered again after a crash (renumbered.ts); absent when there are none. */
  renumbered?: StoredRenumberedRange[];
}

/** Where an incremental resync started from (see ReplicaManifest.resyncBase). */
export interface ResyncBase {
  seq: bigint;
  generation: number;
}

/** Its JSON form (the seq as a decimal string). */
export interface StoredResyncBase {
  seq: string;
  generation: number;
}

/**
 * Parse the manifest's `resyncBase` (only beside `resyncing`); malformed is an error naming
 * `file`, as for the manifest's other optional fields (renumbered.ts, generations.ts).
 */
function parseResyncBase(value: unknown, resyncing: unknown, file: string): ResyncBase | undefined {
  if (value === undefined) return undefined;
  const v = value as Partial<StoredResyncBase> | null;
  if (resyncing !== true || !v || typeof v.seq !== 'string' || !/^\d{1,20}$/.test(v.seq) || BigInt(v.seq) >= 2n ** 64n || !Number.isSafeInteger(v.generation) || v.generation! < 0) {
    throw new BrickdError('VOLUME_NOT_FOUND', `${file}: resyncBase is malformed or not beside resyncing`, { file });
  }
  return { seq: BigInt(v.seq), generation: v.generation! };
}

export function replicaManifestPath(replicaDir: string): string {
  return path.join(replicaDir, '.brickd', 'replica.json');
}

export async function writeReplicaManifest(replicaDir: string, manifest: ReplicaManifest): Promise<void> {
  await writeFileAtomic(replicaManifestPath(replicaDir), JSON.stringify(manifest, null, 2) + '\n');
}

/** Read and check the manifest; VOLUME_NOT_FOUND when absent. */
export async function readReplicaManifest(replicaDir: string): Promise<ReplicaManifest> {
  const file = replicaManifestPath(replicaDir);
  let parsed: Partial<ReplicaManifest>;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<ReplicaManifest>;
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) throw new BrickdError('VOLUME_NOT_FOUND', `no replica at ${replicaDir}`, { replicaDir }, err);
    throw new BrickdError('VOLUME_NOT_FOUND', `unreadable replica manifest ${file}`, { file }, err);
  }
  if (parsed.format !== REPLICA_FORMAT || typeof parsed.version !== 'number') {
    throw new BrickdError('VOLUME_NOT_FOUND', `${file} is not a replica manifest`, { file });
  }
  if (parsed.version > REPLICA_VERSION) {
    throw new BrickdError(
      'REPLICA_FORMAT_TOO_NEW',
      `${file} has format version ${parsed.version}; this agent reads up to ${REPLICA_VERSION}. Run a newer brickd.`,
      { file, version: parsed.version },
    );
  }
  const ok =
    typeof parsed.volumeId === 'string' &&
    Number.isSafeInteger(parsed.sizeLimitBytes) &&
    Number.isInteger(parsed.blockSize) &&
    Number.isSafeInteger(parsed.generation) &&
    typeof parsed.appliedSeq === 'string' &&
    /^\d+$/.test(parsed.appliedSeq) &&
    (parsed.resyncing === undefined || parsed.resyncing === true) &&
    (parsed.volumeUid === undefined || (typeof parsed.volumeUid === 'string' && VOLUME_ID_RE.test(parsed.volumeUid)));
  if (!ok) throw new BrickdError('VOLUME_NOT_FOUND', `${file} is missing fields`, { file });
  parseStoredHistory(parsed.generations, file);
  parseReservation(parsed.seqReservation, file);
  parseRanges(parsed.renumbered, file);
  parseResyncBase(parsed.resyncBase, parsed.resyncing, file);
  return parsed as ReplicaManifest;
}
