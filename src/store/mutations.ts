// The mutations of a replica: what the write log records and what replication will ship.
//
// Every mutation names files by fid (see files.ts) as well as by path where a path is
// involved, so that applying it is idempotent: recovery replays the log from the last
// checkpoint onto a tree that may already contain some of those mutations, and each
// apply step checks the fid before acting (see apply.ts).
import { BrickdError } from '../errors.js';

/** Bytes of one file (by fid) from `offset`; `length` absent: the whole file (offset 0). */
export interface FileRange {
  fid: string;
  offset: number;
  length?: number;
}

export type Mutation =
  | { op: 'create'; path: string; fid: string; mode: number }
  | { op: 'mkdir'; path: string; fid: string; mode: number }
  | { op: 'symlink'; path: string; fid: string; target: string }
  | { op: 'link'; path: string; fid: string }
  /** Data carried in the log record's payload. */
  | { op: 'write'; fid: string; offset: number; data: Buffer }
  /** Data written straight to the data file; the record holds its range only. */
  | { op: 'writeDirect'; fid: string; offset: number; length: number }
  | { op: 'truncate'; fid: string; size: number }
  | { op: 'unlink'; path: string; fid: string }
  | { op: 'rmdir'; path: string; fid: string }
  | { op: 'rename'; from: string; to: string; fid: string; replacedFid?: string }
  | { op: 'setattr'; path: string; fid: string; mode?: number; uid?: number; gid?: number; atimeMs?: number; mtimeMs?: number }
  /**
   * Local only, never shipped: the parts of the tree an unclean stop may have left holding
   * unlogged changes (activity.ts), given a seq of their own so that the record of changed
   * regions names them after it (store.settleSuspects). Changes nothing in the tree.
   * `ranges`: byte ranges of files (`length` absent: the whole file); `all`: anything.
   */
  | { op: 'suspect'; ranges: FileRange[]; namespace: boolean; all: boolean };

export type MutationOp = Mutation['op'];

/** Record type codes in the write log (stable: part of the on-disk format). */
export const OP_CODES: Record<MutationOp, number> = {
  create: 1,
  mkdir: 2,
  symlink: 3,
  link: 4,
  write: 5,
  writeDirect: 6,
  truncate: 7,
  unlink: 8,
  rmdir: 9,
  rename: 10,
  setattr: 11,
  suspect: 12,
};
const OPS_BY_CODE = new Map(Object.entries(OP_CODES).map(([op, code]) => [code, op as MutationOp]));

/** Split a mutation into a log record's type, JSON body and raw payload. */
export function encodeMutation(m: Mutation): { type: number; body: Buffer; payload?: Buffer } {
  if (m.op === 'write') {
    const { data, op: _op, ...rest } = m;
    return { type: OP_CODES.write, body: Buffer.from(JSON.stringify(rest)), payload: data };
  }
  const { op: _op, ...rest } = m;
  return { type: OP_CODES[m.op], body: Buffer.from(JSON.stringify(rest)) };
}

export function decodeMutation(type: number, body: Buffer, payload: Buffer): Mutation {
  const op = OPS_BY_CODE.get(type);
  if (!op) throw new BrickdError('LOG_CORRUPT', `unknown record type ${type}`, { type });
  const fields = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  if (op === 'write') return { op, ...(fields as { fid: string; offset: number }), data: payload };
  return { op, ...fields } as Mutation;
}
