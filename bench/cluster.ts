// A replicated volume for benchmarks, wired as the agent wires one: the primary (its store,
// the retained queue and the record of changed regions fed by the store's onMutation, one
// ReplicaLink per replica with the store as resync source, a QuorumTracker per W to
// measure) in this process, and one replica agent per other directory in its own child
// process (bench/children/replica-agent.ts), as agents on other nodes would be, on
// loopback or each in a network namespace (bench/netns.ts). A volume without replicas is
// the store alone, as the agent runs a volume without peers (no PrimaryReplication:
// nothing queued, W=1).
//
// What it may touch: the replica directories it is given (the caller owns the bricks and
// removes the directories), and the child processes it starts, stopped by pid in close().
// A replica can be SIGKILLed and restarted on its directory and port (the resync case).
import { randomBytes } from 'node:crypto';
import { ChangedRegions } from '../src/replication/changed.js';
import { ReplicaLink } from '../src/replication/link.js';
import { QuorumTracker } from '../src/replication/quorum.js';
import { RetainedQueue } from '../src/replication/retained.js';
import type { Mutation } from '../src/store/mutations.js';
import { ReplicaStore } from '../src/store/store.js';
import { BenchChild, startChildren, stopChildren } from './child.js';

export const CLUSTER = 'bench-cluster';
const QUORUM_TIMEOUT_MS = 30_000;

/** Where a replica agent runs: the address it listens on, and a prefix running it elsewhere. */
export interface ReplicaPlacement {
  host: string;
  /** e.g. `nsenter --net=/run/netns/X` (bench/netns.ts); none: in this network namespace. */
  command?: readonly string[];
}

export const LOOPBACK: ReplicaPlacement = { host: '127.0.0.1' };

export interface BenchClusterOptions {
  volumeId: string;
  /** One replica directory per brick, the primary's first; the others get an agent each. */
  dirs: readonly string[];
  sizeLimitBytes: number;
  /** Where each replica agent runs: one per directory after the first. */
  placements: readonly ReplicaPlacement[];
  /** The write quorums (replicas, local included) writes can wait for. */
  writeQuorums: readonly number[];
  /** Bounds of the primary's retained queue (default: the agent's, 64 MiB / 65,536 entries). */
  queue?: { maxBytes?: number; maxEntries?: number };
  /** The links' reconnect backoff (default: the agent's, 50 ms doubling up to 2 s). */
  reconnect?: { minMs: number; maxMs: number };
}

