// The replica store's file-tree operations on a real XFS brick: each operation, its errno
// cases (nothing changed), name validation, and that data/ is a plain tree an admin can read.
import { execFile } from 'node:child_process';
import { readFile, lstat, readlink as fsReadlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { allocAligned } from '../../src/aligned.js';
import { ReplicaStore } from '../../src/store/store.js';
import { native } from '../../src/native.js';
import { rejectsWithCode } from '../helpers/assert.js';
import { needsRoot } from '../helpers/loop.js';
import { replicaDir, testBrick, testStore, type TestBrick } from '../helpers/store.js';

const skip = needsRoot();
const execFileP = promisify(execFile);

t.test('create, write, read, stat; data/ holds the plain file', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  const { fid, seq } = await store.create('hello.txt', 0o640);
  t.match(fid, /^[0-9a-f]{16}$/);
  t.equal(seq, 1n);
  const w = await store.write('hello.txt', 0, Buffer.from('hello, brick'));
  t.equal(w.seq, 2n);
  t.equal((await store.read('hello.txt', 0, 100)).toString(), 'hello, brick');
  t.equal((await store.read({ fid }, 7, 5)).toString(), 'brick', 'read by fid at an offset');
  t.equal((await store.read('hello.txt', 100, 10)).length, 0, 'read past EOF is empty');
  const scratch = Buffer.alloc(64, 0xee);
  const view = await store.read({ fid }, 0, 64, { into: scratch });
  t.equal(view.toString(), 'hello, brick', 'read into a scratch buffer: short at EOF');
  t.equal(view.buffer, scratch.buffer, 'the result is a view of the scratch buffer, not a new allocation');
  const tooSmall = Buffer.alloc(4);
  const fresh = await store.read({ fid }, 0, 12, { into: tooSmall });
  t.equal(fresh.toString(), 'hello, brick', 'a scratch buffer shorter than the read is not used');
  t.same([...tooSmall], [0, 0, 0, 0]);
  const st = await store.stat('hello.txt');
  t.match(st, { type: 'file', size: 12, mode: 0o640, nlink: 1, fid });
  const plain = path.join(replicaDir(brick), 'data', 'hello.txt');
  t.equal(await readFile(plain, 'utf8'), 'hello, brick', 'an admin reads the file without brickd');
  t.equal(store.durableSeq, 2n);
  t.equal(store.usedBytes, 12);
});

t.test('directories, symlinks, hard links, rename, unlink, rmdir, setattr', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  await store.mkdir('dir', 0o750);
  await store.mkdir('dir/sub');
  await store.create('dir/a');
  await store.write('dir/a', 0, Buffer.from('AAAA'));
  await store.symlink('a', 'dir/link');
  t.equal(await store.readlink('dir/link'), 'a');
  t.equal(await fsReadlink(path.join(replicaDir(brick), 'data', 'dir', 'link')), 'a');
  await store.link('dir/a', 'dir/a2');
  t.equal((await store.stat('dir/a')).nlink, 2, 'two user names');
  t.same(await store.readdir('dir'), ['a', 'a2', 'link', 'sub']);
  t.same(await store.readdir(''), ['dir']);

  await store.rename('dir/a', 'moved');
  t.equal((await store.read('moved', 0, 4)).toString(), 'AAAA', 'rename keeps data and checksums (fid-keyed)');
  await store.create('victim');
  await store.write('victim', 0, Buffer.from('old'));
  const victimFid = (await store.stat('victim')).fid!;
  await store.rename('moved', 'victim');
  t.equal((await store.read('victim', 0, 4)).toString(), 'AAAA', 'rename over an existing file replaces it');
  await t.rejects(lstat(store.files.fidPath(victimFid)), { code: 'ENOENT' }, 'the replaced file is gone with its fid link');

  await store.unlink('dir/a2');
  t.equal((await store.stat('victim')).nlink, 1);
  await store.setattr('victim', { mode: 0o600, mtimeMs: 1_000_000_000_000 });
  const st = await store.stat('victim');
  t.equal(st.mode, 0o600);
  t.equal(Math.round(st.mtimeMs), 1_000_000_000_000);
  await store.setattr('dir', { mode: 0o700 });
  t.equal((await store.stat('dir')).mode, 0o700);
  await store.rmdir('dir/sub');
  await store.unlink('dir/link');
  await store.rmdir('dir');
  t.same(await store.readdir(''), ['victim']);
  await store.truncate('victim', 2);
  t.equal((await store.read('victim', 0, 10)).toString(), 'AA');
  await store.truncate('victim', 6000);
  const grown = await store.read('victim', 0, 6000);
  t.equal(grown.length, 6000);
  t.equal(grown.subarray(0, 2).toString(), 'AA');
  t.ok(grown.subarray(2).every((b) => b === 0), 'truncate up reads zeros');
});

