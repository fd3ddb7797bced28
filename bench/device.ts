// Real block devices for a benchmark run (`--device /dev/X`): the check that decides
// whether the runner may format them.
//
// A device is used only when it is eligible under the very rules the agent applies before
// it adopts a disk (src/brick/discover.ts assessDevice, with an allowlist of exactly that
// device and the agent's default minimum size): blank (no filesystem, partition table or
// other signature), not mounted, not held, not open exclusively by anyone, writable, large
// enough. This module only reads: sysfs, mountinfo and a probe of each named device (the
// agent's probe: libblkid and one O_EXCL open, closed at once). It writes nothing.
import { DEFAULT_CONFIG } from '../src/agent/config.js';
import { assessDevice, mountpointsByDevice, type IneligibleCode } from '../src/brick/discover.js';
import { findBlockDevice } from '../src/brick/sysfs.js';

export interface DeviceRefusal {
  /** As given on the command line. */
  device: string;
  /** The agent's reasons, or NOT_FOUND (no such block device) / GIVEN_TWICE (two names of one device). */
  reasons: Array<{ code: IneligibleCode | 'NOT_FOUND' | 'GIVEN_TWICE'; message: string }>;
}

export interface DeviceCheck {
  /** The kernel paths (/dev/sdb) of the devices, in the order given; complete only when nothing was refused. */
  devices: string[];
  refusals: DeviceRefusal[];
}

/**
 * Judge every device named with --device. Each refusal carries every reason at once (as
 * the agent's discovery does), so one run tells the operator all that is wrong.
 */
export async function checkBenchDevices(given: readonly string[]): Promise<DeviceCheck> {
  const devices: string[] = [];
  const refusals: DeviceRefusal[] = [];
  const mounts = await mountpointsByDevice();
  const seen = new Map<string, string>();
  for (const name of given) {
    const dev = await findBlockDevice(name);
    if (!dev) {
      refusals.push({ device: name, reasons: [{ code: 'NOT_FOUND', message: 'not a block device on this machine' }] });
      continue;
    }
    const twice = seen.get(dev.path);
    if (twice !== undefined) {
      refusals.push({ device: name, reasons: [{ code: 'GIVEN_TWICE', message: `the same device as ${twice}` }] });
      continue;
    }
    seen.set(dev.path, name);
    const report = await assessDevice(dev, { allow: [dev.path], minSizeBytes: DEFAULT_CONFIG.minSizeBytes }, mounts);
    if (report.eligible) devices.push(dev.path);
    else refusals.push({ device: name, reasons: report.reasons });
  }
  return { devices, refusals };
}

/** One line per refused device: its name and every reason, with the agent's reason codes. */
export function describeRefusals(refusals: readonly DeviceRefusal[]): string {
  return refusals
    .map(({ device, reasons }) => `refusing ${device}: ${reasons.map((r) => `${r.message} (${r.code})`).join('; ')}`)
    .join('\n');
}
