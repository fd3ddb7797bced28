// Replication messages: typed encode/decode of every frame type of
// proto/brickd/v1/replication.proto. This is the only module that knows the protobuf side
// of replication; the session code (src/replication) sees plain typed objects.
//
// How it works. encodeMessage(message) builds the frame parts with frames.ts (header,
// protobuf body, and for a write the caller's data as the raw payload, uncopied).
// decodeMessage(frame) turns a frame that frames.ts already validated (lengths, CRCs) into
// a typed message, and refuses with BAD_FRAME (reason 'message') anything that is not
// exactly a message of its type: an undecodable body, an unknown field number or a field
// of the wrong wire type (protobufjs keeps both in $unknowns), ids that do not match
// ID_RE, nonces and MACs of the wrong size, 64-bit numbers beyond 2^53, an unknown
// mutation op, or a field the op does not use. Paths are checked again by the store;
// file ids are checked here, because the store builds metadata paths from them.
//
// seq travels as uint64 and is a bigint in TypeScript (as in the store); the generated
// code decodes uint64 as a JS number (see protobuf.ts), which is exact below 2^53.
import { protobuf } from './protobuf.js';
import type { Mutation } from '../store/mutations.js';
import type { ResyncEntry } from '../store/resync-apply.js';
import { historyProblem, type GenerationStart } from '../store/generations.js';
import type { ResyncBase } from '../store/manifest.js';
import { MAX_SUSPECT_RANGES, type Suspects } from '../store/activity.js';
import { MAX_RENUMBERED_RANGES, type RenumberedRange } from '../store/renumbered.js';
import { badFrame, encodeFrame, FrameType, frameTypeName, type Frame, type FrameTypeName } from './frames.js';
import { brickd } from './gen/replication.js';

const pb = brickd.v1.replication;
/**
 * The generated protobuf namespace, for tests that craft malformed bodies. Import it from
 * here, never from ./gen directly: this module loads protobuf.js first (uint64 as number).
 */
export { pb as replicationProto };

/** Cluster, node and volume ids: what the HMAC input joins with "|". */
export const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const FID_RE = /^[0-9a-f]{16}$/;
const ERROR_CODE_RE = /^[A-Z][A-Z0-9_]{0,63}$/;
export const NONCE_BYTES = 32;
export const MAC_BYTES = 32;
const MAX_ERROR_MESSAGE = 1024;

export interface HelloMessage {
  type: 'HELLO';
  clusterId: string;
  nodeId: string;
  volumeId: string;
  generation: number;
  nonce: Buffer;
  /** Features the primary understands (absent: none); see replication/session.ts. */
  features?: string[];
}
export interface ChallengeMessage {
  type: 'CHALLENGE';
  nodeId: string;
  nonce: Buffer;
  /** Features the replica understands (absent: none). */
  features?: string[];
}
export interface AuthMessage {
  type: 'AUTH';
  mac: Buffer;
  /** The volume's incarnation (only to a replica that offered volume-uid). */
  volumeUid?: string;
  /** The primary's renumbered seq ranges (only to a replica that offered renumbered-seqs; never empty). */
  renumbered?: RenumberedRange[];
}
export interface WelcomeMessage {
  type: 'WELCOME';
  mac: Buffer;
  appliedSeq: bigint;
  durableSeq: bigint;
  generation: number;
  /** Present (true) only when the replica is mid-resync: its seqs are then 0 and mean nothing. */
  resyncing?: true;
  /** The generation that made the replica's applied seq, when it can tell (never while resyncing). */
  appliedGeneration?: number;
  /** Only with resyncing (resync-resume): the interrupted resync was incremental from this seq, begun by this generation's primary. */
  resyncBase?: ResyncBase;
  /** replica-suspects: where an unclean stop may have left this replica's tree holding mutations its log lacks; absent when nowhere. */
  suspects?: Suspects;
}
export interface MutationMessage {
  type: 'MUTATION';
  seq: bigint;
  generation: number;
  /** Never 'writeDirect': a write carries its data, which is the frame's payload. */
  mutation: Mutation;
  /** CRC32C of a write's data: verified by the decoder; given by the encoder's caller if known. */
  payloadCrc?: number;
}
export interface AckMessage {
  type: 'ACK';
  durableSeq: bigint;
}
export interface ErrorMessage {
  type: 'ERROR';
  code: string;
  message: string;
  /** GENERATION_STALE: the generation the replica has seen (0 otherwise). */
  generation: number;
  /** SEQ_GAP: where the replica stands (0 otherwise). */
  appliedSeq: bigint;
}
export interface PingMessage {
  type: 'PING';
  id: number;
}
export interface PongMessage {
  type: 'PONG';
  id: number;
}