t.test('errno cases change nothing', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  await store.mkdir('d');
  await store.create('d/f');
  await store.create('g');
  const before = store.durableSeq;
  await rejectsWithCode(t, store.create('d/f'), 'EEXIST', /create 'd\/f'/);
  await rejectsWithCode(t, store.create('nope/f'), 'ENOENT');
  await rejectsWithCode(t, store.create('g/f'), 'ENOTDIR');
  await rejectsWithCode(t, store.mkdir('d'), 'EEXIST');
  await rejectsWithCode(t, store.unlink('d'), 'EISDIR');
  await rejectsWithCode(t, store.unlink('missing'), 'ENOENT');
  await rejectsWithCode(t, store.rmdir('g'), 'ENOTDIR');
  await rejectsWithCode(t, store.rmdir('d'), 'ENOTEMPTY');
  await rejectsWithCode(t, store.rename('d', 'd/inside'), 'EINVAL');
  await rejectsWithCode(t, store.rename('d', 'g'), 'ENOTDIR');
  await rejectsWithCode(t, store.rename('g', 'd'), 'EISDIR');
  await rejectsWithCode(t, store.link('d', 'd2'), 'EPERM');
  await rejectsWithCode(t, store.write('d', 0, Buffer.from('x')), 'EISDIR');
  await rejectsWithCode(t, store.read('missing', 0, 1), 'ENOENT');
  await rejectsWithCode(t, store.readlink('g'), 'EINVAL');
  await rejectsWithCode(t, store.write({ fid: '0123456789abcdef' }, 0, Buffer.from('x')), 'ENOENT');
  t.equal(store.durableSeq, before, 'no mutation was logged');
  t.same(await store.readdir(''), ['d', 'g']);
});

t.test('names are validated: typed error, nothing changed', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  const bad = ['/etc/passwd', '../escape', 'a/../../b', 'a//b', './a', 'a/.', 'nul\0byte', 'x'.repeat(256), ('d/'.repeat(2100)) + 'f', ''];
  for (const name of bad) {
    await rejectsWithCode(t, store.create(name), 'NAME_INVALID', undefined, JSON.stringify(name.slice(0, 20)));
  }
  await rejectsWithCode(t, store.rename('a', '../b'), 'NAME_INVALID');
  await rejectsWithCode(t, store.symlink('t', '/abs'), 'NAME_INVALID');
  await rejectsWithCode(t, store.symlink('bad\0target', 'l'), 'NAME_INVALID');
  t.same(await store.readdir(''), []);
  t.equal(store.durableSeq, 0n);
  await t.rejects(store.write('x', -1, Buffer.alloc(1)), RangeError);
  await t.rejects(store.read('x', 0, -5), RangeError);
});

t.test('partial-block writes keep checksums right (verified against the raw files)', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick, {}, { directWriteBytes: 16 * 1024 });
  const { fid } = await store.create('f');
  const model = Buffer.alloc(70_000);
  let size = 0;
  const writes: Array<[number, number]> = [
    [0, 100], [4090, 20], [4096, 4096], [10_000, 30_000], [1, 1], [65_000, 5000], [8191, 2], [300, 20_000],
  ];
  let fill = 1;
  for (const [offset, length] of writes) {
    const data = Buffer.alloc(length, fill++);
    await store.write({ fid }, offset, data);
    data.copy(model, offset);
    size = Math.max(size, offset + length);
  }
  t.same(await store.read('f', 0, size), model.subarray(0, size), 'content matches the model');
  // Every block's stored CRC equals the CRC of the block on disk (hole rule aside).
  const data = await readFile(path.join(replicaDir(brick), 'data', 'f'));
  const sums = await readFile(store.files.sumsPath(fid));
  for (let block = 0; block * 4096 < data.length; block++) {
    const bytes = data.subarray(block * 4096, Math.min(data.length, (block + 1) * 4096));
    const stored = block * 4 < sums.length ? sums.readUInt32LE(block * 4) : 0;
    const hole = stored === 0 && bytes.every((b) => b === 0);
    t.ok(hole || stored === native.crc32c(bytes), `block ${block}`);
  }
});

