// brickio on real files in a temp dir: block writes and reads at every alignment against a
// JS model of the file, the sums file checked against a pure-JS CRC32C with the hole rule,
// corruption found at the right block, truncation, scrub and repair, xattrs, misuse.
import { constants } from 'node:fs';
import { lstat, mkdtemp, open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { allocAligned, DIRECT_IO_ALIGNMENT } from '../../src/aligned.js';
import { native } from '../../src/native.js';
import { randomInts as rng } from '../helpers/random.js';

// ── reference CRC32C (table-driven, reflected Castagnoli polynomial) ─────────────────────
const CRC_TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  CRC_TABLE[n] = c >>> 0;
}
function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// ── helpers ─────────────────────────────────────────────────────────────────────────
const KiB = 1024;
const MiB = 1024 * KiB;

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'brickd-brickio-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Pair {
  data: FileHandle;
  sums: FileHandle;
  dataPath: string;
  sumsPath: string;
}

async function openPair(t: Test, dir: string, name = 'file'): Promise<Pair> {
  const dataPath = path.join(dir, `${name}.data`);
  const sumsPath = path.join(dir, `${name}.sums`);
  const data = await open(dataPath, 'w+');
  const sums = await open(sumsPath, 'w+');
  t.teardown(async () => {
    await data.close();
    await sums.close();
  });
  return { data, sums, dataPath, sumsPath };
}

/** The pair's data file opened O_DIRECT, or undefined (a pass saying why) where the temp filesystem cannot. */
async function openDirect(t: Test, pair: Pair): Promise<FileHandle | undefined> {
  let direct: FileHandle;
  try {
    direct = await open(pair.dataPath, constants.O_RDWR | constants.O_DIRECT);
  } catch (err) {
    t.pass(`skipped: O_DIRECT is not supported on ${path.dirname(pair.dataPath)}: ${(err as Error).message}`);
    return undefined;
  }
  t.teardown(() => direct.close());
  return direct;
}

/** Deterministic bytes (xorshift32) so failures reproduce. */
function pattern(len: number, seed: number): Buffer {
  const out = Buffer.alloc(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}


/** Indexes of blocks whose stored CRC does not match the data file (hole rule applied). */
function badBlocksOf(data: Buffer, sums: Buffer, blockSize: number): number[] {
  const bad: number[] = [];
  const count = Math.ceil(data.length / blockSize);
  for (let b = 0; b < count; b++) {
    const block = data.subarray(b * blockSize, Math.min((b + 1) * blockSize, data.length));
    const stored = b * 4 + 4 <= sums.length ? sums.readUInt32LE(b * 4) : 0;
    const hole = stored === 0 && block.every((x) => x === 0);
    if (!hole && stored !== crc32c(block)) bad.push(b);
  }
  return bad;
}

/** The data file equals the model, and the sums file is exactly the reference for it. */
async function checkFiles(t: Test, pair: Pair, model: Buffer, blockSize: number, what: string): Promise<void> {
  const data = await readFile(pair.dataPath);
  const sums = await readFile(pair.sumsPath);
  t.ok(data.equals(model), `${what}: data file equals the model (${data.length} bytes)`);
  t.equal(sums.length, Math.ceil(model.length / blockSize) * 4, `${what}: one sums entry per block`);
  t.same(badBlocksOf(data, sums, blockSize), [], `${what}: every stored CRC matches (hole rule)`);
}

/** Apply a write to the JS model of a file (growing it with zeros as the kernel does). */
function modelWrite(model: Buffer, data: Buffer, offset: number): Buffer {
  const out = Buffer.alloc(Math.max(model.length, offset + data.length));
  model.copy(out);
  data.copy(out, offset);
  return out;
}

function modelTruncate(model: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size);
  model.copy(out, 0, 0, Math.min(size, model.length));
  return out;
}

async function flipBit(file: FileHandle, position: number, bit = 0): Promise<void> {
  const one = Buffer.alloc(1);
  await file.read(one, 0, 1, position);
  one[0] = one[0]! ^ (1 << bit);
  await file.write(one, 0, 1, position);
}

/** readBlocks of [offset, offset+len) verifies and returns the model's bytes. */
async function checkRead(t: Test, pair: Pair, model: Buffer, offset: number, len: number, blockSize: number): Promise<void> {
  const buffer = Buffer.alloc(len, 0xee);
  const result = await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, offset, blockSize);
  const expected = model.subarray(Math.min(offset, model.length), Math.min(offset + len, model.length));
  t.same(result, { bytes: expected.length, badBlock: -1 }, `read ${len} at ${offset}: ${expected.length} bytes, verified`);
  t.ok(buffer.subarray(0, expected.length).equals(expected), `read ${len} at ${offset}: bytes match`);
}

// ── tests ──────────────────────────────────────────────────────────────────────────────

t.test('the CRC is standard CRC32C, stored little-endian per block', async (t) => {
  t.equal(crc32c(Buffer.from('123456789')), 0xe3069283, 'JS reference check value');
  const pair = await openPair(t, await tempDir(t));
  await native.writeBlocks(pair.data.fd, pair.sums.fd, Buffer.from('123456789'), 0, 4096);
  const sums = await readFile(pair.sumsPath);
  t.equal(sums.length, 4);
  t.equal(sums.readUInt32LE(0), 0xe3069283, 'short last block summed over its 9 bytes');
});

