// Replication frames and messages: round trips under any fragmentation, every bad header
// field refused before anything is allocated, CRC mismatches, random-byte fuzzing, and the
// version 1 wire fixtures (test/fixtures/replication-v1, see make-replication-v1.mjs).
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { BrickdError } from '../../src/errors.js';
import { native } from '../../src/native.js';
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FrameDecoder,
  FrameType,
  MAX_BODY_BYTES,
  MAX_PAYLOAD_BYTES,
  type Frame,
  type FrameTypeCode,
} from '../../src/wire/frames.js';
import { decodeMessage, encodeMessage, replicationProto as pb, type ReplicationMessage } from '../../src/wire/replication.js';
import { REPLICA_FRAME_LIMITS } from '../../src/replication/link.js';
import { MAX_SUSPECT_RANGES } from '../../src/store/activity.js';
import { FIXTURE_MESSAGES } from '../fixtures/replication-v1/messages.mjs';
import { xorshift as rng } from '../helpers/random.js';

const FIXTURES = path.resolve(import.meta.dirname, '..', 'fixtures', 'replication-v1');

/** xorshift32: reproducible randomness from a fixed seed. */

function randomBytes(random: () => number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(random() * 256);
  return b;
}

const nonce = (from: number) => Buffer.from(Array.from({ length: 32 }, (_, i) => (from + i) & 0xff));

const MESSAGES: ReplicationMessage[] = [
  { type: 'HELLO', clusterId: 'c1', nodeId: 'n1', volumeId: 'v1', generation: 3, nonce: nonce(1) },
  { type: 'CHALLENGE', nodeId: 'n2', nonce: nonce(2) },
  { type: 'HELLO', clusterId: 'c1', nodeId: 'n1', volumeId: 'v1', generation: 3, nonce: nonce(1), features: ['generation-history', 'x-2'] },
  { type: 'CHALLENGE', nodeId: 'n2', nonce: nonce(2), features: ['generation-history'] },
  { type: 'AUTH', mac: nonce(3) },
  { type: 'AUTH', mac: nonce(3), volumeUid: '6f1c2b9e-0d7a-4c55-9a51-3b2f8e7d1c40' },
  { type: 'AUTH', mac: nonce(3), renumbered: [{ generation: 2, fromSeq: 10n, toSeq: 16393n }, { generation: 5, fromSeq: 1n, toSeq: 1n }] },
  { type: 'WELCOME', mac: nonce(4), appliedSeq: 10n, durableSeq: 9n, generation: 3 },
  { type: 'WELCOME', mac: nonce(4), appliedSeq: 10n, durableSeq: 9n, generation: 3, appliedGeneration: 2 },
  { type: 'WELCOME', mac: nonce(4), appliedSeq: 10n, durableSeq: 9n, generation: 3, appliedGeneration: 0 },
  { type: 'MUTATION', seq: 11n, generation: 3, mutation: { op: 'create', path: 'a/b', fid: 'aaaaaaaaaaaaaaaa', mode: 0o644 } },
  { type: 'MUTATION', seq: 12n, generation: 3, mutation: { op: 'mkdir', path: 'd', fid: 'bbbbbbbbbbbbbbbb', mode: 0o755 } },
  { type: 'MUTATION', seq: 13n, generation: 3, mutation: { op: 'symlink', path: 'l', fid: 'cccccccccccccccc', target: '../x' } },
  { type: 'MUTATION', seq: 14n, generation: 3, mutation: { op: 'link', path: 'h', fid: 'aaaaaaaaaaaaaaaa' } },
  { type: 'MUTATION', seq: 15n, generation: 3, mutation: { op: 'write', fid: 'aaaaaaaaaaaaaaaa', offset: 4096, data: randomBytes(rng(7), 100_000) } },
  { type: 'MUTATION', seq: 16n, generation: 3, mutation: { op: 'write', fid: 'aaaaaaaaaaaaaaaa', offset: 0, data: Buffer.alloc(0) } },
  { type: 'MUTATION', seq: 17n, generation: 3, mutation: { op: 'truncate', fid: 'aaaaaaaaaaaaaaaa', size: 0 } },
  { type: 'MUTATION', seq: 18n, generation: 3, mutation: { op: 'unlink', path: 'h', fid: 'aaaaaaaaaaaaaaaa' } },
  { type: 'MUTATION', seq: 19n, generation: 3, mutation: { op: 'rmdir', path: 'd', fid: 'bbbbbbbbbbbbbbbb' } },
  { type: 'MUTATION', seq: 20n, generation: 3, mutation: { op: 'rename', from: 'a/b', to: 'c', fid: 'aaaaaaaaaaaaaaaa' } },
  { type: 'MUTATION', seq: 21n, generation: 3, mutation: { op: 'rename', from: 'c', to: 'l', fid: 'aaaaaaaaaaaaaaaa', replacedFid: 'cccccccccccccccc' } },
  { type: 'MUTATION', seq: 22n, generation: 3, mutation: { op: 'setattr', path: '', fid: 'dddddddddddddddd', mode: 0, uid: 0, gid: 5, atimeMs: 0, mtimeMs: 12.5 } },
  { type: 'MUTATION', seq: 23n, generation: 3, mutation: { op: 'setattr', path: 'c', fid: 'aaaaaaaaaaaaaaaa', uid: 1000 } },
  { type: 'ACK', durableSeq: 23n },
  { type: 'WELCOME', mac: nonce(5), appliedSeq: 0n, durableSeq: 0n, generation: 3, resyncing: true },
  { type: 'RESYNC_BEGIN', s0: 23n, generation: 3, history: [] },
  { type: 'RESYNC_BEGIN', s0: 23n, generation: 3, history: [{ fromSeq: 1n, generation: 0 }, { fromSeq: 9n, generation: 2 }, { fromSeq: 23n, generation: 3 }] },
  { type: 'RESYNC_ENTRY', entry: { path: 'a/b', type: 'file', fid: 'aaaaaaaaaaaaaaaa', mode: 0o644, uid: 1, gid: 2, mtimeMs: 1.5, size: 5000, target: '' } },
  { type: 'RESYNC_ENTRY', entry: { path: 'l', type: 'symlink', fid: 'cccccccccccccccc', mode: 0o777, uid: 0, gid: 0, mtimeMs: 0, size: 0, target: '../x' } },
  { type: 'RESYNC_SUMS', fid: 'aaaaaaaaaaaaaaaa', firstBlock: 0, sums: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]) },
  { type: 'RESYNC_WANT', fid: 'aaaaaaaaaaaaaaaa', firstBlock: 0, blocks: Buffer.from([2]) },
  { type: 'RESYNC_DATA', fid: 'aaaaaaaaaaaaaaaa', offset: 4096, data: randomBytes(rng(8), 904) },
  { type: 'RESYNC_END', entries: 2 },
  { type: 'RESYNC_DONE', appliedSeq: 23n },
  { type: 'ERROR', code: 'GENERATION_STALE', message: 'seen 9', generation: 9, appliedSeq: 0n },
  { type: 'PING', id: 1 },
  { type: 'PONG', id: 1 },
];

