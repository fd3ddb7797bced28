// errno-shaped errors for the store's POSIX-like operations, as node's fs makes them
// ({ code: 'ENOENT', errno: -2, syscall: 'create', path }), so the FUSE frontend can answer
// with the errno and any caller can switch on `code`.
import { constants } from 'node:os';
import { BrickdError } from '../errors.js';

const MESSAGES: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EEXIST: 'file already exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  ENOTEMPTY: 'directory not empty',
  EINVAL: 'invalid argument',
  EPERM: 'operation not permitted',
  EIO: 'i/o error',
  ENOSPC: 'no space left on device',
  EFBIG: 'file too large',
  EROFS: 'read-only file system',
};

export type PosixCode = keyof typeof MESSAGES;

export function posixError(code: PosixCode, syscall: string, path: string, detail?: string): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${code}: ${MESSAGES[code]}, ${syscall} '${path}'${detail ? ` (${detail})` : ''}`);
  err.code = code;
  err.errno = -(constants.errno as Record<string, number>)[code]!;
  err.syscall = syscall;
  err.path = path;
  return err;
}

/** VOLUME_FULL carries errno ENOSPC so the frontend answers ENOSPC. */
export function volumeFull(message: string, details: Record<string, unknown>): BrickdError {
  const err = new BrickdError('VOLUME_FULL', message, details);
  (err as unknown as { errno: number }).errno = -constants.errno.ENOSPC;
  return err;
}