t.test('caller-supplied CRC is verified before the write (small and direct)', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick, {}, { directWriteBytes: 8192 });
  await store.create('f');
  const small = Buffer.from('payload');
  await store.write('f', 0, small, native.crc32c(small));
  await rejectsWithCode(t, store.write('f', 0, Buffer.from('PAYLOAD'), native.crc32c(small)), 'CHECKSUM_MISMATCH');
  const big = Buffer.alloc(20_000, 7);
  await rejectsWithCode(t, store.write('f', 0, big, (native.crc32c(big) ^ 1) >>> 0), 'CHECKSUM_MISMATCH');
  t.equal((await store.read('f', 0, 100)).toString(), 'payload', 'nothing written by either refused write');
  await store.write('f', 0, big, native.crc32c(big));
  t.same(await store.read('f', 0, big.length), big);
});

t.test('reopen: everything is there and durable seq continues', { skip }, async (t) => {
  const brick = await testBrick(t);
  const dir = replicaDir(brick);
  const store = await testStore(t, brick);
  await store.mkdir('d');
  await store.create('d/f');
  await store.write('d/f', 0, Buffer.alloc(200_000, 9));
  await store.write('d/f', 5, Buffer.from('xyz'));
  await store.close();
  const again = await ReplicaStore.open(dir, { segmentBytes: 4 * 2 ** 20, checkpointIntervalMs: 0 });
  t.teardown(() => again.close());
  t.equal(again.durableSeq, 4n);
  const data = await again.read('d/f', 0, 200_000);
  t.equal(data.length, 200_000);
  t.equal(data.subarray(5, 8).toString(), 'xyz');
  t.equal(again.usedBytes, 200_000);
  const next = await again.create('d/g');
  t.equal(next.seq, 5n);
});

t.test('bad replica options are RangeErrors; another volume in the dir is refused', { skip }, async (t) => {
  const brick = await testBrick(t);
  const dir = replicaDir(brick);
  await t.rejects(ReplicaStore.create(dir, { volumeId: '../x', sizeLimitBytes: 1 }), RangeError);
  await t.rejects(ReplicaStore.create(dir, { volumeId: 'v', sizeLimitBytes: 0 }), RangeError);
  await t.rejects(ReplicaStore.create(dir, { volumeId: 'v', sizeLimitBytes: 10, blockSize: 3000 }), RangeError);
  const store = await testStore(t, brick);
  const same = await ReplicaStore.create(dir, { volumeId: 'vol1', sizeLimitBytes: 256 * 2 ** 20 }, { checkpointIntervalMs: 0, segmentBytes: 4 * 2 ** 20 });
  await same.close();
  await rejectsWithCode(t, ReplicaStore.create(dir, { volumeId: 'other', sizeLimitBytes: 10 }), 'VOLUME_EXISTS');
  await rejectsWithCode(t, ReplicaStore.open(path.join(brick.root, 'volumes', 'none')), 'VOLUME_NOT_FOUND');
  t.ok(store);
});

t.test('concurrent overlapping writes to one file apply in call order; reads never see a torn block', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick, {}, { directWriteBytes: 32 * 1024 });
  await store.create('f');
  const model = Buffer.alloc(400_000);
  let size = 0;
  const writes: Array<Promise<unknown>> = [];
  const reads: Array<Promise<unknown>> = [];
  for (let i = 0; i < 200; i++) {
    const offset = (i * 7919) % 300_000;
    const length = i % 3 === 0 ? 40_000 + (i % 7) * 1000 : 1 + ((i * 131) % 9000);
    const data = Buffer.alloc(length, (i % 250) + 1);
    writes.push(store.write('f', offset, data));
    data.copy(model, offset);
    size = Math.max(size, offset + length);
    if (i % 10 === 0) reads.push(store.read('f', 0, 400_000)); // must never fail verification
  }
  await Promise.all(writes);
  await Promise.all(reads);
  t.ok((await store.read('f', 0, 400_000)).equals(model.subarray(0, size)), 'final content is the writes applied in order');
  t.equal(store.appliedSeq, store.durableSeq);
});