/** What decodeMessage gives back for `m` (it adds a mutation's verified payload CRC). */
function expected(m: ReplicationMessage): ReplicationMessage {
  if (m.type === 'RESYNC_DATA') return { ...m, payloadCrc: native.crc32c(m.data) >>> 0 };
  if (m.type !== 'MUTATION') return m;
  const crc = m.mutation.op === 'write' && m.mutation.data.length > 0 ? native.crc32c(m.mutation.data) >>> 0 : 0;
  return { ...m, payloadCrc: crc };
}

function wire(messages: ReplicationMessage[]): Buffer {
  return Buffer.concat(messages.flatMap((m) => encodeMessage(m)));
}

function decodeAll(decoder: FrameDecoder, chunks: Buffer[]): ReplicationMessage[] {
  const out: ReplicationMessage[] = [];
  for (const chunk of chunks) for (const f of decoder.push(chunk)) out.push(decodeMessage(f));
  return out;
}

/** A header with valid CRC unless `headerCrc` is given; fields default to a 0-length PING. */
function header(fields: Partial<{ magic: number; version: number; type: number; flags: number; bodyLength: number; payloadLength: number; bodyCrc: number; payloadCrc: number; headerCrc: number }> = {}): Buffer {
  const h = Buffer.alloc(FRAME_HEADER_BYTES);
  h.writeUInt32LE(fields.magic ?? FRAME_MAGIC, 0);
  h.writeUInt8(fields.version ?? 1, 4);
  h.writeUInt8(fields.type ?? FrameType.PING, 5);
  h.writeUInt16LE(fields.flags ?? 0, 6);
  h.writeUInt32LE(fields.bodyLength ?? 0, 8);
  h.writeUInt32LE(fields.payloadLength ?? 0, 12);
  h.writeUInt32LE(fields.bodyCrc ?? 0, 16);
  h.writeUInt32LE(fields.payloadCrc ?? 0, 20);
  h.writeUInt32LE(fields.headerCrc ?? native.crc32c(h.subarray(0, 24)) >>> 0, 24);
  return h;
}

/** Record every Buffer allocation larger than a header made while `fn` runs. */
function largeAllocations(fn: () => void): number[] {
  const sizes: number[] = [];
  const { allocUnsafe, alloc, allocUnsafeSlow } = Buffer;
  const spy = (original: (...args: never[]) => Buffer) =>
    function (this: unknown, ...args: unknown[]) {
      if (typeof args[0] === 'number' && args[0] > FRAME_HEADER_BYTES) sizes.push(args[0]);
      return (original as (...a: unknown[]) => Buffer).apply(Buffer, args);
    };
  Object.assign(Buffer, { allocUnsafe: spy(allocUnsafe), alloc: spy(alloc), allocUnsafeSlow: spy(allocUnsafeSlow) });
  try {
    fn();
  } finally {
    Object.assign(Buffer, { allocUnsafe, alloc, allocUnsafeSlow });
  }
  return sizes;
}

function badFrameReason(t: Test, fn: () => unknown, reason: string, name: string): BrickdError | undefined {
  try {
    fn();
  } catch (err) {
    t.ok(err instanceof BrickdError, `${name}: a BrickdError`);
    const e = err as BrickdError;
    t.equal(e.code, 'BAD_FRAME', `${name}: BAD_FRAME`);
    t.equal(e.details.reason, reason, `${name}: reason ${reason}`);
    return e;
  }
  t.fail(`${name}: no error, expected BAD_FRAME ${reason}`);
  return undefined;
}