t.test('writeBlocks round trips at every alignment', async (t) => {
  const dir = await tempDir(t);
  const offsets = [0, 1, 511, 4095, 4096, 4097, 8191, 3 * 4096 + 17];
  const lengths = [1, 100, 4095, 4096, 4097, 3 * 4096 + 5, 64 * KiB + 3];
  for (const blockSize of [4096, 512]) {
    let n = 0;
    for (const offset of offsets) {
      for (const len of lengths) {
        // Each case on a fresh pair that already holds 5 blocks + a short tail, so the
        // write lands inside, across and past the old end.
        const pair = await openPair(t, dir, `a${blockSize}-${n++}`);
        let model: Buffer = pattern(5 * 4096 + 300, n);
        await native.writeBlocks(pair.data.fd, pair.sums.fd, model, 0, blockSize);
        const data = pattern(len, 1000 + n);
        await native.writeBlocks(pair.data.fd, pair.sums.fd, data, offset, blockSize);
        model = modelWrite(model, data, offset);
        const actual = await readFile(pair.dataPath);
        const sums = await readFile(pair.sumsPath);
        if (!actual.equals(model) || sums.length !== Math.ceil(model.length / blockSize) * 4 || badBlocksOf(actual, sums, blockSize).length) {
          await checkFiles(t, pair, model, blockSize, `bs ${blockSize} write ${len} at ${offset}`);
          continue;
        }
        const back = Buffer.alloc(len);
        const result = await native.readBlocks(pair.data.fd, pair.sums.fd, back, offset, blockSize);
        if (result.badBlock !== -1 || result.bytes !== len || !back.equals(data)) {
          t.fail(`bs ${blockSize} write ${len} at ${offset}: read back ${JSON.stringify(result)}`);
        }
      }
    }
    t.pass(`bs ${blockSize}: ${offsets.length * lengths.length} writes leave data and sums exact and read back verified`);
  }
});

t.test('unaligned reads over a multi-block file return exactly the model bytes', async (t) => {
  const pair = await openPair(t, await tempDir(t));
  const model = pattern(10 * 4096 + 1234, 7);
  await native.writeBlocks(pair.data.fd, pair.sums.fd, model, 0, 4096);
  await checkFiles(t, pair, model, 4096, 'initial');
  for (const [offset, len] of [
    [0, 4096], [0, 1], [1, 4095], [4095, 2], [4096, 4096], [4097, 8190], [100, 9 * 4096],
    [0, model.length], [8 * 4096 + 5, 3 * 4096], [10 * 4096, 1234], [10 * 4096 + 1, 10],
  ] as const) {
    await checkRead(t, pair, model, offset, len, 4096);
  }
});

t.test('a large aligned write sums 256 blocks from the caller buffer and reads back', async (t) => {
  const pair = await openPair(t, await tempDir(t));
  const data = pattern(MiB, 3);
  await native.writeBlocks(pair.data.fd, pair.sums.fd, data, 4 * MiB, 4096);
  const model = modelWrite(Buffer.alloc(0), data, 4 * MiB);
  await checkFiles(t, pair, model, 4096, '1 MiB at 4 MiB');
  const sums = await readFile(pair.sumsPath);
  t.equal(sums.readUInt32LE(0), 0, 'blocks before the write are holes (stored 0)');
  t.equal(sums.readUInt32LE(1024 * 4), crc32c(data.subarray(0, 4096)), 'first written block summed');
  t.ok((await stat(pair.sumsPath)).blocks * 512 < sums.length, 'the sums file stays sparse over the hole');
  await checkRead(t, pair, model, 4 * MiB, MiB, 4096);
  await checkRead(t, pair, model, 0, 4 * MiB + 4096, 4096);
});

t.test('direct writes: through the aligned per-thread copy in 1 MiB pieces, from any source alignment, at every block size', async (t) => {
  const dir = await tempDir(t);
  for (const blockSize of [4096, 512, 8192, 65536]) {
    const pair = await openPair(t, dir, `direct-${blockSize}`);
    const direct = await openDirect(t, pair);
    if (!direct) return;
    let model: Buffer = Buffer.alloc(0);
    const write = async (data: Buffer, offset: number) => {
      await native.writeBlocks(pair.data.fd, pair.sums.fd, data, offset, blockSize, undefined, direct.fd);
      model = modelWrite(model, data, offset);
    };
    // 3 MiB + 8 KiB: three whole pieces and a short one. The views start at different
    // offsets of their allocation, so some may be page-aligned (written without the copy).
    // Offsets on 4 KiB boundaries that are not block boundaries (8 and 64 KiB blocks), and
    // writes inside the file, have edge blocks summed with the bytes on disk.
    const source = pattern(3 * MiB + 8 * KiB + 3 * 4096, blockSize);
    for (const [i, shift] of [0, 16, 4096, 4096 + 512].entries()) {
      await write(source.subarray(shift, shift + 3 * MiB + 8 * KiB - i * 4096), i * 5 * MiB + (i % 2) * 4096);
    }
    await write(pattern(12 * KiB, 7).subarray(0), 4096);
    await write(pattern(MiB + 4 * KiB, 8).subarray(4), 2 * MiB + 8 * KiB);
    // Concurrent direct writes share no copy: each pool thread has its own.
    const concurrent = [0, 1, 2, 3, 4, 5].map((k) => pattern(MiB + 4 * KiB, 100 + k).subarray(4096));
    await Promise.all(concurrent.map((data, k) => native.writeBlocks(pair.data.fd, pair.sums.fd, data, 20 * MiB + k * MiB, blockSize, undefined, direct.fd)));
    concurrent.forEach((data, k) => (model = modelWrite(model, data, 20 * MiB + k * MiB)));
    await checkFiles(t, pair, model, blockSize, `direct writes, ${blockSize}-byte blocks`);
    await checkRead(t, pair, model, 0, model.length, blockSize);
  }
});

