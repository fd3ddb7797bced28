// A BrickManager over a temp state dir whose allowlist admits exactly the test's loop devices.
import { readFile } from 'node:fs/promises';
import type { Test } from 'tap';
import { BrickManager, type BrickManagerOptions } from '../../src/brick/manager.js';
import { unmountBrick } from '../../src/brick/format.js';
import { silentLogger } from '../../src/log.js';
import { tempDir } from './loop.js';

export async function brickManager(t: Test, options: Partial<BrickManagerOptions> & { allow: string[] }): Promise<BrickManager> {
  const stateDir = options.stateDir ?? (await tempDir(t, 'brickd-state-'));
  const manager = new BrickManager({
    stateDir,
    nodeId: options.nodeId ?? '11111111-2222-4333-8444-555555555555',
    minSizeBytes: options.minSizeBytes ?? 300 * 2 ** 20,
    fsType: options.fsType ?? 'xfs',
    log: options.log ?? silentLogger,
    allow: options.allow,
  });
  // Unmount whatever this test mounted under its state dir, before the loop devices go.
  t.teardown(async () => {
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').map((l) => l.split(' ')[4] ?? '');
    for (const target of mounts.filter((m) => m.startsWith(manager.bricksDir + '/')).reverse()) {
      await unmountBrick(target, true).catch(() => {});
    }
  });
  return manager;
}
