// The control API server: brickd.v1.Control over gRPC on a Unix socket.
//
// Security: the socket is created with mode 0600 (umask 077 while binding, then chmod), in
// a directory created 0755, so only root can connect. grpc-js does not expose the peer's
// credentials (SO_PEERCRED) of a Unix-socket connection; the file mode is the access
// control, and each call is logged with its method and peer string.
//
// Robustness: requests are capped at 1 MiB (gRPC answers RESOURCE_EXHAUSTED above it);
// every field is validated before anything acts; every failure answers with a status code,
// a one-line message and a reason (errors.ts); mutating calls are idempotent (request ids,
// idempotency.ts, and the natural idempotency of the managers); long calls return
// operations (operations.ts). Unknown fields are ignored, as protobuf's compatibility
// rules intend, so orchestrators built against a newer API keep working.
import { chmod, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { AdoptOptions, BrickManager, BrickStatus } from '../brick/manager.js';
import { BRICK_MANIFEST_VERSION } from '../brick/manifest.js';
import { BrickdError, isSystemError } from '../errors.js';
import type { EventBus } from '../events.js';
import type { Logger } from '../log.js';
import { REPLICA_VERSION } from '../store/manifest.js';
import type { ScrubProgress } from '../store/scrub.js';
import type { LocalVolume, VolumeManager } from '../volume/manager.js';
import type { PeerConfig, VolumeRole } from '../volume/config.js';
import { ControlService, pb, type ControlMethod } from '../wire/control.js';
import { toServiceError } from './errors.js';
import { RequestLog } from './idempotency.js';
import { Operations, type OperationRecord } from './operations.js';

export interface ControlServerDeps {
  nodeId: string;
  version: string;
  zone: string;
  labels: Record<string, string>;
  capabilities: string[];
  bricks: BrickManager;
  volumes: VolumeManager;
  events: EventBus;
  log: Logger;
}

const MAX_MESSAGE_BYTES = 1024 * 1024;
const MAX_WATCHERS = 256;

function requireString(value: string | null | undefined, field: string): string {
  if (!value) throw new BrickdError('INVALID_ARGUMENT', `${field} is required`);
  if (value.length > 4096 || value.includes('\0')) throw new BrickdError('INVALID_ARGUMENT', `${field} is not a valid value`);
  return value;
}

function role(value: string | null | undefined): VolumeRole | undefined {
  if (!value) return undefined;
  if (value !== 'primary' && value !== 'replica') throw new BrickdError('INVALID_ARGUMENT', `role must be "primary" or "replica", got ${JSON.stringify(value)}`);
  return value;
}

function peers(list: pb.IPeer[] | null | undefined): PeerConfig[] {
  return (list ?? []).map((p, i) => ({ nodeId: requireString(p.nodeId, `peers[${i}].node_id`), address: requireString(p.address, `peers[${i}].address`) }));
}

function brickMessage(b: BrickStatus, volumes: string[]): pb.IBrick {
  return {
    brickId: b.brickId,
    state: b.state,
    reason: b.reason,
    device: b.devicePath ?? '',
    mountPath: b.mountPath,
    fsType: b.fsType ?? '',
    label: b.label ?? '',
    sizeBytes: b.sizeBytes ?? 0,
    usedBytes: b.usedBytes ?? 0,
    tags: b.manifest?.tags ?? {},
    volumes,
  };
}

function volumeMessage(v: LocalVolume): pb.IVolume {
  return {
    volumeId: v.volumeId,
    brickId: v.brickId,
    sizeLimitBytes: v.store.manifest.sizeLimitBytes,
    generation: v.store.manifest.generation,
    role: v.config.role,
    peers: v.config.peers,
    writeQuorum: v.config.writeQuorum,
    blockSize: v.store.manifest.blockSize,
  };
}

function scrubMessage(p: Readonly<ScrubProgress>): pb.IScrubProgress {
  return {
    state: p.state,
    filesScanned: p.filesScanned,
    bytesScanned: p.bytesScanned,
    bytesTotal: p.bytesTotal,
    findings: p.findings.slice(0, 100).map((f) => ({ fid: f.fid, block: f.block, repaired: f.repaired })),
    startedAt: p.startedAt ?? '',
    finishedAt: p.finishedAt ?? '',
  };
}

export class ControlServer {
  private readonly server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_concurrent_streams': 1000,
  });
  private readonly operations = new Operations();
  private readonly requests = new RequestLog();
  /** The running scrub operation of each volume. */
  private readonly scrubOps = new Map<string, OperationRecord>();
  private watchers = 0;
  private socketPath: string | undefined;

  constructor(private readonly deps: ControlServerDeps) {
    this.server.addService(tolerantDefinition(), this.handlers() as unknown as grpc.UntypedServiceImplementation);
  }

  /** Serve on a Unix socket (mode 0600). A stale socket from a dead agent is replaced; a live one is refused. */
  async listen(socketPath: string): Promise<void> {
    await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
    if (await socketAnswers(socketPath)) {
      throw new BrickdError('CONTROL_SOCKET_IN_USE', `another agent serves ${socketPath}`, { socketPath });
    }
    await unlink(socketPath).catch((err) => {
      if (!isSystemError(err, 'ENOENT')) throw err;
    });
    const oldMask = process.umask(0o077);
    try {
      await new Promise<void>((resolve, reject) =>
        this.server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
      );
    } finally {
      process.umask(oldMask);
    }
    await chmod(socketPath, 0o600);
    this.socketPath = socketPath;
    this.deps.log.info({ socket: socketPath }, 'control socket serving');
  }

  /** Stop taking calls, let calls in flight finish for up to `graceMs`, remove the socket. */
  async close(graceMs = 5000): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (this.socketPath) await unlink(this.socketPath).catch(() => {});
  }

  private unary<Req, Res>(method: ControlMethod, fn: (request: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const started = Date.now();
      const request = call.request as Req | BadRequest;
      const result = request instanceof BadRequest ? Promise.reject(request.error) : fn(request);
      result.then(
        (response) => {
          this.deps.log.debug({ method, peer: call.getPeer(), ms: Date.now() - started }, 'control call');
          callback(null, response);
        },
        (err: unknown) => {
          const serviceError = toServiceError(err);
          const reason = serviceError.metadata?.get('brickd-reason')[0];
          this.deps.log.info({ method, peer: call.getPeer(), reason, msg2: serviceError.details }, 'control call refused');
          callback(serviceError as grpc.ServiceError);
        },
      );
    };
  }

  private operationMessage(record: OperationRecord): pb.IOperation {
    const message: pb.IOperation = {
      operationId: record.operationId,
      kind: record.kind,
      target: record.target,
      state: record.state,
      progress: record.progress,
      message: record.message,
      errorReason: record.errorReason ?? '',
      errorMessage: record.errorMessage ?? '',
      startedAt: record.startedAt,
      finishedAt: record.finishedAt ?? '',
    };
    if (record.kind === 'adopt-device' && record.result) {
      const brick = record.result as BrickStatus;
      message.brick = brickMessage(brick, this.deps.volumes.onBrick(brick.brickId));
    }
    if (record.kind === 'scrub') {
      const volume = this.deps.volumes.list().find((v) => v.volumeId === record.target);
      if (volume) message.scrub = scrubMessage(volume.scrubber.progress);
    }
    return message;
  }

  private startScrubOperation(volumeId: string, rate: number | undefined): Promise<OperationRecord> {
    return (async () => {
      const running = this.scrubOps.get(volumeId);
      if (running?.state === 'running') {
        await this.deps.volumes.startScrub(volumeId, rate); // resumes it if it was paused
        return running;
      }
      const scrubber = await this.deps.volumes.startScrub(volumeId, rate);
      const record = this.operations.start('scrub', volumeId, async (update) => {
        const timer = setInterval(() => {
          const p = scrubber.progress;
          update(p.bytesTotal > 0 ? p.bytesScanned / p.bytesTotal : 0, p.state);
        }, 250);
        try {
          // Paused is not the end of the operation: it ends when a pass is done.
          for (;;) {
            const p = await scrubber.whenIdle();
            if (p.state === 'done') return p;
            await new Promise((r) => setTimeout(r, 250));
          }
        } finally {
          clearInterval(timer);
        }
      });
      this.scrubOps.set(volumeId, record);
      return record;
    })();
  }

  private handlers(): Record<ControlMethod, unknown> {
    const { bricks, volumes, events } = this.deps;
    return {
      getNodeInfo: this.unary<pb.GetNodeInfoRequest, pb.INodeInfo>('getNodeInfo', async () => ({
        nodeId: this.deps.nodeId,
        version: this.deps.version,
        zone: this.deps.zone,
        labels: this.deps.labels,
        capabilities: this.deps.capabilities,
        brickFormatVersion: BRICK_MANIFEST_VERSION,
        replicaFormatVersion: REPLICA_VERSION,
      })),

      listDevices: this.unary<pb.ListDevicesRequest, pb.IListDevicesResponse>('listDevices', async () => ({
        devices: (await bricks.discover()).map((d) => ({
          path: d.path,
          name: d.name,
          aliases: d.aliases,
          sizeBytes: d.sizeBytes,
          eligible: d.eligible,
          reasons: d.reasons,
          allowedBy: d.allowedBy ?? '',
          signatures: (d.probe?.signatures ?? []).map((s) => ({ type: s.type, usage: s.usage, offset: s.offset, label: s.label ?? '', uuid: s.uuid ?? '' })),
          rotational: d.probe?.rotational ?? false,
          discard: d.probe?.discard ?? false,
          brickId: d.brick?.brickId ?? '',
        })),
      })),

      adoptDevice: this.unary<pb.AdoptDeviceRequest, pb.IOperation>('adoptDevice', (req) =>
        this.requests.run('adoptDevice', req.requestId, async () => {
          const device = requireString(req.device, 'device');
          const fsType = req.fsType || undefined;
          if (fsType !== undefined && fsType !== 'xfs' && fsType !== 'ext4') throw new BrickdError('INVALID_ARGUMENT', `fs_type must be "xfs" or "ext4", got ${JSON.stringify(fsType)}`);
          const options: AdoptOptions = { force: req.force, ...(fsType ? { fsType } : {}), tags: { ...req.tags } };
          // Refusals (signature, in use, not allowed, ...) are this call's error, not a failed operation.
          await bricks.checkAdoption(device, options);
          const record = this.operations.start('adopt-device', device, async (update) => {
            update(0.1, 'formatting');
            const brick = await bricks.adopt(device, options);
            events.emit({ kind: 'brick-mounted', device, brickId: brick.brickId, message: `brick ${brick.brickId} mounted at ${brick.mountPath}` });
            return brick;
          });
          return this.operationMessage(record);
        }),
      ),

      releaseDevice: this.unary<pb.ReleaseDeviceRequest, pb.IReleaseDeviceResponse>('releaseDevice', (req) =>
        this.requests.run('releaseDevice', req.requestId, async () => {
          const name = requireString(req.brick, 'brick');
          const brick = bricks.list().find((b) => b.brickId === name || b.devicePath === name);
          if (!brick) throw new BrickdError('BRICK_NOT_FOUND', `no brick ${JSON.stringify(name)} on this node`);
          const held = volumes.onBrick(brick.brickId);
          if (held.length > 0) throw new BrickdError('BRICK_IN_USE', `brick ${brick.brickId} holds replicas of ${held.join(', ')}`);
          await bricks.release(brick.brickId);
          events.emit({ kind: 'brick-released', brickId: brick.brickId, device: brick.devicePath ?? '', message: 'brick released' });
          return { brickId: brick.brickId };
        }),
      ),

      listBricks: this.unary<pb.ListBricksRequest, pb.IListBricksResponse>('listBricks', async () => {
        await bricks.refreshUsage();
        return { bricks: bricks.list().map((b) => brickMessage(b, volumes.onBrick(b.brickId))) };
      }),

      createVolume: this.unary<pb.CreateVolumeRequest, pb.IVolume>('createVolume', (req) =>
        this.requests.run('createVolume', req.requestId, async () => {
          const volume = await volumes.create({
            volumeId: requireString(req.volumeId, 'volume_id'),
            sizeLimitBytes: req.sizeLimitBytes,
            ...(req.brickId ? { brickId: req.brickId } : {}),
            generation: req.generation,
            ...(role(req.role) ? { role: role(req.role)! } : {}),
            peers: peers(req.peers),
            writeQuorum: req.writeQuorum,
          });
          return volumeMessage(volume);
        }),
      ),

      updateVolume: this.unary<pb.UpdateVolumeRequest, pb.IVolume>('updateVolume', (req) =>
        this.requests.run('updateVolume', req.requestId, async () => {
          const r = role(req.role);
          const volume = await volumes.update(requireString(req.volumeId, 'volume_id'), {
            generation: req.generation,
            ...(r ? { role: r } : {}),
            ...(req.setPeers ? { peers: peers(req.peers) } : {}),
            ...(req.writeQuorum ? { writeQuorum: req.writeQuorum } : {}),
          });
          return volumeMessage(volume);
        }),
      ),

      deleteVolume: this.unary<pb.DeleteVolumeRequest, pb.IDeleteVolumeResponse>('deleteVolume', (req) =>
        this.requests.run('deleteVolume', req.requestId, async () => {
          const volumeId = requireString(req.volumeId, 'volume_id');
          return { volumeId, deleted: await volumes.delete(volumeId) };
        }),
      ),

      listVolumes: this.unary<pb.ListVolumesRequest, pb.IListVolumesResponse>('listVolumes', async () => ({
        volumes: volumes.list().map(volumeMessage),
      })),

      getVolumeStatus: this.unary<pb.GetVolumeStatusRequest, pb.IVolumeStatus>('getVolumeStatus', async (req) => {
        const volume = volumes.get(requireString(req.volumeId, 'volume_id'));
        const { store } = volume;
        return {
          volume: volumeMessage(volume),
          health: store.stats.checksumErrors > store.stats.repaired ? 'degraded' : 'healthy',
          appliedSeq: Number(store.appliedSeq),
          durableSeq: Number(store.durableSeq),
          usedBytes: store.usedBytes,
          checksumErrors: store.stats.checksumErrors,
          repairedBlocks: store.stats.repaired,
          peers: [],
          mountPath: '',
          scrub: scrubMessage(volume.scrubber.progress),
        };
      }),

      mountVolume: this.unary<pb.MountVolumeRequest, pb.IMountVolumeResponse>('mountVolume', async (req) => {
        volumes.get(requireString(req.volumeId, 'volume_id'));
        throw new BrickdError('NOT_IMPLEMENTED', 'MountVolume: the FUSE frontend is not part of this agent yet');
      }),

      unmountVolume: this.unary<pb.UnmountVolumeRequest, pb.IUnmountVolumeResponse>('unmountVolume', async (req) => {
        volumes.get(requireString(req.volumeId, 'volume_id'));
        throw new BrickdError('NOT_IMPLEMENTED', 'UnmountVolume: the FUSE frontend is not part of this agent yet');
      }),

      startScrub: this.unary<pb.StartScrubRequest, pb.IOperation>('startScrub', (req) =>
        this.requests.run('startScrub', req.requestId, async () => {
          const volumeId = requireString(req.volumeId, 'volume_id');
          volumes.get(volumeId);
          const record = await this.startScrubOperation(volumeId, req.rateBytesPerSec || undefined);
          return this.operationMessage(record);
        }),
      ),

      stopScrub: this.unary<pb.StopScrubRequest, pb.IOperation>('stopScrub', (req) =>
        this.requests.run('stopScrub', req.requestId, async () => {
          const volumeId = requireString(req.volumeId, 'volume_id');
          const volume = volumes.get(volumeId);
          const record = this.scrubOps.get(volumeId);
          if (!record) throw new BrickdError('OPERATION_NOT_FOUND', `no scrub of ${volumeId} was started by this agent`);
          await volume.scrubber.pause();
          return this.operationMessage(record);
        }),
      ),

      getOperation: this.unary<pb.GetOperationRequest, pb.IOperation>('getOperation', async (req) =>
        this.operationMessage(this.operations.get(requireString(req.operationId, 'operation_id'))),
      ),

      watchOperation: (call: grpc.ServerWritableStream<pb.GetOperationRequest, pb.IOperation>) => {
        let record: OperationRecord;
        try {
          if ((call.request as unknown) instanceof BadRequest) throw (call.request as unknown as BadRequest).error;
          record = this.operations.get(requireString(call.request.operationId, 'operation_id'));
        } catch (err) {
          call.destroy(toServiceError(err) as grpc.ServiceError);
          return;
        }
        call.write(this.operationMessage(record));
        if (record.state !== 'running') {
          call.end();
          return;
        }
        const stop = this.operations.watch(record.operationId, (r) => {
          call.write(this.operationMessage(r));
          if (r.state !== 'running') {
            stop();
            call.end();
          }
        });
        call.on('cancelled', stop);
      },

      watchEvents: (call: grpc.ServerWritableStream<pb.WatchEventsRequest, pb.IEvent>) => {
        if (this.watchers >= MAX_WATCHERS) {
          call.destroy(toServiceError(new BrickdError('INVALID_ARGUMENT', `too many event watchers (${MAX_WATCHERS})`)) as grpc.ServiceError);
          return;
        }
        this.watchers++;
        const stop = events.subscribe((e) => {
          call.write({ time: e.time, kind: e.kind, device: e.device ?? '', brickId: e.brickId ?? '', volumeId: e.volumeId ?? '', message: e.message });
        });
        const done = () => {
          stop();
          this.watchers--;
        };
        call.once('cancelled', done);
        call.once('close', () => call.cancelled || done());
      },
    };
  }
}

/** A request body that did not decode: answered INVALID_ARGUMENT by the handler wrapper. */
class BadRequest {
  constructor(readonly error: BrickdError) {}
}

/**
 * The service definition the server uses: grpc-js answers a request whose decoding throws
 * with INTERNAL, which would blame the agent for the client's bytes, so decoding failures
 * become a BadRequest value that the handler refuses with INVALID_ARGUMENT.
 */
function tolerantDefinition(): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(ControlService) as Array<[string, grpc.MethodDefinition<unknown, unknown>]>) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return new BadRequest(new BrickdError('INVALID_ARGUMENT', `undecodable ${name} request: ${(err as Error).message}`));
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

/** Whether something accepts connections on a Unix socket (a live agent). */
function socketAnswers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