t.test('direct reads: any request and memory alignment, every block size, pieces, EOF, corruption', async (t) => {
  const dir = await tempDir(t);
  for (const blockSize of [4096, 512, 8192, 65536]) {
    const pair = await openPair(t, dir, `direct-read-${blockSize}`);
    const direct = await openDirect(t, pair);
    if (!direct) return;
    // 3 MiB and a short last block: reads span several 1 MiB pieces and end off alignment.
    const model = pattern(3 * MiB + 5000, blockSize + 1);
    await native.writeBlocks(pair.data.fd, pair.sums.fd, model, 0, blockSize);
    const read = async (offset: number, len: number, shift: number) => {
      // `shift` bytes into an aligned allocation: 0 lands straight in the buffer, else through the copy.
      const buffer = allocAligned(len + 4096).fill(0xee).subarray(shift, shift + len);
      const result = await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, offset, blockSize, direct.fd);
      const expected = model.subarray(Math.min(offset, model.length), Math.min(offset + len, model.length));
      t.same(result, { bytes: expected.length, badBlock: -1 }, `${blockSize}-byte blocks, ${len} at ${offset} (+${shift}): verified`);
      t.ok(buffer.subarray(0, expected.length).equals(expected), `${blockSize}-byte blocks, ${len} at ${offset} (+${shift}): bytes match`);
    };
    for (const shift of [0, 16, 512]) {
      for (const [offset, len] of [
        [0, MiB], [0, model.length], [0, 4 * MiB], [MiB, 2 * MiB + 4096], [4096, MiB], [1, MiB], [MiB - 7, MiB + 100],
        [3 * MiB, 5000], [3 * MiB - 4096, 8192], [3 * MiB + 100, 10], [model.length, 10], [model.length + 4096, 4096],
      ] as const) {
        await read(offset, len, shift);
      }
    }
    // A change still in the page cache (not written back) is what a direct read sees: the
    // kernel writes the range back first.
    const change = pattern(3000, 99);
    await native.writeBlocks(pair.data.fd, pair.sums.fd, change, MiB + 100, blockSize);
    change.copy(model, MiB + 100);
    await read(0, model.length, 0);
    // A damaged block is reported where it is, in a piece past the first.
    await flipBit(pair.data, 2 * MiB + 3 * blockSize + 7, 2);
    const buffer = allocAligned(model.length);
    const bad = Math.floor((2 * MiB + 3 * blockSize + 7) / blockSize);
    t.equal((await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, 0, blockSize, direct.fd)).badBlock, bad, `${blockSize}-byte blocks: block ${bad} reported`);
    t.equal((await native.readBlocks(pair.data.fd, pair.sums.fd, buffer.subarray(16), 4096, blockSize, direct.fd)).badBlock, bad, `${blockSize}-byte blocks: through the copy too`);
  }
});

t.test('writes past EOF leave holes and re-sum the old short last block', async (t) => {
  const pair = await openPair(t, await tempDir(t));
  let model: Buffer = Buffer.alloc(0);
  const steps: Array<[number, number]> = [
    [0, 100], // short block 0
    [5 * 4096 + 10, 50], // block 0 zero-extended to full, blocks 1..4 holes, short block 5
    [6 * 4096, 4096], // aligned append right after the short block 5: block 5 re-summed
    [7 * 4096 + 4000, 200], // into block 7 (itself a hole) and 8, past EOF, adjacent
    [9 * 4096 - 1, 1], // last byte of block 8 (extends within the block)
  ];
  for (const [offset, len] of steps) {
    const data = pattern(len, offset + 1);
    await native.writeBlocks(pair.data.fd, pair.sums.fd, data, offset, 4096);
    model = modelWrite(model, data, offset);
    await checkFiles(t, pair, model, 4096, `write ${len} at ${offset}`);
  }
  const sums = await readFile(pair.sumsPath);
  for (const hole of [1, 2, 3, 4]) t.equal(sums.readUInt32LE(hole * 4), 0, `block ${hole} is a hole`);
  t.equal(sums.readUInt32LE(0), crc32c(model.subarray(0, 4096)), 'block 0 summed over 100 bytes + zeros');
  await checkRead(t, pair, model, 0, model.length, 4096);
  await checkRead(t, pair, model, 4096 + 3, 3 * 4096, 4096);
});

t.test('re-writes inside blocks keep the neighbours bytes and sums', async (t) => {
  const pair = await openPair(t, await tempDir(t));
  let model: Buffer = pattern(3 * 4096, 11);
  await native.writeBlocks(pair.data.fd, pair.sums.fd, model, 0, 4096);
  for (const [offset, len] of [[10, 5], [4096 + 100, 200], [4095, 2], [2 * 4096, 4096], [0, 1], [3 * 4096 - 1, 1]] as const) {
    const data = pattern(len, offset + 99);
    await native.writeBlocks(pair.data.fd, pair.sums.fd, data, offset, 4096);
    model = modelWrite(model, data, offset);
  }
  await checkFiles(t, pair, model, 4096, 'after six in-place writes');
  await native.writeBlocks(pair.data.fd, pair.sums.fd, Buffer.alloc(0), 50 * 4096, 4096);
  await checkFiles(t, pair, model, 4096, 'an empty write changes nothing, even past EOF');
});

