// Replication frames: a fixed little-endian header, a protobuf body, a raw payload.
//
// How it works. A frame is
//
//   offset  field        type  meaning
//        0  magic        u32   0x4C505242, "BRPL" on the wire
//        4  version      u8    1; any other version is refused before anything else is read
//        5  type         u8    FrameType (1..18)
//        6  flags        u16   reserved, must be 0
//        8  body_len     u32   ≤ limits.maxBodyBytes (64 KiB at most)
//       12  payload_len  u32   ≤ limits.maxPayloadBytes (16 MiB at most); MUTATION, RESYNC_SUMS, RESYNC_DATA, BLOCKS
//       16  body_crc     u32   CRC32C of the body
//       20  payload_crc  u32   CRC32C of the payload
//       24  header_crc   u32   CRC32C of bytes 0..23
//       28  body, then payload
//
// (proto/brickd/v1/replication.proto holds the same table and the messages.)
//
// encodeFrame returns [header, body, payload] for a vectored socket write: the payload
// is the caller's buffer, never copied. FrameDecoder takes socket chunks of any size and
// yields whole frames. It validates the header completely (magic, version, header CRC,
// flags, type, both lengths against its limits, payload allowed for the type) before it
// allocates room for a body or payload (magic and version as soon as 5 bytes are in), and it checks the body and payload CRCs before
// it hands a frame out. So a peer can make it hold at most one header plus one body and
// one payload within the limits, and a frame that comes out is intact. The first
// violation throws a BrickdError BAD_FRAME whose details.reason names it; the decoder is
// then dead and throws the same error on every later push (a byte stream cannot be
// resynchronised safely, the connection must go).
//
// Ownership: a body or payload that arrived whole inside one chunk is a view of that
// chunk (no copy); otherwise it is room the decoder allocated and filled. The decoder never
// writes to a buffer it has handed out, unless its consumer hands it back with recycle():
// a payload's room then takes a later payload, which saves a large allocation per frame
// (for a 1 MiB payload: an mmap, 256 page faults and an munmap).
import { allocAligned } from '../aligned.js';
import { BrickdError } from '../errors.js';
import { native } from '../native.js';

export const FRAME_MAGIC = 0x4c505242;
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 28;
/** Absolute limits; a decoder may be configured lower, never higher. */
export const MAX_BODY_BYTES = 64 * 1024;
export const MAX_PAYLOAD_BYTES = 16 * 2 ** 20;

/** Frame type codes (= brickd.v1.replication.FrameType; test/wire/frames.test.ts checks). */
export const FrameType = {
  HELLO: 1,
  CHALLENGE: 2,
  AUTH: 3,
  WELCOME: 4,
  MUTATION: 5,
  ACK: 6,
  ERROR: 7,
  PING: 8,
  PONG: 9,
  RESYNC_BEGIN: 10,
  RESYNC_ENTRY: 11,
  RESYNC_SUMS: 12,
  RESYNC_WANT: 13,
  RESYNC_DATA: 14,
  RESYNC_END: 15,
  RESYNC_DONE: 16,
  READ_BLOCKS: 17,
  BLOCKS: 18,
} as const;
export type FrameTypeName = keyof typeof FrameType;
export type FrameTypeCode = (typeof FrameType)[FrameTypeName];

const TYPE_NAMES = new Map<number, FrameTypeName>(Object.entries(FrameType).map(([name, code]) => [code, name as FrameTypeName]));

export function frameTypeName(type: number): FrameTypeName | undefined {
  return TYPE_NAMES.get(type);
}

/** Only a MUTATION (a write's data), RESYNC_SUMS (block CRCs), RESYNC_DATA and BLOCKS (repair bytes) carry a payload. */
function payloadAllowed(type: number): boolean {
  return type === FrameType.MUTATION || type === FrameType.RESYNC_SUMS || type === FrameType.RESYNC_DATA || type === FrameType.BLOCKS;
}

export type BadFrameReason =
  | 'magic'
  | 'version'
  | 'header-crc'
  | 'flags'
  | 'type'
  | 'body-too-large'
  | 'payload-too-large'
  | 'payload-not-allowed'
  | 'body-crc'
  | 'payload-crc'
  /** The body is not a valid message of its type (undecodable, unknown field, bad value). */
  | 'message';

export function badFrame(reason: BadFrameReason, message: string, details: Record<string, unknown> = {}, cause?: unknown): BrickdError {
  return new BrickdError('BAD_FRAME', `${reason}: ${message}`, { reason, ...details }, cause);
}