export interface ResyncBeginMessage {
  type: 'RESYNC_BEGIN';
  s0: bigint;
  generation: number;
  /** The primary's generation history up to s0 (store/generations.ts); empty when it has none. */
  history: GenerationStart[];
  /** Only to a replica that offered resync-resume: the resync compares only the regions changed after this seq (≤ s0). */
  incrementalFrom?: bigint;
}
export interface ResyncEntryMessage {
  type: 'RESYNC_ENTRY';
  /** Its path is relative to the volume root, never empty; the replica validates it as a store path. */
  entry: ResyncEntry;
}
export interface ResyncSumsMessage {
  type: 'RESYNC_SUMS';
  fid: string;
  firstBlock: number;
  /** One u32 LE CRC32C per block (the frame payload, verified by the decoder; a view of the frame). */
  sums: Buffer;
}
export interface ResyncWantMessage {
  type: 'RESYNC_WANT';
  fid: string;
  firstBlock: number;
  /** Bit i (LSB first) set: block firstBlock + i differs. Empty: nothing differs. */
  blocks: Buffer;
}
export interface ResyncDataMessage {
  type: 'RESYNC_DATA';
  fid: string;
  offset: number;
  /** The frame payload (CRC verified by the decoder; a view of the frame). */
  data: Buffer;
  payloadCrc?: number;
}
export interface ResyncEndMessage {
  type: 'RESYNC_END';
  entries: number;
}
export interface ResyncDoneMessage {
  type: 'RESYNC_DONE';
  appliedSeq: bigint;
}

export interface ReadBlocksMessage {
  type: 'READ_BLOCKS';
  requestId: number;
  fid: string;
  offset: number;
  /** 1 to MAX_READ_BLOCKS_BYTES; the receiver also requires a multiple of its block size. */
  length: number;
  /** Answer only if durable at least up to this seq (else SEQ_BEHIND). */
  minSeq: bigint;
}
export interface BlocksMessage {
  type: 'BLOCKS';
  requestId: number;
  /** '' when `data` holds the bytes; else why not (SEQ_BEHIND, NOT_FOUND, CHECKSUM_MISMATCH, UNAVAILABLE). */
  code: string;
  message: string;
  /** The frame payload: verified bytes from the request's offset (a view of the frame). */
  data: Buffer;
}

/** Largest READ_BLOCKS length and BLOCKS payload: 1 MiB. */
export const MAX_READ_BLOCKS_BYTES = 2 ** 20;

/** At most this many block CRCs in one RESYNC_SUMS (so a RESYNC_WANT bitmap is ≤ 512 bytes). */
export const MAX_RESYNC_SUMS_BLOCKS = 4096;
const RESYNC_ENTRY_TYPES: ReadonlySet<string> = new Set(['file', 'directory', 'symlink']);

export type ReplicationMessage =
  | HelloMessage
  | ChallengeMessage
  | AuthMessage
  | WelcomeMessage
  | MutationMessage
  | AckMessage
  | ErrorMessage
  | PingMessage
  | PongMessage
  | ResyncBeginMessage
  | ResyncEntryMessage
  | ResyncSumsMessage
  | ResyncWantMessage
  | ResyncDataMessage
  | ResyncEndMessage
  | ResyncDoneMessage
  | ReadBlocksMessage
  | BlocksMessage;

// setattr's set_mask bits.
const SET_MODE = 1;
const SET_UID = 2;
const SET_GID = 4;
const SET_ATIME = 8;
const SET_MTIME = 16;
const SET_ALL = SET_MODE | SET_UID | SET_GID | SET_ATIME | SET_MTIME;

type PbMutation = brickd.v1.replication.Mutation.$Properties;

