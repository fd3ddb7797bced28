// The replica side of a resync (src/replication/resync-target.ts) driven frame by frame,
// over a store that records the calls and lets the test decide when each write finishes:
// DATA writes run side by side, END waits for all of them, and a failed write ends the
// resync (APPLY_FAILED) without END's work ever running. The full protocol over real
// agents and bricks is in resync.test.ts; this pins down the target's own ordering.
import t from 'tap';
import { ResyncTarget, type ResyncTargetPort, type ResyncTargetStore } from '../../src/replication/resync-target.js';
import type { ResyncEntry } from '../../src/store/resync-apply.js';
import { silentLogger } from '../../src/log.js';

interface Harness {
  target: ResyncTarget;
  calls: string[];
  /** Pending writes, by offset: resolve or reject each. */
  writes: Map<number, { resolve: () => void; reject: (err: Error) => void }>;
  refused: Array<{ code: string; message: string }>;
  done: bigint[];
}

const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

function harness(): Harness {
  const calls: string[] = [];
  const writes: Harness['writes'] = new Map();
  const refused: Harness['refused'] = [];
  const done: bigint[] = [];
  const store: ResyncTargetStore = {
    resyncing: true,
    resyncBase: undefined,
    manifest: { blockSize: 4096 },
    beginResync: async (s0) => void calls.push(`begin ${s0}`),
    resyncEntry: async (entry) => void calls.push(`entry ${entry.path}`),
    readSums: async () => Buffer.alloc(0),
    resyncWrite: (fid, offset) => {
      calls.push(`write ${offset}`);
      return new Promise<boolean>((resolve, reject) => writes.set(offset, { resolve: () => resolve(true), reject }));
    },
    endResync: async () => {
      calls.push('end');
      return { removedNames: 0, removedFids: 0 };
    },
  };
  const port: ResyncTargetPort = {
    send: () => {},
    refuse: (code, message) => void refused.push({ code, message }),
    pause: () => {},
    resume: () => {},
    track: () => {},
    done: (s0) => void done.push(s0),
  };
  const target = new ResyncTarget(store, 7n, port, silentLogger, Promise.resolve());
  const entry: ResyncEntry = { path: 'f', type: 'file', fid: '00000000000000aa', mode: 0o644, uid: 0, gid: 0, mtimeMs: 0, size: 1 << 20, target: '' };
  target.onMessage({ type: 'RESYNC_ENTRY', entry });
  return { target, calls, writes, refused, done };
}

const data = (offset: number) => ({ type: 'RESYNC_DATA' as const, fid: '00000000000000aa', offset, data: Buffer.alloc(4096, offset / 4096) });

t.test('DATA writes run side by side; END waits for every one', async (t) => {
  const h = harness();
  for (const offset of [0, 8192, 65536, 4096]) h.target.onMessage(data(offset));
  h.target.onMessage({ type: 'RESYNC_END', entries: 1 });
  await turns();
  t.same(h.calls, ['begin 7', 'entry f', 'write 0', 'write 8192', 'write 65536', 'write 4096'], 'all four started, in arrival order, none finished');
  h.writes.get(65536)!.resolve();
  h.writes.get(0)!.resolve();
  h.writes.get(4096)!.resolve();
  await turns();
  t.notOk(h.calls.includes('end'), 'END waits while one write is still running');
  t.same(h.done, []);
  h.writes.get(8192)!.resolve();
  await turns();
  t.equal(h.calls.at(-1), 'end');
  t.same(h.done, [7n], 'DONE{s0} once everything is written');
  t.equal(h.target.stats.dataBytes, 4 * 4096);
  t.same(h.refused, []);
});

t.test('a failed DATA write ends the resync: APPLY_FAILED, END never runs', async (t) => {
  const h = harness();
  for (const offset of [0, 4096, 8192]) h.target.onMessage(data(offset));
  h.target.onMessage({ type: 'RESYNC_END', entries: 1 });
  await turns();
  h.writes.get(4096)!.reject(new Error('ENOSPC: no space left on device'));
  h.writes.get(0)!.resolve();
  await turns();
  t.match(h.refused, [{ code: 'APPLY_FAILED', message: /resync: ENOSPC/ }]);
  h.writes.get(8192)!.resolve();
  await turns();
  t.notOk(h.calls.includes('end'), 'END was skipped');
  t.same(h.done, []);
  t.equal(h.refused.length, 1, 'refused once');
});

t.test('DATA past the listed size is refused before any write starts', async (t) => {
  const h = harness();
  h.target.onMessage(data((1 << 20) - 2048));
  await turns();
  t.match(h.refused, [{ code: 'PROTOCOL_VIOLATION', message: /past its listed size/ }]);
  t.notOk(h.calls.some((c) => c.startsWith('write')));
});
