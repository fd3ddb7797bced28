// The agent's Prometheus metrics (prom-client), built to answer "is my data safe now":
// checksum errors found and repaired, scrub coverage and last completion, brick and device
// health and capacity, replica durability, and the latency of durable mutations.
//
// How it works: almost every series is read at scrape time from the objects that own the
// state (BrickManager, VolumeManager and their stores and scrubbers) in a `collect`
// function, so nothing is double-booked and a deleted replica's series disappear with it.
// Each collect gathers its values first (awaiting I/O such as statfs) and then resets and
// fills its metric in one synchronous step, so two scrapes in flight cannot interleave.
// The one series fed from outside is the mutation latency histogram (observeMutation,
// called through the store's onMutationDurable hook).
//
// Devices are the exception to "read at scrape time": judging a device means probing it
// with libblkid, so the device report is cached and refreshed in the background at most
// once per `deviceRefreshMs`, and only when someone scrapes (see DeviceCache).
import { statfs } from 'node:fs/promises';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type LabelValues } from 'prom-client';
import type { DeviceReport } from '../brick/discover.js';
import type { BrickManager, BrickState } from '../brick/manager.js';
import type { EventBus } from '../events.js';
import type { Logger } from '../log.js';
import type { Mutation } from '../store/mutations.js';
import type { LinkState } from '../replication/link.js';
import type { ReplicaServer } from '../replication/server.js';
import type { VolumeManager } from '../volume/manager.js';

/** Every brick state, so brickd_brick_state has a 0/1 series for each (the Prometheus enum pattern). */
const BRICK_STATES = Object.keys({
  mounted: true,
  unmounted: true,
  missing: true,
  foreign: true,
  unsupported: true,
  incomplete: true,
  error: true,
} satisfies Record<BrickState, true>) as BrickState[];

/** Durable-mutation latency: from a fast RWF_DSYNC append (~100 µs) to a flush stalled by a sick disk. */
const MUTATION_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Every state of a primary's link to a replica (the enum pattern again). */
const LINK_STATES = Object.keys({
  connecting: true,
  handshake: true,
  resyncing: true,
  streaming: true,
  behind: true,
  failed: true,
  closed: true,
} satisfies Record<LinkState, true>) as LinkState[];

/** A series with one sample per row: its rows at scrape time, and each row's labels and value. */
interface RowsSpec<R, L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  rows: () => readonly R[];
  sample: (row: R) => [LabelValues<L>, number];
}

const DATA_OPS: ReadonlySet<Mutation['op']> = new Set(['write', 'writeDirect', 'truncate']);

export interface AgentMetricsOptions {
  /** The agent's managers; undefined until start-up has made them. */
  bricks: () => BrickManager | undefined;
  volumes: () => VolumeManager | undefined;
  /** The agent's replication endpoint, when replication is on. */
  replicaServer?: () => ReplicaServer | undefined;
  /** Volumes served through FUSE here, with their mount paths. */
  mounts?: () => Array<{ volumeId: string; mountPath: string; readOnly: boolean }>;
  info: () => { nodeId: string; version: string; zone: string };
  events: EventBus;
  log: Logger;
  /** Minimum age of the cached device report before a scrape refreshes it (default 60 s). */
  deviceRefreshMs?: number;
}

/**
 * The device report of the allowlisted devices, refreshed off the scrape path: a scrape
 * that finds it stale starts a refresh and is answered from the cache. A refresh takes the
 * brick manager's mutex (BrickManager.discover), so it never probes a device mid-adoption.
 */
class DeviceCache {
  private reports: DeviceReport[] = [];
  private refreshedAt = -Infinity;
  private refreshing: Promise<void> | undefined;
  private failing = false;

  constructor(
    private readonly bricks: () => BrickManager | undefined,
    private readonly maxAgeMs: number,
    private readonly log: Logger,
  ) {}

  /** Refresh now (start-up calls this once so the first scrape has devices). */
  refresh(): Promise<void> {
    const bricks = this.bricks();
    if (!bricks) return Promise.resolve();
    this.refreshing ??= bricks
      .discover()
      .then(
        (reports) => {
          // Devices outside the allowlist are never adopted: they are not this agent's to report.
          this.reports = reports.filter((d) => d.allowedBy !== undefined);
          if (this.failing) this.log.info('device discovery for metrics recovered');
          this.failing = false;
        },
        (err: unknown) => {
          if (!this.failing) this.log.warn({ err }, 'device discovery for metrics failed');
          this.failing = true;
        },
      )
      .finally(() => {
        this.refreshedAt = performance.now();
        this.refreshing = undefined;
      });
    return this.refreshing;
  }