t.test('random writes and truncates against the model (512 and 4096 byte blocks)', async (t) => {
  const dir = await tempDir(t);
  for (const blockSize of [512, 4096]) {
    const pair = await openPair(t, dir, `r${blockSize}`);
    const random = rng(blockSize);
    let model: Buffer = Buffer.alloc(0);
    let failures = 0;
    for (let op = 0; op < 150 && failures === 0; op++) {
      const kind = random(10);
      let what: string;
      if (kind < 8) {
        const offset = random(48 * KiB);
        const len = 1 + random(kind < 6 ? 3 * blockSize : 20 * KiB);
        const data = pattern(len, op + 1);
        await native.writeBlocks(pair.data.fd, pair.sums.fd, data, offset, blockSize);
        model = modelWrite(model, data, offset);
        what = `write ${len} at ${offset}`;
      } else {
        const size = random(64 * KiB);
        await native.truncateBlocks(pair.data.fd, pair.sums.fd, size, blockSize);
        model = modelTruncate(model, size);
        what = `truncate to ${size}`;
      }
      const data = await readFile(pair.dataPath);
      const sums = await readFile(pair.sumsPath);
      const bad = badBlocksOf(data, sums, blockSize);
      if (!data.equals(model) || sums.length !== Math.ceil(model.length / blockSize) * 4 || bad.length) {
        failures++;
        t.fail(`bs ${blockSize} op ${op} (${what}): data equal ${data.equals(model)}, sums ${sums.length} bytes, bad ${bad}`);
      }
      const readOffset = random(model.length + 100);
      const readLen = 1 + random(4 * blockSize);
      const buffer = Buffer.alloc(readLen);
      const result = await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, readOffset, blockSize);
      const expected = model.subarray(Math.min(readOffset, model.length), Math.min(readOffset + readLen, model.length));
      if (result.badBlock !== -1 || result.bytes !== expected.length || !buffer.subarray(0, result.bytes).equals(expected)) {
        failures++;
        t.fail(`bs ${blockSize} op ${op}: read ${readLen} at ${readOffset} gave ${JSON.stringify(result)}`);
      }
    }
    t.equal(failures, 0, `bs ${blockSize}: 150 random operations kept data, sums and reads exact`);
  }
});

t.test('readBlocks reports the first corrupted block, in data or in sums', async (t) => {
  const pair = await openPair(t, await tempDir(t));
  const model = pattern(8 * 4096 + 777, 21);
  await native.writeBlocks(pair.data.fd, pair.sums.fd, model, 0, 4096);
  const buffer = Buffer.alloc(model.length);

  await flipBit(pair.data, 5 * 4096 + 123, 3);
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, 0, 4096), { bytes: model.length, badBlock: 5 }, 'a flipped data bit: block 5');
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, buffer.subarray(0, 10), 5 * 4096 + 4000, 4096), { bytes: 10, badBlock: 5 }, 'a small unaligned read inside the bad block sees it');
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, buffer.subarray(0, 4096), 4 * 4096 + 1, 4096), { bytes: 4096, badBlock: 5 }, 'an unaligned read whose tail edge is the bad block');
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, buffer.subarray(0, 5 * 4096), 0, 4096), { bytes: 5 * 4096, badBlock: -1 }, 'a read of blocks 0..4 does not touch it');
  await flipBit(pair.data, 5 * 4096 + 123, 3);

  await flipBit(pair.sums, 2 * 4 + 1, 0);
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, 0, 4096), { bytes: model.length, badBlock: 2 }, 'a flipped sums bit: block 2');
  await flipBit(pair.data, 7 * 4096, 7);
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, 0, 4096), { bytes: model.length, badBlock: 2 }, 'two bad blocks: the first is reported');
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, 3 * 4096, 4096), { bytes: model.length - 3 * 4096, badBlock: 7 }, 'from block 3: block 7');

  await flipBit(pair.data, 8 * 4096 + 776, 1);
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, 8 * 4096, 4096), { bytes: 777, badBlock: 8 }, 'the short last block is verified too');

  // The hole rule does not excuse a non-zero block: zero a stored CRC of a written block.
  await pair.sums.write(Buffer.alloc(4), 0, 4, 0);
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, 0, 4096), { bytes: model.length, badBlock: 0 }, 'stored 0 over non-zero data is bad');
});

t.test('the hole rule: a zero block verifies with a stored 0 or with its real CRC', async (t) => {
  const pair = await openPair(t, await tempDir(t));
  await native.writeBlocks(pair.data.fd, pair.sums.fd, Buffer.alloc(4096), 0, 4096); // written zeros
  await native.writeBlocks(pair.data.fd, pair.sums.fd, pattern(10, 1), 3 * 4096, 4096); // blocks 1, 2 holes
  const sums = await readFile(pair.sumsPath);
  t.equal(sums.readUInt32LE(0), crc32c(Buffer.alloc(4096)), 'written zeros store their real CRC');
  t.equal(sums.readUInt32LE(4), 0, 'a hole stores 0');
  const buffer = Buffer.alloc(3 * 4096 + 10, 0xff);
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, 0, 4096), { bytes: 3 * 4096 + 10, badBlock: -1 });
  t.ok(buffer.subarray(0, 3 * 4096).every((x) => x === 0), 'holes read as zeros');
  t.same(await native.verifyBlocks(pair.data.fd, pair.sums.fd, 0, 100, 4096, 10), []);
});

