// A real brickd agent driven over its real control socket, for the control API tests.
//
// startControlAgent spawns the built daemon with its own temp state dir (embedded loop-file
// devices, by default 2 × 320 MiB) and, optionally, extra loop devices on its allowlist.
// The control socket lives in its own 0755 temp dir, so that the socket file's own mode is
// what keeps other users out. The agent's calls are offered as promises (`api`): a failed
// call rejects with a ControlCallError that keeps the gRPC status code and the agent's
// `brickd-reason`. Teardown stops the agent (SIGTERM, then SIGKILL), then removes every
// mount under its state dir and detaches the loop devices it and the test attached.
import { chmod, readFile } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Test } from 'tap';
import { readMountInfo } from '../../src/brick/mountinfo.js';
import { controlClient, ControlService, REASON_KEY, type ControlClient, type ControlMethod } from '../../src/wire/control.js';
import { cleanupAgentState, replicationFlags, startAgent, type AgentProcess } from './agent.js';
import { loopDevice, tempDir } from './loop.js';

export { grpc };

type Service = typeof ControlService;
export type UnaryMethod = { [K in ControlMethod]: Service[K]['responseStream'] extends true ? never : K }[ControlMethod];
export type RequestOf<K extends ControlMethod> = Parameters<Service[K]['requestSerialize']>[0];
/**
 * A response as protobufjs decodes it: scalars, repeated fields and maps always present
 * (proto3 defaults), a singular nested message null when absent. The wire module types
 * responses by their all-optional property interfaces; this narrows them for the tests.
 */
export type Decoded<T> = { [K in keyof T as K extends '$unknowns' ? never : K]-?: DecodedField<NonNullable<T[K]>> };
type DecodedField<V> = V extends Uint8Array
  ? V
  : V extends ReadonlyArray<infer E>
    ? Array<E extends object ? Decoded<E> : E>
    : V extends object
      ? string extends keyof V
        ? V
        : Decoded<V> | null
      : V;
export type ResponseOf<K extends ControlMethod> = Decoded<ReturnType<Service[K]['responseDeserialize']>>;

export interface CallOptions {
  /** Give up after this long (default 30 s): a hung call fails the test instead of hanging it. */
  timeoutMs?: number;
  metadata?: grpc.Metadata;
}

/** Every unary method of brickd.v1.Control as a promise. */
export type ControlApi = { [K in UnaryMethod]: (request: RequestOf<K>, options?: CallOptions) => Promise<ResponseOf<K>> };

/** A failed control call: the gRPC status, the agent's machine-readable reason and message. */
export class ControlCallError extends Error {
  constructor(
    readonly method: string,
    readonly code: grpc.status,
    readonly reason: string | undefined,
    readonly details: string,
  ) {
    super(`${method}: ${grpc.status[code]} (${reason ?? 'no reason'}): ${details}`);
    this.name = 'ControlCallError';
  }
}

function callError(method: string, err: grpc.ServiceError): ControlCallError {
  const reason = err.metadata?.get(REASON_KEY)[0];
  return new ControlCallError(method, err.code, reason === undefined ? undefined : String(reason), err.details);
}

/** Wrap a typed client's unary methods as promises. */
export function promisify(client: ControlClient): ControlApi {
  const api: Record<string, unknown> = {};
  for (const name of Object.keys(ControlService) as ControlMethod[]) {
    if (ControlService[name].responseStream) continue;
    api[name] = (request: unknown, options: CallOptions = {}) =>
      new Promise((resolve, reject) => {
        const method = client[name] as unknown as (
          req: unknown,
          md: grpc.Metadata,
          opts: Partial<grpc.CallOptions>,
          cb: (err: grpc.ServiceError | null, res?: unknown) => void,
        ) => grpc.ClientUnaryCall;
        method.call(client, request, options.metadata ?? new grpc.Metadata(), { deadline: Date.now() + (options.timeoutMs ?? 30_000) }, (err, res) =>
          err ? reject(callError(name, err)) : resolve(res),
        );
      });
  }
  return api as ControlApi;
}