  current(): DeviceReport[] {
    if (performance.now() - this.refreshedAt > this.maxAgeMs) void this.refresh();
    return this.reports;
  }
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly mutationSeconds: Histogram<'volume' | 'kind'>;
  private readonly devices: DeviceCache;

  constructor(options: AgentMetricsOptions) {
    const registers = [this.registry];
    const { bricks, volumes } = options;
    // Most series are one sample per row of something the agent holds (a volume, a peer, a
    // device): read the rows, then reset and fill the metric in one synchronous step. A
    // counter re-adds the owner's running count (see the store counters below).
    const fill = <R, L extends string>(metric: { reset(): void }, put: (labels: LabelValues<L>, value: number) => void, spec: RowsSpec<R, L>): void => {
      const rows = spec.rows();
      metric.reset();
      for (const row of rows) put(...spec.sample(row));
    };
    const rowsGauge = <R, L extends string>(spec: RowsSpec<R, L>): void => {
      const { name, help, labelNames } = spec;
      new Gauge<L>({ name, help, labelNames, registers, collect() { fill(this, (labels, value) => this.set(labels, value), spec); } });
    };
    const rowsCounter = <R, L extends string>(spec: RowsSpec<R, L>): void => {
      const { name, help, labelNames } = spec;
      new Counter<L>({ name, help, labelNames, registers, collect() { fill(this, (labels, value) => this.inc(labels, value), spec); } });
    };
    this.devices = new DeviceCache(bricks, options.deviceRefreshMs ?? 60_000, options.log);
    const devices = this.devices;

    // Process and Node.js runtime metrics (CPU, memory, file descriptors, event loop lag, GC).
    collectDefaultMetrics({ register: this.registry });

    new Gauge({
      name: 'brickd_agent_info',
      help: 'Constant 1, labelled with the node id, agent version and zone',
      labelNames: ['node', 'version', 'zone'],
      registers,
      collect() {
        const { nodeId, version, zone } = options.info();
        this.reset();
        if (nodeId) this.set({ node: nodeId, version, zone }, 1);
      },
    });

    // ── bricks and devices ──────────────────────────────────────────────────────────
    new Gauge({
      name: 'brickd_brick_state',
      help: 'Brick state: 1 for the state the brick is in, 0 for the others (mounted is healthy)',
      labelNames: ['brick', 'state'],
      registers,
      collect() {
        const list = bricks()?.list() ?? [];
        this.reset();
        for (const b of list) for (const state of BRICK_STATES) this.set({ brick: b.brickId, state }, b.state === state ? 1 : 0);
      },
    });

    new Gauge({
      name: 'brickd_brick_bytes',
      help: 'Capacity of each mounted brick filesystem: kind="size" (total) and kind="used"',
      labelNames: ['brick', 'kind'],
      registers,
      async collect() {
        const mounted = (bricks()?.list() ?? []).filter((b) => b.state === 'mounted');
        const values = await Promise.all(
          mounted.map(async (b) => {
            const s = await statfs(b.mountPath).catch(() => undefined);
            return s && { brick: b.brickId, size: s.blocks * s.bsize, used: (s.blocks - s.bfree) * s.bsize };
          }),
        );
        this.reset();
        for (const v of values) {
          if (!v) continue;
          this.set({ brick: v.brick, kind: 'size' }, v.size);
          this.set({ brick: v.brick, kind: 'used' }, v.used);
        }
      },
    });

    rowsGauge({
      name: 'brickd_device_eligible',
      help: 'Per allowlisted device: 1 if it can be adopted as a brick now, else 0 with the first reason (IS_BRICK, HAS_SIGNATURE, IN_USE, ...); refreshed at most once a minute',
      labelNames: ['device', 'reason'],
      rows: () => devices.current(),
      sample: (d) => [{ device: d.path, reason: d.reasons[0]?.code ?? 'none' }, d.eligible ? 1 : 0],
    });

    rowsGauge({
      name: 'brickd_device_size_bytes',
      help: 'Size of each allowlisted block device (refreshed with brickd_device_eligible)',
      labelNames: ['device'],
      rows: () => devices.current(),
      sample: (d) => [{ device: d.path }, d.sizeBytes],
    });

    // ── volume replicas ─────────────────────────────────────────────────────────────
    rowsGauge({
      name: 'brickd_volume_durable_seq',
      help: 'Highest mutation seq of the replica that is durable on this node',
      labelNames: ['volume'],
      rows: () => volumes()?.list() ?? [],
      sample: (v) => [{ volume: v.volumeId }, Number(v.store.durableSeq)],
    });

    rowsGauge({
      name: 'brickd_volume_durable_generation',
      help: 'Generation whose primary made the durable seq (absent while unknown): promote the replica with the highest generation, then the highest durable seq',
      labelNames: ['volume'],
      rows: () => (volumes()?.list() ?? []).filter((v) => v.store.durableGeneration !== undefined),
      sample: (v) => [{ volume: v.volumeId }, v.store.durableGeneration!],
    });

    rowsGauge({
      name: 'brickd_volume_used_bytes',
      help: 'Bytes of file data held by the replica (what the size limit counts)',
      labelNames: ['volume'],
      rows: () => volumes()?.list() ?? [],
      sample: (v) => [{ volume: v.volumeId }, v.store.usedBytes],
    });

    rowsGauge({
      name: 'brickd_volume_size_limit_bytes',
      help: 'Size limit of the replica',
      labelNames: ['volume'],
      rows: () => volumes()?.list() ?? [],
      sample: (v) => [{ volume: v.volumeId }, v.store.manifest.sizeLimitBytes],
    });

    // Counters read from the store's own counts (since the replica was opened): reset and
    // re-add at each scrape; a restart of the agent is a counter reset, as Prometheus expects.
    rowsCounter({
      name: 'brickd_checksum_errors_total',
      help: 'Blocks found not to match their checksum (on read or scrub), repaired or not, since the replica was opened',
      labelNames: ['volume'],
      rows: () => volumes()?.list() ?? [],
      sample: (v) => [{ volume: v.volumeId }, v.store.stats.checksumErrors],
    });

    rowsCounter({
      name: 'brickd_checksum_repaired_total',
      help: 'Bad blocks rewritten from a healthy copy since the replica was opened (errors minus repaired = blocks still bad)',
      labelNames: ['volume'],
      rows: () => volumes()?.list() ?? [],
      sample: (v) => [{ volume: v.volumeId }, v.store.stats.repaired],
    });

    rowsGauge({
      name: 'brickd_scrub_bytes_scanned',
      help: 'Bytes verified by the current (or last) scrub pass of the replica',
      labelNames: ['volume'],
      rows: () => volumes()?.list() ?? [],
      sample: (v) => [{ volume: v.volumeId }, v.scrubber.progress.bytesScanned],
    });

    rowsGauge({
      name: 'brickd_scrub_bytes_total',
      help: 'Bytes in use when the current (or last) scrub pass started: coverage = scanned / total',
      labelNames: ['volume'],
      rows: () => volumes()?.list() ?? [],
      sample: (v) => [{ volume: v.volumeId }, v.scrubber.progress.bytesTotal],
    });

    rowsGauge({
      name: 'brickd_scrub_last_completion_timestamp_seconds',
      help: 'Unix time at which the last complete scrub pass of the replica finished; 0 if none ever has',
      labelNames: ['volume'],
      rows: () => volumes()?.list() ?? [],
      sample: (v) => [{ volume: v.volumeId }, v.scrubber.progress.lastCompletedAt ? Date.parse(v.scrubber.progress.lastCompletedAt) / 1000 : 0],
    });

    this.mutationSeconds = new Histogram({
      name: 'brickd_store_mutation_seconds',
      help: 'Time from a mutation being called to it being durable on this replica; kind="data" (write, truncate) or "namespace" (create, rename, ...)',
      labelNames: ['volume', 'kind'],
      buckets: MUTATION_BUCKETS,
      registers,
    });
    options.events.subscribe((event) => {
      if (event.kind === 'replica-deleted' && event.volumeId) {
        for (const kind of ['data', 'namespace']) this.mutationSeconds.remove({ volume: event.volumeId, kind });
      }
    });

    // ── replication (primaries: per peer; every agent: its replica server) ──────────
    const peerRows = () => (volumes()?.list() ?? []).flatMap((v) => (v.primary?.peers() ?? []).map((p) => ({ volume: v.volumeId, ...p })));
    new Gauge({
      name: 'brickd_replication_peer_state',
      help: 'Per primary volume and peer: 1 for the state of the link to the peer, 0 for the others (streaming is healthy; resyncing is catching up by checksum comparison; failed is fenced or refused)',
      labelNames: ['volume', 'peer', 'state'],
      registers,
      collect() {
        const rows = peerRows();
        this.reset();
        for (const r of rows) for (const state of LINK_STATES) this.set({ volume: r.volume, peer: r.nodeId, state }, r.state === state ? 1 : 0);
      },
    });

    rowsGauge({
      name: 'brickd_replication_peer_lag_seqs',
      help: "Per primary volume and peer: the primary's last seq minus the peer's acknowledged durable seq",
      labelNames: ['volume', 'peer'],
      rows: () => peerRows(),
      sample: (r) => [{ volume: r.volume, peer: r.nodeId }, Number(r.lagSeq)],
    });

    rowsGauge({
      name: 'brickd_replication_peer_lag_bytes',
      help: 'Per primary volume and peer: bytes of mutation frames the peer does not hold durably yet (of those the primary still retains)',
      labelNames: ['volume', 'peer'],
      rows: () => peerRows(),
      sample: (r) => [{ volume: r.volume, peer: r.nodeId }, r.lagBytes],
    });

    // "Is my data safe now", per volume this agent is primary of: how many replicas hold
    // every acknowledged write and keep up (the local one plus the peers whose link is
    // streaming), out of how many, against the write quorum W. A volume without peers is
    // one replica, in sync, W = 1.
    const safetyRows = () =>
      (volumes()?.list() ?? [])
        .filter((v) => v.config.role === 'primary')
        .map((v) => {
          const peers = v.primary?.peers() ?? [];
          return {
            volume: v.volumeId,
            replicas: 1 + v.config.peers.length,
            inSync: 1 + peers.filter((p) => p.state === 'streaming').length,
            writeQuorum: v.primary?.writeQuorum ?? 1,
          };
        });
    const safetyGauge = (name: string, help: string, value: (r: ReturnType<typeof safetyRows>[number]) => number) =>
      rowsGauge({ name, help, labelNames: ['volume'], rows: safetyRows, sample: (r) => [{ volume: r.volume }, value(r)] });
    safetyGauge('brickd_volume_replicas', 'Per primary volume: replicas it has (this one and its peers)', (r) => r.replicas);
    safetyGauge(
      'brickd_volume_replicas_in_sync',
      'Per primary volume: replicas holding every acknowledged write and keeping up (this one plus the peers whose link is streaming)',
      (r) => r.inSync,
    );
    safetyGauge('brickd_volume_write_quorum', 'Per primary volume: W, the replicas that must hold a write durably before it is acknowledged', (r) => r.writeQuorum);
    safetyGauge(
      'brickd_volume_quorum_met',
      'Per primary volume: 1 while the replicas in sync reach W (writes can be acknowledged), 0 when writes wait or fail',
      (r) => (r.inSync >= r.writeQuorum ? 1 : 0),
    );

    // A resync in progress: how far (bytes compared by checksum against what the primary
    // holds and, where they differed, sent, out of what this resync compares: the whole
    // volume, or for an incremental one the regions changed since the replica's seq) and
    // when it should end at the pace so far.
    const resyncRows = () =>
      (volumes()?.list() ?? []).flatMap((v) =>
        (v.primary?.peers() ?? [])
          .filter((p) => p.resync && (p.resync.phase === 'comparing' || p.resync.phase === 'finishing' || p.resync.phase === 'snapshot'))
          .map((p) => {
            const { phase, bytesDone, bytesToCompare } = p.resync!;
            // Nothing to compare (only names changed): done but for the END round trip.
            const fraction = phase === 'snapshot' ? 0 : bytesToCompare > 0 ? Math.min(1, bytesDone / bytesToCompare) : 1;
            const elapsed = (Date.now() - p.resync!.startedAt) / 1000;
            return { volume: v.volumeId, peer: p.nodeId, fraction, eta: fraction > 0 ? (elapsed * (1 - fraction)) / fraction : -1, dataBytesSent: p.resync!.dataBytesSent };
          }),
      );
    rowsGauge({
      name: 'brickd_replication_resync_progress_ratio',
      help: 'Per primary volume and peer being resynced: the share of what it compares (the volume, or the regions changed since the replica\'s seq) compared and, where it differed, sent so far (0..1); absent when no resync runs',
      labelNames: ['volume', 'peer'],
      rows: () => resyncRows(),
      sample: (r) => [{ volume: r.volume, peer: r.peer }, r.fraction],
    });
    rowsGauge({
      name: 'brickd_replication_resync_eta_seconds',
      help: 'Per primary volume and peer being resynced: seconds left at the pace so far (-1 before anything was compared)',
      labelNames: ['volume', 'peer'],
      rows: () => resyncRows(),
      sample: (r) => [{ volume: r.volume, peer: r.peer }, r.eta],
    });
    rowsGauge({
      name: 'brickd_replication_resync_data_bytes',
      help: 'Per primary volume and peer being resynced: file bytes sent because they differed',
      labelNames: ['volume', 'peer'],
      rows: () => resyncRows(),
      sample: (r) => [{ volume: r.volume, peer: r.peer }, r.dataBytesSent],
    });

    rowsCounter({
      name: 'brickd_replication_sent_bytes_total',
      help: 'Per primary volume and peer: bytes of mutation frames sent since the volume became primary here',
      labelNames: ['volume', 'peer'],
      rows: () => peerRows(),
      sample: (r) => [{ volume: r.volume, peer: r.nodeId }, r.bytesSent],
    });

    rowsCounter({
      name: 'brickd_replication_resyncs_total',
      help: 'Per primary volume and peer: resyncs since the volume became primary here that took their snapshot, by kind (incremental: only the regions changed since the replica\'s seq compared; full: every block)',
      labelNames: ['volume', 'peer', 'kind'],
      rows: () => peerRows().flatMap((r) => [
        { ...r, kind: 'incremental', n: r.incrementalResyncs },
        { ...r, kind: 'full', n: r.fullResyncs },
      ]),
      sample: (r) => [{ volume: r.volume, peer: r.nodeId, kind: r.kind }, r.n],
    });

    rowsCounter({
      name: 'brickd_replication_quorum_lost_total',
      help: 'Per primary volume: writes that did not reach their write quorum in time and were not acknowledged',
      labelNames: ['volume'],
      rows: () => (volumes()?.list() ?? []).filter((v) => v.primary),
      sample: (v) => [{ volume: v.volumeId }, v.primary!.quorumLost],
    });

    rowsCounter({
      name: 'brickd_replication_refused_total',
      help: 'Replication connections and frames this agent refused, by the error code it answered (UNAUTHENTICATED, BAD_FRAME, GENERATION_STALE, ...)',
      labelNames: ['code'],
      rows: () => Object.entries(options.replicaServer?.()?.stats.refused ?? {}),
      sample: ([code, n]) => [{ code }, n ?? 0],
    });

    new Gauge({
      name: 'brickd_replication_sessions',
      help: "Primaries' connections this agent's replica server holds open",
      registers,
      collect() {
        this.set(options.replicaServer?.()?.stats.activeConnections ?? 0);
      },
    });

    rowsGauge({
      name: 'brickd_volume_mounted',
      help: 'Constant 1 per volume served through FUSE here, labelled with its path and mode',
      labelNames: ['volume', 'path', 'mode'],
      rows: () => options.mounts?.() ?? [],
      sample: (m) => [{ volume: m.volumeId, path: m.mountPath, mode: m.readOnly ? 'ro' : 'rw' }, 1],
    });
  }

  /** Record one durable mutation's latency (VolumeManager's onMutationDurable). */
  observeMutation(volumeId: string, op: Mutation['op'], seconds: number): void {
    this.mutationSeconds.observe({ volume: volumeId, kind: DATA_OPS.has(op) ? 'data' : 'namespace' }, seconds);
  }

  /** Probe the allowlisted devices now (once at start-up; later scrapes refresh a stale report). */
  refreshDevices(): Promise<void> {
    return this.devices.refresh();
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
