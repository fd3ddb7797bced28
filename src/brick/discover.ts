// Device discovery: every block device on the node, and why it may or may not be adopted.
//
// Devices outside the allowlist are described from sysfs and /proc/self/mountinfo only;
// the agent opens (probes) only allowlisted devices. Eligibility is the conjunction of the
// rules in DESIGN.md invariant 1; each failed rule is one reason, so an operator sees all
// of them at once rather than fixing them one by one.
import { native, type DeviceProbe, type DeviceSignature } from '../native.js';
import { matchAllowlist, type Allowlist } from './allowlist.js';
import { readMountInfo } from './mountinfo.js';
import { listBlockDevices, type SysBlockDevice } from './sysfs.js';

export type IneligibleCode =
  | 'NOT_ALLOWED'
  | 'EMPTY'
  | 'READ_ONLY'
  | 'TOO_SMALL'
  | 'HAS_PARTITIONS'
  | 'MOUNTED'
  | 'HELD'
  | 'IN_USE'
  | 'HAS_SIGNATURE'
  | 'IS_BRICK'
  | 'PROBE_FAILED';

export interface IneligibleReason {
  code: IneligibleCode;
  message: string;
}

/** A brickd brick recognised by its filesystem label; its UUID is the brick id. */
export interface BrickSignature {
  brickId: string;
  label: string;
  fsType: 'xfs' | 'ext4';
}

export interface DeviceReport {
  name: string;
  path: string;
  aliases: string[];
  devNumber: string;
  sizeBytes: number;
  loopBackingFile?: string;
  /** The allowlist pattern that admits it, if any. */
  allowedBy?: string;
  mountpoints: string[];
  /** Present only for allowlisted devices (the others are never opened). */
  probe?: DeviceProbe;
  brick?: BrickSignature;
  eligible: boolean;
  reasons: IneligibleReason[];
}

export interface DiscoverOptions {
  allow: Allowlist;
  minSizeBytes: number;
}

export const BRICK_LABEL_PREFIX = 'brickd-';

/** The brick a set of signatures describes, if it is a brickd-labelled xfs/ext4 filesystem. */
export function brickFromSignatures(signatures: readonly DeviceSignature[]): BrickSignature | undefined {
  for (const sig of signatures) {
    if ((sig.type === 'xfs' || sig.type === 'ext4') && sig.label?.startsWith(BRICK_LABEL_PREFIX) && sig.uuid) {
      return { brickId: sig.uuid, label: sig.label, fsType: sig.type };
    }
  }
  return undefined;
}

export function describeSignatures(signatures: readonly DeviceSignature[]): string {
  return signatures.map((s) => `${s.type}${s.label ? ` "${s.label}"` : ''} at ${s.offset}`).join(', ');
}

function fmtBytes(n: number): string {
  return `${(n / 2 ** 20).toFixed(0)} MiB`;
}

/** Describe and judge one device. Probes it only when the allowlist admits it. */
export async function assessDevice(dev: SysBlockDevice, options: DiscoverOptions, mounts: Map<string, string[]>): Promise<DeviceReport> {
  const reasons: IneligibleReason[] = [];
  const names = [dev.path, ...dev.aliases];
  const allowedBy = matchAllowlist(options.allow, names);
  const mountpoints = mounts.get(dev.devNumber) ?? [];
  const report: DeviceReport = {
    name: dev.name,
    path: dev.path,
    aliases: dev.aliases,
    devNumber: dev.devNumber,
    sizeBytes: dev.sizeBytes,
    mountpoints,
    eligible: false,
    reasons,
  };
  if (dev.loopBackingFile !== undefined) report.loopBackingFile = dev.loopBackingFile;
  if (allowedBy) report.allowedBy = allowedBy;
  else reasons.push({ code: 'NOT_ALLOWED', message: 'matches no devices.allow pattern' });

  if (dev.sizeBytes === 0) reasons.push({ code: 'EMPTY', message: 'no medium (size 0)' });
  else if (dev.sizeBytes < options.minSizeBytes) {
    reasons.push({ code: 'TOO_SMALL', message: `${fmtBytes(dev.sizeBytes)} is under the minimum ${fmtBytes(options.minSizeBytes)}` });
  }
  if (dev.readOnly) reasons.push({ code: 'READ_ONLY', message: 'the device is read-only' });
  if (dev.partitions.length > 0) reasons.push({ code: 'HAS_PARTITIONS', message: `has partitions: ${dev.partitions.join(', ')}` });
  if (mountpoints.length > 0) reasons.push({ code: 'MOUNTED', message: `mounted at ${mountpoints.join(', ')}` });
  if (dev.holders.length > 0) reasons.push({ code: 'HELD', message: `held by ${dev.holders.join(', ')}` });

  if (allowedBy && dev.sizeBytes > 0) {
    try {
      const probe = await native.probeDevice(dev.path);
      report.probe = probe;
      if (probe.busy && mountpoints.length === 0 && dev.holders.length === 0) {
        reasons.push({ code: 'IN_USE', message: 'another user holds it open exclusively' });
      }
      const brick = brickFromSignatures(probe.signatures);
      if (brick) {
        report.brick = brick;
        reasons.push({ code: 'IS_BRICK', message: `already brick ${brick.brickId} (${brick.label})` });
      } else if (probe.signatures.length > 0) {
        reasons.push({ code: 'HAS_SIGNATURE', message: `carries ${describeSignatures(probe.signatures)}` });
      }
    } catch (err) {
      reasons.push({ code: 'PROBE_FAILED', message: (err as Error).message });
    }
  }
  report.eligible = reasons.length === 0;
  return report;
}

/** Map "major:minor" → mount points, from /proc/self/mountinfo. */
export async function mountpointsByDevice(): Promise<Map<string, string[]>> {
  const map = new Map<string, string[]>();
  for (const m of await readMountInfo()) map.set(m.devNumber, [...(map.get(m.devNumber) ?? []), m.target]);
  return map;
}

/** Every block device on the node, each with its eligibility and reasons. */
export async function discoverDevices(options: DiscoverOptions): Promise<DeviceReport[]> {
  const mounts = await mountpointsByDevice();
  const reports: DeviceReport[] = [];
  for (const dev of await listBlockDevices()) reports.push(await assessDevice(dev, options, mounts));
  return reports;
}
