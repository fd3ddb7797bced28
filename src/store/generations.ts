// A replica's generation history: which generation's primary made each seq it holds.
//
// A generation names one primary (the orchestrator raises it whenever it changes the
// primary, DESIGN.md invariant 5), and that primary numbers its mutations itself. So two
// copies whose seq s both came from the same generation hold the same mutations up to s,
// and two copies whose seq s came from different generations may hold different mutations
// under the same numbers: a replica that took seqs from a primary that died, while a replica
// with fewer was promoted and numbered its own mutations from there. Replication compares
// the generation of the replica's last seq with the primary's own at that seq (WELCOME) and
// resyncs on a difference (docs/replication.md, Resync).
//
// The history is a short list of starts: [fromSeq, generation] = "seqs from fromSeq on,
// up to the next start, were made by this generation". It is kept in the replica manifest
// and only grows when a mutation of a new generation is about to take its seq; the store
// writes the start durably before that mutation's log record (see ReplicaStore.mutate), so
// a crash can leave a start that no seq uses yet, never a seq without its start.
import { BrickdError } from '../errors.js';

export interface GenerationStart {
  fromSeq: bigint;
  generation: number;
}

/** Starts kept; older ones are dropped (a seq before the first start has no known generation). */
export const MAX_GENERATION_STARTS = 64;

/** The generation that made `seq`, or undefined when the history does not reach back that far. */
export function generationAt(history: readonly GenerationStart[], seq: bigint): number | undefined {
  for (let i = history.length - 1; i >= 0; i--) {
    if (history[i]!.fromSeq <= seq) return history[i]!.generation;
  }
  return undefined;
}

/**
 * The history once the mutations from `fromSeq` on are made by `generation`. Starts at or
 * past `fromSeq` are dropped: `fromSeq` is the next seq to be taken, so no seq uses them
 * (a crash between writing a start and taking its seq leaves one). Unchanged (the same
 * array) when the last start before `fromSeq` already has this generation.
 */
export function withGenerationStart(history: readonly GenerationStart[], fromSeq: bigint, generation: number): readonly GenerationStart[] {
  const kept = history.filter((s) => s.fromSeq < fromSeq);
  if (kept.length > 0 && kept[kept.length - 1]!.generation === generation) {
    return kept.length === history.length ? history : kept;
  }
  kept.push({ fromSeq, generation });
  return kept.slice(-MAX_GENERATION_STARTS);
}

/** The starts that cover seqs up to `seq` (what a copy of the tree at `seq` inherits). */
export function historyThrough(history: readonly GenerationStart[], seq: bigint): GenerationStart[] {
  return history.filter((s) => s.fromSeq <= seq);
}

/**
 * Why `history` is not a valid one (fromSeq ≥ 1 and generations both strictly increasing,
 * at most MAX_GENERATION_STARTS starts), or undefined. Generations only rise over time, so
 * a later start always has a higher generation.
 */
export function historyProblem(history: readonly GenerationStart[]): string | undefined {
  if (history.length > MAX_GENERATION_STARTS) return `${history.length} generation starts, more than ${MAX_GENERATION_STARTS}`;
  for (let i = 0; i < history.length; i++) {
    const s = history[i]!;
    if (s.fromSeq < 1n || !Number.isSafeInteger(s.generation) || s.generation < 0) return `start ${i} (seq ${s.fromSeq}, generation ${s.generation}) is out of range`;
    const prev = history[i - 1];
    if (prev && (s.fromSeq <= prev.fromSeq || s.generation <= prev.generation)) {
      return `start ${i} (seq ${s.fromSeq}, generation ${s.generation}) does not follow start ${i - 1} (seq ${prev.fromSeq}, generation ${prev.generation})`;
    }
  }
  return undefined;
}

/** The manifest's JSON form: seqs as decimal strings, like appliedSeq. */
export interface StoredGenerationStart {
  fromSeq: string;
  generation: number;
}

export function storedHistory(history: readonly GenerationStart[]): StoredGenerationStart[] {
  return history.map((s) => ({ fromSeq: String(s.fromSeq), generation: s.generation }));
}

/** Parse the manifest's `generations`; a malformed list is an error naming `file` (nothing is guessed). */
export function parseStoredHistory(value: unknown, file: string): GenerationStart[] {
  if (value === undefined) return [];
  const bad = (why: string) => new BrickdError('VOLUME_NOT_FOUND', `${file}: generations ${why}`, { file });
  if (!Array.isArray(value)) throw bad('is not a list');
  const history = value.map((entry: unknown, i) => {
    const e = entry as Partial<StoredGenerationStart> | null;
    if (!e || typeof e.fromSeq !== 'string' || !/^\d{1,20}$/.test(e.fromSeq) || !Number.isSafeInteger(e.generation)) throw bad(`entry ${i} is malformed`);
    return { fromSeq: BigInt(e.fromSeq), generation: e.generation! };
  });
  const problem = historyProblem(history);
  if (problem) throw bad(problem);
  return history;
}
