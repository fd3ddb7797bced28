// Checksums end to end (DESIGN.md invariant 3) on a real brick: bytes flipped in a data file
// or in a checksum file are caught on read (never returned) and by scrub; the repair hook
// heals them; scrub is throttled, pausable, resumes after a restart, and remembers when its
// last complete pass finished.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { Scrubber } from '../../src/store/scrub.js';
import { ReplicaStore, type RepairHook } from '../../src/store/store.js';
import { rejectsWithCode } from '../helpers/assert.js';
import { needsRoot } from '../helpers/loop.js';
import { replicaDir, testBrick, testStore } from '../helpers/store.js';
import { flipByte } from '../helpers/corrupt.js';

const skip = needsRoot();


function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

t.test('a flipped data byte is detected on read, named, and never returned', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  const content = pattern(40_000, 1);
  await store.create('f');
  await store.write('f', 0, content);
  await flipByte(path.join(replicaDir(brick), 'data', 'f'), 9000);
  const err = await rejectsWithCode(t, store.read('f', 0, 40_000), 'CHECKSUM_MISMATCH', /f: block 2 \(offset 8192\) does not match its checksum/);
  t.match((err as unknown as { details: unknown }).details, { file: 'f', block: 2, offset: 8192 });
  t.equal((await store.read('f', 0, 8192)).compare(content.subarray(0, 8192)), 0, 'other blocks still read');
  await rejectsWithCode(t, store.read('f', 8192, 1), 'CHECKSUM_MISMATCH', undefined, 'a read of one byte of the bad block fails too');
  t.equal(store.stats.checksumErrors, 2);
});

t.test('a flipped checksum byte is detected too', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  const { fid } = await store.create('f');
  await store.write('f', 0, pattern(20_000, 2));
  await flipByte(store.files.sumsPath(fid), 4 * 3 + 1); // CRC of block 3
  await rejectsWithCode(t, store.read('f', 0, 20_000), 'CHECKSUM_MISMATCH', /block 3 /);
});

t.test('the repair hook heals a bad block from a good copy', { skip }, async (t) => {
  const brick = await testBrick(t);
  const content = pattern(50_000, 3);
  const requests: Array<{ offset: number; length: number }> = [];
  const repair: RepairHook = async ({ offset, length }) => {
    requests.push({ offset, length });
    return content.subarray(offset, Math.min(content.length, offset + length));
  };
  const store = await testStore(t, brick, {}, { repair });
  await store.create('f');
  await store.write('f', 0, content);
  await flipByte(path.join(replicaDir(brick), 'data', 'f'), 45_000);
  t.same(await store.read('f', 0, 50_000), content, 'the read returns the right bytes');
  t.same(requests, [{ offset: 45_056 - 4096, length: 4096 }], 'one block was fetched');
  t.equal(store.stats.repaired, 1);
  t.same(await store.read('f', 0, 50_000), content, 'repaired on disk: no second fetch');
  t.equal(requests.length, 1);
});

t.test('a repair source that has nothing leaves the error in place', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick, {}, { repair: async () => undefined });
  await store.create('f');
  await store.write('f', 0, pattern(10_000, 4));
  await flipByte(path.join(replicaDir(brick), 'data', 'f'), 5);
  await rejectsWithCode(t, store.read('f', 0, 10), 'CHECKSUM_MISMATCH');
});

t.test('scrub finds every damaged block, in data and in sums, and repairs what it can', { skip }, async (t) => {
  const brick = await testBrick(t);
  const files = new Map<string, Buffer>();
  const fidToName = new Map<string, string>();
  const repair: RepairHook = async ({ fid, offset, length }) => {
    if (fidToName.get(fid) === 'b') return undefined; // no good copy of b anywhere
    const content = files.get(fidToName.get(fid)!)!;
    return content.subarray(offset, Math.min(content.length, offset + length));
  };
  const store = await testStore(t, brick, {}, { repair });
  for (const [name, size] of [['a', 100_000], ['b', 30_000], ['c', 5]] as const) {
    const content = pattern(size, size);
    files.set(name, content);
    const { fid } = await store.create(name);
    fidToName.set(fid, name);
    await store.write(name, 0, content);
  }
  const fidOf = (name: string) => [...fidToName].find(([, n]) => n === name)![0];
  await flipByte(path.join(replicaDir(brick), 'data', 'a'), 70_000); // block 17
  await flipByte(store.files.sumsPath(fidOf('a')), 4 * 2); // block 2's CRC
  await flipByte(path.join(replicaDir(brick), 'data', 'b'), 0); // block 0, unrepairable
  const scrubber = new Scrubber(store, { rateBytesPerSec: 1e9 });
  scrubber.start();
  const result = await scrubber.whenIdle();
  t.equal(result.state, 'done');
  t.equal(result.filesScanned, 3);
  t.equal(result.bytesScanned, (25 + 8 + 1) * 4096, 'every block of every file (whole blocks)');
  const found = result.findings.map((f) => `${fidToName.get(f.fid)}:${f.block}:${f.repaired}`).sort();
  t.same(found, ['a:17:true', 'a:2:true', 'b:0:false']);
  t.same(await store.read('a', 0, 100_000), files.get('a'), 'a healed');
  await rejectsWithCode(t, store.read('b', 0, 10), 'CHECKSUM_MISMATCH', undefined, 'b still refuses bad bytes');
});

