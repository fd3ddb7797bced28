// The agent's activityLogExtents reaches every store it opens: an agent in this process on
// the embedded default, configured with 2, writes to eight files through a volume's backend
// and syncs; the replica's activity log (read as an unclean stop would leave it) then
// names at most 2 keys. With the default (1,024) it names all eight files and the namespace.
// Needs root (loop devices, mkfs, mount).
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { Agent } from '../../src/agent/agent.js';
import { loadConfig } from '../../src/agent/config.js';
import { silentLogger } from '../../src/log.js';
import { cleanupAgentState } from '../helpers/agent.js';
import { needsRoot, tempDir } from '../helpers/loop.js';
import { suspectsNow } from '../helpers/store.js';

const VOLUME = 'alx';

/** Keys the volume's activity log names now. */
async function namedNow(stateDir: string): Promise<number> {
  const bricks = path.join(stateDir, 'bricks');
  const [brick] = await readdir(bricks);
  const suspects = await suspectsNow(path.join(bricks, brick!, 'volumes', VOLUME));
  if (suspects.all) throw new Error('the activity log was unreadable');
  return suspects.ranges.length + (suspects.namespace ? 1 : 0);
}

for (const extents of [2, undefined]) {
  t.test(`activityLogExtents ${extents ?? 'default'}: the store's activity log keeps that many keys`, { skip: needsRoot() }, async (t) => {
    const stateDir = await tempDir(t, 'brickd-al-');
    cleanupAgentState(t, stateDir);
    const config = await loadConfig({
      argv: [
        '--state-dir', stateDir, '--control-socket', path.join(stateDir, 'control.sock'), '--metrics-address', 'off',
        '--embedded', '--embedded-count', '1', '--embedded-size-bytes', '320MiB',
        ...(extents === undefined ? [] : ['--activity-log-extents', String(extents)]),
      ],
    });
    const agent = new Agent(config, silentLogger);
    await agent.start();
    t.teardown(() => agent.stop());
    await agent.volumes.create({ volumeId: VOLUME, sizeLimitBytes: 64 * 2 ** 20, role: 'primary', generation: 1 });
    const backend = agent.volumes.backend(VOLUME);
    for (let i = 0; i < 8; i++) {
      await backend.create(`f${i}`, 0o644);
      await backend.write(`f${i}`, 0, Buffer.alloc(8192, i));
    }
    await backend.sync();
    const named = await namedNow(stateDir);
    if (extents === undefined) t.equal(named, 9, 'the default keeps every file written and the namespace');
    else t.ok(named <= extents, `the log names ${named} keys, at most ${extents}`);
  });
}