/** Assert that a control call fails with gRPC `code` and `brickd-reason` `reason` (undefined: none checked). */
export async function callFails(t: Test, promise: Promise<unknown>, code: grpc.status, reason: string | undefined, name = 'call'): Promise<ControlCallError | undefined> {
  try {
    const response = await promise;
    t.fail(`${name}: succeeded; expected ${grpc.status[code]}/${reason}`, { response });
    return undefined;
  } catch (err) {
    if (!(err instanceof ControlCallError)) throw err;
    t.equal(grpc.status[err.code], grpc.status[code], `${name}: status ${grpc.status[code]}`);
    if (reason !== undefined) t.equal(err.reason, reason, `${name}: reason ${reason}`);
    t.notMatch(err.details, /\n/, `${name}: one-line message`);
    return err;
  }
}

/** Read a server stream to its end (or until `until` returns true, then cancel it). */
export function readStream<T>(stream: grpc.ClientReadableStream<T>, until?: (message: T) => boolean, timeoutMs = 60_000): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const messages: T[] = [];
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`stream did not end within ${timeoutMs} ms; got ${JSON.stringify(messages)}`));
    }, timeoutMs);
    stream.on('data', (m: T) => {
      messages.push(m);
      if (until?.(m)) {
        clearTimeout(timer);
        stream.cancel();
        resolve(messages);
      }
    });
    stream.on('end', () => {
      clearTimeout(timer);
      resolve(messages);
    });
    stream.on('error', (err: grpc.ServiceError) => {
      clearTimeout(timer);
      if (err.code === grpc.status.CANCELLED && until) return; // our own cancel
      reject(callError('stream', err));
    });
  });
}

export interface ControlAgentOptions {
  embeddedCount?: number;
  embeddedSizeMiB?: number;
  /** Sizes (MiB) of extra blank loop devices made for the test and added to the allowlist. */
  extraDevices?: number[];
  /** More daemon flags. */
  args?: string[];
  /** Turn replication on (a free loopback port) with this secret file. */
  secretFile?: string;
  /** Run the daemon under this command prefix (e.g. nsenter into a network namespace). */
  command?: string[];
  /** Replication listen address instead of a free loopback port (with secretFile). */
  replicationAddress?: string;
}

export interface ControlAgent {
  stateDir: string;
  socketPath: string;
  /** The extra allowlisted loop devices, in the order of `extraDevices`. */
  extraDevices: string[];
  /** The daemon's command-line flags (a restart reuses them). */
  args: string[];
  /** The running process (replaced by restart). */
  proc: AgentProcess;
  client: ControlClient;
  api: ControlApi;
  /** Stop the agent with `signal` and resolve with its exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Start it again on the same state dir and socket (after stop) with a fresh client. */
  restart(): Promise<void>;
}

export const isRunning = (l: Record<string, unknown>): boolean => l.msg === 'agent running';

export async function startControlAgent(t: Test, options: ControlAgentOptions = {}): Promise<ControlAgent> {
  const stateDir = await tempDir(t, 'brickd-ctl-state-');
  const socketDir = await tempDir(t, 'brickd-ctl-sock-');
  await chmod(socketDir, 0o755);
  const socketPath = path.join(socketDir, 'control.sock');
  const extraDevices: string[] = [];
  for (const size of options.extraDevices ?? []) extraDevices.push(await loopDevice(t, size));
  cleanupAgentState(t, stateDir);

  const args = [
    '--state-dir', stateDir,
    '--control-socket', socketPath,
    '--embedded',
    '--embedded-count', String(options.embeddedCount ?? 2),
    '--embedded-size-bytes', `${options.embeddedSizeMiB ?? 320}MiB`,
    ...extraDevices.flatMap((d) => ['--allow', d]),
    ...(options.secretFile ? await replicationFlags(options.secretFile, options.replicationAddress) : []),
    ...(options.args ?? []),
  ];

  const agent: ControlAgent = {
    stateDir,
    socketPath,
    extraDevices,
    args,
    proc: undefined as unknown as AgentProcess,
    client: undefined as unknown as ControlClient,
    api: undefined as unknown as ControlApi,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      agent.client.close();
      if (agent.proc.child.exitCode === null && agent.proc.child.signalCode === null) agent.proc.child.kill(signal);
      return agent.proc.exited;
    },
    async restart() {
      await launch();
    },
  };
  const launch = async () => {
    agent.proc = startAgent(t, args, options.command ? { command: options.command } : {});
    await agent.proc.waitFor(isRunning);
    agent.client = controlClient(socketPath);
    agent.api = promisify(agent.client);
  };
  // Runs before startAgent's SIGKILL teardown (registered later, run earlier): a clean stop
  // first, so the agent checkpoints its replicas like it would in production.
  t.teardown(async () => {
    agent.client?.close();
    const child = agent.proc?.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await agent.proc.exited;
    clearTimeout(timer);
  });
  await launch();
  return agent;
}