t.test('frame types match the proto enum', async (t) => {
  for (const [name, code] of Object.entries(FrameType)) t.equal(pb.FrameType[name as keyof typeof FrameType], code, name);
});

t.test('every message round-trips in one chunk, byte by byte, and in random fragments', async (t) => {
  const bytes = wire(MESSAGES);
  t.same(decodeAll(new FrameDecoder(), [bytes]), MESSAGES.map(expected), 'one chunk holding every frame');

  const oneByOne: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) oneByOne.push(bytes.subarray(i, i + 1));
  t.same(decodeAll(new FrameDecoder(), oneByOne), MESSAGES.map(expected), 'byte by byte');

  const random = rng(42);
  for (let round = 0; round < 50; round++) {
    const chunks: Buffer[] = [];
    for (let pos = 0; pos < bytes.length; ) {
      const n = 1 + Math.floor(random() * (random() < 0.5 ? 40 : 70_000));
      chunks.push(Buffer.from(bytes.subarray(pos, pos + n)));
      pos += n;
    }
    const decoded = decodeAll(new FrameDecoder(), chunks);
    if (!t.same(decoded, MESSAGES.map(expected), `round ${round}: ${chunks.length} chunks`)) break;
  }
});

t.test('encodeFrame does not copy the payload; a whole payload in one chunk is a view of it', async (t) => {
  const data = randomBytes(rng(3), 70_000);
  const parts = encodeMessage({ type: 'MUTATION', seq: 1n, generation: 0, mutation: { op: 'write', fid: 'aaaaaaaaaaaaaaaa', offset: 0, data } });
  t.equal(parts.length, 3);
  t.equal(parts[2], data, 'the payload part is the caller buffer itself');
  const chunk = Buffer.concat(parts);
  const [frame] = new FrameDecoder().push(chunk);
  t.equal(frame!.payload.buffer, chunk.buffer, 'decoded payload shares the chunk memory');
  t.ok(frame!.payload.equals(data));
  // A caller-supplied CRC is trusted: a wrong one is caught by the receiver.
  const lying = Buffer.concat(encodeFrame(FrameType.MUTATION, parts[1]!, data, 1234));
  badFrameReason(t, () => new FrameDecoder().push(lying), 'payload-crc', 'wrong caller CRC');
});

t.test('every bad header field is refused before any allocation, and the decoder stays dead', async (t) => {
  const body = Buffer.from(pb.Ping.encode({ id: 1 }).finish());
  const cases: Array<{ name: string; bytes: Buffer; reason: string; decoder?: () => FrameDecoder }> = [
    { name: 'magic', bytes: header({ magic: 0x12345678 }), reason: 'magic' },
    { name: 'ASCII garbage', bytes: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), reason: 'magic' },
    { name: 'version 0', bytes: header({ version: 0 }), reason: 'version' },
    { name: 'version 2', bytes: header({ version: 2 }), reason: 'version' },
    { name: 'header CRC', bytes: header({ headerCrc: 0xdeadbeef }), reason: 'header-crc' },
    { name: 'length with stale CRC', bytes: (() => { const h = header(); h.writeUInt32LE(0xffffffff, 12); return h; })(), reason: 'header-crc' },
    { name: 'flags', bytes: header({ flags: 1 }), reason: 'flags' },
    { name: 'type 0', bytes: header({ type: 0 }), reason: 'type' },
    { name: 'type 19', bytes: header({ type: 19 }), reason: 'type' },
    { name: 'type 255', bytes: header({ type: 255 }), reason: 'type' },
    { name: 'body of 64 KiB + 1', bytes: header({ type: FrameType.HELLO, bodyLength: MAX_BODY_BYTES + 1 }), reason: 'body-too-large' },
    { name: 'body of 4 GiB - 1', bytes: header({ type: FrameType.HELLO, bodyLength: 0xffffffff }), reason: 'body-too-large' },
    { name: 'payload of 16 MiB + 1', bytes: header({ type: FrameType.MUTATION, payloadLength: MAX_PAYLOAD_BYTES + 1 }), reason: 'payload-too-large' },
    { name: 'payload of 4 GiB - 1', bytes: header({ type: FrameType.MUTATION, payloadLength: 0xffffffff }), reason: 'payload-too-large' },
    { name: 'payload on a PING', bytes: header({ type: FrameType.PING, payloadLength: 10 }), reason: 'payload-not-allowed' },
    { name: 'body over a configured limit', bytes: header({ type: FrameType.HELLO, bodyLength: 1025 }), reason: 'body-too-large', decoder: () => new FrameDecoder({ maxBodyBytes: 1024 }) },
    { name: 'payload over a configured limit (0: before auth)', bytes: header({ type: FrameType.MUTATION, payloadLength: 1 }), reason: 'payload-too-large', decoder: () => new FrameDecoder({ maxPayloadBytes: 0 }) },
    { name: 'body CRC', bytes: Buffer.concat([header({ bodyLength: body.length, bodyCrc: 1 }), body]), reason: 'body-crc' },
    {
      name: 'payload CRC',
      bytes: (() => {
        const parts = encodeMessage({ type: 'MUTATION', seq: 1n, generation: 0, mutation: { op: 'write', fid: 'aaaaaaaaaaaaaaaa', offset: 0, data: Buffer.from('hello') } });
        const whole = Buffer.concat(parts);
        whole[whole.length - 1]! ^= 1;
        return whole;
      })(),
      reason: 'payload-crc',
    },
  ];
  for (const c of cases) {
    const decoder = c.decoder?.() ?? new FrameDecoder();
    // A valid frame first, in the same stream, to show state does not leak between frames.
    decoder.push(Buffer.concat(encodeMessage({ type: 'PING', id: 9 })));
    let error: BrickdError | undefined;
    const sizes = largeAllocations(() => {
      error = badFrameReason(t, () => decoder.push(c.bytes), c.reason, c.name);
    });
    const bodyOrPayloadCase = c.reason === 'body-crc' || c.reason === 'payload-crc';
    if (!bodyOrPayloadCase) {
      t.same(sizes, [], `${c.name}: nothing allocated`);
    }
    t.ok(decoder.bufferedBytes <= FRAME_HEADER_BYTES, `${c.name}: holds at most a header (${decoder.bufferedBytes})`);
    t.ok(decoder.dead, `${c.name}: decoder is dead`);
    t.throws(() => decoder.push(Buffer.concat(encodeMessage({ type: 'PING', id: 1 }))), error!, `${c.name}: a good frame after it is refused with the same error`);
  }
});