t.test('short reads at EOF', async (t) => {
  const pair = await openPair(t, await tempDir(t));
  const model = pattern(10000, 5);
  await native.writeBlocks(pair.data.fd, pair.sums.fd, model, 0, 4096);
  await checkRead(t, pair, model, 8000, 8192, 4096);
  await checkRead(t, pair, model, 8192, 4096, 4096);
  await checkRead(t, pair, model, 9999, 100, 4096);
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, Buffer.alloc(10), 10000, 4096), { bytes: 0, badBlock: -1 }, 'at EOF: 0 bytes');
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, Buffer.alloc(10), 50000, 4096), { bytes: 0, badBlock: -1 }, 'past EOF: 0 bytes');
  t.same(await native.readBlocks(pair.data.fd, pair.sums.fd, Buffer.alloc(0), 0, 4096), { bytes: 0, badBlock: -1 }, 'empty buffer: 0 bytes');
});

t.test('expectedCrc: a mismatch rejects with EBADMSG and writes nothing', async (t) => {
  const pair = await openPair(t, await tempDir(t));
  const model = pattern(3 * 4096 + 5, 9);
  await native.writeBlocks(pair.data.fd, pair.sums.fd, model, 0, 4096);
  const dataBefore = await readFile(pair.dataPath);
  const sumsBefore = await readFile(pair.sumsPath);
  const payload = pattern(5000, 77);
  await t.rejects(native.writeBlocks(pair.data.fd, pair.sums.fd, payload, 100, 4096, (crc32c(payload) ^ 1) >>> 0), {
    code: 'EBADMSG',
    syscall: 'crc32c',
    errno: -74,
  });
  await t.rejects(native.writeBlocks(pair.data.fd, pair.sums.fd, payload, 10 * 4096, 4096, 0), { code: 'EBADMSG' }, 'past EOF too');
  t.ok((await readFile(pair.dataPath)).equals(dataBefore), 'data file unchanged');
  t.ok((await readFile(pair.sumsPath)).equals(sumsBefore), 'sums file unchanged');
  await native.writeBlocks(pair.data.fd, pair.sums.fd, payload, 100, 4096, crc32c(payload));
  await checkFiles(t, pair, modelWrite(model, payload, 100), 4096, 'a matching expectedCrc writes');
});

t.test('truncateBlocks shrinks and grows with exact sums', async (t) => {
  const pair = await openPair(t, await tempDir(t));
  let model: Buffer = pattern(6 * 4096 + 1000, 31);
  await native.writeBlocks(pair.data.fd, pair.sums.fd, model, 0, 4096);
  for (const size of [5 * 4096 + 10, 5 * 4096, 2 * 4096 + 1, 2 * 4096 + 1, 3 * 4096 - 1, 9 * 4096 + 7, 12 * 4096, 100, 0, 4097]) {
    await native.truncateBlocks(pair.data.fd, pair.sums.fd, size, 4096);
    model = modelTruncate(model, size);
    await checkFiles(t, pair, model, 4096, `truncate to ${size}`);
  }
  await checkRead(t, pair, model, 0, 8192, 4096);
  // A grow from a short last block zero-extends it: its old CRC would no longer match.
  const grow = await openPair(t, path.dirname(pair.dataPath), 'grow');
  await native.writeBlocks(grow.data.fd, grow.sums.fd, pattern(100, 2), 0, 4096);
  await native.truncateBlocks(grow.data.fd, grow.sums.fd, 3 * 4096, 4096);
  const sums = await readFile(grow.sumsPath);
  t.equal(sums.readUInt32LE(0), crc32c(modelTruncate(pattern(100, 2), 4096)), 'old short block re-summed over a full zero-extended block');
  t.same([sums.readUInt32LE(4), sums.readUInt32LE(8)], [0, 0], 'new blocks are holes');
});

