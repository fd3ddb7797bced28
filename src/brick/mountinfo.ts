// Reading /proc/self/mountinfo: the kernel's own word on what is mounted where.
//
// brickd verifies every mount against it (a mount(2) that returned 0 is still checked),
// finds its bricks' mounts by device number rather than by path (a device path can have
// many names), and finds stale mounts under its state dir at start-up.
import { readFile } from 'node:fs/promises';

export interface MountEntry {
  mountId: number;
  /** "major:minor" of the mounted device (for a block filesystem). */
  devNumber: string;
  /** Mount point, with the kernel's octal escapes (\040 for space, ...) decoded. */
  target: string;
  /** Per-mount options (noatime, ro, ...). */
  mountOptions: string[];
  fsType: string;
  source: string;
  /** Per-superblock options (inode64, ...). */
  superOptions: string[];
}

function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parse mountinfo text (see proc(5)); lines that do not parse are skipped. */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    if (left.length < 6 || right.length < 3) continue;
    entries.push({
      mountId: Number(left[0]),
      devNumber: left[2]!,
      target: unescape(left[4]!),
      mountOptions: left[5]!.split(','),
      fsType: right[0]!,
      source: unescape(right[1]!),
      superOptions: right[2]!.split(','),
    });
  }
  return entries;
}

export async function readMountInfo(): Promise<MountEntry[]> {
  return parseMountInfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** The mounts whose device is `devNumber` ("major:minor"). */
export async function mountsOfDevice(devNumber: string): Promise<MountEntry[]> {
  return (await readMountInfo()).filter((m) => m.devNumber === devNumber);
}

/** The topmost mount at exactly `target`, if any. */
export async function mountAt(target: string): Promise<MountEntry | undefined> {
  const matches = (await readMountInfo()).filter((m) => m.target === target);
  return matches[matches.length - 1];
}
