// This node's settings for one volume replica, beside the store's own manifest:
// <replica>/.brickd/volume.json. The generation lives in the replica manifest (the store
// enforces it); role, peers and write quorum live here. Written atomically, versioned.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BrickdError, isSystemError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';

export const VOLUME_CONFIG_FORMAT = 'brickd-volume';
export const VOLUME_CONFIG_VERSION = 1;

export type VolumeRole = 'primary' | 'replica';

/**
 * When a primary acknowledges a mutation: 'sync' (protocol C) once the write quorum holds it
 * durably; 'async' (protocol A) once this replica does, the peers following within a
 * bounded lag. Async trades the acknowledged writes of the last moments before a primary
 * is lost for the latency of one local disk.
 */
export type ReplicationMode = 'sync' | 'async';

export interface PeerConfig {
  nodeId: string;
  /** host:port of the peer's replication endpoint. */
  address: string;
}

export interface VolumeConfig {
  format: typeof VOLUME_CONFIG_FORMAT;
  version: number;
  role: VolumeRole;
  peers: PeerConfig[];
  /** Replicas (this one included) that must hold a write before it is acknowledged; 0 = majority. */
  writeQuorum: number;
  /** Absent in version-1 files written before it existed: sync. */
  replicationMode?: ReplicationMode;
  /**
   * Resync data bytes per second while this replica is primary, per replica being resynced
   * (0: unthrottled). Absent: the agent's default (resyncRateBytesPerSec in its config).
   */
  resyncRateBytesPerSec?: number;
}

const file = (replicaDir: string) => path.join(replicaDir, '.brickd', 'volume.json');

export async function readVolumeConfig(replicaDir: string): Promise<VolumeConfig> {
  try {
    const parsed = JSON.parse(await readFile(file(replicaDir), 'utf8')) as VolumeConfig;
    if (parsed.format !== VOLUME_CONFIG_FORMAT) throw new Error('not a volume config');
    if (parsed.version > VOLUME_CONFIG_VERSION) {
      throw new BrickdError('REPLICA_FORMAT_TOO_NEW', `${file(replicaDir)} has version ${parsed.version}; this agent reads up to ${VOLUME_CONFIG_VERSION}`);
    }
    return parsed;
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) return { format: VOLUME_CONFIG_FORMAT, version: VOLUME_CONFIG_VERSION, role: 'replica', peers: [], writeQuorum: 0 };
    throw err;
  }
}

export async function writeVolumeConfig(replicaDir: string, config: VolumeConfig): Promise<void> {
  await writeFileAtomic(file(replicaDir), JSON.stringify(config, null, 2) + '\n');
}
