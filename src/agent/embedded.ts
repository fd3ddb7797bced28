// The embedded default: with no devices configured, the agent makes its own "disks" as
// sparse files under <stateDir>/devices/ and attaches them as loop devices, so the whole
// data path runs on any Linux box as root without a spare disk.
//
// Restart-safe: an existing file is reused (never truncated) and a loop device already
// backed by it is reused, so the bricks on them are found again by label like real disks.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { attachLoop, createSparseFile, detachLoop, findLoopFor, loopDirectIo } from '../brick/loop.js';

export interface EmbeddedDevice {
  file: string;
  device: string;
  /** The loop device uses direct I/O on its file (see attachLoop); false where the filesystem under the state dir refuses it. */
  directIo: boolean;
}

export function embeddedDir(stateDir: string): string {
  return path.join(stateDir, 'devices');
}

export async function attachEmbeddedDevices(stateDir: string, count: number, sizeBytes: number): Promise<EmbeddedDevice[]> {
  const dir = embeddedDir(stateDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const devices: EmbeddedDevice[] = [];
  for (let i = 0; i < count; i++) {
    const file = path.join(dir, `disk${i}.img`);
    await createSparseFile(file, sizeBytes);
    const device = (await findLoopFor(file)) ?? (await attachLoop(file));
    devices.push({ file, device, directIo: await loopDirectIo(device) });
  }
  return devices;
}

/** Detach the embedded loop devices (only these: they are backed by files the agent owns). */
export async function detachEmbeddedDevices(devices: readonly EmbeddedDevice[]): Promise<void> {
  for (const d of devices) await detachLoop(d.device);
}
