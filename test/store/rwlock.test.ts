// The store's per-file range locks (src/store/rwlock.ts): which requests run together,
// which wait, and that conflicting requests are granted in the order they were made.
import t from 'tap';
import { applyLockRange, KeyedRwLock, pageRange, type LockRange } from '../../src/store/rwlock.js';

/** A request that holds its lock until released by hand; records when it was granted. */
function holder(lock: KeyedRwLock, log: string[], name: string, write: boolean, range?: LockRange, key = 'f') {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const done = (write ? lock.withWrite : lock.withRead).call(
    lock,
    key,
    async () => {
      log.push(name);
      await held;
    },
    range,
  );
  return { release, done };
}

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

t.test('writes to disjoint ranges run together; overlapping ones wait, in order', async (t) => {
  const lock = new KeyedRwLock();
  const log: string[] = [];
  const a = holder(lock, log, 'a', true, { first: 0, end: 2 });
  const b = holder(lock, log, 'b', true, { first: 2, end: 4 });
  const c = holder(lock, log, 'c', true, { first: 1, end: 3 }); // overlaps a and b
  const d = holder(lock, log, 'd', true, { first: 1, end: 2 }); // overlaps a and c: after c
  const e = holder(lock, log, 'e', true, { first: 10, end: 11 }); // overlaps nothing
  await turn();
  t.same(log, ['a', 'b', 'e'], 'disjoint writes granted at once, past the waiting ones');
  a.release();
  await turn();
  t.same(log, ['a', 'b', 'e'], 'c still overlaps b; d waits for c, queued before it');
  b.release();
  await turn();
  t.same(log, ['a', 'b', 'e', 'c']);
  c.release();
  await turn();
  t.same(log, ['a', 'b', 'e', 'c', 'd']);
  d.release();
  e.release();
  await Promise.all([a.done, b.done, c.done, d.done, e.done]);
});

t.test('reads share; a read and a write conflict only where they overlap', async (t) => {
  const lock = new KeyedRwLock();
  const log: string[] = [];
  const r1 = holder(lock, log, 'r1', false, { first: 0, end: 4 });
  const r2 = holder(lock, log, 'r2', false, { first: 2, end: 6 });
  const w1 = holder(lock, log, 'w1', true, { first: 3, end: 4 }); // under both reads
  const w2 = holder(lock, log, 'w2', true, { first: 8, end: 9 });
  const r3 = holder(lock, log, 'r3', false, { first: 3, end: 5 }); // overlaps w1, queued after it
  await turn();
  t.same(log, ['r1', 'r2', 'w2'], 'a read queued behind a conflicting write waits for it');
  r1.release();
  r2.release();
  await turn();
  t.same(log, ['r1', 'r2', 'w2', 'w1']);
  w1.release();
  await turn();
  t.same(log, ['r1', 'r2', 'w2', 'w1', 'r3']);
  w2.release();
  r3.release();
  await Promise.all([r1.done, r2.done, w1.done, w2.done, r3.done]);
});

t.test('a whole-file write waits for every holder and holds back everything after it', async (t) => {
  const lock = new KeyedRwLock();
  const log: string[] = [];
  const a = holder(lock, log, 'a', true, { first: 0, end: 1 });
  const whole = holder(lock, log, 'whole', true);
  const b = holder(lock, log, 'b', true, { first: 50, end: 51 });
  const r = holder(lock, log, 'r', false, { first: 60, end: 61 });
  await turn();
  t.same(log, ['a']);
  a.release();
  await turn();
  t.same(log, ['a', 'whole']);
  whole.release();
  await turn();
  t.same(log, ['a', 'whole', 'b', 'r'], 'the two disjoint requests behind it run together');
  b.release();
  r.release();
  await Promise.all([a.done, whole.done, b.done, r.done]);
});

t.test('keys are independent; a failing holder releases its lock', async (t) => {
  const lock = new KeyedRwLock();
  const log: string[] = [];
  const f = holder(lock, log, 'f', true);
  const g = holder(lock, log, 'g', true, undefined, 'other');
  await turn();
  t.same(log, ['f', 'g']);
  f.release();
  g.release();
  await Promise.all([f.done, g.done]);
  await t.rejects(
    lock.withWrite('f', async () => {
      throw new Error('boom');
    }),
    /boom/,
  );
  const after = holder(lock, log, 'after', true);
  await turn();
  t.same(log.at(-1), 'after', 'granted after the failed holder');
  after.release();
  await after.done;
});

t.test('applyLockRange: a write inside the file or an aligned extension without a gap locks its pages; any other growth the whole file', async (t) => {
  const K = 1024;
  const cases: Array<[string, number, number, number | undefined, number, boolean]> = [
    // name, offset, length, size before, block size, ranged
    ['inside the file, unaligned', 100, 50, 8 * K, 4 * K, true],
    ['inside, ending at EOF', 4 * K, 4 * K, 8 * K, 4 * K, true],
    ['an append at an aligned EOF', 8 * K, 1024 * K, 8 * K, 4 * K, true],
    ['an aligned extension overlapping the end', 4 * K, 8 * K, 8 * K, 4 * K, true],
    ['an aligned append to an empty file', 0, 64 * K, 0, 4 * K, true],
    ['512-byte blocks: aligned to the block, not the page', 1536, 512, 1536, 512, true],
    ['an append with an unaligned end', 8 * K, 4 * K + 1, 8 * K, 4 * K, false],
    ['an append at an unaligned EOF', 8 * K + 100, 4 * K, 8 * K + 100, 4 * K, false],
    ['an aligned write past a gap', 16 * K, 4 * K, 8 * K, 4 * K, false],
    ['an unaligned start past EOF', 8 * K + 1, 4 * K - 1, 8 * K, 4 * K, false],
    ['64 KiB blocks: a 4 KiB-aligned append is not block-aligned', 64 * K, 4 * K, 64 * K, 64 * K, false],
    ['size before unknown', 0, 4 * K, undefined, 4 * K, false],
  ];
  for (const [name, offset, length, before, bs, ranged] of cases) {
    const growth = before === undefined ? undefined : Math.max(0, offset + length - before);
    t.same(applyLockRange(offset, length, growth, bs), ranged ? pageRange(offset, length, bs) : undefined, name);
  }
});
