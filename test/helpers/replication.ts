// Replication test rigs on loopback: replica agents (a ReplicaServer over a store on its own
// brick) and a primary (a store whose onMutation feeds a RetainedQueue, links to the
// replicas, a QuorumTracker), plus a hostile raw-socket client and tree comparison.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import type { Test } from 'tap';
import { fetchFromPeers } from '../../src/replication/blocks.js';
import { ChangedRegions } from '../../src/replication/changed.js';
import { ReplicaLink, type ReplicaLinkOptions } from '../../src/replication/link.js';
import { QuorumTracker } from '../../src/replication/quorum.js';
import { RetainedQueue, type RetainedQueueOptions } from '../../src/replication/retained.js';
import { ReplicaServer, type ReplicaServerOptions } from '../../src/replication/server.js';
import { sessionMac } from '../../src/replication/session.js';
import { ReplicaStore, type StoreOptions } from '../../src/store/store.js';
import { FrameDecoder } from '../../src/wire/frames.js';
import { decodeMessage, encodeMessage, type ReplicationMessage } from '../../src/wire/replication.js';
import { replicaDir, testBrick, testStore, type TestBrick } from './store.js';

export const CLUSTER = 'test-cluster';
export const SECRET = Buffer.from('brickd-test-replication-secret-0123456789');
export const VOLUME = 'vol1';

export interface ReplicaNode {
  nodeId: string;
  brick: TestBrick;
  store: ReplicaStore;
  server: ReplicaServer;
  port: number;
}

/** A replica agent in this process: its own brick (unless given), store and server on 127.0.0.1. */
export async function startReplica(
  t: Test,
  options: {
    nodeId: string;
    brick?: TestBrick;
    store?: ReplicaStore;
    volumeId?: string;
    port?: number;
    server?: Partial<ReplicaServerOptions>;
    /** The store's repair hook asks the primary connected to this server (as the agent wires it). */
    repair?: boolean;
  },
): Promise<ReplicaNode> {
  const brick = options.brick ?? (await testBrick(t, 1024)); // sparse: room for the workloads and their write logs
  const volumeId = options.volumeId ?? VOLUME;
  let server: ReplicaServer | undefined;
  const repair: StoreOptions['repair'] = options.repair ? ({ fid, offset, length }) => server!.fetchFromPrimary(volumeId, fid, offset, length) : undefined;
  const store = options.store ?? (await testStore(t, brick, { volumeId }, { directWriteBytes: 64 * 1024, ...(repair ? { repair } : {}) }));
  server = new ReplicaServer({ clusterId: CLUSTER, nodeId: options.nodeId, secret: SECRET, ...options.server });
  server.addVolume(store);
  const { port } = await server.listen(options.port ?? 0, '127.0.0.1');
  t.teardown(() => server.close());
  return { nodeId: options.nodeId, brick, store, server, port };
}

/** A replica agent stops: server closed, store closed (restartReplica brings it back). */
export async function stopReplica(r: ReplicaNode): Promise<void> {
  await r.server.close();
  await r.store.close();
}

/** The same replica agent starts again on its brick and port (log replay included). */
export async function restartReplica(t: Test, r: ReplicaNode): Promise<ReplicaNode> {
  const store = await ReplicaStore.open(replicaDir(r.brick, VOLUME), { directWriteBytes: 64 * 1024, checkpointIntervalMs: 0 });
  t.teardown(() => store.close().catch(() => {}));
  return startReplica(t, { nodeId: r.nodeId, brick: r.brick, store, port: r.port });
}

export interface PrimaryNode {
  store: ReplicaStore;
  queue: RetainedQueue;
  links: ReplicaLink[];
  quorum: QuorumTracker;
  /** Run a store mutation, then wait for its write quorum (the local replica counts once it resolved). */
  replicated<T extends { seq: bigint }>(op: Promise<T>): Promise<T>;
}