/** Encode a message as frame parts: [header, body, payload?]. */
export function encodeMessage(message: ReplicationMessage): Buffer[] {
  switch (message.type) {
    case 'HELLO':
      return frame(
        'HELLO',
        pb.Hello.encode({ clusterId: message.clusterId, nodeId: message.nodeId, volumeId: message.volumeId, generation: message.generation, nonce: message.nonce, features: message.features ?? [] }).finish(),
      );
    case 'CHALLENGE':
      return frame('CHALLENGE', pb.Challenge.encode({ nodeId: message.nodeId, nonce: message.nonce, features: message.features ?? [] }).finish());
    case 'AUTH':
      return frame(
        'AUTH',
        pb.Auth.encode({
          mac: message.mac,
          ...(message.volumeUid !== undefined ? { volumeUid: message.volumeUid } : {}),
          renumbered: (message.renumbered ?? []).map((r) => ({ generation: r.generation, fromSeq: seqNumber(r.fromSeq), toSeq: seqNumber(r.toSeq) })),
        }).finish(),
      );
    case 'WELCOME':
      return frame(
        'WELCOME',
        pb.Welcome.encode({
          mac: message.mac,
          appliedSeq: seqNumber(message.appliedSeq),
          durableSeq: seqNumber(message.durableSeq),
          generation: message.generation,
          resyncing: message.resyncing === true,
          ...(message.appliedGeneration !== undefined ? { appliedGeneration: message.appliedGeneration } : {}),
          ...(message.resyncBase ? { resyncBaseSeq: seqNumber(message.resyncBase.seq), resyncBaseGeneration: message.resyncBase.generation } : {}),
          ...(message.suspects ? encodeSuspects(message.suspects) : {}),
        }).finish(),
      );
    case 'MUTATION':
      return encodeMutation(message);
    case 'ACK':
      return frame('ACK', pb.Ack.encode({ durableSeq: seqNumber(message.durableSeq) }).finish());
    case 'ERROR':
      return frame(
        'ERROR',
        pb.Error.encode({ code: message.code, message: message.message.slice(0, MAX_ERROR_MESSAGE), generation: message.generation, appliedSeq: seqNumber(message.appliedSeq) }).finish(),
      );
    case 'PING':
      return frame('PING', pb.Ping.encode({ id: message.id }).finish());
    case 'PONG':
      return frame('PONG', pb.Pong.encode({ id: message.id }).finish());
    case 'RESYNC_BEGIN':
      return frame(
        'RESYNC_BEGIN',
        pb.ResyncBegin.encode({
          s0: seqNumber(message.s0),
          generation: message.generation,
          history: message.history.map((h) => ({ fromSeq: seqNumber(h.fromSeq), generation: h.generation })),
          ...(message.incrementalFrom !== undefined ? { incrementalFrom: seqNumber(message.incrementalFrom) } : {}),
        }).finish(),
      );
    case 'RESYNC_ENTRY':
      return frame('RESYNC_ENTRY', pb.ResyncEntry.encode(message.entry).finish());
    case 'RESYNC_SUMS':
      if (message.sums.length === 0 || message.sums.length % 4 !== 0 || message.sums.length / 4 > MAX_RESYNC_SUMS_BLOCKS) {
        throw new RangeError(`sums must hold 1 to ${MAX_RESYNC_SUMS_BLOCKS} CRCs of 4 bytes, got ${message.sums.length} bytes`);
      }
      return frame('RESYNC_SUMS', pb.ResyncSums.encode({ fid: message.fid, firstBlock: message.firstBlock }).finish(), message.sums);
    case 'RESYNC_WANT':
      return frame('RESYNC_WANT', pb.ResyncWant.encode({ fid: message.fid, firstBlock: message.firstBlock, blocks: message.blocks }).finish());
    case 'RESYNC_DATA':
      return frame('RESYNC_DATA', pb.ResyncData.encode({ fid: message.fid, offset: message.offset }).finish(), message.data, message.payloadCrc);
    case 'RESYNC_END':
      return frame('RESYNC_END', pb.ResyncEnd.encode({ entries: message.entries }).finish());
    case 'RESYNC_DONE':
      return frame('RESYNC_DONE', pb.ResyncDone.encode({ appliedSeq: seqNumber(message.appliedSeq) }).finish());
    case 'READ_BLOCKS':
      if (!Number.isSafeInteger(message.length) || message.length < 1 || message.length > MAX_READ_BLOCKS_BYTES) {
        throw new RangeError(`length must be an integer in [1, ${MAX_READ_BLOCKS_BYTES}], got ${message.length}`);
      }
      return frame(
        'READ_BLOCKS',
        pb.ReadBlocks.encode({ requestId: message.requestId, fid: message.fid, offset: message.offset, length: message.length, minSeq: seqNumber(message.minSeq) }).finish(),
      );
    case 'BLOCKS':
      if (message.data.length > MAX_READ_BLOCKS_BYTES) throw new RangeError(`data must be at most ${MAX_READ_BLOCKS_BYTES} bytes, got ${message.data.length}`);
      if (message.code !== '' && message.data.length > 0) throw new RangeError('a BLOCKS frame with an error code carries no data');
      return frame('BLOCKS', pb.Blocks.encode({ requestId: message.requestId, code: message.code, message: message.message.slice(0, MAX_ERROR_MESSAGE) }).finish(), message.data);
  }
}

