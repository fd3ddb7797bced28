// What a FUSE op answers when the backend fails: a negative errno, chosen by meaning.
//
//   errno-shaped error (`code: 'ENOENT'`, from the store or node) → that errno
//   VOLUME_FULL                                 → ENOSPC (the error also carries it)
//   NAME_INVALID, a name or path too long       → ENAMETOOLONG; other invalid names → EINVAL
//   CHECKSUM_MISMATCH (not repairable)          → EIO: bad bytes are never returned
//   QUORUM_LOST, TIMEOUT, LINK_CLOSED, ...      → EIO: the write is not acknowledged
//   STORE_CLOSED                                → EIO
//   GENERATION_STALE                            → EROFS: a fenced primary must not write
//   TypeError / RangeError (bad arguments)      → EINVAL
//   anything else                               → EIO, logged once per kind
//
// The frontend's own per-op timeout answers ETIMEDOUT (see ops.ts), so an operator can
// tell "the backend did not answer in time" from "the backend failed" (EIO).
import { constants } from 'node:os';
import { isBrickdError, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';

const ERRNO = constants.errno as Readonly<Record<string, number>>;

export const EIO = -ERRNO.EIO!;
export const ETIMEDOUT = -ERRNO.ETIMEDOUT!;

/** Negative errno for a POSIX code name (EIO for a name this platform does not know). */
export function errnoOf(code: string): number {
  const n = ERRNO[code];
  return n === undefined ? EIO : -n;
}

const BRICKD_ERRNO: Partial<Record<ErrorCode, string>> = {
  VOLUME_FULL: 'ENOSPC',
  CHECKSUM_MISMATCH: 'EIO',
  QUORUM_LOST: 'EIO',
  TIMEOUT: 'EIO',
  LINK_CLOSED: 'EIO',
  APPLY_FAILED: 'EIO',
  STORE_CLOSED: 'EIO',
  REPLICA_RESYNCING: 'EIO',
  LOG_CORRUPT: 'EIO',
  GENERATION_STALE: 'EROFS',
};

/** Maps errors to errnos; an error of a kind it has no rule for is logged once, then EIO. */
export class ErrnoMapper {
  private readonly loggedKinds = new Set<string>();

  constructor(private readonly log: Logger) {}

  toErrno(err: unknown, op: string): number {
    if (isBrickdError(err)) {
      if (err.code === 'NAME_INVALID') return /longer than/.test(err.message) ? errnoOf('ENAMETOOLONG') : errnoOf('EINVAL');
      const code = BRICKD_ERRNO[err.code];
      if (code) return errnoOf(code);
      return this.unknown(err, err.code, op);
    }
    if (err instanceof TypeError || err instanceof RangeError) return errnoOf('EINVAL');
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) && ERRNO[code] !== undefined) return -ERRNO[code]!;
    return this.unknown(err, typeof code === 'string' ? code : (err as Error | undefined)?.constructor?.name ?? typeof err, op);
  }

  private unknown(err: unknown, kind: string, op: string): number {
    if (!this.loggedKinds.has(kind)) {
      this.loggedKinds.add(kind);
      this.log.error({ err, op, kind }, 'answer EIO for an unexpected error (logged once per kind)');
    }
    return EIO;
  }
}