export async function startPrimary(
  t: Test,
  options: {
    replicas: Array<{ port: number; name: string }>;
    writeQuorum: number;
    timeoutMs?: number;
    generation?: number;
    volumeId?: string;
    brick?: TestBrick;
    queue?: Partial<RetainedQueueOptions>;
    link?: Partial<ReplicaLinkOptions>;
    store?: StoreOptions;
    /** Resync replicas the queue cannot catch up (the links get the store). */
    resync?: boolean;
    /**
     * Record changed regions (ChangedRegions, as PrimaryReplication does), so that a replica
     * that only fell behind is resynced comparing just those.
     */
    changes?: boolean;
    /**
     * Repair reads both ways: the links answer the replicas' from the store, and the store's
     * repair hook asks the links (fetchFromPeers, min_seq = the store's applied seq).
     */
    repair?: boolean;
    /** Size limit of a new store (default 256 MiB). */
    sizeLimitBytes?: number;
    /**
     * Open the store already on `brick` instead of creating one: a primary restart. The
     * queue then starts at the store's last seq, as PrimaryReplication's does.
     */
    reopen?: boolean;
  },
): Promise<PrimaryNode> {
  const brick = options.brick ?? (await testBrick(t, 1024)); // sparse: room for the workloads and their write logs
  const volumeId = options.volumeId ?? VOLUME;
  let queue: RetainedQueue | undefined;
  let changes: ChangedRegions | undefined;
  let links: ReplicaLink[] = [];
  const storeOptions: StoreOptions = {
    directWriteBytes: 64 * 1024,
    // As PrimaryReplication.fetchBlocks: with the record of changed regions, a peer durable
    // up to the block's last change qualifies.
    ...(options.repair
      ? {
          repair: ({ fid, offset, length }) => {
            const minSeq = changes?.repairMinSeq(fid, offset, length, store.appliedSeq) ?? store.appliedSeq;
            return fetchFromPeers(links, { fid, offset, length, minSeq });
          },
        }
      : {}),
    ...options.store,
    onMutation: (seq, m) => {
      changes?.record(seq, m);
      queue!.push(seq, m);
    },
  };
  let store: ReplicaStore;
  if (options.reopen) {
    store = await ReplicaStore.open(replicaDir(brick, volumeId), { segmentBytes: 4 * 2 ** 20, checkpointIntervalMs: 0, ...storeOptions });
    t.teardown(() => store.close().catch(() => {}));
    // A restart at a higher generation (a promotion): recorded before anything is written.
    if (options.generation !== undefined) await store.raiseGeneration(options.generation);
  } else {
    store = await testStore(t, brick, { volumeId, generation: options.generation ?? 1, ...(options.sizeLimitBytes ? { sizeLimitBytes: options.sizeLimitBytes } : {}) }, storeOptions);
  }
  queue = new RetainedQueue({ startSeq: store.appliedSeq, generation: options.generation ?? 1, ...options.queue });
  if (options.changes) changes = new ChangedRegions(store.appliedSeq);
  const quorum = new QuorumTracker({ writeQuorum: options.writeQuorum, timeoutMs: options.timeoutMs ?? 10_000 });
  links = options.replicas.map(({ port, name }) => {
    const link = new ReplicaLink({
      host: '127.0.0.1',
      port,
      name,
      clusterId: CLUSTER,
      nodeId: 'primary',
      volumeId,
      secret: SECRET,
      queue: queue!,
      reconnectMaxMs: 200,
      ...(options.resync ? { resync: store } : {}),
      ...(options.repair ? { blocks: store } : {}),
      ...(changes ? { changes } : {}),
      ...options.link,
    });
    link.on('ack', (seq) => quorum.setReplica(name, seq));
    return link.start();
  });
  t.teardown(async () => {
    quorum.close();
    await Promise.all(links.map((l) => l.close()));
  });
  return {
    store,
    queue: queue!,
    links,
    quorum,
    async replicated(op) {
      const result = await op;
      await quorum.waitFor(result.seq, true);
      return result;
    },
  };
}

const REPLICA_AGENT = path.join(import.meta.dirname, '..', 'replication', 'children', 'replica-agent.mjs');

export interface ReplicaProcess {
  child: ChildProcess;
  port: number;
  /** What the agent's store recovered to (durable seq after replay). */
  durableSeq: bigint;
  exited: Promise<void>;
}

/** A replica agent in its own process (children/replica-agent.mjs) on a store dir, to SIGKILL. */
export function startReplicaProcess(t: Test, dir: string, nodeId: string, port: number): Promise<ReplicaProcess> {
  const child = spawn(process.execPath, [REPLICA_AGENT, dir, 'vol1', nodeId, String(port)], {
    env: { ...process.env, BRICKD_TEST_SECRET: SECRET.toString('utf8') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    return exited;
  });
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      const ready = JSON.parse(line) as { listening: number; durableSeq: string };
      resolve({ child, port: ready.listening, durableSeq: BigInt(ready.durableSeq), exited });
    });
    void exited.then(() => reject(new Error(`replica agent ${nodeId} exited before listening`)));
  });
}

