// brickctl's connection to one agent: promise-returning calls with a deadline, request ids
// and one retry for mutating calls, operation watching, and the event stream.
//
// Retry rule: a mutating call carries a fresh request id; if it fails with UNAVAILABLE or
// DEADLINE_EXCEEDED (the agent may or may not have acted), it is sent once more with the
// same id, so the agent returns the first call's result instead of acting twice
// (src/control/idempotency.ts). Read-only calls are not retried: they fail fast.
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { controlClient, type pb, type ControlClient } from '../wire/control.js';
import { fromCallError, isRetryable, CliError, EXIT } from './exit.js';

/** Request shapes (plain objects) of the unary methods. */
interface Requests {
  getNodeInfo: pb.IGetNodeInfoRequest;
  listDevices: pb.IListDevicesRequest;
  adoptDevice: pb.IAdoptDeviceRequest;
  releaseDevice: pb.IReleaseDeviceRequest;
  listBricks: pb.IListBricksRequest;
  createVolume: pb.ICreateVolumeRequest;
  updateVolume: pb.IUpdateVolumeRequest;
  deleteVolume: pb.IDeleteVolumeRequest;
  listVolumes: pb.IListVolumesRequest;
  getVolumeStatus: pb.IGetVolumeStatusRequest;
  mountVolume: pb.IMountVolumeRequest;
  unmountVolume: pb.IUnmountVolumeRequest;
  startScrub: pb.IStartScrubRequest;
  stopScrub: pb.IStopScrubRequest;
  getOperation: pb.IGetOperationRequest;
}

/**
 * Response types of the unary methods: the decoded message classes (the deserializer is the
 * generated decode(), so every field is present, repeated fields as arrays).
 */
interface Responses {
  getNodeInfo: pb.NodeInfo;
  listDevices: pb.ListDevicesResponse;
  adoptDevice: pb.Operation;
  releaseDevice: pb.ReleaseDeviceResponse;
  listBricks: pb.ListBricksResponse;
  createVolume: pb.Volume;
  updateVolume: pb.Volume;
  deleteVolume: pb.DeleteVolumeResponse;
  listVolumes: pb.ListVolumesResponse;
  getVolumeStatus: pb.VolumeStatus;
  mountVolume: pb.MountVolumeResponse;
  unmountVolume: pb.UnmountVolumeResponse;
  startScrub: pb.Operation;
  stopScrub: pb.Operation;
  getOperation: pb.Operation;
}

export type UnaryMethod = keyof Requests;
type Response<K extends UnaryMethod> = Responses[K];

/** The mutating methods: each carries a request_id. */
export type MutatingMethod = 'adoptDevice' | 'releaseDevice' | 'createVolume' | 'updateVolume' | 'deleteVolume' | 'mountVolume' | 'unmountVolume' | 'startScrub' | 'stopScrub';

type UnaryFn = (request: unknown, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, callback: (err: grpc.ServiceError | null, response?: unknown) => void) => grpc.ClientUnaryCall;
type StreamFn<Res> = (request: unknown, metadata?: grpc.Metadata, options?: Partial<grpc.CallOptions>) => grpc.ClientReadableStream<Res>;

/** The gRPC method names as the API spells them, for error messages. */
const API_NAME = (method: string) => method.charAt(0).toUpperCase() + method.slice(1);

/** A control socket path or URI as grpc-js wants it: unix:///absolute/path. */
export function socketTarget(socket: string): string {
  if (socket.includes('://')) return socket;
  if (socket.startsWith('unix:')) return `unix://${path.resolve(socket.slice('unix:'.length))}`;
  return `unix://${path.resolve(socket)}`;
}

export interface AgentClientOptions {
  /** Deadline of each unary call. */
  timeoutMs: number;
  /** Pause before the one retry of a mutating call. */
  retryDelayMs?: number;
  /** Prefix of error messages, e.g. the node's name in a topology. */
  label?: string;
}

export class AgentClient {
  readonly target: string;
  private readonly client: ControlClient;

  constructor(
    socket: string,
    private readonly options: AgentClientOptions,
  ) {
    this.target = socketTarget(socket);
    this.client = controlClient(this.target);
  }

  close(): void {
    this.client.close();
  }

  private context(method: string, what?: string): string {
    return [this.options.label, `${API_NAME(method)}${what ? ` ${what}` : ''}`].filter(Boolean).join(': ');
  }