t.test('a large frame arriving in pieces holds no more than its header plus limits', async (t) => {
  const data = randomBytes(rng(5), 1_000_000);
  const bytes = Buffer.concat(encodeMessage({ type: 'MUTATION', seq: 1n, generation: 0, mutation: { op: 'write', fid: 'aaaaaaaaaaaaaaaa', offset: 0, data } }));
  const decoder = new FrameDecoder({ maxPayloadBytes: 1_000_000 });
  let max = 0;
  let frames: Frame[] = [];
  for (let pos = 0; pos < bytes.length; pos += 4096) {
    frames = frames.concat(decoder.push(bytes.subarray(pos, pos + 4096)));
    max = Math.max(max, decoder.bufferedBytes);
  }
  t.equal(frames.length, 1);
  t.ok(frames[0]!.payload.equals(data));
  t.ok(max <= FRAME_HEADER_BYTES + MAX_BODY_BYTES + 1_000_000, `buffered at most ${max} bytes`);
  t.equal(decoder.bufferedBytes, 0, 'nothing held between frames');
  t.throws(() => new FrameDecoder({ maxPayloadBytes: MAX_PAYLOAD_BYTES + 1 }), RangeError);
  t.throws(() => new FrameDecoder({ maxBodyBytes: -1 }), RangeError);
  t.throws(() => encodeFrame(FrameType.PING, Buffer.alloc(0), Buffer.alloc(1)), RangeError, 'encoder refuses a payload on a PING');
  t.throws(() => encodeFrame(42 as FrameTypeCode, Buffer.alloc(0)), RangeError);
});

t.test('payload rooms: a recycled room takes a later payload; chunk views and foreign buffers are never reused', async (t) => {
  const mutation = (seq: bigint, data: Buffer) => Buffer.concat(encodeMessage({ type: 'MUTATION', seq, generation: 0, mutation: { op: 'write', fid: 'aaaaaaaaaaaaaaaa', offset: 0, data } }));
  const inPieces = (decoder: FrameDecoder, bytes: Buffer, piece: number) => {
    let frames: Frame[] = [];
    for (let pos = 0; pos < bytes.length; pos += piece) frames = frames.concat(decoder.push(bytes.subarray(pos, pos + piece)));
    return frames;
  };
  const decoder = new FrameDecoder();
  const first = randomBytes(rng(21), 300_000);
  const [a] = inPieces(decoder, mutation(1n, first), 65_536);
  t.ok(a!.payload.equals(first), 'a payload in pieces arrives whole');
  t.equal(a!.payloadCrc, native.crc32c(first) >>> 0, 'its CRC, chained piece by piece, is the CRC of the whole');
  t.equal(native.addressOffset(a!.payload, 4096), 0, 'a room starts on a 4 KiB boundary (O_DIRECT takes it in place)');
  const room = a!.payload.buffer;

  // Not recycled: the next payload gets its own room.
  const second = randomBytes(rng(22), 200_000);
  const [b] = inPieces(decoder, mutation(2n, second), 65_536);
  t.not(b!.payload.buffer, room, 'a room still in use is not filled again');
  t.ok(a!.payload.equals(first), 'the first payload is untouched');

  decoder.recycle(a!.payload);
  decoder.recycle(a!.payload); // twice: still one spare
  const third = randomBytes(rng(23), 250_000);
  const [c] = inPieces(decoder, mutation(3n, third), 65_536);
  t.equal(c!.payload.buffer, room, 'a recycled room large enough takes the next payload');
  t.equal(c!.payload.byteOffset, a!.payload.byteOffset, 'at the same aligned start');
  t.equal(native.addressOffset(c!.payload, 4096), 0);
  t.equal(c!.payload.length, third.length);
  t.ok(c!.payload.equals(third), 'with exactly its bytes');
  const fourth = randomBytes(rng(24), 250_000);
  const [d] = inPieces(decoder, mutation(4n, fourth), 65_536);
  t.not(d!.payload.buffer, room, 'recycled once, the room is used once');

  // A payload that arrived whole in one chunk is a view of the chunk: never reused.
  const chunk = mutation(5n, randomBytes(rng(25), 10_000));
  const [e] = decoder.push(chunk);
  t.equal(e!.payload.buffer, chunk.buffer);
  decoder.recycle(e!.payload);
  decoder.recycle(Buffer.allocUnsafeSlow(1_000_000)); // not the decoder's
  const [f] = inPieces(decoder, mutation(6n, fourth), 65_536);
  t.not(f!.payload.buffer, chunk.buffer, 'a chunk view handed back is ignored');
  t.ok(f!.payload.equals(fourth));
  t.ok(chunk.equals(mutation(5n, e!.payload)), 'the chunk was not written to');

  // Spare rooms are bounded in bytes (32 MiB): of three 12 MiB rooms handed back, two are kept.
  const big = Buffer.alloc(12 * 2 ** 20, 5);
  const bigRooms = [8n, 9n, 10n].map((seq) => inPieces(decoder, mutation(seq, big), 2 ** 20)[0]!.payload);
  for (const payload of bigRooms) decoder.recycle(payload);
  const again = [11n, 12n, 13n].map((seq) => inPieces(decoder, mutation(seq, big), 2 ** 20)[0]!.payload.buffer);
  t.equal(again.filter((memory) => bigRooms.some((p) => p.buffer === memory)).length, 2, 'two of three 12 MiB rooms were kept for reuse');

  // A flipped payload bit in a later piece of a recycled room is still caught.
  decoder.recycle(f!.payload);
  const broken = mutation(7n, fourth);
  broken[broken.length - 1]! ^= 0x10;
  badFrameReason(t, () => inPieces(decoder, broken, 65_536), 'payload-crc', 'a flipped bit in the last piece');
});