/** Resolves once `condition` holds (polled every 10 ms); rejects naming `what` at the timeout. */
export async function waitUntil(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export class BenchCluster {
  private readonly trackers: Map<number, QuorumTracker>;
  private readonly ports: number[];

  private constructor(
    private readonly options: BenchClusterOptions,
    private readonly secret: Buffer,
    readonly store: ReplicaStore,
    /** Undefined without replicas (the agent builds no replication for a volume without peers). */
    readonly queue: RetainedQueue | undefined,
    private readonly changes: ChangedRegions,
    readonly links: ReplicaLink[],
    /** The replica agents, in placement order; restartReplica replaces one. */
    readonly replicas: BenchChild[],
  ) {
    this.trackers = new Map(options.writeQuorums.map((w) => [w, new QuorumTracker({ writeQuorum: w, timeoutMs: QUORUM_TIMEOUT_MS })]));
    this.ports = replicas.map((child) => child.info.port as number);
  }

  /** Create the primary's store, start the replica agents and wait until every link streams. */
  static async start(options: BenchClusterOptions): Promise<BenchCluster> {
    const { volumeId, dirs, sizeLimitBytes, placements } = options;
    if (placements.length !== dirs.length - 1) throw new RangeError(`${dirs.length} directories need ${dirs.length - 1} replica placements, got ${placements.length}`);
    const secret = randomBytes(32);
    // The store's onMutation is called synchronously in seq order from its first mutation:
    // the queue must exist before the store, so it starts at seq 0 with the new store.
    const queue = placements.length > 0 ? new RetainedQueue({ startSeq: 0n, generation: 1, ...options.queue }) : undefined;
    // As the agent's primary: the regions changed since the start, for incremental resyncs.
    const changes = new ChangedRegions(0n);
    const onMutation = (seq: bigint, m: Mutation) => {
      changes.record(seq, m);
      queue!.push(seq, m);
    };
    const store = await ReplicaStore.create(dirs[0]!, { volumeId, sizeLimitBytes, generation: 1 }, queue ? { onMutation } : {});
    let replicas: BenchChild[] = [];
    try {
      replicas = await startChildren(placements.map((placement, i) => replicaSpec(options, secret, i, placement, 0)));
    } catch (err) {
      await store.close();
      throw err;
    }
    const cluster = new BenchCluster(options, secret, store, queue, changes, [], replicas);
    replicas.forEach((child, i) => cluster.links.push(cluster.link(child.name, placements[i]!.host, cluster.ports[i]!)));
    try {
      await waitUntil(() => cluster.links.every((l) => l.state === 'streaming'), 'every replica link streaming');
    } catch (err) {
      await cluster.close();
      throw err;
    }
    return cluster;
  }

  /** The tracker of W (one of options.writeQuorums). */
  tracker(writeQuorum: number): QuorumTracker {
    const tracker = this.trackers.get(writeQuorum);
    if (!tracker) throw new RangeError(`W=${writeQuorum} is not tracked (${[...this.trackers.keys()].join(', ')})`);
    return tracker;
  }

  /** A store mutation, resolved once W replicas (the local one included) hold it durably. */
  async replicated<T extends { seq: bigint }>(writeQuorum: number, op: Promise<T>): Promise<T> {
    const result = await op;
    await this.tracker(writeQuorum).waitFor(result.seq, true);
    return result;
  }

  /** Every link streaming and its replica durable at the primary's last mutation. */
  get inSync(): boolean {
    const last = this.queue?.lastSeq ?? 0n;
    return this.links.every((l) => l.state === 'streaming' && l.ackedSeq >= last);
  }

  /** CPU seconds of every replica agent child so far (user + system, and system). */
  async replicaCpu(): Promise<{ seconds: number; systemSeconds: number }> {
    const stats = await Promise.all(this.replicas.map((c) => c.stats()));
    return { seconds: stats.reduce((sum, s) => sum + s.cpuSeconds, 0), systemSeconds: stats.reduce((sum, s) => sum + s.cpuSystemSeconds, 0) };
  }

  async replicaMaxRssBytes(): Promise<number> {
    const stats = await Promise.all(this.replicas.map((c) => c.stats()));
    return Math.max(0, ...stats.map((s) => s.maxRssBytes));
  }

  /** SIGKILL replica agent `i` (a node that dies: its store recovers from its log at restart). */
  async killReplica(i: number): Promise<void> {
    await this.replicas[i]!.sigkill();
  }

  /**
   * Start replica agent `i` again on its directory, address and port (its link keeps
   * reconnecting there): it reopens its store, recovering it, and the primary catches it up
   * from the queue or resyncs it.
   */
  async restartReplica(i: number): Promise<void> {
    const [child] = await startChildren([replicaSpec(this.options, this.secret, i, this.options.placements[i]!, this.ports[i]!)]);
    this.replicas[i] = child!;
  }

  /** Links closed, waiting writes rejected, agents stopped, the primary's store closed. */
  async close(): Promise<void> {
    for (const tracker of this.trackers.values()) tracker.close();
    await Promise.all(this.links.map((l) => l.close()));
    await stopChildren(this.replicas);
    await this.store.close();
  }

  private link(name: string, host: string, port: number): ReplicaLink {
    const { volumeId, reconnect } = this.options;
    const link = new ReplicaLink({
      host,
      port,
      name,
      clusterId: CLUSTER,
      nodeId: 'primary',
      volumeId,
      secret: this.secret,
      queue: this.queue!,
      // As the agent's links: a replica the queue cannot catch up is resynced from the store,
      // comparing only the regions changed since its seq when it merely fell behind.
      resync: this.store,
      changes: this.changes,
      ...(reconnect ? { reconnectMinMs: reconnect.minMs, reconnectMaxMs: reconnect.maxMs } : {}),
    });
    link.on('ack', (seq) => {
      for (const tracker of this.trackers.values()) tracker.setReplica(name, seq);
    });
    return link.start();
  }
}

function replicaSpec(options: BenchClusterOptions, secret: Buffer, i: number, placement: ReplicaPlacement, port: number): Parameters<typeof BenchChild.start> {
  const name = `replica-${i + 1}`;
  return [
    'replica-agent.js',
    [options.dirs[i + 1]!, options.volumeId, name, CLUSTER, String(options.sizeLimitBytes), placement.host, String(port)],
    { name, env: { BRICKD_BENCH_SECRET: secret.toString('hex') }, ...(placement.command ? { command: placement.command } : {}) },
  ];
}
