// The brick manifest: the file on every brick that makes the disk self-describing.
//
// Together with the filesystem label (brickd-<short id>) and UUID (= brick id) it is all
// the agent needs to recognise and remount a brick after a restart: no fstab, no external
// database. Written atomically (see fsutil.ts); versioned so an older agent refuses a brick
// written by a newer format instead of misreading it.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BrickdError, isSystemError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';

export const BRICK_MANIFEST_FILE = 'brickd.json';
export const BRICK_MANIFEST_FORMAT = 'brickd-brick';
export const BRICK_MANIFEST_VERSION = 1;

export interface BrickManifest {
  format: typeof BRICK_MANIFEST_FORMAT;
  version: number;
  brickId: string;
  nodeId: string;
  fsType: 'xfs' | 'ext4';
  label: string;
  createdAt: string;
  /** Operator tags given at adoption (zone, ssd, ...). */
  tags: Record<string, string>;
}

export function manifestPath(brickRoot: string): string {
  return path.join(brickRoot, BRICK_MANIFEST_FILE);
}

export async function writeBrickManifest(brickRoot: string, manifest: BrickManifest): Promise<void> {
  await writeFileAtomic(manifestPath(brickRoot), JSON.stringify(manifest, null, 2) + '\n');
}

/**
 * Read and check a brick manifest. Resolves undefined when there is none (an adoption that
 * stopped between mkfs and the manifest); rejects BRICK_FORMAT_TOO_NEW or
 * BRICK_MANIFEST_INVALID otherwise.
 */
export async function readBrickManifest(brickRoot: string): Promise<BrickManifest | undefined> {
  const file = manifestPath(brickRoot);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (isSystemError(err, 'ENOENT')) return undefined;
    throw new BrickdError('BRICK_MANIFEST_INVALID', `cannot read ${file}`, { file }, err);
  }
  let parsed: Partial<BrickManifest>;
  try {
    parsed = JSON.parse(text) as Partial<BrickManifest>;
  } catch (err) {
    throw new BrickdError('BRICK_MANIFEST_INVALID', `${file} is not JSON`, { file }, err);
  }
  if (parsed.format !== BRICK_MANIFEST_FORMAT || typeof parsed.version !== 'number') {
    throw new BrickdError('BRICK_MANIFEST_INVALID', `${file} is not a brick manifest`, { file });
  }
  if (parsed.version > BRICK_MANIFEST_VERSION) {
    throw new BrickdError(
      'BRICK_FORMAT_TOO_NEW',
      `${file} has format version ${parsed.version}; this agent reads up to ${BRICK_MANIFEST_VERSION}. Run a newer brickd.`,
      { file, version: parsed.version, supported: BRICK_MANIFEST_VERSION },
    );
  }
  for (const key of ['brickId', 'nodeId', 'fsType', 'label', 'createdAt'] as const) {
    if (typeof parsed[key] !== 'string') throw new BrickdError('BRICK_MANIFEST_INVALID', `${file}: field ${key} is missing`, { file });
  }
  return { ...parsed, tags: parsed.tags ?? {} } as BrickManifest;
}