t.test('fuzz: random bytes only ever give BAD_FRAME', async (t) => {
  const random = rng(0xb41c4d);
  let refused = 0;
  for (let i = 0; i < 3000; i++) {
    const decoder = new FrameDecoder();
    // Half the inputs start with a valid magic and version, to reach the deeper checks.
    const bytes = randomBytes(random, 1 + Math.floor(random() * 200));
    if (random() < 0.5 && bytes.length >= 5) {
      bytes.writeUInt32LE(FRAME_MAGIC, 0);
      bytes[4] = 1;
    }
    try {
      for (let pos = 0; pos < bytes.length; ) {
        const n = 1 + Math.floor(random() * 50);
        const frames = decoder.push(bytes.subarray(pos, pos + n));
        if (frames.length > 0) t.fail(`input ${i} produced a frame`);
        pos += n;
      }
    } catch (err) {
      if (!(err instanceof BrickdError) || err.code !== 'BAD_FRAME') {
        t.fail(`input ${i}: ${String(err)}`);
        return;
      }
      refused++;
    }
    if (decoder.bufferedBytes > FRAME_HEADER_BYTES) t.fail(`input ${i}: buffered ${decoder.bufferedBytes}`);
  }
  t.ok(refused > 2500, `${refused} of 3000 random inputs refused (the rest too short to judge)`);
});

t.test('fuzz: every single-bit flip of a frame is caught by one of its three CRCs', async (t) => {
  const bytes = wire([MESSAGES[0]!, { type: 'MUTATION', seq: 1n, generation: 2, mutation: { op: 'write', fid: 'aaaaaaaaaaaaaaaa', offset: 3, data: Buffer.from('some data') } }]);
  let caught = 0;
  for (let bit = 0; bit < bytes.length * 8; bit++) {
    const flipped = Buffer.from(bytes);
    flipped[bit >> 3]! ^= 1 << (bit & 7);
    try {
      new FrameDecoder().push(flipped);
      t.fail(`bit ${bit} not caught`);
    } catch (err) {
      if ((err as BrickdError).code === 'BAD_FRAME') caught++;
    }
  }
  t.equal(caught, bytes.length * 8);
});

t.test('fuzz: random bodies in valid frames only ever give BAD_FRAME or a valid message', async (t) => {
  const random = rng(99);
  let refused = 0;
  for (let i = 0; i < 5000; i++) {
    const type = (1 + Math.floor(random() * Object.keys(FrameType).length)) as FrameTypeCode;
    const frame = new FrameDecoder().push(Buffer.concat(encodeFrame(type, randomBytes(random, Math.floor(random() * 60)))))[0]!;
    try {
      decodeMessage(frame);
    } catch (err) {
      if (!(err instanceof BrickdError) || err.code !== 'BAD_FRAME' || err.details.reason !== 'message') {
        t.fail(`body ${i}: ${String(err)}`);
        return;
      }
      refused++;
    }
  }
  t.ok(refused > 4000, `${refused} of 5000 random bodies refused`);
});

