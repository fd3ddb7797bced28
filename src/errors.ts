// Every error code the agent can emit, and the one error class that carries them.
//
// Misuse of an API (a wrong type, an out-of-range number) throws TypeError/RangeError
// naming the argument. Everything else that fails at run time is a BrickdError with a
// stable SCREAMING code that callers, the control API and tests switch on; the original
// error, if any, rides along in `cause`. System errors from node or the addon keep their
// errno shape ({ code: 'EBUSY', syscall, path }) until a layer gives them a meaning.
// This module imports nothing.

export const ErrorCodes = {
  // configuration
  CONFIG_INVALID: 'a configuration value is missing, of the wrong type or out of range',
  // privileges and environment
  NOT_ROOT: 'the operation needs root (CAP_SYS_ADMIN)',
  TOOL_MISSING: 'a required system tool is not installed',
  TOOL_FAILED: 'a system tool exited with an error',
  // devices
  DEVICE_NOT_FOUND: 'no such block device',
  DEVICE_NOT_ALLOWED: 'the device does not match the allowlist',
  DEVICE_TOO_SMALL: 'the device is smaller than the minimum brick size',
  DEVICE_IN_USE: 'the device is mounted or held by another user',
  DEVICE_HAS_SIGNATURE: 'the device carries a filesystem, partition table, LVM, RAID or swap signature',
  DEVICE_IS_BRICK: 'the device already holds a brick',
  DEVICE_IS_LOOP_OF_OTHERS: 'the loop device was not attached by this agent',
  // bricks
  BRICK_NOT_FOUND: 'no such brick',
  BRICK_MANIFEST_INVALID: 'the brick manifest is unreadable or inconsistent',
  BRICK_FORMAT_TOO_NEW: 'the on-disk format is newer than this agent understands',
  BRICK_FOREIGN: 'the brick belongs to another node',
  MOUNT_FAILED: 'mounting a brick or a volume (FUSE) failed or could not be verified',
  // replica store
  NAME_INVALID: 'a path is absolute, has . or .. or NUL, or is too long',
  VOLUME_NOT_FOUND: 'no such volume replica on this brick',
  VOLUME_EXISTS: 'a replica of this volume already exists with other settings',
  VOLUME_FULL: 'the write would exceed the volume size limit or the brick has no room (ENOSPC)',
  CHECKSUM_MISMATCH: 'data does not match its checksum',
  LOG_CORRUPT: 'the write log is damaged before its last durable record',
  STORE_CLOSED: 'the replica store is closed',
  REPLICA_FORMAT_TOO_NEW: 'the replica on-disk format is newer than this agent understands',
  SEQ_GAP: 'a replicated mutation does not follow the replica\'s last seq: it needs catch-up',
  // volumes on this node
  GENERATION_STALE: 'the request carries a generation lower than the replica has seen',
  BRICK_IN_USE: 'the brick still holds volume replicas',
  NO_BRICK: 'no mounted brick has room for the replica',
  VOLUME_MOUNTED: 'the volume is mounted here (unmount it first)',
  NOT_PRIMARY: 'the replica here is not the primary: it can only be mounted read-only',
  REPLICA_RESYNCING: 'the replica is being resynced: its tree is partial until the resync completes',
  MOUNT_PATH_INVALID: 'the mount path is not absolute, is /, or lies inside the agent state dir',
  // control API
  INVALID_ARGUMENT: 'a request field is missing, of the wrong type or out of range',
  NOT_IMPLEMENTED: 'the call is part of the API but this agent does not serve it yet',
  OPERATION_NOT_FOUND: 'no such operation',
  REQUEST_ID_REUSED: 'a request id was reused for a different call',
  CONTROL_SOCKET_IN_USE: 'another agent is serving the control socket',
  STATE_DIR_IN_USE: 'another agent runs on this state dir',
  // replication (the wire ERROR frame carries these codes too)
  BAD_FRAME: 'a replication frame or message is malformed, oversized or fails its checksum',
  UNAUTHENTICATED: 'the peer did not prove knowledge of the cluster secret',
  CLUSTER_MISMATCH: 'the peer belongs to another cluster',
  VOLUME_MISMATCH: 'the peer holds another incarnation of the volume id (a volume deleted and created again, or two volumes under one id)',
  PROTOCOL_VIOLATION: 'a well-formed frame arrived out of turn',
  APPLY_FAILED: 'the replica could not apply a replicated mutation',
  SUPERSEDED: 'a newer replication session for the same volume took over',
  TIMEOUT: 'the peer did not answer in time',
  SHUTTING_DOWN: 'the replication endpoint is closing',
  REPLICA_REFUSED: 'the replica ended the session with an error of its own',
  LINK_CLOSED: 'the replication link is closed or failed',
  QUORUM_LOST: 'the write did not reach its write quorum in time: it is not acknowledged',
  RESYNC_OVERRUN: 'the mutations made during a resync outgrew the retained queue: the resync starts over',
  REPAIR_UNAVAILABLE: 'no healthy copy could supply the bytes of a damaged block',
  // metrics and health endpoint
  METRICS_ADDRESS_UNAVAILABLE: 'the metrics/health HTTP address cannot be listened on (in use, not local, or not permitted)',
  TOO_MANY_WATCHERS: 'the agent already serves as many event watchers as it allows',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class BrickdError extends Error {
  readonly code: ErrorCode;
  /** Structured facts about the failure (device path, brick id, ...), safe to log and return. */
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, cause?: unknown) {
    super(`${code}: ${message}`, cause === undefined ? undefined : { cause });
    this.name = 'BrickdError';
    this.code = code;
    this.details = details;
  }
}

/** True for a BrickdError, optionally of one code. */
export function isBrickdError(err: unknown, code?: ErrorCode): err is BrickdError {
  return err instanceof BrickdError && (code === undefined || err.code === code);
}

/** True for a node-style system error with the given errno code (ENOENT, EBUSY, ...). */
export function isSystemError(err: unknown, code: string): err is NodeJS.ErrnoException {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}
