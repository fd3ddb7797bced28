// WriteCoalescer (src/volume/coalesce.ts) against a recording write function: which runs
// reach the store, in which order, with which bytes, and how failures and the size limit
// are answered. The same coalescer under a real FUSE mount and store is covered by
// test/fuse/ops.test.ts (write-back) and the agent-level FUSE tests.
import t from 'tap';
import { WriteCoalescer, type CoalescerOptions } from '../../src/volume/coalesce.js';
import type { FileRef } from '../../src/store/store.js';

interface Call {
  file: FileRef;
  offset: number;
  data: Buffer;
  flushFollows: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** A coalescer whose writes are recorded and settled by the test (or at once with `auto`). */
function harness(options: Partial<CoalescerOptions> = {}, auto = true, capacity = { sizeLimitBytes: 1 << 30, usedBytes: 0 }) {
  const calls: Call[] = [];
  const c = new WriteCoalescer(
    (file, offset, data, flushFollows) =>
      new Promise<void>((resolve, reject) => {
        // The coalescer hands over the run's buffer: keep a snapshot of what was passed.
        calls.push({ file, offset, data: Buffer.from(data), flushFollows, resolve, reject });
        if (auto) resolve();
      }),
    () => capacity,
    { runBytes: 64, lingerMs: 5, maxRunsInFlight: 2, maxOpenRuns: 8, ...options },
  );
  return { c, calls, capacity };
}

const bytes = (n: number, fill: number) => Buffer.alloc(n, fill);

t.test('sequential writes become one run per runBytes, in order, with their bytes', async (t) => {
  const { c, calls } = harness();
  t.equal(c.idle, true, 'idle before any write');
  for (let i = 0; i < 8; i++) await c.add({ fid: 'f1' }, i * 16, bytes(16, i));
  t.equal(calls.length, 2, 'two full runs of 64 bytes were dispatched without waiting for the linger');
  await c.barrier();
  t.equal(c.idle, true, 'idle once every run is applied');
  t.same(calls.map((x) => [x.offset, x.data.length]), [[0, 64], [64, 64]]);
  t.same([...calls[0]!.data.subarray(0, 32)], [...bytes(16, 0), ...bytes(16, 1)]);
  t.same([...calls[1]!.data.subarray(48)], [...bytes(16, 7)]);
});

t.test('only a barrier for a flush tells the runs it dispatches that a flush follows', async (t) => {
  const { c, calls } = harness();
  await c.add({ fid: 'f1' }, 0, bytes(8, 1));
  await c.barrier(); // a read's or a stat's barrier
  await c.add({ fid: 'f1' }, 8, bytes(8, 2));
  await c.add({ fid: 'f2' }, 0, bytes(8, 3));
  await c.barrier(true); // sync's
  await c.add({ fid: 'f1' }, 100, bytes(8, 4));
  await new Promise((resolve) => setTimeout(resolve, 30)); // the linger
  t.same(
    calls.map((x) => [(x.file as { fid: string }).fid, x.offset, x.flushFollows]),
    [['f1', 0, false], ['f1', 8, true], ['f2', 0, true], ['f1', 100, false]],
  );
});

t.test('a gap starts a new run; the linger dispatches lone runs', async (t) => {
  const { c, calls } = harness();
  await c.add({ fid: 'f1' }, 0, bytes(8, 1));
  t.equal(c.idle, false, 'not idle with a run open');
  await c.add({ fid: 'f1' }, 100, bytes(8, 2)); // a gap
  await c.add({ fid: 'f2' }, 108, bytes(8, 3)); // another file: a run of its own
  t.same(calls.map((x) => [(x.file as { fid: string }).fid, x.offset]), [['f1', 0]], 'the gap dispatched the run before it');
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.same(calls.map((x) => [(x.file as { fid: string }).fid, x.offset]).sort(), [['f1', 0], ['f1', 100], ['f2', 108]], 'the open runs went out after lingerMs without a barrier');
});

t.test('parallel writers to different files each keep their run; past maxOpenRuns the oldest goes', async (t) => {
  const { c, calls } = harness({ maxOpenRuns: 3 });
  // Three writers, interleaved as the kernel delivers them: each file still gets full runs.
  for (let i = 0; i < 4; i++) for (const fid of ['a', 'b', 'c']) await c.add({ fid }, i * 16, bytes(16, i));
  t.same(calls.map((x) => [(x.file as { fid: string }).fid, x.offset, x.data.length]), [['a', 0, 64], ['b', 0, 64], ['c', 0, 64]], 'one full run per file');
  await c.add({ fid: 'a' }, 64, bytes(8, 9));
  await c.add({ fid: 'b' }, 64, bytes(8, 9));
  await c.add({ fid: 'c' }, 64, bytes(8, 9));
  await c.add({ fid: 'd' }, 0, bytes(8, 9)); // a fourth file: the oldest open run (a) goes
  t.same((calls[3]!.file as { fid: string }).fid, 'a');
  t.equal(calls.length, 4);
  await c.barrier();
  t.equal(calls.length, 7, 'the barrier dispatched every open run');
});

t.test('the caller may reuse its buffer as soon as add() returns', async (t) => {
  const { c, calls } = harness();
  const buf = bytes(16, 0xaa);
  const done = c.add({ fid: 'f1' }, 0, buf);
  buf.fill(0x55);
  await done;
  await c.barrier();
  t.same(calls[0]!.data, bytes(16, 0xaa));
});

/** Two 32-byte writes: one full 64-byte run, dispatched at once. */
async function fullRun(c: WriteCoalescer, offset: number, fill: number): Promise<void> {
  const first = c.add({ fid: 'f1' }, offset, bytes(32, fill));
  await Promise.all([first, c.add({ fid: 'f1' }, offset + 32, bytes(32, fill))]);
}

t.test('a barrier waits for every dispatched run, not for runs dispatched after it', async (t) => {
  const { c, calls } = harness({}, false);
  await fullRun(c, 0, 1);
  t.equal(calls.length, 1);
  let barrierDone = false;
  const barrier = c.barrier().then(() => (barrierDone = true));
  await fullRun(c, 64, 2); // dispatched after the barrier
  t.equal(calls.length, 2);
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(barrierDone, false, 'not before the run before it is applied');
  calls[0]!.resolve();
  await barrier;
  t.equal(barrierDone, true, 'done once the earlier run is applied, the later one still applying');
  calls[1]!.resolve();
});

t.test('a writer waits when maxRunsInFlight runs are applying', async (t) => {
  const { c, calls } = harness({ maxRunsInFlight: 2 }, false);
  const answered: number[] = [];
  for (let i = 0; i < 4; i++) void fullRun(c, i * 64, i).then(() => answered.push(i));
  await new Promise((resolve) => setImmediate(resolve));
  t.same(answered, [0, 1], 'the runs over the limit hold their writers');
  calls[0]!.resolve();
  await new Promise((resolve) => setImmediate(resolve));
  t.same(answered, [0, 1], 'three still applying: still over the limit');
  calls[1]!.resolve();
  await new Promise((resolve) => setImmediate(resolve));
  t.same(answered.sort(), [0, 1, 2, 3], 'two applying: both writers go on');
  for (const call of calls.slice(2)) call.resolve();
  await c.barrier();
});

t.test('a failed run is reported to the next write or barrier once, and to sync forever', async (t) => {
  const { c, calls } = harness({}, false);
  await fullRun(c, 0, 1);
  calls[0]!.reject(Object.assign(new Error('no space'), { code: 'VOLUME_FULL' }));
  await new Promise((resolve) => setImmediate(resolve));
  await t.rejects(c.add({ fid: 'f1' }, 64, bytes(8, 2)), { code: 'VOLUME_FULL' }, 'the next write hears of it');
  t.equal(calls.length, 1, 'the refused write was not taken');
  const later = c.add({ fid: 'f1' }, 64, bytes(8, 3));
  await later;
  const barrier = c.barrier();
  calls[1]!.resolve();
  await barrier;
  t.match(c.failure, { code: 'VOLUME_FULL' }, 'kept for sync()');
});

t.test('a write that could pass the size limit is not coalesced: it waits for the runs and goes alone', async (t) => {
  const { c, calls, capacity } = harness({}, false, { sizeLimitBytes: 100, usedBytes: 40 });
  void c.add({ fid: 'f1' }, 0, bytes(32, 1)); // 40 + 32 ≤ 100: coalesced
  let alone = false;
  const big = c.add({ fid: 'f1' }, 32, bytes(32, 2)).then(() => (alone = true)); // 40 + 32 + 32 > 100
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(calls.length, 1, 'the open run went out first (barrier)');
  t.equal(calls[0]!.data.length, 32);
  calls[0]!.resolve();
  await new Promise((resolve) => setImmediate(resolve));
  t.equal(calls.length, 2, 'then the write on its own');
  t.equal(alone, false, 'answered by the store, not by the coalescer');
  capacity.usedBytes = 72;
  calls[1]!.reject(Object.assign(new Error('full'), { code: 'VOLUME_FULL' }));
  await t.rejects(big, { code: 'VOLUME_FULL' }, 'the store refusal is that write’s own answer');
  t.equal(c.failure, undefined, 'not a deferred failure');
});

t.test('path references and writes of a run or more go alone, after the runs before them', async (t) => {
  const { c, calls } = harness();
  await c.add({ fid: 'f1' }, 0, bytes(8, 1));
  await c.add('dir/file', 0, bytes(8, 2));
  await c.add({ fid: 'f1' }, 8, bytes(8, 3));
  await c.add({ fid: 'f1' }, 16, bytes(64, 4));
  t.same(calls.map((x) => [x.file, x.offset, x.data.length]), [[{ fid: 'f1' }, 0, 8], ['dir/file', 0, 8], [{ fid: 'f1' }, 8, 8], [{ fid: 'f1' }, 16, 64]]);
});