t.test('scrub pauses, resumes, and picks up after a restart where it stopped', { skip }, async (t) => {
  const brick = await testBrick(t);
  const dir = replicaDir(brick);
  const store = await testStore(t, brick);
  for (let i = 0; i < 6; i++) {
    await store.create(`f${i}`);
    await store.write(`f${i}`, 0, pattern(1 << 20, i));
  }
  // 2 MB/s over 6 MiB: the pass is still going when we pause it.
  const first = new Scrubber(store, { rateBytesPerSec: 2e6, chunkBlocks: 32 });
  first.start();
  await new Promise((r) => setTimeout(r, 600));
  await first.pause();
  const paused = first.progress;
  t.equal(paused.state, 'paused');
  t.ok(paused.bytesScanned > 0 && paused.bytesScanned < 6 << 20, `paused part way (${paused.bytesScanned} bytes)`);
  t.ok(paused.cursor, 'cursor saved');
  await store.close();

  const reopened = await ReplicaStore.open(dir, { segmentBytes: 4 * 2 ** 20, checkpointIntervalMs: 0 });
  t.teardown(() => reopened.close());
  const second = new Scrubber(reopened, { rateBytesPerSec: 1e9, chunkBlocks: 32 });
  const loaded = await second.load();
  t.same(loaded.cursor, paused.cursor, 'the cursor survived the restart');
  t.equal(loaded.bytesScanned, paused.bytesScanned);
  second.start();
  const done = await second.whenIdle();
  t.equal(done.state, 'done');
  t.equal(done.bytesScanned, 6 << 20, 'the resumed pass covers the rest exactly once');
  t.equal(done.filesScanned, 6);
  t.same(done.findings, []);
});

t.test('the last complete scrub pass is remembered through a new pass, a restart, and an old scrub.json', { skip }, async (t) => {
  const brick = await testBrick(t);
  const dir = replicaDir(brick);
  const store = await testStore(t, brick);
  await store.create('f');
  await store.write('f', 0, pattern(2 << 20, 9));
  const first = new Scrubber(store, { rateBytesPerSec: 1e9 });
  t.equal(first.progress.lastCompletedAt, null, 'never scrubbed');
  first.start();
  const done = await first.whenIdle();
  t.equal(done.lastCompletedAt, done.finishedAt, 'a finished pass is the last completion');
  const completedAt = done.lastCompletedAt!;

  // A new, slow pass paused part way: finishedAt is gone, the last completion is not.
  const slow = new Scrubber(store, { rateBytesPerSec: 1e6, chunkBlocks: 16 });
  await slow.load();
  slow.start();
  await new Promise((r) => setTimeout(r, 300));
  await slow.pause();
  t.equal(slow.progress.state, 'paused');
  t.equal(slow.progress.finishedAt, null);
  t.equal(slow.progress.lastCompletedAt, completedAt, 'kept through a new pass');
  const reloaded = new Scrubber(store);
  t.equal((await reloaded.load()).lastCompletedAt, completedAt, 'kept on disk');

  // scrub.json written before the field existed: a done pass counts, a paused one does not.
  const file = path.join(dir, '.brickd', 'scrub.json');
  const old = { state: 'done', cursor: null, filesScanned: 1, bytesScanned: 4096, bytesTotal: 4096, findings: [], startedAt: '2026-01-01T00:00:00.000Z', finishedAt: '2026-01-01T00:00:01.000Z' };
  await writeFile(file, JSON.stringify(old));
  t.equal((await new Scrubber(store).load()).lastCompletedAt, old.finishedAt);
  await writeFile(file, JSON.stringify({ ...old, state: 'paused', finishedAt: null, cursor: { fid: '0', block: 0 } }));
  t.equal((await new Scrubber(store).load()).lastCompletedAt, null);
});

t.test('a write or truncate that covers a damaged block in part is refused, never certifies the damage', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  const content = pattern(40_000, 3);
  await store.create('f');
  await store.write('f', 0, content);
  const file = path.join(replicaDir(brick), 'data', 'f');
  await flipByte(file, 9000); // block 2
  await rejectsWithCode(t, store.write('f', 8200, Buffer.from('partial')), 'CHECKSUM_MISMATCH', /f: block 2 \(offset 8192\) does not match its checksum; a write that covers it only in part is refused/);
  await rejectsWithCode(t, store.truncate('f', 8192 + 2000), 'CHECKSUM_MISMATCH', /block 2/, 'a truncate that cuts into it too');
  await rejectsWithCode(t, store.read('f', 8192, 4096), 'CHECKSUM_MISMATCH', undefined, 'the damage is still detected');
  t.equal((await store.stat('f')).size, 40_000, 'nothing changed');
  await store.write('f', 8192, pattern(4096, 9));
  t.same(await store.read('f', 8192, 4096), pattern(4096, 9), 'a write of the whole block replaces it (nothing of the old bytes stays)');
  await store.write('f', 100, Buffer.from('aligned-free head'));
  t.pass('a partial write of a healthy block is served as ever');
});

t.test('with a repair source the damaged edge block is healed first, then the partial write applies', { skip }, async (t) => {
  const brick = await testBrick(t);
  const content = pattern(40_000, 4);
  let asked = 0;
  const repair: RepairHook = async ({ offset, length }) => {
    asked++;
    return content.subarray(offset, offset + length);
  };
  const store = await testStore(t, brick, {}, { repair });
  await store.create('f');
  await store.write('f', 0, content);
  await flipByte(path.join(replicaDir(brick), 'data', 'f'), 13_000); // block 3
  await store.write('f', 12_300, Buffer.from('XYZ'));
  t.equal(asked, 1, 'the peer was asked for the block');
  const expected = Buffer.from(content);
  expected.write('XYZ', 12_300);
  t.same(await store.read('f', 0, 40_000), expected, 'the good old bytes around the new ones');
  t.equal(store.stats.repaired, 1);
});
