// The write log on its own (src/store/wal.ts), on a real XFS brick: batches are written one
// at a time and end on page boundaries (so a write never reads a page from disk first),
// concurrent appends of every size come back whole and in order after a reopen, and a
// reopen after a torn tail cuts the active segment at its last record, after which appends
// move to a spare segment (a cut one is filled up with zeros before it is reused).
import { execFile } from 'node:child_process';
import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { native } from '../../src/native.js';
import { HEADER_SIZE, LOG_PAGE_BYTES, WriteLog } from '../../src/store/wal.js';
import { needsRoot } from '../helpers/loop.js';
import { testBrick } from '../helpers/store.js';

const run = promisify(execFile);
const SEGMENT = 1 << 20;

async function logDir(root: string, name: string): Promise<string> {
  const dir = path.join(root, name);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Bytes this process has made the kernel read from storage (all threads). */
async function readBytes(): Promise<number> {
  const m = /^read_bytes: (\d+)$/m.exec(await readFile('/proc/self/io', 'utf8'));
  if (!m) throw new Error('/proc/self/io has no read_bytes');
  return Number(m[1]);
}

/** Every native.writev while `body` runs: fd, offset, length, and how many were in flight. */
async function watchWrites<T>(body: () => Promise<T>): Promise<{ result: T; writes: Array<{ fd: number; offset: number; length: number }>; maxInFlight: number }> {
  const original = native.writev;
  const writes: Array<{ fd: number; offset: number; length: number }> = [];
  let inFlight = 0;
  let maxInFlight = 0;
  native.writev = async (fd, buffers, offset, dsync) => {
    writes.push({ fd, offset, length: buffers.reduce((n, b) => n + b.length, 0) });
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    try {
      return await original.call(native, fd, buffers, offset, dsync);
    } finally {
      inFlight--;
    }
  };
  try {
    return { result: await body(), writes, maxInFlight };
  } finally {
    native.writev = original;
  }
}

t.test('concurrent appends that are waited on: written one batch at a time, each write ending on a page, replayed whole and in order', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const dir = await logDir(brick.root, 'log-order');
  const { log } = await WriteLog.open({ dir, segmentBytes: SEGMENT }, 0n);
  // Concurrent appends get their seqs in the order they reserve, which a rollover can change
  // (a small record still fits the old segment): each payload is matched by the seq it got.
  const payloads: Buffer[] = [];
  const bySeq = new Map<bigint, number>();
  const { writes, maxInFlight } = await watchWrites(async () => {
    // Bursts of concurrent appends of every size (none, a few bytes, up to 40 KiB, so
    // segments roll over), some of them write-back (lazy), each burst awaited.
    for (let burst = 0; burst < 12; burst++) {
      const appends: Array<Promise<{ seq: bigint; written: Promise<void> }>> = [];
      for (let i = 0; i < 25; i++) {
        const payload = randomBytes([0, 1, 4096, 5000, 40_000][(burst * 25 + i) % 5]!);
        payloads.push(payload);
        appends.push(log.appendStart(1, Buffer.from(`{"n":${payloads.length}}`), payload, i % 7 === 3));
      }
      const started = await Promise.all(appends);
      started.forEach((s, i) => bySeq.set(s.seq, payloads.length - appends.length + i));
      await Promise.all(started.map((s) => s.written));
      await log.waitDurable(started[started.length - 1]!.seq);
    }
  });
  t.equal(log.durableSeq, BigInt(payloads.length), 'every record durable');
  t.equal(maxInFlight, 1, 'one log write in flight at a time');
  const segmentWrites = writes.filter((w) => w.length < SEGMENT); // not the zero fill of a new segment
  t.ok(segmentWrites.length > 12 && segmentWrites.length < payloads.length, `appends were batched: ${segmentWrites.length} writes for ${payloads.length} records`);
  const ragged = segmentWrites.filter((w) => (w.offset + w.length) % LOG_PAGE_BYTES !== 0 && w.offset + w.length !== SEGMENT);
  t.same(ragged, [], 'every write ends on a page boundary (or at the segment end)');
  await log.close();

  const { log: again, replay } = await WriteLog.open({ dir, segmentBytes: SEGMENT }, 0n);
  t.teardown(() => again.close());
  t.equal(replay.length, payloads.length, 'every record replayed');
  t.ok(
    replay.every((r, i) => {
      const n = bySeq.get(r.seq)!;
      return r.seq === BigInt(i + 1) && r.payload.equals(payloads[n]!) && JSON.parse(r.body.toString()).n === n + 1;
    }),
    'in seq order, each with its own body and payload',
  );
  t.equal(again.lastSeq, BigInt(payloads.length), 'the log continues after the last record');
});

