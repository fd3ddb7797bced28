// The write log on its own (src/store/wal.ts), on a real XFS brick: batches are written one
// at a time and end on page boundaries (so a write never reads a page from disk first),
// concurrent appends of every size come back whole and in order after a reopen, and a
// reopen after a torn tail leaves the active segment cut at its last record and allocated
// again with zeros.
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

t.test('a reopen after a torn tail cuts the segment at its last record and allocates the rest again with zeros', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const dir = await logDir(brick.root, 'log-torn');
  const { log } = await WriteLog.open({ dir, segmentBytes: SEGMENT }, 0n);
  for (let i = 0; i < 3; i++) await log.waitDurable(await log.append(1, Buffer.from('{}'), randomBytes(1000 + i)));
  await log.close();
  const [name] = (await readdir(dir)).filter((n) => n.endsWith('.wal'));
  const file = path.join(dir, name!);
  const end = 3 * (HEADER_SIZE + 2) + 1000 + 1001 + 1002;
  // A torn fourth record: a header-sized run of garbage right after the third.
  const handle = await open(file, 'r+');
  await handle.write(Buffer.alloc(HEADER_SIZE, 0xab), 0, HEADER_SIZE, end);
  await handle.close();

  const { log: again, replay } = await WriteLog.open({ dir, segmentBytes: SEGMENT }, 0n);
  t.teardown(() => again.close());
  t.equal(replay.length, 3, 'the three whole records replayed, the torn one not');
  t.equal((await stat(file)).size, SEGMENT, 'the segment is allocated to its full size again');
  const rest = (await readFile(file)).subarray(end);
  t.ok(rest.every((b) => b === 0), 'nothing but zeros follows the last record');
  await again.waitDurable(await again.append(1, Buffer.from('{}'), Buffer.from('next')));
  t.equal(again.durableSeq, 4n, 'the log continues at seq 4');
});