t.test('messages that decode as protobuf but are not valid messages are refused', async (t) => {
  const mutation = (fields: Parameters<typeof pb.Mutation.encode>[0], payload?: Buffer) =>
    new FrameDecoder().push(Buffer.concat(encodeFrame(FrameType.MUTATION, pb.Mutation.encode({ seq: 1, op: 'mkdir', path: 'd', fid: 'aaaaaaaaaaaaaaaa', ...fields }).finish(), payload)))[0]!;
  const frameOf = (type: FrameTypeCode, body: Uint8Array) => new FrameDecoder().push(Buffer.concat(encodeFrame(type, body)))[0]!;
  const cases: Array<[string, Frame]> = [
    ['unknown field number', frameOf(FrameType.ACK, Buffer.from([0x08, 0x01, 0xf8, 0x01, 0x05]))], // field 1 = 1, field 31 = 5
    ['wrong wire type', frameOf(FrameType.ACK, Buffer.from([0x0a, 0x01, 0x00]))], // field 1 as length-delimited
    ['truncated body', frameOf(FrameType.HELLO, Buffer.from([0x0a, 0x10, 0x41]))],
    ['cluster id with a |', frameOf(FrameType.HELLO, pb.Hello.encode({ clusterId: 'a|b', nodeId: 'n', volumeId: 'v', nonce: nonce(0) }).finish())],
    ['empty node id', frameOf(FrameType.HELLO, pb.Hello.encode({ clusterId: 'a', nodeId: '', volumeId: 'v', nonce: nonce(0) }).finish())],
    ['short nonce', frameOf(FrameType.HELLO, pb.Hello.encode({ clusterId: 'a', nodeId: 'n', volumeId: 'v', nonce: Buffer.alloc(16) }).finish())],
    ['short mac', frameOf(FrameType.AUTH, pb.Auth.encode({ mac: Buffer.alloc(31) }).finish())],
    ['volume uid with a /', frameOf(FrameType.AUTH, pb.Auth.encode({ mac: nonce(0), volumeUid: '../v' }).finish())],
    ['empty volume uid', frameOf(FrameType.AUTH, pb.Auth.encode({ mac: nonce(0), volumeUid: '' }).finish())],
    ['renumbered range backwards', frameOf(FrameType.AUTH, pb.Auth.encode({ mac: nonce(0), renumbered: [{ generation: 1, fromSeq: 9, toSeq: 5 }] }).finish())],
    ['renumbered range from seq 0', frameOf(FrameType.AUTH, pb.Auth.encode({ mac: nonce(0), renumbered: [{ generation: 1, fromSeq: 0, toSeq: 5 }] }).finish())],
    ['17 renumbered ranges', frameOf(FrameType.AUTH, pb.Auth.encode({ mac: nonce(0), renumbered: Array.from({ length: 17 }, (_, i) => ({ generation: 1, fromSeq: i + 1, toSeq: i + 1 })) }).finish())],
    ['seq beyond 2^53', frameOf(FrameType.ACK, pb.Ack.encode({ durableSeq: 2 ** 60 }).finish())],
    ['lower-case error code', frameOf(FrameType.ERROR, pb.Error.encode({ code: 'oops' }).finish())],
    ['seq 0', mutation({ seq: 0 })],
    ['unknown op', mutation({ op: 'format' })],
    ['writeDirect on the wire', mutation({ op: 'writeDirect' })],
    ['fid traversal', mutation({ fid: '../../../etc/pw' })],
    ['upper-case fid', mutation({ fid: 'AAAAAAAAAAAAAAAA' })],
    ['field the op does not use', mutation({ offset: 5 })],
    ['payload on a mkdir', mutation({}, Buffer.from('x'))],
    ['set_mask unknown bit', mutation({ op: 'setattr', setMask: 64 })],
    ['setattr value outside set_mask', mutation({ op: 'setattr', setMask: 1, mode: 0o600, uid: 7 })],
    ['mode beyond 16 bits', mutation({ mode: 0o1000000 })],
    ['bad replaced fid', mutation({ op: 'rename', to: 'e', replacedFid: 'x' })],
  ];
  for (const [name, frame] of cases) badFrameReason(t, () => decodeMessage(frame), 'message', name);
  t.throws(() => encodeMessage({ type: 'MUTATION', seq: 1n, generation: 0, mutation: { op: 'writeDirect', fid: 'aaaaaaaaaaaaaaaa', offset: 0, length: 1 } }), RangeError);
});

t.test('repair frames are decoded strictly', async (t) => {
  const frameOf = (type: FrameTypeCode, body: Uint8Array, payload?: Buffer) => new FrameDecoder().push(Buffer.concat(encodeFrame(type, body, payload)))[0]!;
  const read = (fields: Record<string, unknown>) => frameOf(FrameType.READ_BLOCKS, pb.ReadBlocks.encode({ requestId: 1, fid: 'aaaaaaaaaaaaaaaa', offset: 0, length: 4096, ...fields }).finish());
  const blocks = (fields: Record<string, unknown>, payload?: Buffer) => frameOf(FrameType.BLOCKS, pb.Blocks.encode({ requestId: 1, ...fields }).finish(), payload);
  const cases: Array<[string, Frame]> = [
    ['length 0', read({ length: 0 })],
    ['length over 1 MiB', read({ length: 2 ** 20 + 1 })],
    ['request id 0', read({ requestId: 0 })],
    ['fid with ../', read({ fid: '../../etc/passwd' })],
    ['BLOCKS request id 0', blocks({ requestId: 0 })],
    ['BLOCKS message without a code', blocks({ message: 'hm' })],
    ['BLOCKS lower-case code', blocks({ code: 'nope' })],
    ['BLOCKS bytes with a code', blocks({ code: 'NOT_FOUND' }, Buffer.alloc(4))],
    ['BLOCKS over 1 MiB', blocks({}, Buffer.alloc(2 ** 20 + 1))],
  ];
  for (const [name, frame] of cases) badFrameReason(t, () => decodeMessage(frame), 'message', name);
  t.same(decodeMessage(read({ length: 2 ** 20, minSeq: 9 })), { type: 'READ_BLOCKS', requestId: 1, fid: 'aaaaaaaaaaaaaaaa', offset: 0, length: 2 ** 20, minSeq: 9n });
  t.throws(() => encodeMessage({ type: 'READ_BLOCKS', requestId: 1, fid: 'aaaaaaaaaaaaaaaa', offset: 0, length: 2 ** 20 + 1, minSeq: 0n }), RangeError);
  t.throws(() => encodeMessage({ type: 'BLOCKS', requestId: 1, code: 'NOT_FOUND', message: '', data: Buffer.alloc(1) }), RangeError);
});

