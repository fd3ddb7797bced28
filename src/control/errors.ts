// How agent errors cross the control API: a gRPC status code chosen by the error's meaning,
// a one-line message, and the machine-readable reason in trailing metadata (brickd-reason).
import * as grpc from '@grpc/grpc-js';
import type { ErrorCode } from '../errors.js';
import { REASON_KEY } from '../wire/control.js';

const STATUS_OF: Partial<Record<ErrorCode, grpc.status>> = {
  CONFIG_INVALID: grpc.status.INVALID_ARGUMENT,
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  NAME_INVALID: grpc.status.INVALID_ARGUMENT,
  REQUEST_ID_REUSED: grpc.status.INVALID_ARGUMENT,
  DEVICE_NOT_FOUND: grpc.status.NOT_FOUND,
  BRICK_NOT_FOUND: grpc.status.NOT_FOUND,
  VOLUME_NOT_FOUND: grpc.status.NOT_FOUND,
  OPERATION_NOT_FOUND: grpc.status.NOT_FOUND,
  DEVICE_NOT_ALLOWED: grpc.status.PERMISSION_DENIED,
  NOT_ROOT: grpc.status.PERMISSION_DENIED,
  DEVICE_TOO_SMALL: grpc.status.FAILED_PRECONDITION,
  DEVICE_IN_USE: grpc.status.FAILED_PRECONDITION,
  DEVICE_HAS_SIGNATURE: grpc.status.FAILED_PRECONDITION,
  DEVICE_IS_BRICK: grpc.status.FAILED_PRECONDITION,
  BRICK_FOREIGN: grpc.status.FAILED_PRECONDITION,
  BRICK_IN_USE: grpc.status.FAILED_PRECONDITION,
  VOLUME_MOUNTED: grpc.status.FAILED_PRECONDITION,
  NOT_PRIMARY: grpc.status.FAILED_PRECONDITION,
  REPLICA_RESYNCING: grpc.status.FAILED_PRECONDITION,
  MOUNT_FAILED: grpc.status.FAILED_PRECONDITION,
  MOUNT_PATH_INVALID: grpc.status.INVALID_ARGUMENT,
  BRICK_FORMAT_TOO_NEW: grpc.status.FAILED_PRECONDITION,
  REPLICA_FORMAT_TOO_NEW: grpc.status.FAILED_PRECONDITION,
  GENERATION_STALE: grpc.status.FAILED_PRECONDITION,
  TOOL_MISSING: grpc.status.FAILED_PRECONDITION,
  VOLUME_EXISTS: grpc.status.ALREADY_EXISTS,
  VOLUME_FULL: grpc.status.RESOURCE_EXHAUSTED,
  NO_BRICK: grpc.status.RESOURCE_EXHAUSTED,
  TOO_MANY_WATCHERS: grpc.status.RESOURCE_EXHAUSTED,
  NOT_IMPLEMENTED: grpc.status.UNIMPLEMENTED,
  STORE_CLOSED: grpc.status.UNAVAILABLE,
};

/** The gRPC error for any failure of a handler. Unknown failures are INTERNAL, still one line. */
export function toServiceError(err: unknown): Partial<grpc.ServiceError> {
  const e = err as { code?: string; message?: string };
  let reason = typeof e.code === 'string' ? e.code : 'INTERNAL';
  let code = STATUS_OF[reason as ErrorCode];
  if (code === undefined) {
    if (err instanceof TypeError || err instanceof RangeError) {
      code = grpc.status.INVALID_ARGUMENT;
      reason = 'INVALID_ARGUMENT';
    } else {
      code = grpc.status.INTERNAL;
    }
  }
  const metadata = new grpc.Metadata();
  metadata.set(REASON_KEY, reason);
  const message = String(e.message ?? err).split('\n')[0]!;
  return { code, details: message, metadata };
}
