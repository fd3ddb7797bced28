// Running the system tools brickd relies on (mkfs.*, losetup, blkid) with typed errors.
//
// Arguments are always passed as a vector (no shell), output is bounded, and a tool that
// is not installed is TOOL_MISSING with the Debian package that provides it, so an
// operator sees "install xfsprogs" instead of a bare ENOENT.
import { execFile } from 'node:child_process';
import { BrickdError } from './errors.js';

/** Which Debian package provides each tool brickd runs (the image installs each: deploy/install-image-deps.sh). */
export const TOOL_PACKAGES: Readonly<Record<string, string>> = {
  'mkfs.xfs': 'xfsprogs',
  'xfs_admin': 'xfsprogs',
  'mkfs.ext4': 'e2fsprogs',
  losetup: 'util-linux',
  blkid: 'util-linux',
  fusermount: 'fuse',
};

export interface RunResult {
  stdout: string;
  stderr: string;
}

/**
 * Run `tool args...`, resolve with its output, reject with TOOL_MISSING or TOOL_FAILED.
 * `env` adds to (not replaces) the process environment.
 */
export function run(tool: string, args: readonly string[], options: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      tool,
      args,
      {
        timeout: options.timeoutMs ?? 120_000,
        maxBuffer: 4 * 1024 * 1024,
        env: options.env ? { ...process.env, ...options.env } : process.env,
      },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ stdout, stderr });
          return;
        }
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          const pkg = TOOL_PACKAGES[tool];
          reject(
            new BrickdError('TOOL_MISSING', `${tool} is not installed${pkg ? ` (install the ${pkg} package)` : ''}`, { tool, package: pkg }, err),
          );
          return;
        }
        const text = String(stderr || stdout).trim().split('\n').slice(-3).join(' | ');
        reject(new BrickdError('TOOL_FAILED', `${tool} ${args.join(' ')} failed: ${text || err.message}`, { tool, args, stderr: String(stderr) }, err));
      },
    );
  });
}
