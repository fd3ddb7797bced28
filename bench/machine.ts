// A description of the machine a benchmark ran on, written with every result: figures
// from different machines (or from a noisy one) must not be compared blindly.
//
// Reads /proc, /sys and the temp dir's mount only; opens no block device.
import { readFileSync } from 'node:fs';
import { readFile, readlink, realpath } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { readMountInfo, type MountEntry } from '../src/brick/mountinfo.js';
import { findBlockDevice } from '../src/brick/sysfs.js';

export interface MachineInfo {
  cpuModel: string;
  /** x86 family/model/stepping: identifies the core when a VM hides the model name. */
  cpuId: string;
  logicalCpus: number;
  cpuMHz: number;
  /** The CPU features brickd's fast paths depend on, as /proc/cpuinfo names them. */
  cpuFeatures: string[];
  /** Running under a hypervisor: timings are noisier and steal time is possible. */
  virtualized: boolean;
  kernel: string;
  memoryBytes: number;
  /** 1-minute load average when the run started: another busy process skews results. */
  loadAverage: number;
  node: string;
  v8: string;
  arch: string;
  hostname: string;
  /** Where the bricks lived: the temp dir's filesystem (loop files) and any --device. */
  storage?: StorageInfo[];
}

/** A block device as sysfs describes it. */
export interface BlockDeviceInfo {
  /** Kernel name: vda, nvme0n1p2, loop3. */
  name: string;
  devNumber: string;
  sizeBytes: number;
  /** The disk's model, or its driver (virtio_blk) when it has none. */
  model?: string;
  rotational?: boolean;
  /** For a partition, the disk it is on. */
  disk?: string;
  /** For a loop device, the file it reads and writes. */
  loopBackingFile?: string;
}

export interface StorageInfo {
  /** 'temp dir': where the loop files of the embedded-style bricks go; 'device': a --device. */
  role: 'temp dir' | 'device';
  path: string;
  /** The filesystem holding `path` (for the temp dir): its type, mount point and source. */
  fsType?: string;
  mountPoint?: string;
  mountSource?: string;
  /** The block device under it (absent for tmpfs, overlay, ... without one). */
  device?: BlockDeviceInfo;
}

const FEATURES_OF_INTEREST = ['sse4_2', 'pclmulqdq', 'avx2', 'avx512f', 'vpclmulqdq'];

function cpuinfoField(cpuinfo: string, field: string): string | undefined {
  return new RegExp(`^${field}\\s*:\\s*(.*)$`, 'm').exec(cpuinfo)?.[1]?.trim();
}

export function describeMachine(): MachineInfo {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux: fall back to what node reports
  }
  const flags = new Set((cpuinfoField(cpuinfo, 'flags') ?? '').split(/\s+/));
  const cpus = os.cpus();
  return {
    cpuModel: cpuinfoField(cpuinfo, 'model name') ?? cpus[0]?.model ?? 'unknown',
    cpuId: ['cpu family', 'model', 'stepping']
      .map((field) => `${field.replace('cpu ', '')} ${cpuinfoField(cpuinfo, field) ?? '?'}`)
      .join(' '),
    logicalCpus: cpus.length,
    // os.cpus() reports 0 MHz in some VMs; /proc/cpuinfo still has the nominal clock.
    cpuMHz: Math.round(Number(cpuinfoField(cpuinfo, 'cpu MHz') ?? 0)) || cpus[0]?.speed || 0,
    cpuFeatures: FEATURES_OF_INTEREST.filter((f) => flags.has(f)),
    virtualized: flags.has('hypervisor'),
    kernel: `${os.type()} ${os.release()} ${os.version()}`,
    memoryBytes: os.totalmem(),
    loadAverage: os.loadavg()[0] ?? 0,
    node: process.version,
    v8: process.versions.v8,
    arch: process.arch,
    hostname: os.hostname(),
  };
}

async function readTrim(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/** The block device "major:minor" names, from /sys/dev/block; undefined for anonymous devices. */
export async function describeBlockDevice(devNumber: string): Promise<BlockDeviceInfo | undefined> {
  let dir: string;
  try {
    dir = await realpath(path.join('/sys/dev/block', devNumber));
  } catch {
    return undefined;
  }
  const name = path.basename(dir);
  const isPartition = (await readTrim(path.join(dir, 'partition'))) !== undefined;
  // A partition's model, driver and queue are its disk's (the parent directory in sysfs).
  const diskDir = isPartition ? path.dirname(dir) : dir;
  const info: BlockDeviceInfo = { name, devNumber, sizeBytes: Number((await readTrim(path.join(dir, 'size'))) ?? 0) * 512 };
  const model = (await readTrim(path.join(diskDir, 'device', 'model'))) || (await readlink(path.join(diskDir, 'device', 'driver')).then((l) => path.basename(l), () => undefined));
  if (model) info.model = model;
  const rotational = await readTrim(path.join(diskDir, 'queue', 'rotational'));
  if (rotational !== undefined) info.rotational = rotational === '1';
  if (isPartition) info.disk = path.basename(diskDir);
  const backing = await readTrim(path.join(dir, 'loop', 'backing_file'));
  if (backing) info.loopBackingFile = backing;
  return info;
}

/** The filesystem `dir` lives on: the mount with the longest mount point containing it (the last one mounted there). */
async function describeDirectory(dir: string): Promise<StorageInfo> {
  const out: StorageInfo = { role: 'temp dir', path: dir };
  try {
    const real = await realpath(dir);
    const contains = (target: string) => target === '/' || real === target || real.startsWith(`${target}/`);
    let mount: MountEntry | undefined;
    for (const m of await readMountInfo()) if (contains(m.target) && m.target.length >= (mount?.target.length ?? 0)) mount = m;
    if (!mount) return out;
    Object.assign(out, { fsType: mount.fsType, mountPoint: mount.target, mountSource: mount.source });
    const device = await describeBlockDevice(mount.devNumber);
    if (device) out.device = device;
  } catch {
    // described as far as it could be
  }
  return out;
}

/** The storage a run uses: the temp dir (loop-file bricks) and each device given with --device. */
export async function describeStorage(devices: readonly string[], tempDir = os.tmpdir()): Promise<StorageInfo[]> {
  const storage = [await describeDirectory(tempDir)];
  for (const device of devices) {
    const entry: StorageInfo = { role: 'device', path: device };
    const found = await findBlockDevice(device);
    const info = found ? await describeBlockDevice(found.devNumber) : undefined;
    if (info) entry.device = info;
    storage.push(entry);
  }
  return storage;
}
