// The bricks of this node: recovery at start-up, adoption of devices, and their status.
//
// State machine of a brick (BrickState), each transition logged once with its reason:
//
//   (device found, label brickd-*) ──mount + manifest ok──▶ mounted
//        │                    ├── manifest names another node ──▶ foreign   (unmounted)
//        │                    ├── manifest format too new ──────▶ unsupported (unmounted)
//        │                    ├── no manifest, fs not empty ────▶ incomplete (unmounted)
//        │                    └── mount/read failed ────────────▶ error
//   (mount point dir exists, no device with that id) ───────────▶ missing
//
// Ownership: this module owns <stateDir>/bricks/ and the devices it adopts. It only ever
// opens devices the allowlist admits, and never formats one that is mounted, held, or
// (without `force`) carries any signature. Adoption and recovery run under one mutex, so
// two retries of the same adoption cannot both format.
//
// Crash safety of adoption: wipe → mkfs(label, uuid) → mount → manifest (atomic). A crash
// before mkfs leaves a blank device (adoptable again); after mkfs but before the manifest,
// recovery finds a brickd-labelled, empty filesystem and finishes the adoption.
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rmdir, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { BrickdError, isBrickdError, isSystemError } from '../errors.js';
import type { EventBus } from '../events.js';
import type { Logger } from '../log.js';
import { native, type DeviceSignature } from '../native.js';
import { type Allowlist, matchAllowlist } from './allowlist.js';
import { assessDevice, describeSignatures, discoverDevices, mountpointsByDevice, type DeviceReport } from './discover.js';
import { brickLabel, type BrickFsType, makeBrickFilesystem, mountBrick, unmountBrick } from './format.js';
import { readBrickManifest, writeBrickManifest, type BrickManifest, BRICK_MANIFEST_FORMAT, BRICK_MANIFEST_VERSION } from './manifest.js';
import { readMountInfo } from './mountinfo.js';
import { findBlockDevice, listBlockDevices, type SysBlockDevice } from './sysfs.js';
import { Mutex } from '../lock.js';

export type BrickState = 'mounted' | 'unmounted' | 'missing' | 'foreign' | 'unsupported' | 'incomplete' | 'error';

export interface BrickStatus {
  brickId: string;
  state: BrickState;
  /** Why the brick is in this state (empty for a healthy mounted brick). */
  reason: string;
  mountPath: string;
  devicePath?: string;
  fsType?: BrickFsType;
  label?: string;
  manifest?: BrickManifest;
  sizeBytes?: number;
  usedBytes?: number;
}

export interface AdoptOptions {
  /** Format even though the device carries signatures (never overrides allowlist or in-use). */
  force?: boolean;
  fsType?: BrickFsType;
  tags?: Record<string, string>;
}

/** What adopt() would do with a device (see checkAdoption). */
export interface AdoptionPlan {
  dev: SysBlockDevice;
  report: DeviceReport;
  signatures: DeviceSignature[];
  /** Already this node's mounted brick: adopt() returns it. */
  ownBrick?: BrickStatus;
  /** A brickd brick not mounted yet: adopt() mounts it rather than formatting. */
  bringUp?: boolean;
}

export interface BrickManagerOptions {
  stateDir: string;
  nodeId: string;
  allow: Allowlist;
  minSizeBytes: number;
  fsType: BrickFsType;
  log: Logger;
  /** Brick state changes are published here (brick-mounted, brick-missing, brick-degraded). */
  events?: EventBus;
}

export class BrickManager {
  /** The devices eligible at the last discovery (announced with device-found when they became so). */
  private announced = new Set<string>();
  readonly bricksDir: string;
  private readonly bricks = new Map<string, BrickStatus>();
  private readonly mutex = new Mutex();
  private allow: Allowlist;

  constructor(private readonly options: BrickManagerOptions) {
    this.bricksDir = path.join(options.stateDir, 'bricks');
    this.allow = options.allow;
  }

