// What the kernel tells about block devices through sysfs, read without opening them.
//
// Used for discovery: a device outside the allowlist is described from sysfs alone and
// never opened. Reads only /sys/class/block, /sys/dev/block and /dev/disk/* symlinks.
import { readdir, readFile, realpath } from 'node:fs/promises';
import path from 'node:path';

export interface SysBlockDevice {
  /** Kernel name: "sdb", "nvme0n1p1", "loop3". */
  name: string;
  /** /dev/<name>. */
  path: string;
  /** "major:minor". */
  devNumber: string;
  sizeBytes: number;
  readOnly: boolean;
  /** Partitions of this disk (kernel names). */
  partitions: string[];
  /** Kernel names of devices stacked on it (device-mapper, md): it is held. */
  holders: string[];
  /** For a loop device, its backing file ('' when detached). */
  loopBackingFile?: string;
  /** Stable udev aliases pointing at it (/dev/disk/by-id/..., by-path, by-uuid, by-label). */
  aliases: string[];
  isPartition: boolean;
}

async function readTrim(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

/** /dev/disk/<kind>/<link> → kernel name, for every udev alias on the machine. */
async function readAliases(): Promise<Map<string, string[]>> {
  const byName = new Map<string, string[]>();
  for (const kind of await listDir('/dev/disk')) {
    const dir = path.join('/dev/disk', kind);
    for (const link of await listDir(dir)) {
      const full = path.join(dir, link);
      try {
        const name = path.basename(await realpath(full));
        byName.set(name, [...(byName.get(name) ?? []), full]);
      } catch {
        // dangling link: udev has not caught up with a removed device
      }
    }
  }
  return byName;
}

export async function listBlockDevices(): Promise<SysBlockDevice[]> {
  const aliases = await readAliases();
  const devices: SysBlockDevice[] = [];
  for (const name of (await listDir('/sys/class/block')).sort()) {
    const dir = path.join('/sys/class/block', name);
    const devNumber = await readTrim(path.join(dir, 'dev'));
    if (!devNumber) continue;
    const sectors = Number((await readTrim(path.join(dir, 'size'))) ?? 0);
    const isPartition = (await readTrim(path.join(dir, 'partition'))) !== undefined;
    const children = await listDir(dir);
    const partitions: string[] = [];
    for (const child of children) {
      if (child.startsWith(name) && (await readTrim(path.join(dir, child, 'partition'))) !== undefined) partitions.push(child);
    }
    const device: SysBlockDevice = {
      name,
      path: `/dev/${name}`,
      devNumber,
      // sysfs "size" is always in 512-byte units, whatever the logical sector size.
      sizeBytes: sectors * 512,
      readOnly: (await readTrim(path.join(dir, 'ro'))) === '1',
      partitions,
      holders: await listDir(path.join(dir, 'holders')),
      aliases: aliases.get(name) ?? [],
      isPartition,
    };
    if (name.startsWith('loop')) device.loopBackingFile = (await readTrim(path.join(dir, 'loop', 'backing_file'))) ?? '';
    devices.push(device);
  }
  return devices;
}

/** Resolve a user-given device path (maybe a /dev/disk/by-id alias) to its sysfs entry. */
export async function findBlockDevice(devicePath: string): Promise<SysBlockDevice | undefined> {
  let real: string;
  try {
    real = await realpath(devicePath);
  } catch {
    return undefined;
  }
  const name = path.basename(real);
  return (await listBlockDevices()).find((d) => d.name === name);
}