export interface Frame {
  type: FrameTypeCode;
  body: Buffer;
  /** Empty when the frame has none. */
  payload: Buffer;
  /** CRC32C of the payload, already verified. */
  payloadCrc: number;
}

export interface FrameLimits {
  maxBodyBytes: number;
  maxPayloadBytes: number;
}

const EMPTY = Buffer.alloc(0);
/**
 * Recycled payload rooms kept for reuse, per decoder; beyond either bound they are left to
 * the GC. (What a session has in flight is bounded anyway; this keeps a burst of large
 * payloads from holding their memory for the rest of the connection.)
 */
const MAX_SPARE_ROOMS = 16;
const MAX_SPARE_BYTES = 32 * 2 ** 20;

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function crcOf(bytes: Uint8Array): number {
  return bytes.length === 0 ? 0 : native.crc32c(bytes) >>> 0;
}

/**
 * Encode one frame as [header, body, payload?] for socket.write of each part (or
 * Buffer.concat for a file). `payloadCrc`, when the caller already has the payload's
 * CRC32C (it entered the system with it), is trusted instead of recomputed.
 */
export function encodeFrame(type: FrameTypeCode, body: Uint8Array, payload?: Uint8Array, payloadCrc?: number): Buffer[] {
  if (!TYPE_NAMES.has(type)) throw new RangeError(`type must be a FrameType code, got ${type}`);
  if (body.length > MAX_BODY_BYTES) throw new RangeError(`body must be at most ${MAX_BODY_BYTES} bytes, got ${body.length}`);
  const payloadLength = payload?.length ?? 0;
  if (payloadLength > MAX_PAYLOAD_BYTES) throw new RangeError(`payload must be at most ${MAX_PAYLOAD_BYTES} bytes, got ${payloadLength}`);
  if (payloadLength > 0 && !payloadAllowed(type)) throw new RangeError(`a ${frameTypeName(type)} frame carries no payload`);
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUInt32LE(FRAME_MAGIC, 0);
  header.writeUInt8(FRAME_VERSION, 4);
  header.writeUInt8(type, 5);
  header.writeUInt16LE(0, 6);
  header.writeUInt32LE(body.length, 8);
  header.writeUInt32LE(payloadLength, 12);
  header.writeUInt32LE(crcOf(body), 16);
  header.writeUInt32LE(payloadLength === 0 ? 0 : payloadCrc === undefined ? crcOf(payload!) : payloadCrc >>> 0, 20);
  header.writeUInt32LE(native.crc32c(header.subarray(0, 24)) >>> 0, 24);
  const parts = [header, asBuffer(body)];
  if (payloadLength > 0) parts.push(asBuffer(payload!));
  return parts;
}

type DecoderState = 'header' | 'body' | 'payload' | 'dead';

/** Turns a byte stream into validated frames. One per connection; see the top of this file. */
export class FrameDecoder {
  private limits: FrameLimits;
  private state: DecoderState = 'header';
  private readonly header = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerFill = 0;
  private type: FrameTypeCode = FrameType.HELLO;
  private bodyLength = 0;
  private payloadLength = 0;
  private bodyCrc = 0;
  private payloadCrc = 0;
  private body: Buffer = EMPTY;
  private bodyFill = 0;
  private payload: Buffer = EMPTY;
  private payloadFill = 0;
  /** CRC32C of payload[0, payloadFill), chained piece by piece as the room fills. */
  private payloadCrcSoFar = 0;
  /**
   * The memory of every payload room this decoder allocated, with where the room starts in
   * it (4 KiB-aligned, see aligned.ts): only these come back through recycle.
   */
  private readonly rooms = new WeakMap<ArrayBufferLike, number>();
  /** Rooms handed back, free to be filled again. */
  private readonly spareRooms: ArrayBufferLike[] = [];
  private spareBytes = 0;
  private error: BrickdError | undefined;

  constructor(limits: Partial<FrameLimits> = {}) {
    this.limits = { maxBodyBytes: MAX_BODY_BYTES, maxPayloadBytes: MAX_PAYLOAD_BYTES };
    this.setLimits(limits);
  }

  /** Change the limits for the frames whose header has not been read yet. */
  setLimits(limits: Partial<FrameLimits>): void {
    const next = { ...this.limits, ...limits };
    if (!Number.isSafeInteger(next.maxBodyBytes) || next.maxBodyBytes < 0 || next.maxBodyBytes > MAX_BODY_BYTES) {
      throw new RangeError(`maxBodyBytes must be an integer in [0, ${MAX_BODY_BYTES}], got ${next.maxBodyBytes}`);
    }
    if (!Number.isSafeInteger(next.maxPayloadBytes) || next.maxPayloadBytes < 0 || next.maxPayloadBytes > MAX_PAYLOAD_BYTES) {
      throw new RangeError(`maxPayloadBytes must be an integer in [0, ${MAX_PAYLOAD_BYTES}], got ${next.maxPayloadBytes}`);
    }
    this.limits = next;
  }