  /** Widen the allowlist with exact device paths (the embedded default's own loop devices). */
  allowExact(paths: readonly string[]): void {
    this.allow = [...this.allow, ...paths.filter((p) => !this.allow.includes(p))];
  }

  get allowlist(): Allowlist {
    return this.allow;
  }

  list(): BrickStatus[] {
    return [...this.bricks.values()].sort((a, b) => a.brickId.localeCompare(b.brickId));
  }

  get(brickId: string): BrickStatus | undefined {
    return this.bricks.get(brickId);
  }

  /**
   * Every block device and whether it may be adopted. Runs under the adoption mutex: a
   * probe opens each allowlisted device (once exclusively, to test whether it is in use),
   * and that open must never meet an adoption's wipe or mkfs, which would then fail EBUSY.
   */
  /**
   * Judge every allowlisted device. A device that has become eligible since the last look
   * (new, or released, or wiped) is announced once (device-found): an orchestrator may adopt it.
   */
  discover(): Promise<DeviceReport[]> {
    return this.mutex.run(async () => {
      const reports = await discoverDevices({ allow: this.allow, minSizeBytes: this.options.minSizeBytes });
      const eligible = new Set(reports.filter((d) => d.eligible).map((d) => d.path));
      for (const d of reports) {
        if (d.eligible && !this.announced.has(d.path)) {
          this.options.events?.emit({ kind: 'device-found', device: d.path, message: `eligible device ${d.path} (${d.sizeBytes} bytes)` });
        }
      }
      this.announced = eligible;
      return reports;
    });
  }

  /** Rebuild the brick table from the devices alone (labels + manifests) and mount them. */
  recover(): Promise<BrickStatus[]> {
    return this.mutex.run(() => this.recoverLocked());
  }

  /** Turn an eligible device into a mounted brick. Idempotent for a device that is already our brick. */
  adopt(devicePath: string, options: AdoptOptions = {}): Promise<BrickStatus> {
    return this.mutex.run(() => this.adoptLocked(devicePath, options));
  }

  /**
   * Stop using a brick: unmount it and erase its filesystem signature, so that the device is
   * blank (and adoptable) again and no restart brings the brick back. Refused while the
   * brick holds replicas, and for a brick of another node. A missing brick is just forgotten.
   */
  release(brickId: string): Promise<BrickStatus> {
    return this.mutex.run(async () => {
      const brick = this.bricks.get(brickId);
      if (!brick) throw new BrickdError('BRICK_NOT_FOUND', `no brick ${brickId} on this node`, { brickId });
      if (brick.state === 'foreign') throw new BrickdError('BRICK_FOREIGN', `brick ${brickId} belongs to another node (${brick.reason}); adopt its device with force to take it over`, { brickId });
      if (brick.state === 'mounted') {
        const volumes = (await readdir(path.join(brick.mountPath, 'volumes')).catch(() => [] as string[])).filter((v) => !v.startsWith('.'));
        if (volumes.length > 0) throw new BrickdError('BRICK_IN_USE', `brick ${brickId} holds replicas of ${volumes.join(', ')}`, { brickId, volumes });
        await unmountBrick(brick.mountPath);
      }
      if (brick.state !== 'missing' && brick.devicePath) {
        try {
          await native.wipeSignatures(brick.devicePath);
        } catch (err) {
          if (isSystemError(err, 'EBUSY')) throw new BrickdError('DEVICE_IN_USE', `${brick.devicePath} is busy`, { brickId }, err);
          throw err;
        }
      }
      await rmdir(brick.mountPath).catch((err) => {
        if (!isSystemError(err, 'ENOENT')) throw err;
      });
      this.bricks.delete(brickId);
      this.options.log.info({ brick: brickId, device: brick.devicePath }, 'release brick');
      return brick;
    });
  }

