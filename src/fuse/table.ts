// The FUSE mounts this agent serves: at most one per volume, each at a host path the
// orchestrator chose (the kubelet then bind-mounts it into pods).
//
// Records live in <stateDir>/mounts.json, written atomically after every change, so that
// after a crash or restart the agent finds the paths it served: restore() detaches the
// dead mounts a killed agent left there (ENOTCONN) and mounts those volumes again. A clean
// stop unmounts every volume but keeps the records, so the next start serves them again;
// only UnmountVolume forgets one.
//
// Rules: a read-write mount needs the replica here to be the primary (NOT_PRIMARY
// otherwise); any replica may be mounted read-only (it serves its local data, which may lag
// the primary). A mounted volume is pinned in the volume manager: it cannot be deleted,
// nor demoted from primary while mounted read-write (VOLUME_MOUNTED). Mount and unmount are
// idempotent: the same request again answers with what is there.
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { BrickdError, isSystemError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';
import { Mutex } from '../lock.js';
import type { Logger } from '../log.js';
import type { VolumeManager } from '../volume/manager.js';
import { clearDeadMount, FuseMount } from './mount.js';

export interface MountRecord {
  volumeId: string;
  mountPath: string;
  readOnly: boolean;
}

export interface VolumeMountsOptions {
  stateDir: string;
  volumes: VolumeManager;
  log: Logger;
  /** Per-op deadline of the FUSE ops (ms). */
  opTimeoutMs?: number;
}

const FILE_FORMAT = 'brickd-mounts';

export class VolumeMounts {
  private readonly records = new Map<string, MountRecord>();
  private readonly mounts = new Map<string, FuseMount>();
  private readonly mutex = new Mutex();
  private readonly file: string;

  constructor(private readonly options: VolumeMountsOptions) {
    this.file = path.join(options.stateDir, 'mounts.json');
  }

  /** Volumes served now, with where and how. */
  list(): MountRecord[] {
    return [...this.records.values()].filter((r) => this.mounts.has(r.volumeId));
  }

  get(volumeId: string): MountRecord | undefined {
    return this.mounts.has(volumeId) ? this.records.get(volumeId) : undefined;
  }

  mount(volumeId: string, hostPath: string, readOnly: boolean): Promise<MountRecord> {
    return this.mutex.run(async () => {
      const mountPath = this.checkPath(hostPath);
      const existing = this.records.get(volumeId);
      if (existing && this.mounts.has(volumeId)) {
        if (existing.mountPath === mountPath && existing.readOnly === readOnly) return existing;
        throw new BrickdError('VOLUME_MOUNTED', `volume ${volumeId} is already mounted at ${existing.mountPath}${existing.readOnly ? ' read-only' : ''}`, { volumeId, mountPath: existing.mountPath });
      }
      for (const other of this.records.values()) {
        if (other.mountPath === mountPath && other.volumeId !== volumeId && this.mounts.has(other.volumeId)) {
          throw new BrickdError('VOLUME_MOUNTED', `${mountPath} already serves volume ${other.volumeId}`, { volumeId: other.volumeId, mountPath });
        }
      }
      const record = { volumeId, mountPath, readOnly };
      await this.mountLocked(record);
      this.records.set(volumeId, record);
      await this.save();
      return record;
    });
  }

  /** Unmount and forget; resolves false if the volume was not mounted. */
  unmount(volumeId: string): Promise<boolean> {
    return this.mutex.run(async () => {
      const had = this.records.has(volumeId);
      await this.unmountLocked(volumeId);
      this.records.delete(volumeId);
      if (had) await this.save();
      return had;
    });
  }

  /** Start-up: serve again what mounts.json records (dead mounts there are detached first). */
  restore(): Promise<void> {
    return this.mutex.run(async () => {
      for (const record of await this.load()) {
        this.records.set(record.volumeId, record);
        try {
          await this.mountLocked(record);
        } catch (err) {
          // Kept on record: the orchestrator sees it unmounted in status and may retry or unmount.
          this.options.log.error({ err, volume: record.volumeId, mountPath: record.mountPath }, 'restore mount failed');
        }
      }
    });
  }

  /** Shutdown: unmount everything, keep the records for the next start. */
  close(): Promise<void> {
    return this.mutex.run(async () => {
      for (const volumeId of [...this.mounts.keys()]) {
        await this.unmountLocked(volumeId).catch((err) => this.options.log.error({ err, volume: volumeId }, 'unmount at stop failed'));
      }
    });
  }

  private async mountLocked(record: MountRecord): Promise<void> {
    const { volumes } = this.options;
    const volume = volumes.get(record.volumeId);
    if (!record.readOnly && volume.config.role !== 'primary') {
      throw new BrickdError('NOT_PRIMARY', `the replica of ${record.volumeId} here is a ${volume.config.role}; mount it read-only, or make this node its primary first`, { volumeId: record.volumeId });
    }
    // A dead mount (a killed agent's) would make mkdir's existence check fail with ENOTCONN.
    await clearDeadMount(record.mountPath, this.options.log);
    await mkdir(record.mountPath, { recursive: true, mode: 0o755 });
    const fuse = new FuseMount(this.options.log);
    // Pinned before the mount answers: a delete racing it is refused, not left under a mount.
    await volumes.pin(record.volumeId, { what: `mounted at ${record.mountPath}`, writable: !record.readOnly });
    try {
      const backend = volumes.backend(record.volumeId, { readOnly: record.readOnly });
      await fuse.mount(backend, record.mountPath, {
        readOnly: record.readOnly,
        ...(this.options.opTimeoutMs ? { timeoutMs: this.options.opTimeoutMs } : {}),
      });
    } catch (err) {
      await volumes.pin(record.volumeId, undefined);
      throw err;
    }
    this.mounts.set(record.volumeId, fuse);
  }

  private async unmountLocked(volumeId: string): Promise<void> {
    const fuse = this.mounts.get(volumeId);
    if (!fuse) return;
    await fuse.unmount();
    this.mounts.delete(volumeId);
    await this.options.volumes.pin(volumeId, undefined);
  }

  /** An absolute, normalized path that is not / and not inside the state dir. */
  private checkPath(hostPath: string): string {
    const bad = (why: string) => new BrickdError('MOUNT_PATH_INVALID', `mount path ${JSON.stringify(hostPath)}: ${why}`, { mountPath: hostPath });
    if (typeof hostPath !== 'string' || hostPath.length === 0) throw bad('required');
    if (hostPath.includes('\0')) throw bad('contains NUL');
    if (hostPath.length > 4000) throw bad('too long');
    if (!path.isAbsolute(hostPath)) throw bad('must be absolute');
    const normalized = path.normalize(hostPath).replace(/\/+$/, '');
    if (normalized !== hostPath.replace(/\/+$/, '')) throw bad('must be normalized (no "..", ".", or "//")');
    if (normalized === '') throw bad('cannot be /');
    const state = path.resolve(this.options.stateDir);
    if (normalized === state || normalized.startsWith(state + '/')) throw bad(`lies inside the agent state dir ${state}`);
    return normalized;
  }

  private async load(): Promise<MountRecord[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) return [];
      throw err;
    }
    try {
      const parsed = JSON.parse(text) as { format: string; mounts: MountRecord[] };
      if (parsed.format !== FILE_FORMAT || !Array.isArray(parsed.mounts)) throw new Error('not a mounts file');
      return parsed.mounts.filter((m) => typeof m.volumeId === 'string' && typeof m.mountPath === 'string' && path.isAbsolute(m.mountPath));
    } catch (err) {
      this.options.log.error({ err, file: this.file }, 'mounts file unreadable; no mount restored');
      return [];
    }
  }

  private save(): Promise<void> {
    const mounts = [...this.records.values()].sort((a, b) => a.volumeId.localeCompare(b.volumeId));
    return writeFileAtomic(this.file, JSON.stringify({ format: FILE_FORMAT, version: 1, mounts }, null, 2) + '\n');
  }
}