function frame(type: FrameTypeName, body: Uint8Array, payload?: Uint8Array, payloadCrc?: number): Buffer[] {
  return encodeFrame(FrameType[type], body, payload, payloadCrc);
}

function seqNumber(seq: bigint): number {
  if (seq < 0n || seq > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`seq must be in [0, 2^53), got ${seq}`);
  return Number(seq);
}

function encodeMutation(message: MutationMessage): Buffer[] {
  const m = message.mutation;
  const body: PbMutation = { seq: seqNumber(message.seq), generation: message.generation, op: m.op };
  let payload: Buffer | undefined;
  switch (m.op) {
    case 'create':
    case 'mkdir':
      Object.assign(body, { fid: m.fid, path: m.path, mode: m.mode });
      break;
    case 'symlink':
      Object.assign(body, { fid: m.fid, path: m.path, target: m.target });
      break;
    case 'link':
    case 'unlink':
    case 'rmdir':
      Object.assign(body, { fid: m.fid, path: m.path });
      break;
    case 'write':
      Object.assign(body, { fid: m.fid, offset: m.offset });
      payload = m.data;
      break;
    case 'truncate':
      Object.assign(body, { fid: m.fid, size: m.size });
      break;
    case 'rename':
      Object.assign(body, { fid: m.fid, path: m.from, to: m.to, replacedFid: m.replacedFid ?? '' });
      break;
    case 'setattr': {
      let mask = 0;
      if (m.mode !== undefined) (mask |= SET_MODE), (body.mode = m.mode);
      if (m.uid !== undefined) (mask |= SET_UID), (body.uid = m.uid);
      if (m.gid !== undefined) (mask |= SET_GID), (body.gid = m.gid);
      if (m.atimeMs !== undefined) (mask |= SET_ATIME), (body.atimeMs = m.atimeMs);
      if (m.mtimeMs !== undefined) (mask |= SET_MTIME), (body.mtimeMs = m.mtimeMs);
      Object.assign(body, { fid: m.fid, path: m.path, setMask: mask });
      break;
    }
    case 'writeDirect':
      throw new RangeError('a replicated write carries its data: ship op "write", not "writeDirect"');
    case 'suspect':
      throw new RangeError('a "suspect" record is local to its store and never shipped');
  }
  return frame('MUTATION', pb.Mutation.encode(body).finish(), payload, payload ? message.payloadCrc : undefined);
}