  /** Re-measure the size and use of every mounted brick (statfs; no lock: read-only). */
  async refreshUsage(): Promise<void> {
    for (const brick of this.bricks.values()) {
      if (brick.state === 'mounted') await this.measureUsage(brick).catch(() => undefined);
    }
  }

  /** Unmount every mounted brick (shutdown when told to, tests). Data stays on the devices. */
  unmountAll(): Promise<void> {
    return this.mutex.run(async () => {
      for (const brick of this.bricks.values()) {
        if (brick.state !== 'mounted') continue;
        await unmountBrick(brick.mountPath);
        this.setState(brick, 'unmounted', 'unmounted by the agent');
      }
    });
  }

  private mountPathOf(brickId: string): string {
    return path.join(this.bricksDir, brickId);
  }

  private setState(brick: BrickStatus, state: BrickState, reason: string): void {
    const changed = brick.state !== state || brick.reason !== reason;
    brick.state = state;
    brick.reason = reason;
    this.bricks.set(brick.brickId, brick);
    if (!changed) return;
    const log = this.options.log.child({ brick: brick.brickId });
    if (state === 'mounted') log.info({ device: brick.devicePath, mountPath: brick.mountPath }, 'brick mounted');
    else log.warn({ state, reason, device: brick.devicePath }, `brick ${state}`);
    const kind = state === 'mounted' ? 'brick-mounted' : state === 'missing' ? 'brick-missing' : state === 'unmounted' ? undefined : 'brick-degraded';
    if (kind) this.options.events?.emit({ kind, brickId: brick.brickId, device: brick.devicePath ?? '', message: reason || `brick ${state}` });
  }

  private async recoverLocked(): Promise<BrickStatus[]> {
    const log = this.options.log;
    await mkdir(this.bricksDir, { recursive: true, mode: 0o755 });
    await this.cleanStaleMountsLocked();

    const mounts = await mountpointsByDevice();
    const seen = new Set<string>();
    for (const dev of await listBlockDevices()) {
      if (!matchAllowlist(this.allow, [dev.path, ...dev.aliases]) || dev.sizeBytes === 0) continue;
      const report = await assessDevice(dev, { allow: this.allow, minSizeBytes: 0 }, mounts);
      if (!report.brick) continue;
      const { brickId } = report.brick;
      if (seen.has(brickId)) {
        // A cloned disk carries the same UUID; mounting both would mix two bricks' data.
        log.error({ brick: brickId, device: dev.path }, 'skip duplicate brick id (cloned disk?)');
        continue;
      }
      seen.add(brickId);
      await this.bringUpLocked(report);
    }

    // Mount points with no device: the disk vanished (pulled, dead, or no longer allowlisted).
    for (const entry of await readdir(this.bricksDir)) {
      if (seen.has(entry)) continue;
      const previous = this.bricks.get(entry);
      const brick: BrickStatus = previous ?? { brickId: entry, state: 'missing', reason: '', mountPath: this.mountPathOf(entry) };
      this.setState(brick, 'missing', 'no allowlisted device carries this brick id (device vanished or not allowed)');
    }
    return this.list();
  }

  /** Lazily detach mounts under bricks/ that no longer answer (ENOTCONN, EIO, ESTALE). */
  private async cleanStaleMountsLocked(): Promise<void> {
    for (const m of await readMountInfo()) {
      if (path.dirname(m.target) !== this.bricksDir) continue;
      try {
        await stat(m.target);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTCONN' && code !== 'EIO' && code !== 'ESTALE') throw err;
        this.options.log.warn({ mountPath: m.target, code }, 'detach stale brick mount');
        await unmountBrick(m.target, true);
      }
    }
  }

