// Test mounts: empty mount points in temp dirs, /proc/self/mountinfo lookups, and a real
// mount(2) of a test device that is undone at teardown.
//
// A mount point's teardown unmounts whatever is still mounted on it (lazily, with the
// system `umount`, so it does not depend on the code under test) and then removes the
// directory with rmdir, never recursively: a recursive delete through a mount that
// survived would empty the filesystem under it. Register a mount point after the loop
// device it mounts, so that (teardowns running in reverse) it is unmounted before the
// device is detached.
import { mkdtemp, readFile, rmdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { run } from '../../src/exec.js';
import { native } from '../../src/native.js';

export interface MountInfoEntry {
  mountId: number;
  /** "major:minor" of the mounted filesystem's device. */
  devNumber: string;
  target: string;
  /** Per-mount options (rw, noatime, ...). */
  mountOptions: string[];
  fsType: string;
  source: string;
  /** Superblock options. */
  superOptions: string[];
}

// mountinfo escapes space, tab, newline and backslash as \ooo octal.
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Every mount in this process's mount namespace, in mount order. */
export async function readMountInfo(): Promise<MountInfoEntry[]> {
  const entries: MountInfoEntry[] = [];
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 6 || fields.length < dash + 4) continue;
    entries.push({
      mountId: Number(fields[0]),
      devNumber: fields[2]!,
      target: unescape(fields[4]!),
      mountOptions: fields[5]!.split(','),
      fsType: fields[dash + 1]!,
      source: unescape(fields[dash + 2]!),
      superOptions: fields[dash + 3]!.split(','),
    });
  }
  return entries;
}

/** The mount on top at `target`, if any. */
export async function mountInfoAt(target: string): Promise<MountInfoEntry | undefined> {
  return (await readMountInfo()).filter((m) => m.target === target).at(-1);
}

/** An empty directory to mount on; at teardown anything on it is unmounted, then it is rmdir'd. */
export async function mountPoint(t: Test, prefix = 'brickd-mnt-'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(async () => {
    // Bounded: mounts may be stacked, but not without end.
    for (let i = 0; i < 8 && (await mountInfoAt(dir)); i++) await run('umount', ['--lazy', dir]);
    await rmdir(dir);
  });
  return dir;
}

/** Mount `device` (a test loop device) on a fresh mount point with native.mount; undone at teardown. */
export async function mountForTest(t: Test, device: string, fsType: string, flags = 0, data = ''): Promise<string> {
  const dir = await mountPoint(t);
  await native.mount(device, dir, fsType, flags, data);
  return dir;
}