/** Decode a validated frame into its message; BAD_FRAME (reason 'message') if it is not one. */
export function decodeMessage(f: Frame): ReplicationMessage {
  const type = frameTypeName(f.type);
  try {
    switch (type) {
      case 'HELLO': {
        const m = strict(pb.Hello.decode(reader(f.body)));
        return {
          type,
          clusterId: id('cluster_id', m.clusterId),
          nodeId: id('node_id', m.nodeId),
          volumeId: id('volume_id', m.volumeId),
          generation: safe('generation', m.generation),
          nonce: bytes('nonce', m.nonce, NONCE_BYTES),
          ...features(m.features),
        };
      }
      case 'CHALLENGE': {
        const m = strict(pb.Challenge.decode(reader(f.body)));
        return { type, nodeId: id('node_id', m.nodeId), nonce: bytes('nonce', m.nonce, NONCE_BYTES), ...features(m.features) };
      }
      case 'AUTH': {
        const m = strict(pb.Auth.decode(reader(f.body)));
        const auth: AuthMessage = { type, mac: bytes('mac', m.mac, MAC_BYTES) };
        if (m.volumeUid !== null && m.volumeUid !== undefined) auth.volumeUid = id('volume_uid', m.volumeUid);
        if (m.renumbered.length > MAX_RENUMBERED_RANGES) throw invalid('renumbered', `${m.renumbered.length} ranges, more than ${MAX_RENUMBERED_RANGES}`);
        if (m.renumbered.length > 0) {
          auth.renumbered = m.renumbered.map((r) => {
            strict(r);
            const range = { generation: safe('renumbered.generation', r.generation ?? 0), fromSeq: seq('renumbered.from_seq', r.fromSeq ?? 0), toSeq: seq('renumbered.to_seq', r.toSeq ?? 0) };
            if (range.fromSeq < 1n || range.toSeq < range.fromSeq) throw invalid('renumbered', `${range.fromSeq}..${range.toSeq} is not a range of seqs`);
            return range;
          });
        }
        return auth;
      }
      case 'WELCOME': {
        const m = strict(pb.Welcome.decode(reader(f.body)));
        const welcome: WelcomeMessage = { type, mac: bytes('mac', m.mac, MAC_BYTES), appliedSeq: seq('applied_seq', m.appliedSeq), durableSeq: seq('durable_seq', m.durableSeq), generation: safe('generation', m.generation) };
        if (m.resyncing) {
          if (welcome.appliedSeq !== 0n || welcome.durableSeq !== 0n) throw invalid('resyncing', 'comes with seqs that are not 0');
          welcome.resyncing = true;
        }
        if (m.appliedGeneration !== null && m.appliedGeneration !== undefined) {
          if (welcome.resyncing) throw invalid('applied_generation', 'comes with resyncing: a replica mid-resync holds no seq');
          welcome.appliedGeneration = safe('applied_generation', m.appliedGeneration);
        }
        const baseSeq = m.resyncBaseSeq ?? undefined;
        const baseGeneration = m.resyncBaseGeneration ?? undefined;
        if (baseSeq !== undefined || baseGeneration !== undefined) {
          if (!welcome.resyncing) throw invalid('resync_base_seq', 'comes without resyncing');
          if (baseSeq === undefined || baseGeneration === undefined) throw invalid('resync_base_seq', 'comes without resync_base_generation, or the other way round');
          welcome.resyncBase = { seq: seq('resync_base_seq', baseSeq), generation: safe('resync_base_generation', baseGeneration) };
        }
        const suspects = decodeSuspects(m.suspects, m.suspectFlags);
        if (suspects) welcome.suspects = suspects;
        return welcome;
      }
      case 'MUTATION':
        return decodeMutation(f);
      case 'ACK': {
        const m = strict(pb.Ack.decode(reader(f.body)));
        return { type, durableSeq: seq('durable_seq', m.durableSeq) };
      }
      case 'ERROR': {
        const m = strict(pb.Error.decode(reader(f.body)));
        if (!ERROR_CODE_RE.test(m.code)) throw invalid('code', 'is not an error code');
        if (m.message.length > MAX_ERROR_MESSAGE) throw invalid('message', `is longer than ${MAX_ERROR_MESSAGE} characters`);
        return { type, code: m.code, message: m.message, generation: safe('generation', m.generation), appliedSeq: seq('applied_seq', m.appliedSeq) };
      }
      case 'PING':
        return { type, id: safe('id', strict(pb.Ping.decode(reader(f.body))).id) };
      case 'PONG':
        return { type, id: safe('id', strict(pb.Pong.decode(reader(f.body))).id) };
      case 'RESYNC_BEGIN': {
        const m = strict(pb.ResyncBegin.decode(reader(f.body)));
        const s0 = seq('s0', m.s0);
        const history = m.history.map((h) => {
          strict(h);
          return { fromSeq: seq('history.from_seq', h.fromSeq ?? 0), generation: safe('history.generation', h.generation ?? 0) };
        });
        const problem = historyProblem(history);
        if (problem) throw invalid('history', problem);
        if (history.length > 0 && history[history.length - 1]!.fromSeq > s0) throw invalid('history', `starts past s0 ${s0}`);
        const begin: ResyncBeginMessage = { type, s0, generation: safe('generation', m.generation), history };
        if (m.incrementalFrom !== null && m.incrementalFrom !== undefined) {
          begin.incrementalFrom = seq('incremental_from', m.incrementalFrom);
          if (begin.incrementalFrom > s0) throw invalid('incremental_from', `is past s0 ${s0}`);
        }
        return begin;
      }
      case 'RESYNC_ENTRY':
        return decodeResyncEntry(f);
      case 'RESYNC_SUMS': {
        const m = strict(pb.ResyncSums.decode(reader(f.body)));
        const n = f.payload.length / 4;
        if (!Number.isInteger(n) || n < 1 || n > MAX_RESYNC_SUMS_BLOCKS) throw invalid('payload', `must hold 1 to ${MAX_RESYNC_SUMS_BLOCKS} CRCs of 4 bytes, got ${f.payload.length} bytes`);
        return { type, fid: fileId('fid', m.fid), firstBlock: safe('first_block', m.firstBlock), sums: f.payload };
      }
      case 'RESYNC_WANT': {
        const m = strict(pb.ResyncWant.decode(reader(f.body)));
        if (m.blocks.length > MAX_RESYNC_SUMS_BLOCKS / 8) throw invalid('blocks', `is longer than ${MAX_RESYNC_SUMS_BLOCKS / 8} bytes`);
        return { type, fid: fileId('fid', m.fid), firstBlock: safe('first_block', m.firstBlock), blocks: Buffer.from(m.blocks) };
      }
      case 'RESYNC_DATA': {
        const m = strict(pb.ResyncData.decode(reader(f.body)));
        if (f.payload.length === 0) throw invalid('payload', 'is empty');
        return { type, fid: fileId('fid', m.fid), offset: safe('offset', m.offset), data: f.payload, payloadCrc: f.payloadCrc };
      }
      case 'RESYNC_END':
        return { type, entries: safe('entries', strict(pb.ResyncEnd.decode(reader(f.body))).entries) };
      case 'RESYNC_DONE':
        return { type, appliedSeq: seq('applied_seq', strict(pb.ResyncDone.decode(reader(f.body))).appliedSeq) };
      case 'READ_BLOCKS': {
        const m = strict(pb.ReadBlocks.decode(reader(f.body)));
        if (m.length < 1 || m.length > MAX_READ_BLOCKS_BYTES) throw invalid('length', `must be 1 to ${MAX_READ_BLOCKS_BYTES} bytes, got ${m.length}`);
        return { type, requestId: requestId(m.requestId), fid: fileId('fid', m.fid), offset: safe('offset', m.offset), length: m.length, minSeq: seq('min_seq', m.minSeq) };
      }
      case 'BLOCKS': {
        const m = strict(pb.Blocks.decode(reader(f.body)));
        if (m.code !== '' && !ERROR_CODE_RE.test(m.code)) throw invalid('code', 'is not an error code');
        if (m.code === '' && m.message !== '') throw invalid('message', 'is set without a code');
        if (m.message.length > MAX_ERROR_MESSAGE) throw invalid('message', `is longer than ${MAX_ERROR_MESSAGE} characters`);
        if (m.code !== '' && f.payload.length > 0) throw invalid('payload', `comes with code ${m.code}`);
        if (f.payload.length > MAX_READ_BLOCKS_BYTES) throw invalid('payload', `is longer than ${MAX_READ_BLOCKS_BYTES} bytes`);
        return { type, requestId: requestId(m.requestId), code: m.code, message: m.message, data: f.payload };
      }
      default:
        throw invalid('type', `${f.type} is not a frame type`);
    }
  } catch (err) {
    if (err instanceof Invalid) throw badFrame('message', `${type ?? f.type} ${err.message}`, { type: f.type, field: err.field });
    // protobufjs throws plain Errors (index out of range, invalid wire type) on a broken body.
    throw badFrame('message', `${type ?? f.type} body does not decode: ${(err as Error).message}`, { type: f.type }, err);
  }
}