  get currentLimits(): Readonly<FrameLimits> {
    return this.limits;
  }

  /** Bytes held for the frame in progress (header bytes plus allocated body/payload room). */
  get bufferedBytes(): number {
    return this.headerFill + (this.bodyFill > 0 ? this.body.length : 0) + (this.payloadFill > 0 ? this.payload.length : 0);
  }

  get dead(): boolean {
    return this.state === 'dead';
  }

  /**
   * Feed one chunk; returns the frames it completed (possibly none). Throws BAD_FRAME on
   * the first violation; the frames completed earlier in the same chunk are dropped with it.
   */
  push(chunk: Uint8Array): Frame[] {
    if (this.error) throw this.error;
    const input = asBuffer(chunk);
    const frames: Frame[] = [];
    let pos = 0;
    try {
      while (pos < input.length) {
        if (this.state === 'header') {
          let header: Buffer;
          if (this.headerFill === 0 && input.length - pos >= FRAME_HEADER_BYTES) {
            header = input.subarray(pos, pos + FRAME_HEADER_BYTES);
            pos += FRAME_HEADER_BYTES;
          } else {
            const n = Math.min(FRAME_HEADER_BYTES - this.headerFill, input.length - pos);
            input.copy(this.header, this.headerFill, pos, pos + n);
            this.headerFill += n;
            pos += n;
            if (this.headerFill < FRAME_HEADER_BYTES) {
              // A stranger speaking another protocol is refused after 5 bytes, not 28.
              checkPrefix(this.header, this.headerFill);
              break;
            }
            header = this.header;
          }
          this.parseHeader(header);
          this.headerFill = 0;
          this.state = 'body';
        }
        if (this.state === 'body') {
          const taken = this.take(input, pos, this.bodyLength, this.body, this.bodyFill);
          pos = taken.pos;
          this.body = taken.buffer;
          this.bodyFill = taken.fill;
          if (taken.fill < this.bodyLength) break;
          const crc = crcOf(this.body);
          if (crc !== this.bodyCrc) throw badFrame('body-crc', `body CRC32C ${hex(crc)} does not match the header's ${hex(this.bodyCrc)}`, { type: this.type });
          this.state = 'payload';
        }
        if (this.state === 'payload') {
          const length = this.payloadLength;
          let crc: number;
          if (this.payloadFill === 0 && input.length - pos >= length) {
            this.payload = length === 0 ? EMPTY : input.subarray(pos, pos + length);
            pos += length;
            crc = crcOf(this.payload);
          } else {
            // The allocation happens only here, after parseHeader accepted `length`.
            if (this.payloadFill === 0) {
              this.payload = this.payloadRoom(length);
              this.payloadCrcSoFar = 0;
            }
            const n = Math.min(length - this.payloadFill, input.length - pos);
            input.copy(this.payload, this.payloadFill, pos, pos + n);
            // The CRC of the bytes just copied, while they are in cache (one pass over a
            // 1 MiB payload afterwards reads it from memory again), chained over the pieces.
            this.payloadCrcSoFar = native.crc32c(this.payload.subarray(this.payloadFill, this.payloadFill + n), this.payloadCrcSoFar) >>> 0;
            this.payloadFill += n;
            pos += n;
            if (this.payloadFill < length) break;
            crc = this.payloadCrcSoFar;
          }
          if (crc !== this.payloadCrc) {
            throw badFrame('payload-crc', `payload CRC32C ${hex(crc)} does not match the header's ${hex(this.payloadCrc)}`, { type: this.type, bytes: this.payloadLength });
          }
          frames.push({ type: this.type, body: this.body, payload: this.payload, payloadCrc: crc });
          this.body = this.payload = EMPTY;
          this.bodyFill = this.payloadFill = 0;
          this.state = 'header';
        }
      }
    } catch (err) {
      this.state = 'dead';
      this.body = this.payload = EMPTY;
      this.bodyFill = this.payloadFill = this.headerFill = 0;
      this.error = err instanceof BrickdError ? err : badFrame('message', String(err), {}, err);
      throw this.error;
    }
    return frames;
  }

