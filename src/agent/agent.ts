// The agent process's wiring and lifecycle: state dir, node id, embedded devices, bricks.
//
// Lifecycle (AgentState): created → starting → running → stopping → stopped; a failure
// while starting goes to `failed` with the error. Start order: the HTTP endpoint (metrics
// and health, so liveness answers during a long recovery), node id, embedded devices,
// bricks (recovered from the disks), volume replicas (opened, logs replayed), the
// replication endpoint, FUSE mounts (restored), then the control socket; stop runs it backwards. This is the only module that wires everything.
import { mkdir, readFile, stat } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { BrickManager, type BrickStatus } from '../brick/manager.js';
import { ControlServer } from '../control/server.js';
import { BrickdError } from '../errors.js';
import { EventBus } from '../events.js';
import type { Logger } from '../log.js';
import { VERSION } from '../version.js';
import { ReplicaServer } from '../replication/server.js';
import { MIN_SECRET_BYTES } from '../replication/session.js';
import { VolumeManager } from '../volume/manager.js';
import { VolumeMounts } from '../fuse/table.js';
import { controlClient, type ControlClient } from '../wire/control.js';
import { type AgentConfig, embeddedEnabled, parseListenAddress } from './config.js';
import { attachEmbeddedDevices, detachEmbeddedDevices, type EmbeddedDevice } from './embedded.js';
import { AgentHttpServer } from './http.js';
import { AgentMetrics } from './metrics.js';
import { loadOrCreateNodeId } from './nodeid.js';
import { lockStateDir } from './pidfile.js';