  private once<K extends UnaryMethod>(method: K, request: Requests[K]): Promise<Response<K>> {
    return new Promise((resolve, reject) => {
      const fn = this.client[method] as unknown as UnaryFn;
      fn.call(this.client, request, new grpc.Metadata(), { deadline: Date.now() + this.options.timeoutMs }, (err, response) =>
        err ? reject(err) : resolve(response as Response<K>),
      );
    });
  }

  /** A read-only call; failures become CliErrors (no retry). `what` names the target in messages. */
  async call<K extends Exclude<UnaryMethod, MutatingMethod>>(method: K, request: Requests[K], what?: string): Promise<Response<K>> {
    try {
      return await this.once(method, request);
    } catch (err) {
      throw fromCallError(err, this.context(method, what), this.target);
    }
  }

  /**
   * A mutating call with a generated request id (unless the request has one), retried once
   * with the same id on UNAVAILABLE or DEADLINE_EXCEEDED.
   */
  async mutate<K extends MutatingMethod>(method: K, request: Requests[K], what?: string): Promise<Response<K>> {
    const withId = { ...request, requestId: request.requestId || randomUUID() } as Requests[K];
    try {
      return await this.once(method, withId);
    } catch (first) {
      if (!isRetryable(first)) throw fromCallError(first, this.context(method, what), this.target);
      await new Promise((r) => setTimeout(r, this.options.retryDelayMs ?? 500));
      try {
        return await this.once(method, withId);
      } catch (second) {
        throw fromCallError(second, this.context(method, what), this.target);
      }
    }
  }

  /**
   * Follow an operation until it is done: `onUpdate` sees every state the agent streams.
   * Resolves with the final operation (succeeded or failed: the caller decides what a
   * failure means). `timeoutMs` bounds the whole wait; 0 waits as long as it takes. If the
   * stream breaks while the operation runs, the wait goes on by polling GetOperation.
   */
  async watchOperation(operationId: string, onUpdate: (op: pb.Operation) => void, timeoutMs = 0): Promise<pb.Operation> {
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : Infinity;
    let last: pb.Operation | undefined;
    try {
      last = await new Promise<pb.Operation | undefined>((resolve, reject) => {
        const watch = this.client.watchOperation as unknown as StreamFn<pb.Operation>;
        const stream = watch.call(this.client, { operationId }, new grpc.Metadata(), Number.isFinite(deadline) ? { deadline } : {});
        let latest: pb.Operation | undefined;
        stream.on('data', (op: pb.Operation) => {
          latest = op;
          onUpdate(op);
        });
        stream.on('error', (err) => reject(Object.assign(err, { latest })));
        stream.on('end', () => resolve(latest));
      });
    } catch (err) {
      const e = err as grpc.ServiceError & { latest?: pb.Operation };
      if (!isRetryable(e) || Date.now() >= deadline) throw fromCallError(e, this.context('watchOperation', operationId), this.target);
      last = e.latest;
    }
    // Polling: after a broken stream, or if the stream ended without a final state.
    while (!last || last.state === 'running') {
      if (Date.now() >= deadline) {
        throw new CliError(EXIT.UNREACHABLE, 'DEADLINE_EXCEEDED', `${this.context('watchOperation', operationId)}: still running after the --timeout; see \`brickctl op get ${operationId}\``);
      }
      if (last) await new Promise((r) => setTimeout(r, 250));
      last = await this.call('getOperation', { operationId }, operationId);
      onUpdate(last);
    }
    return last;
  }

  /** Stream the node's events until `stop()`; `done` resolves when the stream ends, rejects with a CliError if it breaks. */
  events(onEvent: (event: pb.Event) => void): { stop: () => void; done: Promise<void> } {
    const watch = this.client.watchEvents as unknown as StreamFn<pb.Event>;
    const stream = watch.call(this.client, {}, new grpc.Metadata(), {});
    let stopped = false;
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', onEvent);
      stream.on('error', (err: grpc.ServiceError) => {
        if (stopped && err.code === grpc.status.CANCELLED) resolve();
        else reject(fromCallError(err, this.context('watchEvents'), this.target));
      });
      stream.on('end', () => resolve());
    });
    return {
      stop: () => {
        stopped = true;
        stream.cancel();
      },
      done,
    };
  }
}

/** A decoded message as a plain JSON-ready object with every field present (defaults included). */
export function plain<T>(codec: { toObject(m: T, o?: { defaults?: boolean; arrays?: boolean; objects?: boolean }): Record<string, unknown> }, message: T): Record<string, unknown> {
  return codec.toObject(message, { defaults: true, arrays: true, objects: true });
}