function decodeMutation(f: Frame): MutationMessage {
  const m = strict(pb.Mutation.decode(reader(f.body)));
  const header = { type: 'MUTATION' as const, seq: seq('seq', m.seq), generation: safe('generation', m.generation), payloadCrc: f.payloadCrc };
  if (header.seq === 0n) throw invalid('seq', 'must be at least 1');
  const op = m.op;
  const allowed = OP_FIELDS[op as WireOp];
  if (!allowed) throw invalid('op', `${JSON.stringify(op.slice(0, 32))} is not a mutation op`);
  for (const field of MUTATION_FIELDS) {
    if (allowed.has(field)) continue;
    const value = m[field];
    if (value !== 0 && value !== '') throw invalid(field, `is not used by ${op}`);
  }
  if (op !== 'write' && f.payload.length > 0) throw invalid('payload', `${op} carries no payload`);
  const fid = fileId('fid', m.fid);
  let mutation: Mutation;
  switch (op as WireOp) {
    case 'create':
    case 'mkdir':
      mutation = { op: op as 'create' | 'mkdir', path: m.path, fid, mode: mode(m.mode) };
      break;
    case 'symlink':
      mutation = { op: 'symlink', path: m.path, fid, target: m.target };
      break;
    case 'link':
    case 'unlink':
    case 'rmdir':
      mutation = { op: op as 'link' | 'unlink' | 'rmdir', path: m.path, fid };
      break;
    case 'write':
      mutation = { op: 'write', fid, offset: safe('offset', m.offset), data: f.payload };
      break;
    case 'truncate':
      mutation = { op: 'truncate', fid, size: safe('size', m.size) };
      break;
    case 'rename':
      mutation = { op: 'rename', from: m.path, to: m.to, fid };
      if (m.replacedFid !== '') mutation.replacedFid = fileId('replaced_fid', m.replacedFid);
      break;
    case 'setattr': {
      if ((m.setMask & ~SET_ALL) !== 0) throw invalid('set_mask', `has unknown bits ${m.setMask}`);
      const unset = (bit: number, field: string, value: number) => {
        if ((m.setMask & bit) === 0 && value !== 0) throw invalid(field, 'is set but not in set_mask');
      };
      unset(SET_MODE, 'mode', m.mode);
      unset(SET_UID, 'uid', m.uid);
      unset(SET_GID, 'gid', m.gid);
      unset(SET_ATIME, 'atime_ms', m.atimeMs);
      unset(SET_MTIME, 'mtime_ms', m.mtimeMs);
      const s: Extract<Mutation, { op: 'setattr' }> = { op: 'setattr', path: m.path, fid };
      if (m.setMask & SET_MODE) s.mode = mode(m.mode);
      if (m.setMask & SET_UID) s.uid = m.uid;
      if (m.setMask & SET_GID) s.gid = m.gid;
      if (m.setMask & SET_ATIME) s.atimeMs = time('atime_ms', m.atimeMs);
      if (m.setMask & SET_MTIME) s.mtimeMs = time('mtime_ms', m.mtimeMs);
      mutation = s;
      break;
    }
  }
  return { ...header, mutation };
}