export type AgentState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export class Agent {
  state: AgentState = 'created';
  nodeId = '';
  bricks!: BrickManager;
  volumes!: VolumeManager;
  mounts!: VolumeMounts;
  readonly events = new EventBus();
  readonly metrics: AgentMetrics;
  private control: ControlServer | undefined;
  /** Serves this node's replicas to their primaries (replicationAddress); absent when off. */
  replicaServer: ReplicaServer | undefined;
  private http: AgentHttpServer | undefined;
  /** The readiness probe's own client of the control socket (one, reused). */
  private controlProbe: ControlClient | undefined;
  private embedded: EmbeddedDevice[] = [];
  private releaseStateDir: (() => Promise<void>) | undefined;

  constructor(
    readonly config: AgentConfig,
    private readonly log: Logger,
  ) {
    this.metrics = new AgentMetrics({
      bricks: () => this.bricks,
      volumes: () => this.volumes,
      replicaServer: () => this.replicaServer,
      mounts: () => this.mounts?.list() ?? [],
      info: () => ({ nodeId: this.nodeId, version: VERSION, zone: config.zone }),
      events: this.events,
      log,
    });
  }

  private transition(state: AgentState, fields: Record<string, unknown> = {}): void {
    this.state = state;
    this.log.info({ ...fields, state }, `agent ${state}`);
  }

  async start(): Promise<void> {
    this.transition('starting', { stateDir: this.config.stateDir });
    try {
      if (process.getuid?.() !== 0) {
        throw new BrickdError(
          'NOT_ROOT',
          'brickd formats and mounts block devices and needs root (CAP_SYS_ADMIN). Run it with sudo, or as a privileged DaemonSet pod (deploy/).',
        );
      }
      await this.startHttp();
      await mkdir(this.config.stateDir, { recursive: true, mode: 0o700 });
      // Before anything is mounted or replayed: one agent per state dir.
      this.releaseStateDir = await lockStateDir(this.config.stateDir);
      this.nodeId = await loadOrCreateNodeId(this.config.stateDir);
      // Checked before any device is attached or mounted: a bad secret, TLS file or group
      // changes nothing.
      const replication = await this.replicationOptions();
      const controlTls = this.config.controlTcpAddress === 'off' ? undefined : await this.controlTls();
      const controlSocketGid = await resolveGroup(this.config.controlSocketGroup);
      this.bricks = new BrickManager({
        stateDir: this.config.stateDir,
        nodeId: this.nodeId,
        allow: this.config.allow,
        minSizeBytes: this.config.minSizeBytes,
        fsType: this.config.fsType,
        log: this.log.child({ node: this.nodeId }),
        events: this.events,
      });
      if (embeddedEnabled(this.config)) {
        this.embedded = await attachEmbeddedDevices(this.config.stateDir, this.config.embeddedCount, this.config.embeddedSizeBytes);
        this.bricks.allowExact(this.embedded.map((d) => d.device));
        this.log.info({ devices: this.embedded }, 'attach embedded loop-file devices');
      }
      await this.bricks.recover();
      // The embedded default adopts its own devices; real devices are adopted only when an
      // orchestrator or operator asks (control socket / brickctl).
      for (const d of this.embedded) {
        const adopted = this.bricks.list().some((b) => b.devicePath === d.device && b.state === 'mounted');
        if (!adopted) await this.bricks.adopt(d.device);
      }
      this.volumes = new VolumeManager({
        bricks: this.bricks,
        events: this.events,
        log: this.log.child({ node: this.nodeId }),
        onMutationDurable: (volumeId, op, seconds) => this.metrics.observeMutation(volumeId, op, seconds),
        store: { activity: { capacity: this.config.activityLogExtents } },
        ...(replication ? { replication } : {}),
      });
      await this.volumes.recover();
      // After recovery: a primary that connects finds every replica registered.
      if (this.replicaServer) {
        const { host, port } = parseListenAddress(this.config.replicationAddress)!;
        await this.replicaServer.listen(port, host);
      }
      // FUSE mounts this agent served before a restart or crash (dead ones are detached first).
      this.mounts = new VolumeMounts({ stateDir: this.config.stateDir, volumes: this.volumes, log: this.log.child({ node: this.nodeId }) });
      await this.mounts.restore();
      await this.metrics.refreshDevices();
      this.control = new ControlServer({
        nodeId: this.nodeId,
        version: VERSION,
        zone: this.config.zone,
        labels: {},
        capabilities: ['xfs', 'ext4', 'scrub', 'checksums', 'fuse', ...(this.replicaServer ? ['replication'] : []), ...(this.embedded.length > 0 ? ['embedded-devices'] : [])],
        replicationAddress: this.replicaServer ? this.config.advertiseAddress || this.config.replicationAddress : '',
        bricks: this.bricks,
        volumes: this.volumes,
        mounts: this.mounts,
        events: this.events,
        log: this.log.child({ node: this.nodeId }),
      });
      await this.control.listen(this.config.controlSocket, controlSocketGid);
      if (controlTls) {
        const { host, port } = parseListenAddress(this.config.controlTcpAddress)!;
        await this.control.listenTls(host, port, controlTls);
      }
      this.transition('running', {
        nodeId: this.nodeId,
        controlSocket: this.config.controlSocket,
        bricks: this.bricks.list().map(summary),
        volumes: this.volumes.list().map((v) => v.volumeId),
      });
    } catch (err) {
      this.state = 'failed';
      await this.mounts?.close();
      await this.replicaServer?.close();
      await this.stopHttp();
      await this.releaseStateDir?.();
      throw err;
    }
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    this.transition('stopping');
    // New calls stop first; then the replicas close (final checkpoint); then the bricks.
    await this.control?.close();
    // FUSE mounts go first: their ops would otherwise meet closing stores.
    await this.mounts?.close();
    // Sessions end before the stores close: no apply is cut off by a closing store.
    await this.replicaServer?.close();
    await this.volumes?.close();
    if (this.config.unmountOnExit && this.bricks) {
      await this.bricks.unmountAll();
      await detachEmbeddedDevices(this.embedded);
    }
    await this.stopHttp();
    await this.releaseStateDir?.();
    this.transition('stopped');
  }

  /** The TLS material of the TCP control listener (all three files required). */
  private async controlTls(): Promise<{ cert: Buffer; key: Buffer; ca: Buffer }> {
    const read = async (key: 'controlTlsCert' | 'controlTlsKey' | 'controlTlsCa'): Promise<Buffer> => {
      const file = this.config[key];
      if (!file) throw new BrickdError('CONFIG_INVALID', `${key}: the TCP control listener (controlTcpAddress) needs it`, { key });
      try {
        return await readFile(file);
      } catch (err) {
        throw new BrickdError('CONFIG_INVALID', `${key}: cannot read ${file}: ${(err as Error).message}`, { key }, err);
      }
    };
    return { cert: await read('controlTlsCert'), key: await read('controlTlsKey'), ca: await read('controlTlsCa') };
  }

  /** The replication endpoint and identity, from replicationAddress, clusterId and the secret file. */
  private async replicationOptions() {
    const { replicationAddress, replicationSecretFile, clusterId, quorumTimeoutMs, resyncRateBytesPerSec } = this.config;
    if (replicationAddress === 'off') return undefined;
    if (!replicationSecretFile) {
      throw new BrickdError('CONFIG_INVALID', 'replicationSecretFile: replication is on (replicationAddress) and needs the cluster secret file', { key: 'replicationSecretFile' });
    }
    let secret: Buffer;
    try {
      // A trailing newline (echo > file) is not part of the secret.
      secret = (await readFile(replicationSecretFile)).subarray(0);
      while (secret.length > 0 && (secret[secret.length - 1] === 0x0a || secret[secret.length - 1] === 0x0d)) secret = secret.subarray(0, secret.length - 1);
      if ((await stat(replicationSecretFile)).mode & 0o077) this.log.warn({ file: replicationSecretFile }, 'the replication secret file is readable by group or others');
    } catch (err) {
      throw new BrickdError('CONFIG_INVALID', `replicationSecretFile: cannot read ${replicationSecretFile}: ${(err as Error).message}`, { key: 'replicationSecretFile' }, err);
    }
    if (secret.length < MIN_SECRET_BYTES) {
      throw new BrickdError('CONFIG_INVALID', `replicationSecretFile: ${replicationSecretFile} holds ${secret.length} bytes; the secret must have at least ${MIN_SECRET_BYTES}`, { key: 'replicationSecretFile' });
    }
    const identity = { clusterId, nodeId: this.nodeId, secret };
    this.replicaServer = new ReplicaServer({ ...identity, log: this.log.child({ node: this.nodeId }) });
    return { identity, server: this.replicaServer, quorumTimeoutMs, resyncRateBytesPerSec };
  }

  private async startHttp(): Promise<void> {
    if (this.config.metricsAddress === 'off') return;
    // config.ts has validated it: parse cannot fail here.
    const address = parseListenAddress(this.config.metricsAddress)!;
    const http = new AgentHttpServer({
      address,
      metrics: this.metrics,
      health: {
        state: () => this.state,
        bricks: () => this.bricks?.list(),
        probeControl: (timeoutMs) => this.probeControl(timeoutMs),
      },
      log: this.log,
    });
    await http.listen();
    this.http = http;
  }

  private async stopHttp(): Promise<void> {
    await this.http?.close();
    this.http = undefined;
    this.controlProbe?.close();
    this.controlProbe = undefined;
  }

  /** One GetNodeInfo call over the control socket, as an orchestrator would make it. */
  private probeControl(timeoutMs: number): Promise<void> {
    this.controlProbe ??= controlClient(this.config.controlSocket);
    const client = this.controlProbe;
    return new Promise((resolve, reject) => {
      client.getNodeInfo({}, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err) => (err ? reject(err) : resolve()));
    });
  }
}

/** A group name or numeric gid → gid (undefined for ''); CONFIG_INVALID if /etc/group does not know the name. */
async function resolveGroup(group: string): Promise<number | undefined> {
  if (group === '') return undefined;
  if (/^\d+$/.test(group)) return Number(group);
  const line = (await readFile('/etc/group', 'utf8').catch(() => '')).split('\n').find((l) => l.split(':')[0] === group);
  const gid = line ? Number(line.split(':')[2]) : NaN;
  if (!Number.isInteger(gid)) throw new BrickdError('CONFIG_INVALID', `controlSocketGroup: no group ${JSON.stringify(group)} in /etc/group`, { key: 'controlSocketGroup' });
  return gid;
}

function summary(b: BrickStatus) {
  return { brickId: b.brickId, state: b.state, device: b.devicePath, mountPath: b.mountPath, reason: b.reason || undefined };
}