  /**
   * Hand back a payload this decoder produced once nothing reads or writes it any more (the
   * caller's promise): its memory may then receive a later frame's payload. Payloads that are
   * views of a socket chunk are not the decoder's to reuse and are ignored, as is anything else.
   */
  recycle(payload: Buffer): void {
    const memory = payload.buffer;
    if (this.state === 'dead' || !this.rooms.has(memory) || this.spareRooms.includes(memory)) return;
    if (this.spareRooms.length >= MAX_SPARE_ROOMS || this.spareBytes + memory.byteLength > MAX_SPARE_BYTES) return;
    this.spareRooms.push(memory);
    this.spareBytes += memory.byteLength;
  }

  /** Room for a payload of `length` bytes: a recycled one that is large enough, else a new one. */
  private payloadRoom(length: number): Buffer {
    for (let i = this.spareRooms.length - 1; i >= 0; i--) {
      const memory = this.spareRooms[i]!;
      const start = this.rooms.get(memory)!;
      if (memory.byteLength - start < length) continue;
      this.spareRooms.splice(i, 1);
      this.spareBytes -= memory.byteLength;
      return Buffer.from(memory, start, length);
    }
    // Its own memory (never a slice of Node's shared pool), so that it can be reused whole;
    // page-aligned, so that a write's data goes to an O_DIRECT write in place (aligned.ts).
    const room = allocAligned(length);
    this.rooms.set(room.buffer, room.byteOffset);
    return room;
  }

  /** Take up to `length - fill` bytes: a view when the whole part is in this chunk, else copy into room. */
  private take(input: Buffer, pos: number, length: number, buffer: Buffer, fill: number): { pos: number; buffer: Buffer; fill: number } {
    if (length === 0) return { pos, buffer: EMPTY, fill: 0 };
    if (fill === 0 && input.length - pos >= length) return { pos: pos + length, buffer: input.subarray(pos, pos + length), fill: length };
    // The allocation happens only here, after parseHeader accepted `length`.
    const room = fill === 0 ? Buffer.allocUnsafe(length) : buffer;
    const n = Math.min(length - fill, input.length - pos);
    input.copy(room, fill, pos, pos + n);
    return { pos: pos + n, buffer: room, fill: fill + n };
  }

  private parseHeader(header: Buffer): void {
    checkPrefix(header, FRAME_HEADER_BYTES);
    const headerCrc = header.readUInt32LE(24);
    const crc = native.crc32c(header.subarray(0, 24)) >>> 0;
    if (crc !== headerCrc) throw badFrame('header-crc', `header CRC32C ${hex(crc)} does not match ${hex(headerCrc)}`);
    const flags = header.readUInt16LE(6);
    if (flags !== 0) throw badFrame('flags', `reserved flags ${hex(flags)} are set`, { flags });
    const type = header.readUInt8(5);
    if (!TYPE_NAMES.has(type)) throw badFrame('type', `unknown frame type ${type}`, { type });
    const bodyLength = header.readUInt32LE(8);
    if (bodyLength > this.limits.maxBodyBytes) {
      throw badFrame('body-too-large', `body of ${bodyLength} bytes exceeds the limit of ${this.limits.maxBodyBytes}`, { type, bytes: bodyLength, limit: this.limits.maxBodyBytes });
    }
    const payloadLength = header.readUInt32LE(12);
    if (payloadLength > 0 && !payloadAllowed(type)) throw badFrame('payload-not-allowed', `a ${frameTypeName(type)} frame carries no payload`, { type, bytes: payloadLength });
    if (payloadLength > this.limits.maxPayloadBytes) {
      throw badFrame('payload-too-large', `payload of ${payloadLength} bytes exceeds the limit of ${this.limits.maxPayloadBytes}`, {
        type,
        bytes: payloadLength,
        limit: this.limits.maxPayloadBytes,
      });
    }
    this.type = type as FrameTypeCode;
    this.bodyLength = bodyLength;
    this.payloadLength = payloadLength;
    this.bodyCrc = header.readUInt32LE(16);
    this.payloadCrc = header.readUInt32LE(20);
  }
}

/** Magic and version, as soon as their bytes are there (`fill` bytes of header so far). */
function checkPrefix(header: Buffer, fill: number): void {
  if (fill >= 4) {
    const magic = header.readUInt32LE(0);
    if (magic !== FRAME_MAGIC) throw badFrame('magic', `not a brickd replication frame (magic ${hex(magic)})`, { magic });
  }
  if (fill >= 5) {
    const version = header.readUInt8(4);
    if (version !== FRAME_VERSION) throw badFrame('version', `frame version ${version} is not supported (this agent speaks ${FRAME_VERSION})`, { version });
  }
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}