  private async bringUpLocked(report: DeviceReport): Promise<BrickStatus> {
    const sig = report.brick!;
    const brick: BrickStatus = this.bricks.get(sig.brickId) ?? {
      brickId: sig.brickId,
      state: 'error',
      reason: '',
      mountPath: this.mountPathOf(sig.brickId),
    };
    brick.devicePath = report.path;
    brick.fsType = sig.fsType;
    brick.label = sig.label;
    try {
      await mountBrick(report.path, brick.mountPath, sig.fsType);
    } catch (err) {
      this.setState(brick, 'error', (err as Error).message);
      return brick;
    }
    let manifest: BrickManifest | undefined;
    try {
      manifest = await readBrickManifest(brick.mountPath);
    } catch (err) {
      await unmountBrick(brick.mountPath);
      this.setState(brick, isBrickdError(err, 'BRICK_FORMAT_TOO_NEW') ? 'unsupported' : 'error', (err as Error).message);
      return brick;
    }
    if (!manifest) {
      const entries = (await readdir(brick.mountPath)).filter((e) => e !== 'lost+found');
      if (entries.length > 0) {
        await unmountBrick(brick.mountPath);
        this.setState(brick, 'incomplete', `no brick manifest and the filesystem is not empty (${entries.slice(0, 3).join(', ')})`);
        return brick;
      }
      manifest = this.newManifest(sig.brickId, sig.fsType, sig.label, {});
      await writeBrickManifest(brick.mountPath, manifest);
      this.options.log.warn({ brick: sig.brickId, device: report.path }, 'finish interrupted adoption');
    }
    if (manifest.brickId !== sig.brickId) {
      await unmountBrick(brick.mountPath);
      this.setState(brick, 'error', `manifest names brick ${manifest.brickId} but the filesystem UUID is ${sig.brickId}`);
      return brick;
    }
    if (manifest.nodeId !== this.options.nodeId) {
      await unmountBrick(brick.mountPath);
      this.setState(brick, 'foreign', `the brick belongs to node ${manifest.nodeId}`);
      return brick;
    }
    brick.manifest = manifest;
    await this.measureUsage(brick);
    this.setState(brick, 'mounted', '');
    return brick;
  }

  private async measureUsage(brick: BrickStatus): Promise<void> {
    const s = await statfs(brick.mountPath);
    brick.sizeBytes = s.blocks * s.bsize;
    brick.usedBytes = (s.blocks - s.bfree) * s.bsize;
  }

  private newManifest(brickId: string, fsType: BrickFsType, label: string, tags: Record<string, string>): BrickManifest {
    return {
      format: BRICK_MANIFEST_FORMAT,
      version: BRICK_MANIFEST_VERSION,
      brickId,
      nodeId: this.options.nodeId,
      fsType,
      label,
      createdAt: new Date().toISOString(),
      tags,
    };
  }

