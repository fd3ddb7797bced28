// Seqs a primary may have numbered twice: once before a crash (shipped to replicas, never
// durable here) and again after it.
//
// Why. A primary hands a mutation its seq and ships it at once; the mutation becomes
// durable in the local log a moment later. A crash in between loses it here while a replica
// may hold it; if the agent comes back at the same generation (no failover), it numbers its
// next mutation with the same seq. Generation history (generations.ts) cannot tell the two
// apart, both were made "by generation G". The replica is then safe only while this primary
// process meets it (its seq lies past where the new retained queue started: resynced), but
// after any later queue restart (a re-attach, a clean restart of the agent) it would be
// streamed on, or resynced incrementally, on top of a mutation nobody else has.
//
// How. Before a seq numbered here can leave the store (onMutation ships it), the manifest
// holds a reservation covering it: {generation, throughSeq}, taken SEQ_RESERVATION seqs at a
// time (one manifest write per that many local mutations). A clean close drops it (every
// seq numbered is durable then). An open that finds one reaching past the recovered last
// seq L records the range (L, throughSeq] of that generation as renumbered: a replica
// reporting a seq in it (of that generation, or of an unknown one) may hold a lost mutation,
// and the primary's link resyncs it comparing every block. Replicated mutations (numbered by
// another primary) reserve nothing: their primary keeps the range.
//
// The ranges travel: a primary sends its own to every replica it welcomes (AUTH), which
// keeps them, so a replica promoted later catches the same stale replicas.
//
// Cost of the approximation: the range covers every seq the reservation allowed, so a
// replica that got a seq in it from the restarted primary and later reconnects is compared
// in full once too. Ranges are kept (newest MAX_RENUMBERED_RANGES) for the store's life.
import { BrickdError } from '../errors.js';

/** Seqs reserved per manifest write. */
export const SEQ_RESERVATION = 16_384n;
/** Renumbered ranges kept; older ones are dropped. */
export const MAX_RENUMBERED_RANGES = 16;

export interface SeqReservation {
  generation: number;
  throughSeq: bigint;
}

export interface RenumberedRange {
  generation: number;
  fromSeq: bigint;
  toSeq: bigint;
}

/** The manifest's JSON forms (seqs as decimal strings). */
export interface StoredSeqReservation {
  generation: number;
  throughSeq: string;
}
export interface StoredRenumberedRange {
  generation: number;
  fromSeq: string;
  toSeq: string;
}

/** True if `seq` of `generation` (undefined: not known) lies in a renumbered range. */
export function isRenumbered(ranges: readonly RenumberedRange[], seq: bigint, generation: number | undefined): boolean {
  return ranges.some((r) => (generation === undefined || r.generation === generation) && r.fromSeq <= seq && seq <= r.toSeq);
}

/** The ranges after an open that recovered up to `lastSeq` and found `reservation`. */
export function afterRecovery(ranges: readonly RenumberedRange[], reservation: SeqReservation | undefined, lastSeq: bigint): readonly RenumberedRange[] {
  if (!reservation || reservation.throughSeq <= lastSeq) return ranges;
  return [...ranges, { generation: reservation.generation, fromSeq: lastSeq + 1n, toSeq: reservation.throughSeq }].slice(-MAX_RENUMBERED_RANGES);
}

/** `ours` with the ranges of `theirs` it lacks added (newest kept); the same array if none. */
export function mergeRanges(ours: readonly RenumberedRange[], theirs: readonly RenumberedRange[]): readonly RenumberedRange[] {
  const same = (a: RenumberedRange, b: RenumberedRange) => a.generation === b.generation && a.fromSeq === b.fromSeq && a.toSeq === b.toSeq;
  const added = theirs.filter((r) => !ours.some((o) => same(o, r)));
  return added.length === 0 ? ours : [...ours, ...added].slice(-MAX_RENUMBERED_RANGES);
}

export function storedReservation(r: SeqReservation): StoredSeqReservation {
  return { generation: r.generation, throughSeq: String(r.throughSeq) };
}

export function storedRanges(ranges: readonly RenumberedRange[]): StoredRenumberedRange[] {
  return ranges.map((r) => ({ generation: r.generation, fromSeq: String(r.fromSeq), toSeq: String(r.toSeq) }));
}

const SEQ_RE = /^\d{1,20}$/;

/** Parse the manifest's `seqReservation`; malformed is an error naming `file`. */
export function parseReservation(value: unknown, file: string): SeqReservation | undefined {
  if (value === undefined) return undefined;
  const v = value as Partial<StoredSeqReservation> | null;
  if (!v || !Number.isSafeInteger(v.generation) || v.generation! < 0 || typeof v.throughSeq !== 'string' || !SEQ_RE.test(v.throughSeq)) {
    throw new BrickdError('VOLUME_NOT_FOUND', `${file}: seqReservation is malformed`, { file });
  }
  return { generation: v.generation!, throughSeq: BigInt(v.throughSeq) };
}

/** Parse the manifest's `renumbered`; malformed is an error naming `file`. */
export function parseRanges(value: unknown, file: string): RenumberedRange[] {
  if (value === undefined) return [];
  const bad = (why: string) => new BrickdError('VOLUME_NOT_FOUND', `${file}: renumbered ${why}`, { file });
  if (!Array.isArray(value) || value.length > MAX_RENUMBERED_RANGES) throw bad(`is not a list of at most ${MAX_RENUMBERED_RANGES}`);
  return value.map((entry: unknown, i) => {
    const e = entry as Partial<StoredRenumberedRange> | null;
    if (!e || !Number.isSafeInteger(e.generation) || e.generation! < 0 || typeof e.fromSeq !== 'string' || !SEQ_RE.test(e.fromSeq) || typeof e.toSeq !== 'string' || !SEQ_RE.test(e.toSeq)) {
      throw bad(`entry ${i} is malformed`);
    }
    const range = { generation: e.generation!, fromSeq: BigInt(e.fromSeq), toSeq: BigInt(e.toSeq) };
    if (range.fromSeq < 1n || range.toSeq < range.fromSeq) throw bad(`entry ${i} is an empty range`);
    return range;
  });
}
