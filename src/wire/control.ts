// The control API's gRPC service definition, built from the protobufjs code generated out
// of proto/brickd/v1/control.proto (npm run build:proto → src/wire/gen/).
//
// This module and its siblings in src/wire are the only users of protobufjs. The server
// (src/control) and the clients (brickctl, tests) share this one definition, so a method's
// path and its message types cannot drift apart.
import * as grpc from '@grpc/grpc-js';
import './protobuf.js';
import { brickd } from './gen/control.js';

export import pb = brickd.v1;

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(reader: Uint8Array): T;
}

/**
 * What the server's decoder hands a handler for bytes that are not a valid message of the
 * method's request type. grpc-js answers a decoder that throws with INTERNAL and no reason,
 * before any handler or log sees the call; bad input is the caller's error, so the decoder
 * never throws and the server answers INVALID_ARGUMENT (and logs it) on seeing this value.
 */
export class UndecodableRequest {
  constructor(
    readonly method: string,
    readonly reason: string,
  ) {}
}

// The literal type of `responseStream` is kept (not widened to boolean) so that the client
// type below can tell the streaming methods from the unary ones.
function unary<Req, Res, Stream extends boolean = false>(
  name: string,
  req: Codec<Req>,
  res: Codec<Res>,
  responseStream: Stream = false as Stream,
): grpc.MethodDefinition<Req, Res> & { responseStream: Stream } {
  return {
    path: `/brickd.v1.Control/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: (m: Req) => Buffer.from(req.encode(m).finish()),
    // Typed as Req for grpc-js; the server checks for UndecodableRequest before using it.
    requestDeserialize: (b: Buffer) => {
      try {
        return req.decode(b);
      } catch (err) {
        return new UndecodableRequest(name, (err as Error).message) as unknown as Req;
      }
    },
    responseSerialize: (m: Res) => Buffer.from(res.encode(m).finish()),
    responseDeserialize: (b: Buffer) => res.decode(b),
    originalName: name.charAt(0).toLowerCase() + name.slice(1),
  };
}

/** Every method of brickd.v1.Control, keyed by its camelCase name. */
export const ControlService = {
  getNodeInfo: unary('GetNodeInfo', pb.GetNodeInfoRequest, pb.NodeInfo),
  listDevices: unary('ListDevices', pb.ListDevicesRequest, pb.ListDevicesResponse),
  adoptDevice: unary('AdoptDevice', pb.AdoptDeviceRequest, pb.Operation),
  releaseDevice: unary('ReleaseDevice', pb.ReleaseDeviceRequest, pb.ReleaseDeviceResponse),
  listBricks: unary('ListBricks', pb.ListBricksRequest, pb.ListBricksResponse),
  createVolume: unary('CreateVolume', pb.CreateVolumeRequest, pb.Volume),
  updateVolume: unary('UpdateVolume', pb.UpdateVolumeRequest, pb.Volume),
  deleteVolume: unary('DeleteVolume', pb.DeleteVolumeRequest, pb.DeleteVolumeResponse),
  listVolumes: unary('ListVolumes', pb.ListVolumesRequest, pb.ListVolumesResponse),
  getVolumeStatus: unary('GetVolumeStatus', pb.GetVolumeStatusRequest, pb.VolumeStatus),
  mountVolume: unary('MountVolume', pb.MountVolumeRequest, pb.MountVolumeResponse),
  unmountVolume: unary('UnmountVolume', pb.UnmountVolumeRequest, pb.UnmountVolumeResponse),
  startScrub: unary('StartScrub', pb.StartScrubRequest, pb.Operation),
  stopScrub: unary('StopScrub', pb.StopScrubRequest, pb.Operation),
  getOperation: unary('GetOperation', pb.GetOperationRequest, pb.Operation),
  watchOperation: unary('WatchOperation', pb.GetOperationRequest, pb.Operation, true),
  watchEvents: unary('WatchEvents', pb.WatchEventsRequest, pb.Event, true),
} as const;

export type ControlMethod = keyof typeof ControlService;

/** Trailing-metadata key carrying a failed call's machine-readable reason. */
export const REASON_KEY = 'brickd-reason';

type UnaryCall<Req, Res> = (request: Req, metadata: grpc.Metadata, options: Partial<grpc.CallOptions>, callback: (err: grpc.ServiceError | null, response?: Res) => void) => grpc.ClientUnaryCall;
type StreamCall<Req, Res> = (request: Req, metadata?: grpc.Metadata, options?: Partial<grpc.CallOptions>) => grpc.ClientReadableStream<Res>;
type ClientMethods = {
  [K in ControlMethod]: (typeof ControlService)[K] extends grpc.MethodDefinition<infer Req, infer Res>
    ? (typeof ControlService)[K]['responseStream'] extends true
      ? StreamCall<Req, Res>
      : UnaryCall<Req, Res>
    : never;
};

/** A typed gRPC client of the control API. */
export type ControlClient = grpc.Client & ClientMethods;

const ClientConstructor = grpc.makeGenericClientConstructor(ControlService as unknown as grpc.ServiceDefinition, 'Control');

/**
 * Connect to an agent: `unix:///run/brickd/control.sock` or a path (taken as a Unix socket);
 * or, with TLS credentials (the agent's controlTcpAddress, mutual TLS), `host:port`.
 */
export function controlClient(target: string, tls?: grpc.ChannelCredentials): ControlClient {
  if (tls) return new ClientConstructor(target, tls) as unknown as ControlClient;
  const address = target.includes('://') || target.startsWith('unix:') ? target : `unix://${target}`;
  return new ClientConstructor(address, grpc.credentials.createInsecure()) as unknown as ControlClient;
}
