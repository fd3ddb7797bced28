// Validation of the paths clients give for files inside a volume.
//
// A path is relative to the volume's data/ root, made of '/'-separated components. Refused,
// with NAME_INVALID and nothing changed: absolute paths, empty components, '.' and '..',
// NUL bytes, components over 255 bytes (NAME_MAX) and paths over 4095 bytes (PATH_MAX - 1).
// After validation a path can be joined under data/ with no way out of it.
import { BrickdError } from '../errors.js';

export const NAME_MAX = 255;
export const PATH_MAX = 4095;

function reject(path: unknown, why: string): never {
  throw new BrickdError('NAME_INVALID', `${JSON.stringify(path)}: ${why}`, { path });
}

/** Returns the path's components; throws NAME_INVALID. The root itself is '' (no components). */
export function validatePath(path: unknown, { allowRoot = false } = {}): string[] {
  if (typeof path !== 'string') reject(path, 'a path must be a string');
  if (path === '' || path === '.') {
    if (allowRoot) return [];
    reject(path, 'the volume root is not allowed here');
  }
  if (path.includes('\0')) reject(path, 'NUL byte in path');
  if (path.startsWith('/')) reject(path, 'absolute paths are not allowed (paths are relative to the volume root)');
  if (Buffer.byteLength(path) > PATH_MAX) reject(path, `longer than ${PATH_MAX} bytes`);
  const parts = path.split('/');
  for (const part of parts) {
    if (part === '') reject(path, 'empty path component');
    if (part === '.' || part === '..') reject(path, `'${part}' is not allowed as a path component`);
    if (Buffer.byteLength(part) > NAME_MAX) reject(path, `component longer than ${NAME_MAX} bytes`);
  }
  return parts;
}

/** Validate a symlink target: stored verbatim, only NUL and length are checked (POSIX allows anything). */
export function validateSymlinkTarget(target: unknown): string {
  if (typeof target !== 'string' || target === '') reject(target, 'a symlink target must be a non-empty string');
  if (target.includes('\0')) reject(target, 'NUL byte in symlink target');
  if (Buffer.byteLength(target) > PATH_MAX) reject(target, `longer than ${PATH_MAX} bytes`);
  return target;
}
