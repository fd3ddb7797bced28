// Read-ahead (src/volume/readahead.ts) over a real store on an XFS loop brick, and through a
// write-back store backend: sequential readers are answered from chunks read ahead, and no
// read ever returns bytes that a change settled before it (a write, a truncate, a write
// applied while the chunk was being read) has replaced. Needs root (loop device).
import t from 'tap';
import { pattern } from '../helpers/random.js';
import { needsRoot } from '../helpers/loop.js';
import { testBrick, testStore } from '../helpers/store.js';
import { ReadAhead, type ReadAheadOptions } from '../../src/volume/readahead.js';
import { storeBackend } from '../../src/volume/backend.js';
import type { ReplicaStore } from '../../src/store/store.js';

const skip = needsRoot();
const KiB = 1024;
const REQUEST = 128 * KiB; // what FUSE sends
const OPTIONS: ReadAheadOptions = { chunkBytes: 512 * KiB, chunksAhead: 2, files: 2 };

function over(store: ReplicaStore, options = OPTIONS): ReadAhead {
  return new ReadAhead({ read: (file, offset, length, into) => store.read(file, offset, length, { into }), get readStamp() { return store.readStamp; } }, options);
}

t.test('a sequential reader is answered from chunks read ahead, byte for byte', { skip }, async (t) => {
  const store = await testStore(t, await testBrick(t));
  const model = pattern(3 * 1024 * KiB + 5000, 1); // not a whole number of requests: the last is short
  const { fid } = await store.create('f');
  await store.write({ fid }, 0, model);
  const ra = over(store);
  const into = Buffer.alloc(REQUEST);
  const parts: Buffer[] = [];
  for (let offset = 0; offset < model.length + REQUEST; offset += REQUEST) parts.push(Buffer.from(await ra.read({ fid }, offset, REQUEST, into)));
  t.ok(Buffer.concat(parts).equals(model), 'the file, short at EOF, nothing past it');
  t.ok(ra.stats.hits >= parts.length - 3, `most requests came from chunks (${ra.stats.hits} of ${parts.length})`);
  // Each chunk once; past the end at most chunksAhead more (read before the short one came back).
  const chunks = Math.ceil(model.length / OPTIONS.chunkBytes);
  t.ok(ra.stats.chunks <= chunks + OPTIONS.chunksAhead, `each chunk read once (${ra.stats.chunks} reads for ${chunks} chunks)`);
});

t.test('a change settled before a read is always seen: writes, a write during the chunk read, a truncate', { skip }, async (t) => {
  const store = await testStore(t, await testBrick(t));
  let model = pattern(2 * 1024 * KiB, 2);
  const { fid } = await store.create('f');
  await store.write({ fid }, 0, model);
  const ra = over(store);
  const check = async (offset: number, what: string) => {
    const got = await ra.read({ fid }, offset, REQUEST);
    t.ok(got.equals(model.subarray(offset, offset + REQUEST)), what);
  };
  await check(0, 'first request');
  await check(REQUEST, 'second: sequential, the chunks after it are being read');
  // Inside a chunk already read ahead.
  const a = pattern(4000, 3);
  await store.write({ fid }, 3 * REQUEST + 100, a);
  a.copy(model, 3 * REQUEST + 100);
  await check(2 * REQUEST, 'a request before the written range');
  await check(3 * REQUEST, 'the written range: the new bytes, not the chunk');
  // A write that settles while the chunks are being read: started together with the read
  // that sets them going, resolved before the next read.
  const b = pattern(REQUEST, 4);
  const reading = check(4 * REQUEST, 'the request that starts the next chunks');
  const writing = store.write({ fid }, 5 * REQUEST, b);
  await Promise.all([reading, writing]);
  b.copy(model, 5 * REQUEST);
  await check(5 * REQUEST, 'the write that raced the chunk read');
  await store.truncate({ fid }, 6 * REQUEST + 10);
  model = model.subarray(0, 6 * REQUEST + 10);
  const tail = await ra.read({ fid }, 6 * REQUEST, REQUEST);
  t.ok(tail.equals(model.subarray(6 * REQUEST)), 'after a truncate: short at the new end');
  t.equal((await ra.read({ fid }, 7 * REQUEST, REQUEST)).length, 0, 'nothing past it');
});

t.test('through a write-back backend: writes answered before a read are in it', { skip }, async (t) => {
  const store = await testStore(t, await testBrick(t));
  const backend = storeBackend(store, { writeBack: { maxUnsyncedBytes: 16 << 20 }, readAhead: OPTIONS });
  const { fid } = await backend.create('f');
  const model = pattern(1024 * KiB, 5);
  for (let off = 0; off < model.length; off += REQUEST) await backend.write({ fid }, off, model.subarray(off, off + REQUEST));
  let offset = 0;
  for (let i = 0; i < 8; i++, offset += REQUEST) {
    const got = await backend.read({ fid }, offset, REQUEST);
    t.ok(got.equals(model.subarray(offset, offset + REQUEST)), `request ${i}`);
    if (i === 2) {
      // Coalesced, not yet in the store when answered: the next read's barrier applies it.
      const c = pattern(REQUEST, 6);
      await backend.write({ fid }, 5 * REQUEST, c);
      c.copy(model, 5 * REQUEST);
    }
  }
  await backend.sync();
});