function decodeResyncEntry(f: Frame): ResyncEntryMessage {
  const m = strict(pb.ResyncEntry.decode(reader(f.body)));
  if (!RESYNC_ENTRY_TYPES.has(m.type)) throw invalid('type', `${JSON.stringify(m.type.slice(0, 32))} is not file, directory or symlink`);
  const type = m.type as ResyncEntry['type'];
  if (m.path === '') throw invalid('path', 'is empty');
  if (type !== 'file' && m.size !== 0) throw invalid('size', `is not used by a ${type}`);
  if ((type === 'symlink') !== (m.target !== '')) throw invalid('target', type === 'symlink' ? 'is empty' : `is not used by a ${type}`);
  const entry: ResyncEntry = {
    path: m.path,
    type,
    fid: fileId('fid', m.fid),
    mode: mode(m.mode),
    uid: m.uid,
    gid: m.gid,
    mtimeMs: time('mtime_ms', m.mtimeMs),
    size: safe('size', m.size),
    target: m.target,
  };
  return { type: 'RESYNC_ENTRY', entry };
}

type WireOp = Exclude<Mutation['op'], 'writeDirect' | 'suspect'>;
type MutationField = Exclude<keyof PbMutation, '$unknowns' | 'seq' | 'generation' | 'op'>;
const MUTATION_FIELDS: MutationField[] = ['fid', 'path', 'to', 'target', 'offset', 'size', 'mode', 'uid', 'gid', 'atimeMs', 'mtimeMs', 'replacedFid', 'setMask'];
const OP_FIELDS: Record<WireOp, ReadonlySet<MutationField>> = {
  create: new Set(['fid', 'path', 'mode']),
  mkdir: new Set(['fid', 'path', 'mode']),
  symlink: new Set(['fid', 'path', 'target']),
  link: new Set(['fid', 'path']),
  write: new Set(['fid', 'offset']),
  truncate: new Set(['fid', 'size']),
  unlink: new Set(['fid', 'path']),
  rmdir: new Set(['fid', 'path']),
  rename: new Set(['fid', 'path', 'to', 'replacedFid']),
  setattr: new Set(['fid', 'path', 'mode', 'uid', 'gid', 'atimeMs', 'mtimeMs', 'setMask']),
};