  /**
   * Check an adoption without acting (no lock, no side effect): throws the typed refusal
   * adopt() would throw, or returns what adopt() would do. The control API calls it first
   * so that a refusal is the call's error rather than a failed operation.
   */
  async checkAdoption(devicePath: string, options: AdoptOptions = {}): Promise<AdoptionPlan> {
    const dev = await findBlockDevice(devicePath);
    if (!dev) throw new BrickdError('DEVICE_NOT_FOUND', `${devicePath} is not a block device on this node`, { device: devicePath });
    const report = await assessDevice(dev, { allow: this.allow, minSizeBytes: this.options.minSizeBytes }, await mountpointsByDevice());
    const details = { device: dev.path, reasons: report.reasons };
    const has = (code: string) => report.reasons.some((r) => r.code === code);
    const signatures = report.probe?.signatures ?? [];

    // Hard refusals: no flag overrides these.
    if (has('NOT_ALLOWED')) throw new BrickdError('DEVICE_NOT_ALLOWED', `${devicePath} matches no devices.allow pattern`, details);
    if (has('EMPTY') || has('READ_ONLY')) throw new BrickdError('DEVICE_NOT_FOUND', `${devicePath} has no writable medium`, details);
    if (has('PROBE_FAILED')) throw new BrickdError('DEVICE_NOT_FOUND', `${devicePath} could not be probed: ${report.reasons.find((r) => r.code === 'PROBE_FAILED')!.message}`, details);

    // Our own brick already: adoption is idempotent (an orchestrator retrying after a timeout).
    if (report.brick) {
      const known = this.bricks.get(report.brick.brickId);
      if (known?.manifest?.nodeId === this.options.nodeId && known.state === 'mounted') return { dev, report, signatures, ownBrick: known };
      if (!options.force) {
        if (!known && report.mountpoints.length === 0) return { dev, report, signatures, bringUp: true };
        throw new BrickdError('DEVICE_IS_BRICK', `${devicePath} already holds brick ${report.brick.brickId}; use force to reformat it`, details);
      }
    }
    if (has('MOUNTED') || has('HELD') || has('IN_USE') || has('HAS_PARTITIONS')) {
      const why = report.reasons.filter((r) => ['MOUNTED', 'HELD', 'IN_USE', 'HAS_PARTITIONS'].includes(r.code)).map((r) => r.message);
      throw new BrickdError('DEVICE_IN_USE', `${devicePath} is in use: ${why.join('; ')}`, details);
    }
    if (has('TOO_SMALL')) throw new BrickdError('DEVICE_TOO_SMALL', `${devicePath}: ${report.reasons.find((r) => r.code === 'TOO_SMALL')!.message}`, details);
    if (signatures.length > 0 && !report.brick && !options.force) {
      throw new BrickdError('DEVICE_HAS_SIGNATURE', `${devicePath} carries ${describeSignatures(signatures)}; use force to erase it`, {
        ...details,
        signatures,
      });
    }
    return { dev, report, signatures };
  }

  private async adoptLocked(devicePath: string, options: AdoptOptions): Promise<BrickStatus> {
    const log = this.options.log.child({ device: devicePath });
    const plan = await this.checkAdoption(devicePath, options);
    if (plan.ownBrick) return plan.ownBrick;
    const { dev, report, signatures } = plan;
    const details = { device: dev.path, reasons: report.reasons };
    const fsType = options.fsType ?? this.options.fsType;
    if (plan.bringUp) {
      // An unknown brick of ours that was not mounted (released, or found late): mount it.
      const brick = await this.bringUpLocked(report);
      if (brick.state === 'mounted') return brick;
      throw new BrickdError('DEVICE_IS_BRICK', `${devicePath} holds brick ${report.brick!.brickId} (${brick.state}: ${brick.reason}); use force to reformat it`, details);
    }

    const brickId = randomUUID();
    const label = brickLabel(brickId);
    log.info({ brick: brickId, fsType, force: Boolean(options.force), signatures: signatures.map((s) => s.type) }, 'adopt device');
    // wipe opens O_EXCL: if the device got mounted since the checks above, it fails EBUSY here.
    if (signatures.length > 0) {
      try {
        await native.wipeSignatures(dev.path);
      } catch (err) {
        if (isSystemError(err, 'EBUSY')) throw new BrickdError('DEVICE_IN_USE', `${devicePath} became busy`, details, err);
        throw err;
      }
    }
    await makeBrickFilesystem(fsType, dev.path, brickId);
    const brick: BrickStatus = { brickId, state: 'error', reason: 'adoption in progress', mountPath: this.mountPathOf(brickId), devicePath: dev.path, fsType, label };
    this.bricks.set(brickId, brick);
    try {
      await mountBrick(dev.path, brick.mountPath, fsType);
    } catch (err) {
      await rmdir(brick.mountPath).catch(() => {});
      this.bricks.delete(brickId);
      throw err;
    }
    brick.manifest = this.newManifest(brickId, fsType, label, options.tags ?? {});
    await writeBrickManifest(brick.mountPath, brick.manifest);
    await this.measureUsage(brick);
    this.setState(brick, 'mounted', '');
    return brick;
  }
}