/** What the agent manages, as the API and the kernel see it; equal snapshots mean nothing changed. */
export interface AgentSnapshot {
  devices: Array<{ path: string; eligible: boolean; reasons: string[]; brickId: string; signatures: string[] }>;
  bricks: Array<{ brickId: string; state: string; device: string; mountPath: string; volumes: string[] }>;
  volumes: Array<{ volumeId: string; brickId: string; sizeLimitBytes: number; generation: number; role: string; peers: string[]; writeQuorum: number }>;
  /** Mounts under the agent's state dir: target, fs type, source. */
  mounts: string[];
  /** Loop devices whose backing file lives under the state dir. */
  loops: string[];
}

export async function snapshot(agent: ControlAgent, api: ControlApi = agent.api): Promise<AgentSnapshot> {
  const [devices, bricks, volumes] = await Promise.all([api.listDevices({}), api.listBricks({}), api.listVolumes({})]);
  // Only the devices this agent may touch: the rest of the machine is not the test's business.
  const ours = new Set([...agent.extraDevices, ...bricks.bricks.map((b) => b.device)]);
  const mounts = (await readMountInfo()).filter((m) => m.target.startsWith(agent.stateDir + '/'));
  const loops: string[] = [];
  for (const name of await listLoopNames()) {
    const backing = (await readFile(`/sys/class/block/${name}/loop/backing_file`, 'utf8').catch(() => '')).trim();
    if (backing.startsWith(agent.stateDir + '/')) loops.push(`/dev/${name} ${backing}`);
  }
  return {
    devices: devices.devices
      .filter((d) => ours.has(d.path))
      .map((d) => ({ path: d.path, eligible: d.eligible, reasons: d.reasons.map((r) => r.code), brickId: d.brickId, signatures: d.signatures.map((s) => `${s.type}:${s.uuid}`) }))
      .sort((a, b) => a.path.localeCompare(b.path)),
    bricks: bricks.bricks.map((b) => ({ brickId: b.brickId, state: b.state, device: b.device, mountPath: b.mountPath, volumes: [...b.volumes].sort() })),
    volumes: volumes.volumes.map((v) => ({
      volumeId: v.volumeId,
      brickId: v.brickId,
      sizeLimitBytes: v.sizeLimitBytes,
      generation: v.generation,
      role: v.role,
      peers: v.peers.map((p) => `${p.nodeId}@${p.address}`),
      writeQuorum: v.writeQuorum,
    })),
    mounts: mounts.map((m) => `${m.target} ${m.fsType} ${m.source}`).sort(),
    loops: loops.sort(),
  };
}

async function listLoopNames(): Promise<string[]> {
  const { readdir } = await import('node:fs/promises');
  return (await readdir('/sys/class/block')).filter((n) => /^loop\d+$/.test(n));
}

/** Poll an operation until it is no longer running; resolves with its final state. */
export async function operationDone(api: ControlApi, operationId: string, timeoutMs = 60_000): Promise<ResponseOf<'getOperation'>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const op = await api.getOperation({ operationId });
    if (op.state !== 'running') return op;
    if (Date.now() > until) throw new Error(`operation ${operationId} still running after ${timeoutMs} ms: ${JSON.stringify(op)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