class Invalid extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field} ${message}`);
  }
}

const SUSPECT_NAMESPACE = 1;
const SUSPECT_ALL = 2;

function encodeSuspects(s: Suspects): { suspects: brickd.v1.replication.SuspectRange.$Properties[]; suspectFlags: number } {
  if (s.all) return { suspects: [], suspectFlags: SUSPECT_ALL };
  if (s.ranges.length > MAX_SUSPECT_RANGES) throw new RangeError(`${s.ranges.length} suspect ranges (at most ${MAX_SUSPECT_RANGES}: store/activity.ts boundedSuspects)`);
  return {
    suspects: s.ranges.map((r) => ({ fid: r.fid, offset: r.offset, length: r.length ?? 0 })),
    suspectFlags: s.namespace ? SUSPECT_NAMESPACE : 0,
  };
}

/** WELCOME's suspects, strictly: undefined when there are none. */
function decodeSuspects(ranges: brickd.v1.replication.SuspectRange.$Properties[] | null | undefined, flags: number): Suspects | undefined {
  if ((flags & ~(SUSPECT_NAMESPACE | SUSPECT_ALL)) !== 0) throw invalid('suspect_flags', `has unknown bits ${flags}`);
  const list = ranges ?? [];
  if (flags & SUSPECT_ALL) {
    if (list.length > 0 || flags !== SUSPECT_ALL) throw invalid('suspect_flags', 'says everything, with ranges or other bits beside it');
    return { all: true };
  }
  if (list.length > MAX_SUSPECT_RANGES) throw invalid('suspects', `lists ${list.length} ranges, more than ${MAX_SUSPECT_RANGES}`);
  if (list.length === 0 && flags === 0) return undefined;
  return {
    all: false,
    namespace: (flags & SUSPECT_NAMESPACE) !== 0,
    ranges: list.map((r) => {
      const fid = fileId('suspects.fid', r.fid ?? '');
      const offset = safe('suspects.offset', Number(r.offset ?? 0));
      const length = safe('suspects.length', Number(r.length ?? 0));
      if (length === 0 && offset !== 0) throw invalid('suspects.offset', 'is not 0 for a whole file (length 0)');
      if (offset + length > Number.MAX_SAFE_INTEGER) throw invalid('suspects.length', 'runs past 2^53');
      return length === 0 ? { fid, offset: 0 } : { fid, offset, length };
    }),
  };
}

function invalid(field: string, message: string): Invalid {
  return new Invalid(field, message);
}

/** A reader that keeps unknown fields (protobufjs discards them by default) so strict() sees them. */
function reader(body: Buffer): protobuf.Reader {
  const r = protobuf.Reader.create(body);
  r.discardUnknown = false;
  return r;
}

/** Refuse unknown fields and fields of the wrong wire type (both land in $unknowns). */
function strict<T extends { $unknowns?: Uint8Array[] }>(m: T): T {
  if (m.$unknowns && m.$unknowns.length > 0) throw invalid('body', `has ${m.$unknowns.length} unknown or mistyped field(s)`);
  return m;
}

function id(field: string, value: string): string {
  if (!ID_RE.test(value)) throw invalid(field, `${JSON.stringify(value.slice(0, 64))} does not match ${ID_RE}`);
  return value;
}

/** At most this many feature names in a HELLO or CHALLENGE, each a short lower-case word. */
export const MAX_FEATURES = 32;
const FEATURE_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;

function features(value: string[]): { features?: string[] } {
  if (value.length > MAX_FEATURES) throw invalid('features', `${value.length} names, more than ${MAX_FEATURES}`);
  for (const name of value) if (!FEATURE_RE.test(name)) throw invalid('features', `${JSON.stringify(name.slice(0, 64))} does not match ${FEATURE_RE}`);
  return value.length > 0 ? { features: [...value] } : {};
}

function fileId(field: string, value: string): string {
  if (!FID_RE.test(value)) throw invalid(field, `${JSON.stringify(value.slice(0, 64))} is not a file id (16 hex digits)`);
  return value;
}

function requestId(value: number): number {
  if (safe('request_id', value) === 0) throw invalid('request_id', 'must be at least 1');
  return value;
}

function bytes(field: string, value: Uint8Array, length: number): Buffer {
  if (value.length !== length) throw invalid(field, `must be ${length} bytes, got ${value.length}`);
  // A copy: decoded bytes are views into the frame body.
  return Buffer.from(value);
}

function safe(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw invalid(field, `must be an integer in [0, 2^53), got ${value}`);
  return value;
}

function seq(field: string, value: number): bigint {
  return BigInt(safe(field, value));
}

function mode(value: number): number {
  if (value > 0o177777) throw invalid('mode', `${value} is not a file mode`);
  return value;
}

function time(field: string, value: number): number {
  if (!Number.isFinite(value)) throw invalid(field, 'must be finite');
  return value;
}
