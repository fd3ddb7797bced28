// The primary side of an incremental resync (src/replication/resync-source.ts) over a store
// that records the calls: the changed regions are asked only after the snapshot (asked
// before it, a write reserved in between would be in the tree at s0 and never compared);
// BEGIN carries the base seq only to a replica that keeps it; a record that no longer
// covers the base by the snapshot means every block is compared. The full protocol over
// real agents and bricks is in resync.test.ts.
import t from 'tap';
import type { ChangedFiles } from '../../src/replication/changed.js';
import { ResyncSource, type ResyncPort, type ResyncSourceStore } from '../../src/replication/resync-source.js';
import { silentLogger } from '../../src/log.js';
import type { ReplicationMessage } from '../../src/wire/replication.js';

const MiB = 2 ** 20;
const FID = '00000000000000aa';

function run(changed: ChangedFiles | undefined, tellReplica: boolean) {
  const calls: string[] = [];
  const sent: ReplicationMessage[] = [];
  const store: ResyncSourceStore = {
    manifest: { blockSize: 4096 },
    resyncSnapshot: async () => {
      calls.push('snapshot');
      return { s0: 10n, entries: [{ path: 'f', type: 'file', fid: FID, mode: 0o644, uid: 0, gid: 0, mtimeMs: 0, size: 8 * MiB, target: '' }], history: [] };
    },
    generationAt: () => 1,
    renumbered: () => false,
    renumberedSeqs: [],
    readSums: async (_fid, _first, count) => Buffer.alloc(count * 4),
    read: async (_file, _offset, length) => Buffer.alloc(length),
  };
  const port: ResyncPort = {
    send: (message) => {
      sent.push(message);
      return 1;
    },
    congested: false,
    drained: async () => {},
    closed: false,
  };
  const incremental = {
    from: 4n,
    changed: (from: bigint) => {
      calls.push(`changed since ${from}`);
      return changed;
    },
    tellReplica,
  };
  const source = new ResyncSource(store, port, { log: silentLogger, incremental });
  const running = source.run(1, () => {});
  return { source, running, calls, sent };
}

const turns = async (n = 10) => {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

t.test('the changed regions are asked after the snapshot; BEGIN carries the base only to a replica that keeps it', async (t) => {
  for (const tellReplica of [true, false]) {
    const r = run({ regionBytes: MiB, files: new Map([[FID, new Set([2, 5])]]) }, tellReplica);
    await turns();
    t.same(r.calls, ['snapshot', 'changed since 4'], 'asked once, after the snapshot');
    t.equal(r.source.progress.incremental, true);
    const begin = r.sent.find((m) => m.type === 'RESYNC_BEGIN') as { incrementalFrom?: bigint } | undefined;
    t.equal(begin?.incrementalFrom, tellReplica ? 4n : undefined, tellReplica ? 'BEGIN names the base' : 'BEGIN names no base');
    const sums = r.sent.filter((m) => m.type === 'RESYNC_SUMS').map((m) => (m as { firstBlock: number }).firstBlock);
    t.same(sums, [512, 1280], 'SUMS only for the two changed regions');
    t.equal(r.source.progress.bytesToCompare, 2 * MiB);
    r.source.abort(new Error('test over'));
    await t.rejects(r.running);
  }
});

t.test('a record that no longer covers the base by the snapshot: every block, and no base in BEGIN', async (t) => {
  const r = run(undefined, true);
  await turns();
  t.same(r.calls, ['snapshot', 'changed since 4']);
  t.equal(r.source.progress.incremental, false);
  const begin = r.sent.find((m) => m.type === 'RESYNC_BEGIN') as { incrementalFrom?: bigint } | undefined;
  t.ok(begin && !('incrementalFrom' in begin), 'BEGIN names no base: the replica drops any it kept');
  t.equal(r.source.progress.bytesToCompare, 8 * MiB, 'the whole file is compared');
  r.source.abort(new Error('test over'));
  await t.rejects(r.running);
});