t.test('generation history, resync base, suspects and feature frames are decoded strictly', async (t) => {
  const frameOf = (type: FrameTypeCode, body: Uint8Array) => new FrameDecoder().push(Buffer.concat(encodeFrame(type, body)))[0]!;
  const begin = (history: Array<{ fromSeq: number; generation: number }>, s0 = 100) => frameOf(FrameType.RESYNC_BEGIN, pb.ResyncBegin.encode({ s0, generation: 9, history }).finish());
  const welcome = (fields: Record<string, unknown>) => frameOf(FrameType.WELCOME, pb.Welcome.encode({ mac: nonce(0), appliedSeq: 5, durableSeq: 5, generation: 3, ...fields }).finish());
  const cases: Array<[string, Frame]> = [
    ['a start at seq 0', begin([{ fromSeq: 0, generation: 1 }])],
    ['starts out of seq order', begin([{ fromSeq: 5, generation: 1 }, { fromSeq: 5, generation: 2 }])],
    ['generations not rising', begin([{ fromSeq: 1, generation: 2 }, { fromSeq: 5, generation: 2 }])],
    ['a start past s0', begin([{ fromSeq: 1, generation: 1 }, { fromSeq: 101, generation: 2 }])],
    ['65 starts', begin(Array.from({ length: 65 }, (_, i) => ({ fromSeq: i + 1, generation: i })))],
    ['a start with an unknown field', frameOf(FrameType.RESYNC_BEGIN, Buffer.concat([pb.ResyncBegin.encode({ s0: 9, generation: 1 }).finish(), Buffer.from([0x1a, 0x04, 0x08, 0x01, 0x18, 0x01])]))],
    ['applied generation beyond 2^53', welcome({ appliedGeneration: 2 ** 60 })],
    ['applied generation while resyncing', welcome({ appliedSeq: 0, durableSeq: 0, resyncing: true, appliedGeneration: 1 })],
    ['a resync base without resyncing', welcome({ resyncBaseSeq: 4, resyncBaseGeneration: 3 })],
    ['a resync base seq without its generation', welcome({ appliedSeq: 0, durableSeq: 0, resyncing: true, resyncBaseSeq: 4 })],
    ['a resync base generation without its seq', welcome({ appliedSeq: 0, durableSeq: 0, resyncing: true, resyncBaseGeneration: 3 })],
    ['a resync base generation beyond 2^53', welcome({ appliedSeq: 0, durableSeq: 0, resyncing: true, resyncBaseSeq: 4, resyncBaseGeneration: 2 ** 60 })],
    ['suspect flags with an unknown bit', welcome({ suspectFlags: 4 })],
    ['suspect everything beside ranges', welcome({ suspectFlags: 2, suspects: [{ fid: 'aaaaaaaaaaaaaaaa', offset: 0, length: 4096 }] })],
    ['suspect everything beside the namespace bit', welcome({ suspectFlags: 3 })],
    ['513 suspect ranges', welcome({ suspects: Array.from({ length: 513 }, (_, i) => ({ fid: 'aaaaaaaaaaaaaaaa', offset: i * 4096, length: 4096 })) })],
    ['a suspect range with a bad fid', welcome({ suspects: [{ fid: '../etc/passwd000', offset: 0, length: 4096 }] })],
    ['a whole-file suspect range not at offset 0', welcome({ suspects: [{ fid: 'aaaaaaaaaaaaaaaa', offset: 4096, length: 0 }] })],
    ['a suspect range past 2^53', welcome({ suspects: [{ fid: 'aaaaaaaaaaaaaaaa', offset: 2 ** 52, length: 2 ** 52 }] })],
    ['an incremental base past s0', frameOf(FrameType.RESYNC_BEGIN, pb.ResyncBegin.encode({ s0: 100, generation: 9, incrementalFrom: 101 }).finish())],
    ['33 features', frameOf(FrameType.HELLO, pb.Hello.encode({ clusterId: 'a', nodeId: 'n', volumeId: 'v', nonce: nonce(0), features: Array.from({ length: 33 }, (_, i) => `f${i}`) }).finish())],
    ['an upper-case feature', frameOf(FrameType.CHALLENGE, pb.Challenge.encode({ nodeId: 'n', nonce: nonce(0), features: ['Generation-History'] }).finish())],
    ['an empty feature', frameOf(FrameType.CHALLENGE, pb.Challenge.encode({ nodeId: 'n', nonce: nonce(0), features: [''] }).finish())],
  ];
  for (const [name, frame] of cases) badFrameReason(t, () => decodeMessage(frame), 'message', name);
  const full = Array.from({ length: 64 }, (_, i) => ({ fromSeq: i + 1, generation: i }));
  t.same((decodeMessage(begin(full)) as { history: unknown[] }).history.length, 64, '64 starts are accepted');
  t.same(decodeMessage(welcome({})), { type: 'WELCOME', mac: nonce(0), appliedSeq: 5n, durableSeq: 5n, generation: 3 }, 'no applied generation: absent, not 0');
  t.same(
    decodeMessage(welcome({ appliedSeq: 0, durableSeq: 0, resyncing: true, resyncBaseSeq: 0, resyncBaseGeneration: 0 })),
    { type: 'WELCOME', mac: nonce(0), appliedSeq: 0n, durableSeq: 0n, generation: 3, resyncing: true, resyncBase: { seq: 0n, generation: 0 } },
    'a resync base at seq 0 of generation 0 is present, not absent',
  );
  t.same((decodeMessage(frameOf(FrameType.RESYNC_BEGIN, pb.ResyncBegin.encode({ s0: 100, generation: 9, incrementalFrom: 100 }).finish())) as { incrementalFrom?: bigint }).incrementalFrom, 100n, 'an incremental base at s0 is accepted');
  t.same(
    (decodeMessage(welcome({ suspectFlags: 1, suspects: Array.from({ length: 512 }, (_, i) => ({ fid: 'aaaaaaaaaaaaaaaa', offset: i * 4096, length: 4096 })) })) as { suspects?: { ranges: unknown[] } }).suspects?.ranges.length,
    512,
    '512 suspect ranges are accepted',
  );
  t.same((decodeMessage(welcome({ suspectFlags: 2 })) as { suspects?: unknown }).suspects, { all: true }, 'suspect everything');
  t.notOk('suspects' in (decodeMessage(welcome({})) as object), 'no suspects: absent');
  t.throws(() => encodeMessage({ type: 'WELCOME', mac: nonce(0), appliedSeq: 1n, durableSeq: 1n, generation: 1, suspects: { all: false, namespace: false, ranges: Array.from({ length: 513 }, () => ({ fid: 'aaaaaaaaaaaaaaaa', offset: 0 })) } }), RangeError, 'more than 512 ranges are not sent');
  t.notOk('incrementalFrom' in (decodeMessage(begin([])) as object), 'no incremental base: absent');
});