t.test('a durable append does not read the segment from disk, even when its pages were evicted', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const dir = await logDir(brick.root, 'log-noread');
  const { log } = await WriteLog.open({ dir, segmentBytes: SEGMENT }, 0n);
  t.teardown(() => log.close());
  const payload = randomBytes(4096);
  const appendDurable = async () => {
    const seq = await log.append(1, Buffer.from('{}'), payload);
    await log.waitDurable(seq);
  };
  await appendDurable();
  // Drop the (clean, synced) segment's pages from the page cache.
  const [segment] = (await readdir(dir)).filter((n) => n.endsWith('.wal'));
  await run('dd', [`if=${path.join(dir, segment!)}`, 'iflag=nocache', 'count=0', 'status=none']);
  const before = await readBytes();
  // 4 KiB + header + body: every record ends mid-page. Unpadded, each write would have
  // to read its last page first; padded, only the first write reads (its first page is
  // the evicted one holding the previous record's end).
  for (let i = 0; i < 100; i++) await appendDurable();
  const read = (await readBytes()) - before;
  t.ok(read <= 2 * LOG_PAGE_BYTES, `100 durable appends read ${read} bytes from disk (at most ${2 * LOG_PAGE_BYTES})`);
});

t.test('a reopen after a torn tail cuts the segment at its last record; appends move to a spare as soon as there is one, filled up if it was cut', { skip: needsRoot() }, async (t) => {
  const SMALL = 64 * 1024;
  const brick = await testBrick(t);
  const dir = await logDir(brick.root, 'log-torn');
  const sizes = async () => {
    const out: Record<string, number> = {};
    for (const n of (await readdir(dir)).filter((n) => n.endsWith('.wal')).sort()) out[n] = (await stat(path.join(dir, n))).size;
    return out;
  };
  const record = (i: number) => Buffer.alloc(10_000, i);
  const { log } = await WriteLog.open({ dir, segmentBytes: SMALL }, 0n);
  for (let i = 1; i <= 14; i++) await log.waitDurable(await log.append(1, Buffer.from('{}'), record(i)));
  await log.close();
  // Six 10 KiB records fill a 64 KiB segment: 1-6, 7-12, then 13-14 in the third.
  const names = Object.keys(await sizes());
  t.equal(names.length, 3, 'three segments');
  const third = path.join(dir, names[2]!);
  const end = 2 * (HEADER_SIZE + 2 + 10_000);
  const handle = await open(third, 'r+');
  await handle.write(Buffer.alloc(HEADER_SIZE, 0xab), 0, HEADER_SIZE, end); // a torn 15th record
  await handle.close();

  // Checkpointed through 12: the first two segments are spares, the third is cut.
  const { log: again, replay } = await WriteLog.open({ dir, segmentBytes: SMALL }, 12n);
  t.teardown(() => again.close());
  t.same(replay.map((r) => r.seq), [13n, 14n], 'the whole records after the checkpoint replayed, the torn one not');
  t.equal((await stat(third)).size, end, 'the third segment is cut where its last whole record ends');
  await again.waitDurable(await again.append(1, Buffer.from('{}'), record(15)));
  const after = await sizes();
  t.equal(after[names[2]!], end, 'the cut segment is not written past its cut');
  const fresh = Object.keys(after).filter((n) => !names.includes(n));
  t.equal(fresh.length, 1, 'the append went to a spare, renamed');
  t.equal(after[fresh[0]!], SMALL, 'an allocated spare');

  // Make the cut segment the only spare, then fill the active one: the rollover takes the
  // cut spare and fills it up to the segment size before use.
  await again.trimSpares(0);
  await again.checkpointed(15n);
  for (let i = 16; i <= 21; i++) await again.waitDurable(await again.append(1, Buffer.from('{}'), record(i)));
  const last = await sizes();
  t.equal(Object.keys(last).length, 2, 'the active segment and the reused one');
  t.same(Object.values(last), [SMALL, SMALL], 'the cut segment, reused, is allocated to the segment size again');
  await again.close();

  const { log: third2, replay: replay2 } = await WriteLog.open({ dir, segmentBytes: SMALL }, 15n);
  t.teardown(() => third2.close());
  t.same(replay2.map((r) => r.seq), [16n, 17n, 18n, 19n, 20n, 21n], 'the records after the checkpoint replay in order across the reused segment');
  t.ok(replay2.every((r) => r.payload.equals(record(Number(r.seq)))), 'each with its own payload');
});