t.test('verifyBlocks finds exactly the corrupted blocks; resumBlocks repairs', async (t) => {
  const pair = await openPair(t, await tempDir(t));
  // 3 MiB + a short block: the 1 MiB scan chunks have boundaries at blocks 256, 512, 768.
  const model = pattern(3 * MiB + 123, 41);
  await native.writeBlocks(pair.data.fd, pair.sums.fd, model, 0, 4096);
  const blockCount = 769;
  t.same(await native.verifyBlocks(pair.data.fd, pair.sums.fd, 0, blockCount, 4096, 100), [], 'clean file verifies');

  const corrupted = [0, 255, 256, 511, 700, 768];
  for (const block of corrupted.slice(0, -1)) await flipBit(pair.data, block * 4096 + 17, 2);
  await flipBit(pair.sums, 768 * 4 + 3, 6); // the short last block's stored CRC
  t.same(await native.verifyBlocks(pair.data.fd, pair.sums.fd, 0, blockCount, 4096, 100), corrupted, 'every bad block, in order');
  t.same(await native.verifyBlocks(pair.data.fd, pair.sums.fd, 0, 1e9, 4096, 100), corrupted, 'count clipped at EOF');
  t.same(await native.verifyBlocks(pair.data.fd, pair.sums.fd, 0, blockCount, 4096, 2), [0, 255], 'at most maxBad');
  t.same(await native.verifyBlocks(pair.data.fd, pair.sums.fd, 256, 300, 4096, 100), [256, 511], 'a sub-range');
  t.same(await native.verifyBlocks(pair.data.fd, pair.sums.fd, 769, 10, 4096, 100), [], 'starting at EOF: nothing');
  t.same(await native.verifyBlocks(pair.data.fd, pair.sums.fd, 1, 0, 4096, 100), [], 'count 0: nothing');

  // Repair: the data is now the truth (as after fetching a good copy): re-sum those blocks.
  for (const block of corrupted.slice(0, -1)) await native.resumBlocks(pair.data.fd, pair.sums.fd, block, 1, 4096);
  t.same(await native.verifyBlocks(pair.data.fd, pair.sums.fd, 0, blockCount, 4096, 100), [768], 'only the untouched one is left');
  await native.resumBlocks(pair.data.fd, pair.sums.fd, 700, 1e6, 4096); // clipped at EOF
  t.same(await native.verifyBlocks(pair.data.fd, pair.sums.fd, 0, blockCount, 4096, 100), [], 'all repaired');
  await native.resumBlocks(pair.data.fd, pair.sums.fd, 5000, 10, 4096);
  const data = await readFile(pair.dataPath);
  await checkFiles(t, pair, data, 4096, 'resum past EOF changes nothing');

  // A whole-file re-sum of a file written behind brickio's back (recovery).
  const raw = await openPair(t, path.dirname(pair.dataPath), 'raw');
  const rawModel = pattern(2 * MiB + 4096 * 3 + 1, 5);
  await writeFile(raw.dataPath, rawModel);
  t.same((await native.verifyBlocks(raw.data.fd, raw.sums.fd, 0, 1e9, 512, 3)).length, 3, 'unsummed data fails');
  await native.resumBlocks(raw.data.fd, raw.sums.fd, 0, 1e9, 512);
  await checkFiles(t, raw, rawModel, 512, 'resumBlocks over the whole file');
});

t.test('writev, readInto, fdatasync, fsync', async (t) => {
  const dir = await tempDir(t);
  const file = await open(path.join(dir, 'plain'), 'w+');
  t.teardown(() => file.close());
  const parts = [Buffer.from('hello '), new Uint8Array(0), Buffer.from('brick'), pattern(300 * KiB, 3)];
  await native.writev(file.fd, parts, 10);
  const expected = Buffer.concat([Buffer.alloc(10), ...parts]);
  t.ok((await readFile(path.join(dir, 'plain'))).equals(expected), 'buffers written in order at the offset');
  // More buffers than IOV_MAX in one call.
  const many = Array.from({ length: 3000 }, (_, i) => Buffer.from([i & 0xff]));
  await native.writev(file.fd, many, 0);
  const head = Buffer.alloc(3000);
  t.equal(await native.readInto(file.fd, head, 0), 3000);
  t.ok(head.equals(Buffer.from(many.map((b) => b[0]!))), '3000 buffers written in order');
  const tail = Buffer.alloc(1000);
  t.equal(await native.readInto(file.fd, tail, expected.length - 10), 10, 'short at EOF');
  t.equal(await native.readInto(file.fd, tail, expected.length + 5), 0, 'past EOF');
  await native.fdatasync(file.fd);
  await native.fsync(file.fd);
  await t.rejects(native.fsync(2 ** 30), { code: 'EBADF', syscall: 'fsync', errno: -9 }, 'node-shaped system error');
  await t.rejects(native.writeBlocks(2 ** 30, 2 ** 30, Buffer.alloc(1), 0, 4096), { code: 'EBADF', syscall: 'statx', message: /data file/ });
});

