// Test disks: sparse files in a temp dir attached as real loop devices.
//
// Every device a test makes is detached in its teardown, and only those: other loop
// devices on the machine may belong to something else.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { attachLoop, createSparseFile, detachLoop } from '../../src/brick/loop.js';
import { run } from '../../src/exec.js';

export const MiB = 1024 * 1024;

/** Why a test that needs root (loop devices, mkfs, mount) is skipped, or false to run it. */
export function needsRoot(): string | false {
  return process.getuid?.() === 0 ? false : 'needs root: attaches loop devices, formats and mounts them';
}

/** A temp dir removed at the end of the test. */
export async function tempDir(t: Test, prefix = 'brickd-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A loop device over a fresh sparse file of `sizeMiB`, detached at the end of the test. */
export async function loopDevice(t: Test, sizeMiB = 320, dir?: string): Promise<string> {
  const where = dir ?? (await tempDir(t));
  const file = path.join(where, `disk-${Math.random().toString(16).slice(2, 10)}.img`);
  await createSparseFile(file, sizeMiB * MiB);
  const device = await attachLoop(file);
  t.teardown(async () => {
    // A test may have left it mounted; unmount whatever is on it before detaching.
    await run('umount', ['--all-targets', device]).catch(() => {});
    await detachLoop(device).catch(() => {});
  });
  return device;
}
