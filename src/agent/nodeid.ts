// The node's stable identity: a UUID created once and kept in <stateDir>/node-id.
// Bricks record it in their manifests, so a disk moved to another node is recognised as
// foreign instead of being silently taken over.
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { BrickdError, isSystemError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export async function loadOrCreateNodeId(stateDir: string): Promise<string> {
  const file = path.join(stateDir, 'node-id');
  try {
    const id = (await readFile(file, 'utf8')).trim();
    if (!UUID.test(id)) throw new BrickdError('CONFIG_INVALID', `${file} does not hold a node id (a UUID): ${JSON.stringify(id.slice(0, 40))}`, { file });
    return id;
  } catch (err) {
    if (!isSystemError(err, 'ENOENT')) throw err;
  }
  const id = randomUUID();
  await writeFileAtomic(file, id + '\n');
  return id;
}