/** Poll `condition` until true; fail after `timeoutMs`. */
export async function until(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export interface TreeEntry {
  path: string;
  type: string;
  fid?: string;
  mode: number;
  size: number;
  uid: number;
  gid: number;
  mtimeMs?: number;
  target?: string;
  /** SHA-256 of a file's bytes. */
  content?: string;
}

/** Everything observable about a replica's tree: names, fids, types, modes, sizes, bytes. */
export async function treeOf(store: ReplicaStore, withMtime = false): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await store.readdir(dir)).sort()) {
      const p = dir ? `${dir}/${name}` : name;
      const st = await store.stat(p);
      const entry: TreeEntry = { path: p, type: st.type, mode: st.mode, size: st.size, uid: st.uid, gid: st.gid };
      if (st.fid) entry.fid = st.fid;
      if (withMtime) entry.mtimeMs = st.mtimeMs;
      if (st.type === 'symlink') entry.target = await store.readlink(p);
      if (st.type === 'file') {
        const hash = createHash('sha256');
        for (let offset = 0; offset < st.size; offset += 4 * 2 ** 20) hash.update(await store.read(p, offset, Math.min(4 * 2 ** 20, st.size - offset)));
        entry.content = hash.digest('hex');
      }
      out.push(entry);
      if (st.type === 'directory') await walk(p);
    }
  };
  await walk('');
  return out;
}

/** A raw client that speaks frames to a server, for hostile-peer tests. */
export class RawPeer {
  readonly messages: ReplicationMessage[] = [];
  readonly closed: Promise<void>;
  private readonly socket: net.Socket;
  private readonly decoder = new FrameDecoder();
  private waiters: Array<() => void> = [];

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk)) this.messages.push(decodeMessage(f));
      for (const w of this.waiters) w();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) => socket.on('close', () => {
      for (const w of this.waiters) w();
      resolve();
    }));
  }

  static connect(port: number): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(new RawPeer(socket)));
      socket.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.socket.destroyed;
  }

  write(bytes: Buffer | Buffer[]): void {
    for (const b of Array.isArray(bytes) ? bytes : [bytes]) this.socket.write(b);
  }

  send(message: ReplicationMessage): void {
    this.write(encodeMessage(message));
  }

  /** The next message of `type` (or any message when omitted); rejects on close or timeout. */
  async next<T extends ReplicationMessage['type']>(type?: T, timeoutMs = 5000): Promise<Extract<ReplicationMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.messages.findIndex((m) => type === undefined || m.type === type);
      if (i >= 0) return this.messages.splice(i, 1)[0] as Extract<ReplicationMessage, { type: T }>;
      if (this.socket.destroyed) throw new Error(`connection closed before a ${type ?? 'message'}; got ${JSON.stringify(this.messages.map((m) => m.type))}`);
      if (Date.now() > deadline) throw new Error(`no ${type ?? 'message'} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      this.waiters = [];
    }
  }

  /** The replica's CHALLENGE of the last authenticate(). */
  challenge: Extract<ReplicationMessage, { type: 'CHALLENGE' }> | undefined;

  /**
   * Run the handshake as a primary; resolves with WELCOME. `secret` defaults to the right one;
   * no `features` are offered unless given (the peer then acts as the first version-1 agents).
   */
  async authenticate(
    options: { volumeId?: string; generation?: number; secret?: Buffer; clusterId?: string; nodeId?: string; features?: string[]; volumeUid?: string } = {},
  ): Promise<Extract<ReplicationMessage, { type: 'WELCOME' }>> {
    const nonce = Buffer.alloc(32, 7);
    const hello = { clusterId: options.clusterId ?? CLUSTER, nodeId: options.nodeId ?? 'raw-primary', volumeId: options.volumeId ?? VOLUME, generation: options.generation ?? 1, nonce };
    this.send({ type: 'HELLO', ...hello, ...(options.features ? { features: options.features } : {}) });
    const challenge = await this.next('CHALLENGE');
    this.challenge = challenge;
    const transcript = { clusterId: hello.clusterId, primaryNodeId: hello.nodeId, replicaNodeId: challenge.nodeId, volumeId: hello.volumeId, generation: hello.generation, primaryNonce: nonce, replicaNonce: challenge.nonce };
    this.send({ type: 'AUTH', mac: sessionMac(options.secret ?? SECRET, 'primary', transcript), ...(options.volumeUid !== undefined ? { volumeUid: options.volumeUid } : {}) });
    const welcome = await this.next('WELCOME');
    if (!sessionMac(SECRET, 'replica', transcript).equals(welcome.mac)) throw new Error('the replica proof does not match');
    return welcome;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