t.test('wire fixtures of version 1 still decode, and encode to the same bytes', async (t) => {
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.bin')).sort();
  t.same(files, Object.keys(FIXTURE_MESSAGES).map((name) => `${name}.bin`).sort(), 'one fixture per message');
  const seen = new Set<string>();
  for (const file of files) {
    const name = file.slice(0, -4);
    const bytes = readFileSync(path.join(FIXTURES, file));
    const frames = new FrameDecoder().push(bytes);
    t.equal(frames.length, 1, `${file}: one frame`);
    const message = decodeMessage(frames[0]!);
    seen.add(message.type);
    t.same(message, expected(FIXTURE_MESSAGES[name]!), `${file}: decodes to the recorded message`);
    t.ok(Buffer.concat(encodeMessage(FIXTURE_MESSAGES[name]!)).equals(bytes), `${file}: encodes to the same bytes`);
  }
  t.same([...seen].sort(), Object.keys(FrameType).sort(), 'every frame type has a fixture');
});

t.test("the largest WELCOME a replica may send passes the primary's limit for replica frames", async (t) => {
  // 512 suspect ranges (MAX_SUSPECT_RANGES) with the longest encodings the decoder accepts:
  // offsets and lengths just below 2^53, every other field at its widest.
  const big = 2 ** 52 - 1;
  const welcome: ReplicationMessage = {
    type: 'WELCOME',
    mac: Buffer.alloc(32, 0xff),
    appliedSeq: 2n ** 53n - 1n,
    durableSeq: 2n ** 53n - 1n,
    generation: 2 ** 32 - 1,
    appliedGeneration: Number.MAX_SAFE_INTEGER,
    suspects: { all: false, namespace: true, ranges: Array.from({ length: MAX_SUSPECT_RANGES }, (_, i) => ({ fid: 'ffffffffffffffff', offset: big - i, length: big - i })) },
  };
  const parts = encodeMessage(welcome);
  const body = parts[1]!;
  t.ok(body.length > 4096, `the body (${body.length} bytes) is more than the old 4 KiB limit`);
  t.ok(body.length <= REPLICA_FRAME_LIMITS.maxBodyBytes, `and within the link's limit (${REPLICA_FRAME_LIMITS.maxBodyBytes})`);
  const decoder = new FrameDecoder(REPLICA_FRAME_LIMITS);
  const frames = decoder.push(Buffer.concat(parts));
  t.equal(frames.length, 1, 'a decoder with the link limits takes it');
  t.equal((decodeMessage(frames[0]!) as { suspects?: { ranges: unknown[] } }).suspects?.ranges.length, MAX_SUSPECT_RANGES, 'every range decoded');
});
