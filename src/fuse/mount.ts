// FuseMount: one volume served at one host path through FUSE (fuse-native, libfuse 2).
//
// Mount options (one `-o` string: fuse-native builds it in its private _fuseOptions(),
// which BrickdFuse below replaces, because fuse-native has no knob for most of these):
//   big_writes,max_write=131072  without them the kernel sends 4 KiB writes (~50 MB/s);
//                                with them 128 KiB, libfuse 2's cap (see TOOLCHAIN.md)
//   allow_other                  the container runtime bind-mounts the path into pods that
//                                run as other users and in other namespaces
//   default_permissions          the kernel checks modes and owners against the stat we
//                                return, so the ops need no permission logic of their own
//   ro                           read-only mounts (with a backend that answers EROFS too)
//   fsname=brickd:<volume>, subtype=brickd   so mountinfo shows what the mount is
//
// A process that dies while mounted leaves the path answering ENOTCONN ("Transport
// endpoint is not connected"). mount() detects that and detaches the dead mount lazily
// (umount2 MNT_DETACH, as `fusermount -uz` does) before mounting again. A live mount
// already on the path is refused.
import { stat } from 'node:fs/promises';
import path from 'node:path';
import Fuse from 'fuse-native';
import { BrickdError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { native, UmountFlags } from '../native.js';
import { readOnlyBackend, type VolumeBackend } from '../volume/backend.js';
import { makeOps, type FuseOps } from './ops.js';

export interface FuseMountOptions {
  readOnly?: boolean;
  /** Per-op deadline in ms (default 30 s): an op the backend has not answered by then gets ETIMEDOUT. */
  timeoutMs?: number;
  /** Let other users (pods) use the mount (default true). */
  allowOther?: boolean;
}

/** The mount options brickd passes to libfuse, in order. */
export function fuseMountOptions(volumeId: string, options: { readOnly: boolean; allowOther: boolean }): string[] {
  const out = [`fsname=brickd:${volumeId}`, 'subtype=brickd', 'default_permissions', 'big_writes', 'max_write=131072'];
  if (options.allowOther) out.push('allow_other');
  if (options.readOnly) out.push('ro');
  return out;
}

/** fuse-native with brickd's own mount option string. */
class BrickdFuse extends Fuse {
  constructor(
    mnt: string,
    ops: Fuse.Operations,
    private readonly mountOptions: string[],
  ) {
    // fuse-native's own timeout is off: ops.ts answers every op on its own deadline.
    super(mnt, ops, { timeout: false });
  }

  protected override _fuseOptions(): string {
    return '-o' + this.mountOptions.join(',');
  }
}

const DEAD_MOUNT_CODES = new Set(['ENOTCONN', 'ECONNABORTED', 'EIO', 'ESTALE']);

/** Detach a dead mount left at `mountPath` by a crashed process; true if there was one. */
export async function clearDeadMount(mountPath: string, log: Logger = silentLogger): Promise<boolean> {
  try {
    await stat(mountPath);
    return false;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (code === 'ENOENT') return false; // nothing there at all
    if (!DEAD_MOUNT_CODES.has(code)) throw err;
    log.warn({ mountPath, code }, 'detach dead mount');
    await native.umount(mountPath, UmountFlags.MNT_DETACH);
    return true;
  }
}

/** True when something is mounted at `dir` (it lives on another device than its parent). */
async function isMountPoint(dir: string): Promise<boolean> {
  const [self, parent] = await Promise.all([stat(dir), stat(path.dirname(dir))]);
  return self.dev !== parent.dev;
}

export class FuseMount {
  private fuse: BrickdFuse | undefined;
  private fuseOps: FuseOps | undefined;
  private mountPathValue: string | undefined;
  private served: VolumeBackend | undefined;

  constructor(private readonly log: Logger = silentLogger) {}

  get mounted(): boolean {
    return this.fuse !== undefined;
  }

  get mountPath(): string | undefined {
    return this.mountPathValue;
  }

  /** Open file handles (for tests and status). */
  get openHandles(): number {
    return this.fuseOps?.handles.size ?? 0;
  }

  async mount(backend: VolumeBackend, mountPath: string, options: FuseMountOptions = {}): Promise<void> {
    if (this.fuse) throw new BrickdError('MOUNT_FAILED', `this FuseMount already serves ${this.mountPathValue}`, { mountPath });
    const target = path.resolve(mountPath);
    const readOnly = options.readOnly === true || backend.readOnly;
    const served = readOnly && !backend.readOnly ? readOnlyBackend(backend) : backend;
    const log = this.log.child({ volume: backend.volumeId, mountPath: target });

    await clearDeadMount(target, log);
    const st = await stat(target).catch((err: unknown) => {
      throw new BrickdError('MOUNT_FAILED', `mount point ${target}: ${(err as Error).message}`, { mountPath: target }, err);
    });
    if (!st.isDirectory()) throw new BrickdError('MOUNT_FAILED', `mount point ${target} is not a directory`, { mountPath: target });
    if (await isMountPoint(target)) throw new BrickdError('MOUNT_FAILED', `something is already mounted at ${target}`, { mountPath: target });

    const fuseOps = makeOps(served, options.timeoutMs === undefined ? { log } : { log, timeoutMs: options.timeoutMs });
    const mountOptions = fuseMountOptions(backend.volumeId, { readOnly, allowOther: options.allowOther ?? true });
    const fuse = new BrickdFuse(target, fuseOps.ops, mountOptions);
    await new Promise<void>((resolve, reject) => {
      // fuse-native calls back once the kernel's INIT arrived: the mount answers from here on.
      fuse.mount((err) => (err ? reject(new BrickdError('MOUNT_FAILED', `FUSE mount at ${target}: ${err.message}`, { mountPath: target }, err)) : resolve()));
    });
    this.fuse = fuse;
    this.fuseOps = fuseOps;
    this.served = served;
    this.mountPathValue = target;
    log.info({ options: mountOptions.join(','), readOnly }, 'mount volume');
  }

  /**
   * Unmount (lazily, as fusermount -uz: processes still inside see ENOTCONN). Then every
   * write the mount answered is handed to the store (a write-back backend's open runs are
   * dispatched and applied), so whoever stops the volume next (drain, checkpoint) has it.
   */
  async unmount(): Promise<void> {
    const fuse = this.fuse;
    if (!fuse) return;
    await new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve())));
    const served = this.served;
    this.fuse = undefined;
    this.fuseOps = undefined;
    this.served = undefined;
    // A run that fails now was answered to its writer already, and no fsync can come through
    // this mount any more: all that is left is to log it.
    await served?.flush().catch((err: unknown) => this.log.warn({ err, mountPath: this.mountPathValue }, 'a write answered through the mount failed to apply'));
    this.log.info({ mountPath: this.mountPathValue }, 'unmount volume');
    this.mountPathValue = undefined;
  }
}
