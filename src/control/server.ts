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
import { chmod, chown, mkdir, realpath, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { AdoptOptions, BrickManager, BrickStatus } from '../brick/manager.js';
import { BRICK_MANIFEST_VERSION } from '../brick/manifest.js';
import { BrickdError, isSystemError } from '../errors.js';
import type { EventBus } from '../events.js';
import { Mutex } from '../lock.js';
import type { Logger } from '../log.js';
import { REPLICA_VERSION } from '../store/manifest.js';
import type { ScrubProgress } from '../store/scrub.js';
import type { VolumeMounts } from '../fuse/table.js';
import { native } from '../native.js';
import { checkVolumeId, type LocalVolume, type VolumeManager } from '../volume/manager.js';
import type { PeerConfig, ReplicationMode, VolumeRole } from '../volume/config.js';
import { ControlService, pb, UndecodableRequest, type ControlMethod } from '../wire/control.js';
import { toServiceError } from './errors.js';
import { RequestLog } from './idempotency.js';
import { Operations, type OperationRecord } from './operations.js';

export interface ControlServerDeps {
  nodeId: string;
  version: string;
  zone: string;
  labels: Record<string, string>;
  capabilities: string[];
  /** host:port peers dial for replication; empty when replication is off. */
  replicationAddress: string;
  bricks: BrickManager;
  volumes: VolumeManager;
  mounts: VolumeMounts;
  events: EventBus;
  log: Logger;
}

const MAX_MESSAGE_BYTES = 1024 * 1024;
/**
 * Connections that a peer stops using are closed by the agent, not kept for good.
 *
 * Node's HTTP/2 server does not close a connection on end-of-file while it waits for the
 * rest of a frame, nor one whose peer just goes silent: a client that hangs or dies in the
 * middle of a frame would hold a descriptor in the agent forever. So the agent pings every
 * connection that has been quiet for CONTROL_KEEPALIVE_MS and drops it if no answer comes
 * within CONTROL_KEEPALIVE_TIMEOUT_MS (a gRPC client answers pings by itself), and closes
 * (GOAWAY) a connection with no call in progress for CONTROL_IDLE_TIMEOUT_MS; a client
 * reconnects on its next call. Watch streams are calls in progress: watchers are not cut.
 */
export const CONTROL_KEEPALIVE_MS = 10_000;
export const CONTROL_KEEPALIVE_TIMEOUT_MS = 5_000;
export const CONTROL_IDLE_TIMEOUT_MS = 15_000;
const MAX_WATCHERS = 256;

function requireString(value: string | null | undefined, field: string): string {
  if (!value) throw new BrickdError('INVALID_ARGUMENT', `${field} is required`);
  if (value.length > 4096 || value.includes('\0')) throw new BrickdError('INVALID_ARGUMENT', `${field} is not a valid value`);
  return value;
}

/** A volume id, checked like CreateVolume checks it (no "..", "/", NUL). */
function volumeId(value: string | null | undefined): string {
  const id = requireString(value, 'volume_id');
  checkVolumeId(id);
  return id;
}

function replicationMode(value: string | null | undefined): ReplicationMode | undefined {
  if (!value) return undefined;
  if (value !== 'sync' && value !== 'async') throw new BrickdError('INVALID_ARGUMENT', `replication_mode must be "sync" or "async", got ${JSON.stringify(value)}`);
  return value;
}

function role(value: string | null | undefined): VolumeRole | undefined {
  if (!value) return undefined;
  if (value !== 'primary' && value !== 'replica') throw new BrickdError('INVALID_ARGUMENT', `role must be "primary" or "replica", got ${JSON.stringify(value)}`);
  return value;
}

const MAX_PEERS = 16;
// host:port, the host a name, an IPv4 address or a bracketed IPv6 address.
const PEER_ADDRESS_RE = /^(?:[A-Za-z0-9._-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]):(\d{1,5})$/;

function peers(list: pb.IPeer[] | null | undefined): PeerConfig[] {
  if ((list ?? []).length > MAX_PEERS) throw new BrickdError('INVALID_ARGUMENT', `at most ${MAX_PEERS} peers, got ${list!.length}`);
  return (list ?? []).map((p, i) => {
    const nodeId = requireString(p.nodeId, `peers[${i}].node_id`);
    const address = requireString(p.address, `peers[${i}].address`);
    const port = PEER_ADDRESS_RE.exec(address)?.[1];
    if (nodeId.length > 256) throw new BrickdError('INVALID_ARGUMENT', `peers[${i}].node_id is longer than 256 characters`);
    if (!port || Number(port) < 1 || Number(port) > 65535) {
      throw new BrickdError('INVALID_ARGUMENT', `peers[${i}].address must be host:port, got ${JSON.stringify(address.slice(0, 300))}`);
    }
    return { nodeId, address };
  });
}

const MAX_TAGS = 64;
const TAG_KEY_RE = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$/;

/** Brick tags go into the brick manifest on disk: bounded in number and size. */
function tags(map: Record<string, string> | null | undefined): Record<string, string> {
  const entries = Object.entries(map ?? {});
  if (entries.length > MAX_TAGS) throw new BrickdError('INVALID_ARGUMENT', `at most ${MAX_TAGS} tags, got ${entries.length}`);
  for (const [key, value] of entries) {
    if (!TAG_KEY_RE.test(key)) throw new BrickdError('INVALID_ARGUMENT', `tag key ${JSON.stringify(key.slice(0, 100))} must be 1-63 characters of A-Z a-z 0-9 . _ / -`);
    if (value.length > 256 || value.includes('\0')) throw new BrickdError('INVALID_ARGUMENT', `tag ${key}: the value must be at most 256 characters without NUL`);
  }
  return Object.fromEntries(entries);
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

/** A volume's settings, with the resync throttle in force (the volume's own or the agent's). */
function volumeMessage(v: LocalVolume, volumes: VolumeManager): pb.IVolume {
  return {
    volumeId: v.volumeId,
    brickId: v.brickId,
    sizeLimitBytes: v.store.manifest.sizeLimitBytes,
    generation: v.store.manifest.generation,
    role: v.config.role,
    peers: v.config.peers,
    writeQuorum: v.config.writeQuorum,
    blockSize: v.store.manifest.blockSize,
    replicationMode: v.config.replicationMode ?? 'sync',
    resyncRateBytesPerSec: volumes.resyncRateOf(v),
    volumeUid: v.store.volumeUid ?? '',
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
    'grpc.max_connection_idle_ms': CONTROL_IDLE_TIMEOUT_MS,
    'grpc.keepalive_time_ms': CONTROL_KEEPALIVE_MS,
    'grpc.keepalive_timeout_ms': CONTROL_KEEPALIVE_TIMEOUT_MS,
  });
  private readonly operations = new Operations();
  private readonly requests = new RequestLog();
  /** The latest scrub operation of each volume id, with the replica it scrubs. */
  private readonly scrubOps = new Map<string, { record: OperationRecord; volume: LocalVolume }>();
  private readonly scrubbedVolume = new WeakMap<OperationRecord, LocalVolume>();
  /** The latest adoption of each device (by real path), and the lock that orders check-then-start. */
  private readonly adoptions = new Map<string, OperationRecord>();
  private readonly adoptionLock = new Mutex();
  private watchers = 0;
  private socketPath: string | undefined;
  private listener: net.Server | undefined;

  constructor(private readonly deps: ControlServerDeps) {
    this.server.addService(ControlService as unknown as grpc.ServiceDefinition, this.handlers() as unknown as grpc.UntypedServiceImplementation);
  }

  /**
   * Serve on a Unix socket: mode 0600 (root only), or 0660 owned by `gid` when given. A stale
   * socket from a dead agent is replaced; a live one is refused.
   */
  async listen(socketPath: string, gid?: number): Promise<void> {
    await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
    if (await socketAnswers(socketPath)) {
      throw new BrickdError('CONTROL_SOCKET_IN_USE', `another agent serves ${socketPath}`, { socketPath });
    }
    await unlink(socketPath).catch((err) => {
      if (!isSystemError(err, 'ENOENT')) throw err;
    });
    // The agent accepts the connections itself, to learn who is calling (SO_PEERCRED),
    // and hands each one to the gRPC server (a connection injector: same HTTP/2 settings,
    // keepalives and shutdown as a bound port).
    const injector = this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const listener = net.createServer((socket) => this.accept(socket, injector));
    const oldMask = process.umask(0o077);
    try {
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen(socketPath, () => {
          listener.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    this.listener = listener;
    if (gid === undefined) {
      await chmod(socketPath, 0o600);
    } else {
      await chown(socketPath, 0, gid);
      await chmod(socketPath, 0o660);
    }
    this.socketPath = socketPath;
    this.deps.log.info({ socket: socketPath }, 'control socket serving');
  }

  /**
   * Also serve on TCP at `host:port`, mutual TLS only: the agent presents `cert`/`key`, and a
   * client must present a certificate signed by `ca` (grpc-js refuses the handshake
   * otherwise). Each call's log line carries the client's address and certificate subject.
   */
  async listenTls(host: string, port: number, tls: { cert: Buffer; key: Buffer; ca: Buffer }): Promise<number> {
    const credentials = grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
    const target = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    const bound = await new Promise<number>((resolve, reject) => this.server.bindAsync(target, credentials, (err, p) => (err ? reject(err) : resolve(p))));
    this.deps.log.info({ address: target }, 'control API serving on TCP (mutual TLS)');
    return bound;
  }

  /**
   * One accepted connection: its peer's credentials become its peer string, which every
   * call's log line carries (call.getPeer() reads the socket's remoteAddress, which a Unix
   * socket does not have). A peer whose credentials cannot be read is still served (the
   * socket's mode already decided who may connect) and logged as unknown.
   */
  private accept(socket: net.Socket, injector: grpc.ConnectionInjector): void {
    let peer = 'unix:unknown-peer';
    try {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (fd !== undefined && fd >= 0) {
        const c = native.peerCredentials(fd);
        peer = `unix:pid=${c.pid},uid=${c.uid},gid=${c.gid}`;
      }
    } catch (err) {
      this.deps.log.warn({ err }, 'control socket: cannot read the peer credentials');
    }
    Object.defineProperty(socket, 'remoteAddress', { value: peer });
    this.deps.log.debug({ peer }, 'control connection');
    injector.injectConnection(socket);
  }

  /** Stop taking calls, let calls in flight finish for up to `graceMs`, remove the socket. */
  async close(graceMs = 5000): Promise<void> {
    // No new connections; the listener's callback comes once the gRPC shutdown below has
    // closed the connections it was handed.
    const listenerClosed = new Promise<void>((resolve) => (this.listener ? this.listener.close(() => resolve()) : resolve()));
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
    await Promise.race([listenerClosed, new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    if (this.socketPath) await unlink(this.socketPath).catch(() => {});
  }

  private unary<Req, Res>(method: ControlMethod, fn: (request: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const started = Date.now();
      const request: unknown = call.request;
      const result =
        request instanceof UndecodableRequest
          ? Promise.reject(new BrickdError('INVALID_ARGUMENT', `the request is not a valid ${method} request message: ${request.reason}`))
          : Promise.resolve().then(() => fn(call.request));
      result.then(
        (response) => {
          // The audit trail: who changed what is logged at info, reads at debug.
          const level = /^(get|list|watch)/.test(method) ? 'debug' : 'info';
          this.deps.log[level]({ method, peer: peerOf(call), ms: Date.now() - started }, 'control call');
          callback(null, response);
        },
        (err: unknown) => {
          const serviceError = toServiceError(err);
          const reason = serviceError.metadata?.get('brickd-reason')[0];
          this.deps.log.info({ method, peer: peerOf(call), reason, msg2: serviceError.details }, 'control call refused');
          callback(serviceError as grpc.ServiceError);
        },
      );
    };
  }

  /** Answer a server-streaming call with an error status (and log it, as unary refusals are). */
  private refuseStream(call: grpc.ServerWritableStream<unknown, unknown>, method: ControlMethod, err: unknown): void {
    const serviceError = toServiceError(err);
    this.deps.log.info({ method, peer: call.getPeer(), reason: serviceError.metadata?.get('brickd-reason')[0], msg2: serviceError.details }, 'control call refused');
    // emit('error') is how grpc-js sends a stream's status; destroy(err) would end the
    // stream without one and leave the client waiting.
    call.emit('error', serviceError);
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
      const volume = this.scrubbedVolume.get(record);
      if (volume) message.scrub = scrubMessage(volume.scrubber.progress);
    }
    return message;
  }

  /**
   * Start a scrub operation of a volume's replica, or resume the paused pass of its running one.
   *
   * The operation belongs to one replica (LocalVolume): if the volume is deleted meanwhile, it
   * fails rather than waiting for a pass that will never end, and a replica created again
   * under the same id gets an operation of its own. It reads `volume.scrubber` afresh on each
   * turn because StartScrub with a new rate replaces the scrubber of a paused pass.
   */
  private async startScrubOperation(volumeId: string, rate: number | undefined): Promise<OperationRecord> {
    const { volumes } = this.deps;
    const volume = volumes.get(volumeId);
    const running = this.scrubOps.get(volumeId);
    if (running?.record.state === 'running' && running.volume === volume) {
      await volumes.startScrub(volumeId, rate); // resumes it if it was paused
      return running.record;
    }
    await volumes.startScrub(volumeId, rate);
    const record = this.operations.start('scrub', volumeId, async (update) => {
      const timer = setInterval(() => {
        const p = volume.scrubber.progress;
        update(p.bytesTotal > 0 ? p.bytesScanned / p.bytesTotal : 0, p.state);
      }, 250);
      try {
        // Paused is not the end of the operation: it ends when a pass is done.
        for (;;) {
          if (!volumes.list().includes(volume)) {
            throw new BrickdError('VOLUME_NOT_FOUND', `the replica of ${volumeId} was deleted during its scrub`, { volumeId });
          }
          const p = await volume.scrubber.whenIdle();
          if (p.state === 'done') return p;
          await new Promise((r) => setTimeout(r, 250));
        }
      } finally {
        clearInterval(timer);
      }
    });
    this.scrubOps.set(volumeId, { record, volume });
    this.scrubbedVolume.set(record, volume);
    return record;
  }

  /**
   * Check an adoption and start its operation. A call for a device whose adoption is still
   * running returns that operation: a retry that arrives while mkfs runs would otherwise see
   * the device busy or half-formatted and be refused. The lock orders check-then-start, so
   * a second call cannot probe the device between the first one's check and its mkfs.
   */
  private async adopt(req: pb.AdoptDeviceRequest): Promise<OperationRecord> {
    const { bricks } = this.deps;
    const device = requireString(req.device, 'device');
    const fsType = req.fsType || undefined;
    if (fsType !== undefined && fsType !== 'xfs' && fsType !== 'ext4') throw new BrickdError('INVALID_ARGUMENT', `fs_type must be "xfs" or "ext4", got ${JSON.stringify(fsType)}`);
    const options: AdoptOptions = { force: req.force, ...(fsType ? { fsType } : {}), tags: tags(req.tags) };
    const key = await realpath(device).catch(() => device);
    return this.adoptionLock.run(async () => {
      const running = this.adoptions.get(key);
      if (running?.state === 'running') return running;
      // Refusals (signature, in use, not allowed, ...) are this call's error, not a failed operation.
      await bricks.checkAdoption(device, options);
      const record = this.operations.start('adopt-device', device, async (update) => {
        update(0.1, 'formatting');
        // BrickManager publishes brick-mounted itself when the brick comes up (and only then:
        // adopting our own brick again mounts nothing and says nothing).
        // A snapshot: the operation reports the brick as adopted, not as it is later on
        // (BrickManager keeps updating its own object, e.g. after a release).
        return { ...(await bricks.adopt(device, options)) };
      });
      this.adoptions.set(key, record);
      return record;
    });
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
        replicationAddress: this.deps.replicationAddress,
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

      // Operation-returning calls remember the operation, not a snapshot of it: a retry
      // answers with the operation as it is now (finished, if it has).
      adoptDevice: this.unary<pb.AdoptDeviceRequest, pb.IOperation>('adoptDevice', async (req) =>
        this.operationMessage(await this.requests.run('adoptDevice', req.requestId, () => this.adopt(req))),
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
            ...(replicationMode(req.replicationMode) ? { replicationMode: replicationMode(req.replicationMode)! } : {}),
            ...(req.resyncRateBytesPerSec != null ? { resyncRateBytesPerSec: req.resyncRateBytesPerSec } : {}),
            ...(req.volumeUid ? { volumeUid: req.volumeUid } : {}),
          });
          return volumeMessage(volume, volumes);
        }),
      ),

      updateVolume: this.unary<pb.UpdateVolumeRequest, pb.IVolume>('updateVolume', (req) =>
        this.requests.run('updateVolume', req.requestId, async () => {
          const r = role(req.role);
          const volume = await volumes.update(volumeId(req.volumeId), {
            generation: req.generation,
            ...(r ? { role: r } : {}),
            ...(req.setPeers ? { peers: peers(req.peers) } : {}),
            ...(req.writeQuorum ? { writeQuorum: req.writeQuorum } : {}),
            ...(replicationMode(req.replicationMode) ? { replicationMode: replicationMode(req.replicationMode)! } : {}),
            ...(req.resyncRateBytesPerSec != null ? { resyncRateBytesPerSec: req.resyncRateBytesPerSec } : {}),
          });
          return volumeMessage(volume, volumes);
        }),
      ),

      deleteVolume: this.unary<pb.DeleteVolumeRequest, pb.IDeleteVolumeResponse>('deleteVolume', (req) =>
        this.requests.run('deleteVolume', req.requestId, async () => {
          const id = volumeId(req.volumeId);
          return { volumeId: id, deleted: await volumes.delete(id) };
        }),
      ),

      listVolumes: this.unary<pb.ListVolumesRequest, pb.IListVolumesResponse>('listVolumes', async () => ({
        volumes: volumes.list().map((v) => volumeMessage(v, volumes)),
      })),

      getVolumeStatus: this.unary<pb.GetVolumeStatusRequest, pb.IVolumeStatus>('getVolumeStatus', async (req) => {
        const volume = volumes.get(volumeId(req.volumeId));
        const { store } = volume;
        const peers = volumes.peerStates(volume.volumeId);
        // Degraded: a bad block not repaired, or a peer that is not being streamed to.
        const degraded = store.stats.checksumErrors > store.stats.repaired || peers.some((p) => p.state !== 'streaming');
        const durableGeneration = store.durableGeneration;
        return {
          volume: volumeMessage(volume, volumes),
          health: degraded ? 'degraded' : 'healthy',
          appliedSeq: Number(store.appliedSeq),
          durableSeq: Number(store.durableSeq),
          ...(durableGeneration !== undefined ? { durableGeneration } : {}),
          usedBytes: store.usedBytes,
          checksumErrors: store.stats.checksumErrors,
          repairedBlocks: store.stats.repaired,
          peers: peers.map((p) => ({
            nodeId: p.nodeId,
            state: p.state,
            ackedSeq: Number(p.ackedSeq),
            lagSeq: Number(p.lagSeq),
            reason: p.reason,
            ...(p.resync
              ? {
                  resync: {
                    phase: p.resync.phase,
                    s0: Number(p.resync.s0),
                    entries: p.resync.entries,
                    entriesSent: p.resync.entriesSent,
                    bytesCompared: p.resync.bytesCompared,
                    blocksWanted: p.resync.blocksWanted,
                    dataBytesSent: p.resync.dataBytesSent,
                    bytesSent: p.resync.bytesSent,
                    startedAtMs: p.resync.startedAt,
                    finishedAtMs: p.resync.finishedAt ?? 0,
                    incremental: p.resync.incremental,
                    bytesToCompare: p.resync.bytesToCompare,
                  },
                }
              : {}),
          })),
          mountPath: this.deps.mounts.get(volume.volumeId)?.mountPath ?? '',
          scrub: scrubMessage(volume.scrubber.progress),
        };
      }),

      mountVolume: this.unary<pb.MountVolumeRequest, pb.IMountVolumeResponse>('mountVolume', (req) =>
        this.requests.run('mountVolume', req.requestId, async () => {
          const id = volumeId(req.volumeId);
          volumes.get(id);
          const record = await this.deps.mounts.mount(id, requireString(req.hostPath, 'host_path'), req.readOnly === true);
          return { mountPath: record.mountPath };
        }),
      ),

      // Naturally idempotent: unmounting a volume that is not mounted succeeds.
      unmountVolume: this.unary<pb.UnmountVolumeRequest, pb.IUnmountVolumeResponse>('unmountVolume', (req) =>
        this.requests.run('unmountVolume', req.requestId, async () => {
          const id = volumeId(req.volumeId);
          volumes.get(id);
          await this.deps.mounts.unmount(id);
          return {};
        }),
      ),

      startScrub: this.unary<pb.StartScrubRequest, pb.IOperation>('startScrub', async (req) =>
        this.operationMessage(
          await this.requests.run('startScrub', req.requestId, () => this.startScrubOperation(volumeId(req.volumeId), req.rateBytesPerSec || undefined)),
        ),
      ),

      stopScrub: this.unary<pb.StopScrubRequest, pb.IOperation>('stopScrub', async (req) =>
        this.operationMessage(
          await this.requests.run('stopScrub', req.requestId, async () => {
            const id = volumeId(req.volumeId);
            const volume = volumes.get(id);
            const scrub = this.scrubOps.get(id);
            if (!scrub || scrub.volume !== volume) throw new BrickdError('OPERATION_NOT_FOUND', `no scrub of ${id} was started by this agent`);
            await volume.scrubber.pause();
            return scrub.record;
          }),
        ),
      ),

      getOperation: this.unary<pb.GetOperationRequest, pb.IOperation>('getOperation', async (req) =>
        this.operationMessage(this.operations.get(requireString(req.operationId, 'operation_id'))),
      ),

      watchOperation: (call: grpc.ServerWritableStream<pb.GetOperationRequest, pb.IOperation>) => {
        let record: OperationRecord;
        try {
          const request: unknown = call.request;
          if (request instanceof UndecodableRequest) throw new BrickdError('INVALID_ARGUMENT', `the request is not a valid watchOperation request message: ${request.reason}`);
          record = this.operations.get(requireString(call.request.operationId, 'operation_id'));
        } catch (err) {
          this.refuseStream(call, 'watchOperation', err);
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
        if (call.request instanceof UndecodableRequest) {
          this.refuseStream(call, 'watchEvents', new BrickdError('INVALID_ARGUMENT', `the request is not a valid watchEvents request message: ${call.request.reason}`));
          return;
        }
        if (this.watchers >= MAX_WATCHERS) {
          this.refuseStream(call, 'watchEvents', new BrickdError('TOO_MANY_WATCHERS', `the agent serves at most ${MAX_WATCHERS} event watchers`));
          return;
        }
        this.watchers++;
        const stop = events.subscribe((e) => {
          call.write({ time: e.time, kind: e.kind, device: e.device ?? '', brickId: e.brickId ?? '', volumeId: e.volumeId ?? '', message: e.message });
        });
        // Once only, whichever of 'cancelled' and 'close' comes first: a second decrement
        // would let more than MAX_WATCHERS in.
        let watching = true;
        const done = () => {
          if (!watching) return;
          watching = false;
          stop();
          this.watchers--;
        };
        call.once('cancelled', done);
        call.once('close', done);
        // Send the response headers now, not with the first event: they tell the client that
        // it is subscribed, so it can act and be sure to see the events its action causes.
        call.sendMetadata(new grpc.Metadata());
      },
    };
  }
}

/**
 * Who made a call: "unix:pid=…,uid=…,gid=…" on the socket (see accept), or the TCP address
 * and the subject of the client's certificate ("10.0.0.5:51234 CN=orchestrator").
 */
function peerOf(call: { getPeer(): string; getAuthContext?(): ReturnType<grpc.ServerUnaryCall<unknown, unknown>['getAuthContext']> }): string {
  const peer = call.getPeer();
  const cert = call.getAuthContext?.()?.sslPeerCertificate;
  return cert?.subject?.CN ? `${peer} CN=${cert.subject.CN}` : peer;
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
