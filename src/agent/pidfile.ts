// One agent per state dir: <stateDir>/agent.pid names the agent that owns it.
//
// Two agents on one state dir would mount the same bricks and replay the same write logs
// at once. The pid file is created exclusively (O_EXCL); if it exists, the agent it names
// is checked: still alive and a brickd → STATE_DIR_IN_USE, nothing touched; gone (a crash,
// SIGKILL) → the stale file is replaced. The agent removes it on a clean stop.
import { readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BrickdError, isSystemError } from '../errors.js';

async function ownerAlive(pid: number): Promise<boolean> {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('brickd');
  } catch {
    return false;
  }
}

/** Take the state dir; resolves with the function that releases it. */
export async function lockStateDir(stateDir: string): Promise<() => Promise<void>> {
  const file = path.join(stateDir, 'agent.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx', mode: 0o644 });
      return async () => {
        // Only our own file: a newer agent may have replaced a file we thought stale.
        const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
        if (owner === process.pid) await unlink(file).catch(() => {});
      };
    } catch (err) {
      if (!isSystemError(err, 'EEXIST')) throw err;
    }
    const owner = Number((await readFile(file, 'utf8').catch(() => '')).trim());
    if (await ownerAlive(owner)) {
      throw new BrickdError('STATE_DIR_IN_USE', `agent ${owner} already runs on ${stateDir}`, { stateDir, pid: owner });
    }
    await unlink(file).catch((err) => {
      if (!isSystemError(err, 'ENOENT')) throw err;
    });
  }
  throw new BrickdError('STATE_DIR_IN_USE', `could not take ${file}: another agent is starting on ${stateDir}`, { stateDir });
}
