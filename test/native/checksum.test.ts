// CRC32C bindings of the addon: published vectors, the three implementations against each
// other at every length and alignment that reaches a different code path, continuation,
// large buffers, the per-block helper, and argument validation.
//
// Random data comes from a seeded generator so a failure reproduces; the seed is printed.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { native } from '../../src/native.js';

type Crc32cFn = (data: Uint8Array, initial?: number) => number;

const cpuFlags = new Set(
  (/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '').trim().split(/\s+/),
);
const hasSse42 = cpuFlags.has('sse4_2');

// Every implementation the CPU can run, by name. crc32cTable is the reference.
const impls: [string, Crc32cFn][] = [
  ['crc32c', native.crc32c],
  ['crc32cTable', native.crc32cTable],
  ...(hasSse42 ? [['crc32cSingleChain', native.crc32cSingleChain] as [string, Crc32cFn]] : []),
];

const seed = Number(process.env.BRICKD_TEST_SEED ?? 0x5eed1234) >>> 0;
t.comment(`random seed ${seed} (set BRICKD_TEST_SEED to repeat a run)`);

/** `length` pseudo-random bytes (xorshift32; deterministic for a given seed). */
function randomBytes(length: number, seedValue = seed): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = seedValue || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** Bit-at-a-time CRC32C straight from the definition: independent of every native path. */
function crc32cBitwise(data: Uint8Array, initial = 0): number {
  let crc = ~initial >>> 0;
  for (const byte of data) {
    crc ^= byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;

t.test('check value and RFC 3720 B.4 vectors, for every implementation', async (t) => {
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  // RFC 3720 B.4: an iSCSI SCSI Read (10) command PDU (the 48-byte basic header segment).
  const readPdu = Uint8Array.from([
    0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
    0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
  ]);
  const vectors: [string, Uint8Array, number][] = [
    ['"123456789"', new TextEncoder().encode('123456789'), 0xe3069283],
    ['32 zero bytes', new Uint8Array(32), 0x8a9136aa],
    ['32 bytes 0xFF', new Uint8Array(32).fill(0xff), 0x62a8ab43],
    ['32 bytes ascending 0x00..0x1F', ascending, 0x46dd794e],
    ['32 bytes descending 0x1F..0x00', ascending.slice().reverse(), 0x113fdb5c],
    ['48-byte iSCSI read PDU', readPdu, 0xd9963a56],
    ['empty', new Uint8Array(0), 0],
  ];
  for (const [name, data, expected] of vectors) {
    t.equal(crc32cBitwise(data), expected, `bitwise reference: ${name} = ${hex(expected)}`);
    for (const [implName, crc] of impls) t.equal(crc(data), expected, `${implName}: ${name} = ${hex(expected)}`);
    t.equal(native.crc32c(Buffer.from(data)), expected, `crc32c of a Buffer: ${name}`);
  }
});

t.test('crc32cImpl reports the fast path on a CPU with SSE4.2 and PCLMULQDQ', async (t) => {
  const expected = hasSse42 && cpuFlags.has('pclmulqdq') ? 'sse42-3way' : 'table';
  t.equal(native.crc32cImpl, expected);
  t.equal(Object.getOwnPropertyDescriptor(native, 'crc32cImpl')?.writable, false, 'read-only');
});

t.test('crc32cSingleChain throws without SSE4.2', { skip: hasSse42 ? 'this CPU has SSE4.2' : false }, async (t) => {
  t.throws(() => native.crc32cSingleChain(new Uint8Array(8)), { code: 'CPU_UNSUPPORTED' });
});

t.test('implementations agree on every length 0..4097 at offsets 0..15', async (t) => {
  // Sub-views of one larger buffer: each offset shifts the data's alignment, which moves
  // the 8-byte alignment prologue, the three-way tiers and the tail of the fast paths.
  const maxLength = 4097;
  const backing = randomBytes(maxLength + 16);
  const initial = 0x9e3779b9; // continue from a non-zero CRC too
  for (let offset = 0; offset < 16; offset++) {
    const mismatches: string[] = [];
    for (let length = 0; length <= maxLength; length++) {
      const view = backing.subarray(offset, offset + length);
      const reference = native.crc32cTable(view);
      const referenceContinued = native.crc32cTable(view, initial);
      for (const [implName, crc] of impls) {
        if (crc(view) !== reference || crc(view, initial) !== referenceContinued) {
          mismatches.push(`${implName} length ${length}`);
        }
      }
    }
    t.same(mismatches.slice(0, 10), [], `offset ${offset}: all implementations equal crc32cTable`);
  }
});

t.test('the table agrees with the bitwise definition on random data', async (t) => {
  const backing = randomBytes(600, seed ^ 0xabcdef);
  const mismatches: number[] = [];
  for (let length = 0; length <= 512; length++) {
    const view = backing.subarray(5, 5 + length);
    if (native.crc32cTable(view, length) !== crc32cBitwise(view, length)) mismatches.push(length);
  }
  t.same(mismatches, [], 'lengths 0..512 at offset 5');
});

t.test('three-way tier boundaries (stream lengths 32, 128, 1024, 8192)', async (t) => {
  const backing = randomBytes(2 * 3 * 8192 + 64, seed ^ 0x1234);
  const mismatches: string[] = [];
  for (const streamBytes of [32, 128, 1024, 8192]) {
    for (const chunks of [1, 2]) {
      for (let delta = -9; delta <= 9; delta++) {
        const length = chunks * 3 * streamBytes + delta;
        for (let offset = 0; offset < 8; offset++) {
          const view = backing.subarray(offset, offset + length);
          if (native.crc32c(view) !== native.crc32cTable(view)) mismatches.push(`length ${length} offset ${offset}`);
        }
      }
    }
  }
  t.same(mismatches.slice(0, 10), []);
});

t.test('continuation: crc(b, crc(a)) equals crc(a || b)', async (t) => {
  const data = randomBytes(10_000, seed ^ 0x77);
  const whole = native.crc32cTable(data);
  const splits = [0, 1, 7, 8, 95, 96, 97, 3071, 4096, 5000, 9999, 10_000];
  for (const [implName, crc] of impls) {
    const wrong = splits.filter((at) => crc(data.subarray(at), crc(data.subarray(0, at))) !== whole);
    t.same(wrong, [], `${implName}: every split point`);
    const threeParts = crc(data.subarray(7000), crc(data.subarray(123, 7000), crc(data.subarray(0, 123))));
    t.equal(threeParts, whole, `${implName}: three parts`);
    t.equal(crc(new Uint8Array(0), whole), whole, `${implName}: empty data returns initial`);
  }
  // The implementations share one definition of the state, so they can hand over mid-stream.
  t.equal(native.crc32cTable(data.subarray(4321), native.crc32c(data.subarray(0, 4321))), whole, 'fast then table');
});

t.test('large buffers', async (t) => {
  const MiB = 1024 * 1024;
  for (const length of [MiB, 16 * MiB + 13]) {
    const data = randomBytes(length, seed ^ length);
    const reference = native.crc32cTable(data);
    for (const [implName, crc] of impls) t.equal(crc(data), reference, `${implName}: ${length} bytes`);
    const view = data.subarray(3, length - 5);
    t.equal(native.crc32c(view), native.crc32cTable(view), `crc32c: ${view.length} bytes at offset 3`);
  }
});

t.test('crc32cBlocks writes one crc32c per block, the last one short', async (t) => {
  const backing = randomBytes(1024 * 1024 + 16, seed ^ 0xb10c);
  const cases: [number, number][] = [
    [0, 4096],
    [1, 4096],
    [100, 1],
    [1000, 7],
    [4095, 4096],
    [4096, 4096],
    [4097, 4096],
    [3 * 4096 + 100, 4096],
    [65536, 512],
    [1024 * 1024 + 7, 65536],
    [5000, 2 ** 40], // one short block
  ];
  for (const [length, blockSize] of cases) {
    const data = backing.subarray(3, 3 + length); // an unaligned view
    const count = Math.ceil(length / blockSize);
    const out = new Uint32Array(count + 2).fill(0xdeadbeef);
    t.equal(native.crc32cBlocks(data, blockSize, out), count, `${length} bytes / ${blockSize}: returns ${count}`);
    const expected = Array.from({ length: count }, (_, i) =>
      native.crc32cTable(data.subarray(i * blockSize, Math.min(length, (i + 1) * blockSize))),
    );
    t.same(Array.from(out.subarray(0, count)), expected, `${length} bytes / ${blockSize}: per-block CRCs`);
    t.same(Array.from(out.subarray(count)), [0xdeadbeef, 0xdeadbeef], `${length} bytes / ${blockSize}: rest untouched`);
  }
});

t.test('bad arguments throw TypeError or RangeError naming the argument', async (t) => {
  // Called through an untyped view: these are exactly the calls TypeScript would reject.
  const loose = native as unknown as Record<string, (...args: unknown[]) => unknown>;
  const bytes = new Uint8Array(16);
  const notBytes: [string, unknown][] = [
    ['undefined', undefined],
    ['null', null],
    ['a string', 'abc'],
    ['an array', [1, 2, 3]],
    ['an ArrayBuffer', new ArrayBuffer(4)],
    ['a DataView', new DataView(new ArrayBuffer(4))],
    ['a Uint16Array', new Uint16Array(2)],
    ['an Int8Array', new Int8Array(2)],
    ['a Uint8ClampedArray', new Uint8ClampedArray(2)],
  ];
  for (const name of ['crc32c', 'crc32cTable', ...(hasSse42 ? ['crc32cSingleChain'] : [])]) {
    const fn = loose[name]!;
    for (const [what, value] of notBytes) {
      t.throws(() => fn(value), { name: 'TypeError', message: /"data"/ }, `${name}: data is ${what}`);
    }
    for (const value of ['1', null, 1n, {}]) {
      t.throws(() => fn(bytes, value), { name: 'TypeError', message: /"initial"/ }, `${name}: initial ${typeof value} ${String(value)}`);
    }
    for (const value of [-1, 1.5, 2 ** 32, NaN, Infinity]) {
      t.throws(() => fn(bytes, value), { name: 'RangeError', message: /"initial"/ }, `${name}: initial ${value}`);
    }
    t.equal(fn(bytes, 0xffffffff), native.crc32cTable(bytes, 0xffffffff), `${name}: initial 0xFFFFFFFF is accepted`);
  }

  const blocks = loose.crc32cBlocks!;
  const out = new Uint32Array(16);
  for (const [what, value] of notBytes) {
    t.throws(() => blocks(value, 4, out), { name: 'TypeError', message: /"data"/ }, `crc32cBlocks: data is ${what}`);
  }
  for (const value of [undefined, '4', 4n]) {
    t.throws(() => blocks(bytes, value, out), { name: 'TypeError', message: /"blockSize"/ }, `blockSize ${typeof value} ${String(value)}`);
  }
  for (const value of [0, -1, 1.5, NaN, Infinity]) {
    t.throws(() => blocks(bytes, value, out), { name: 'RangeError', message: /"blockSize"/ }, `blockSize ${value}`);
  }
  for (const [what, value] of [
    ['missing', undefined],
    ['an array', [0, 0, 0, 0]],
    ['an Int32Array', new Int32Array(16)],
    ['a Uint8Array', new Uint8Array(64)],
  ] as [string, unknown][]) {
    t.throws(() => blocks(bytes, 4, value), { name: 'TypeError', message: /"out"/ }, `out is ${what}`);
  }
  t.throws(() => blocks(bytes, 4, new Uint32Array(3)), { name: 'RangeError', message: /"out".*room for 4/ }, 'out too short');
  t.equal(blocks(bytes, 4, new Uint32Array(4)), 4, 'out exactly long enough');
  t.equal(blocks(new Uint8Array(0), 4, new Uint32Array(0)), 0, 'empty data needs no room');

  const shared = new ArrayBuffer(64);
  t.throws(
    () => blocks(new Uint8Array(shared, 0, 32), 4, new Uint32Array(shared, 28, 8)),
    { name: 'RangeError', message: /share memory/ },
    'out overlapping data',
  );
  t.equal(blocks(new Uint8Array(shared, 0, 32), 4, new Uint32Array(shared, 32, 8)), 8, 'adjacent out is fine');
});