t.test('xattrs by path and by fd', async (t) => {
  const dir = await tempDir(t);
  const filePath = path.join(dir, 'x');
  const file = await open(filePath, 'w+');
  t.teardown(() => file.close());
  try {
    await native.setXattr(filePath, 'user.brickd.probe', Buffer.from('1'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
      t.pass(`skipped: the temp filesystem (${os.tmpdir()}) does not support user xattrs`);
      return;
    }
    throw err;
  }
  t.equal(await native.getXattr(filePath, 'user.brickd.absent'), undefined, 'absent: undefined');
  await native.setXattr(filePath, 'user.brickd.fileId', Buffer.from('f-0001'));
  t.same(await native.getXattr(filePath, 'user.brickd.fileId'), Buffer.from('f-0001'), 'set by path, get by path');
  t.same(await native.getXattr(file.fd, 'user.brickd.fileId'), Buffer.from('f-0001'), 'get by fd');
  const big = pattern(2000, 8);
  await native.setXattr(file.fd, 'user.brickd.fileId', big);
  t.same(await native.getXattr(filePath, 'user.brickd.fileId'), big, 'replaced by fd');
  await native.setXattr(file.fd, 'user.brickd.empty', new Uint8Array(0));
  t.same(await native.getXattr(file.fd, 'user.brickd.empty'), Buffer.alloc(0), 'an empty value is present, not absent');

  const link = path.join(dir, 'link');
  await symlink(filePath, link);
  t.ok((await lstat(link)).isSymbolicLink());
  t.equal(await native.getXattr(link, 'user.brickd.fileId'), undefined, 'a symlink is not followed');
  await t.rejects(native.getXattr(path.join(dir, 'missing'), 'user.x'), { code: 'ENOENT', syscall: 'lgetxattr', path: path.join(dir, 'missing') });
  await t.rejects(native.getXattr(filePath, 'nonamespace'), { code: 'EOPNOTSUPP' }, 'a name without a namespace');
});

t.test('misuse: TypeError / RangeError naming the argument, before any I/O', async (t) => {
  const buf = Buffer.alloc(16);
  const cases: Array<[string, () => unknown, ErrorConstructor, RegExp]> = [
    ['fd string', () => native.fsync('3' as unknown as number), TypeError, /"fd"/],
    ['fd negative', () => native.fdatasync(-1), RangeError, /"fd"/],
    ['writev not array', () => native.writev(1, buf as unknown as Uint8Array[], 0), TypeError, /"buffers"/],
    ['writev element', () => native.writev(1, [buf, 'x' as unknown as Uint8Array], 0), TypeError, /"buffers\[1\]"/],
    ['readInto buffer', () => native.readInto(1, new Uint16Array(4) as unknown as Uint8Array, 0), TypeError, /"buffer"/],
    ['readInto offset fractional', () => native.readInto(1, buf, 1.5), RangeError, /"offset"/],
    ['writeBlocks offset negative', () => native.writeBlocks(1, 2, buf, -1, 4096), RangeError, /"offset"/],
    ['writeBlocks offset NaN', () => native.writeBlocks(1, 2, buf, NaN, 4096), RangeError, /"offset"/],
    ['writeBlocks offset > 2^53', () => native.writeBlocks(1, 2, buf, 2 ** 60, 4096), RangeError, /"offset"/],
    ['writeBlocks data', () => native.writeBlocks(1, 2, 'x' as unknown as Uint8Array, 0, 4096), TypeError, /"data"/],
    ['writeBlocks sumsFd', () => native.writeBlocks(1, undefined as unknown as number, buf, 0, 4096), TypeError, /"sumsFd"/],
    ['blockSize not power of two', () => native.writeBlocks(1, 2, buf, 0, 4000), RangeError, /"blockSize"/],
    ['blockSize too small', () => native.readBlocks(1, 2, buf, 0, 256), RangeError, /"blockSize"/],
    ['readBlocks directFd negative', () => native.readBlocks(1, 2, buf, 0, 4096, -3), RangeError, /"directFd"/],
    ['readBlocks directFd string', () => native.readBlocks(1, 2, buf, 0, 4096, '5' as unknown as number), TypeError, /"directFd"/],
    ['blockSize too big', () => native.truncateBlocks(1, 2, 0, 2 * MiB), RangeError, /"blockSize"/],
    ['blockSize missing', () => native.resumBlocks(1, 2, 0, 1, undefined as unknown as number), TypeError, /"blockSize"/],
    ['expectedCrc too big', () => native.writeBlocks(1, 2, buf, 0, 4096, 2 ** 32), RangeError, /"expectedCrc"/],
    ['expectedCrc string', () => native.writeBlocks(1, 2, buf, 0, 4096, '1' as unknown as number), TypeError, /"expectedCrc"/],
    ['truncate size', () => native.truncateBlocks(1, 2, -5, 4096), RangeError, /"size"/],
    ['verify maxBad 0', () => native.verifyBlocks(1, 2, 0, 1, 4096, 0), RangeError, /"maxBad"/],
    ['verify firstBlock', () => native.verifyBlocks(1, 2, -1, 1, 4096, 1), RangeError, /"firstBlock"/],
    ['resum count', () => native.resumBlocks(1, 2, 0, 0.5, 4096), RangeError, /"count"/],
    ['writeBlocksBatch not array', () => native.writeBlocksBatch({} as never), TypeError, /"entries"/],
    ['writeBlocksBatch entry shape', () => native.writeBlocksBatch([[1, 2, buf, 0, 4096], [1, 2, buf]] as never), TypeError, /"entries\[1\]"/],
    ['writeBlocksBatch data', () => native.writeBlocksBatch([[1, 2, 'x', 0, 4096]] as never), TypeError, /"entries\[0\]\[2\]"/],
    ['writeBlocksBatch offset', () => native.writeBlocksBatch([[1, 2, buf, -1, 4096]]), RangeError, /"entries\[0\]\[3\]"/],
    ['writeBlocksBatch blockSize', () => native.writeBlocksBatch([[1, 2, buf, 0, 4000]]), RangeError, /"blockSize"/],
    ['xattr target', () => native.getXattr({} as unknown as string, 'user.a'), TypeError, /"target"/],
    ['xattr name', () => native.getXattr('/tmp', 5 as unknown as string), TypeError, /"name"/],
    ['xattr path with NUL', () => native.getXattr('/tmp\0x', 'user.a'), TypeError, /target/],
    ['xattr value too big', () => native.setXattr(1, 'user.a', Buffer.alloc(65537)), RangeError, /value/],
    ['addressOffset view', () => native.addressOffset('x' as unknown as Uint8Array, 4096), TypeError, /"view"/],
    ['addressOffset alignment not power of two', () => native.addressOffset(buf, 3000), RangeError, /"alignment"/],
    ['addressOffset alignment 0', () => native.addressOffset(buf, 0), RangeError, /"alignment"/],
    ['addressOffset alignment > 1 GiB', () => native.addressOffset(buf, 2 ** 31), RangeError, /"alignment"/],
    ['addressOffset alignment fractional', () => native.addressOffset(buf, 0.5), RangeError, /"alignment"/],
  ];
  for (const [name, call, type, message] of cases) {
    t.throws(call, { name: type.name, message, code: /^ERR_/ }, name);
  }
});

t.test('addressOffset: where a view starts relative to a boundary, byte offsets included', async (t) => {
  const memory = Buffer.allocUnsafeSlow(3 * 4096);
  const base = native.addressOffset(memory, 4096);
  t.ok(base >= 0 && base < 4096);
  for (const shift of [1, 7, 4095, 4096, 5000]) {
    t.equal(native.addressOffset(memory.subarray(shift), 4096), (base + shift) % 4096, `a view ${shift} bytes in`);
  }
  t.equal(native.addressOffset(memory, 1), 0, 'every address is 1-aligned');
  t.equal(native.addressOffset(memory.subarray(3), 2), (native.addressOffset(memory, 2) + 3) % 2);
});

t.test('allocAligned: 4 KiB-aligned buffers of exactly the length asked, from 4 KiB up', async (t) => {
  for (const length of [DIRECT_IO_ALIGNMENT, DIRECT_IO_ALIGNMENT + 1, 1_000_000, MiB, 16 * MiB]) {
    const b = allocAligned(length);
    t.equal(b.length, length);
    t.equal(native.addressOffset(b, DIRECT_IO_ALIGNMENT), 0, `${length} bytes start on a boundary`);
    t.ok(b.buffer.byteLength - b.byteOffset >= length && b.buffer.byteLength < length + DIRECT_IO_ALIGNMENT, 'its own memory, at most 4 KiB - 1 more');
  }
  for (const length of [0, 1, 100, DIRECT_IO_ALIGNMENT - 1]) t.equal(allocAligned(length).length, length, `${length} bytes: a plain buffer`);
});

t.test('writeBlocksBatch: each entry written as writeBlocks would, each failure in its own slot', async (t) => {
  const dir = await tempDir(t);
  const pairs = await Promise.all(Array.from({ length: 6 }, (_, i) => openPair(t, dir, `b${i}`)));
  const models = pairs.map((_, i) => pattern(64 * KiB + i * 999, 900 + i));
  for (const [i, pair] of pairs.entries()) await native.writeBlocks(pair.data.fd, pair.sums.fd, models[i]!, 0, 4096);
  // Two writes per file in one batch (entries run in order: the later one wins where they
  // overlap), unaligned and extending ones among them, and one entry on a closed fd.
  const closed = await open(path.join(dir, 'closed'), 'w+');
  const closedFd = closed.fd;
  await closed.close();
  const entries: Array<[number, number, Uint8Array, number, number]> = [];
  for (const [i, pair] of pairs.entries()) {
    const first = pattern(5000 + i, 40 + i);
    const second = pattern(3000, 70 + i);
    const at = 1000 * i + 17;
    entries.push([pair.data.fd, pair.sums.fd, first, at, 4096], [pair.data.fd, pair.sums.fd, second, at + 2000 + 40_000 * (i % 2), 4096]);
    models[i] = modelWrite(modelWrite(models[i]!, first, at), second, at + 2000 + 40_000 * (i % 2));
    if (i === 2) entries.push([closedFd, closedFd, first, 0, 4096]);
  }
  const results = await native.writeBlocksBatch(entries);
  t.equal(results.length, entries.length, 'one slot per entry');
  const failed = results.flatMap((r, i) => (r ? [i] : []));
  t.same(failed, [6], 'only the entry on the closed fd failed');
  t.match(results[6], { code: 'EBADF' });
  for (const [i, pair] of pairs.entries()) await checkFiles(t, pair, models[i]!, 4096, `file ${i}`);
  t.same(await native.writeBlocksBatch([]), [], 'an empty batch resolves empty');
});

t.test('many concurrent calls on different files', async (t) => {
  const dir = await tempDir(t);
  const pairs = await Promise.all(Array.from({ length: 24 }, (_, i) => openPair(t, dir, `c${i}`)));
  const models = pairs.map((_, i) => pattern(256 * KiB + i * 1000 + 1, 500 + i));
  // Several writes in flight per file would race on shared blocks (callers serialize those),
  // so each file gets one write at a time, but all files at once.
  await Promise.all(pairs.map((pair, i) => native.writeBlocks(pair.data.fd, pair.sums.fd, models[i]!, 0, 4096, crc32c(models[i]!))));
  const reads = await Promise.all(
    pairs.flatMap((pair, i) =>
      [0, 4096, 777].map(async (offset) => {
        const buffer = Buffer.alloc(64 * KiB);
        const result = await native.readBlocks(pair.data.fd, pair.sums.fd, buffer, offset, 4096);
        return result.badBlock === -1 && buffer.equals(models[i]!.subarray(offset, offset + 64 * KiB));
      }),
    ),
  );
  t.equal(reads.filter(Boolean).length, reads.length, `${reads.length} concurrent reads verified and exact`);
  const scrubs = await Promise.all(pairs.map((pair) => native.verifyBlocks(pair.data.fd, pair.sums.fd, 0, 1e9, 4096, 10)));
  t.same(scrubs.flat(), [], 'concurrent scrubs find nothing');
  for (const [i, pair] of pairs.entries()) {
    const data = await readFile(pair.dataPath);
    if (!data.equals(models[i]!)) t.fail(`file ${i} differs`);
  }
});