t.test('applied mode: a write is readable at once, durable later; flush waits for it; reopen keeps it', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  await store.create('wb');
  const small = Buffer.alloc(10_000, 7); // through the log
  const large = Buffer.alloc(256 * 1024, 9); // direct to the data file
  const a = await store.write('wb', 0, small, undefined, { wait: 'applied' });
  const b = await store.write('wb', 64 * 1024, large, undefined, { wait: 'applied' });
  const c = await store.truncate('wb', 64 * 1024 + large.length - 100, { wait: 'applied' });
  const read = await store.read('wb', 0, 64 * 1024 + large.length);
  t.ok(read.subarray(0, small.length).equals(small) && read.subarray(64 * 1024).equals(large.subarray(0, large.length - 100)), 'reads see every applied write and the truncate');
  t.equal(read.length, 64 * 1024 + large.length - 100);
  await Promise.all([a.durable, b.durable, c.durable]);
  t.ok(store.durableSeq >= c.seq, 'each durable promise resolves once its seq is durable');
  await store.write('wb', 0, Buffer.from('tail'), undefined, { wait: 'applied' });
  const flushed = await store.flush();
  t.ok(store.durableSeq >= flushed, 'flush resolves once the applied writes are durable');
  const expected = await store.read('wb', 0, 1 << 20);
  await store.close();
  const reopened = await ReplicaStore.open(replicaDir(brick));
  t.teardown(() => reopened.close());
  t.ok((await reopened.read('wb', 0, 1 << 20)).equals(expected), 'reopened: the same bytes, checksums verified');
  const refused = await reopened.write('missing', 0, small, undefined, { wait: 'applied' }).catch((err: NodeJS.ErrnoException) => err);
  t.equal((refused as NodeJS.ErrnoException).code, 'ENOENT', 'a refused write fails at once in the applied mode too');
  await reopened.flush();
  t.pass('a refused write does not make a later flush fail');
});

t.test('applied mode with a flush to follow: the record is written durable, so the flush has nothing left to do', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  await store.create('soon');
  await store.flush();
  for (const size of [4096, 256 * 1024]) {
    const lazy = await store.write('soon', 0, Buffer.alloc(size, 1), undefined, { wait: 'applied' });
    t.ok(store.durableSeq < lazy.seq, `${size} B applied: not durable yet (its log record waits for a sync round)`);
    await lazy.durable;
    const eager = await store.write('soon', 0, Buffer.alloc(size, 2), undefined, { wait: 'applied', flushFollows: true });
    t.ok(store.durableSeq >= eager.seq, `${size} B applied, flush to follow: its record is durable once it is applied`);
    await eager.durable;
    t.ok((await store.read('soon', 0, size)).equals(Buffer.alloc(size, 2)));
  }
});

/**
 * How much of a replica's data file is in the page cache (fincore(1)): an O_DIRECT write or
 * read leaves none of its range there (a write drops what was), a buffered one all of it.
 */
async function cachedBytes(brick: TestBrick, name: string): Promise<number> {
  const { stdout } = await execFileP('fincore', ['--bytes', '--noheadings', '--output', 'RES', path.join(replicaDir(brick), 'data', name)]);
  return Number(stdout.trim());
}

t.test('a large aligned write bypasses the brick page cache in both modes; an unaligned one does not', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  const cached = (name: string) => cachedBytes(brick, name);
  const data = allocAligned(1024 * 1024).fill(5);
  for (const wait of ['applied', 'durable'] as const) {
    await store.create(`direct-${wait}`);
    const w = await store.write(`direct-${wait}`, 0, data, undefined, { wait });
    await w.durable;
    t.equal(await cached(`direct-${wait}`), 0, `${wait}: a 1 MiB aligned write leaves nothing in the page cache`);
  }
  await store.create('unaligned');
  await (await store.write('unaligned', 512, data, undefined, { wait: 'applied' })).durable;
  t.ok((await cached('unaligned')) >= data.length, 'an unaligned one goes through the page cache');
  t.ok((await store.read('direct-applied', 0, data.length)).equals(data), 'and reads back verified');
});

t.test('a large read bypasses the brick page cache and sees unwritten-back changes; a small one is cached', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick);
  const data = allocAligned(1024 * 1024).fill(7);
  await store.create('f');
  await (await store.write('f', 0, data)).durable;
  t.equal(await cachedBytes(brick, 'f'), 0, 'written direct: nothing cached');
  t.ok((await store.read('f', 0, data.length)).equals(data), 'a 1 MiB read returns the data, verified');
  t.ok((await store.read('f', 4096, 128 * 1024)).equals(data.subarray(4096, 4096 + 128 * 1024)), 'a 128 KiB read too');
  t.equal(await cachedBytes(brick, 'f'), 0, 'and leaves nothing in the page cache');
  t.ok((await store.read('f', 8192, 4096)).equals(data.subarray(8192, 12288)), 'a 4 KiB read returns the data');
  t.ok((await cachedBytes(brick, 'f')) >= 4096, 'through the page cache');
  // A small write is applied through the page cache; the next large read still has it.
  const small = Buffer.alloc(100, 9);
  await store.write('f', 300_000, small, undefined, { wait: 'applied' });
  const back = await store.read('f', 0, data.length);
  t.ok(back.subarray(300_000, 300_100).equals(small) && back.subarray(0, 300_000).equals(data.subarray(0, 300_000)), 'a large read after a small applied write returns both');
});
