// brickctl's exit codes, the one error class its commands throw, and how a failed control
// call (gRPC status + brickd-reason) or a failed operation becomes an exit code.
//
// The codes are a contract with scripts: they are printed by `brickctl --help`, listed in
// the README, and asserted by test/cli/brickctl.test.ts. Add codes, never renumber them.
import * as grpc from '@grpc/grpc-js';
import type { ErrorCode } from '../errors.js';
import { REASON_KEY } from '../wire/control.js';

export const EXIT = {
  /** Done. */
  OK: 0,
  /** Anything else: an internal error of the agent, a failed operation, ... */
  FAILURE: 1,
  /** The command line or an input file (topology) is wrong, or the agent rejected an argument. */
  USAGE: 2,
  /** The volume, brick, device or operation does not exist. */
  NOT_FOUND: 3,
  /** Refused: a precondition does not hold (device has a signature, brick in use, stale generation, not allowed, no room, placement impossible). */
  REFUSED: 4,
  /** The agent could not be reached or did not answer in time. */
  UNREACHABLE: 5,
  /** The agent does not implement this call yet. */
  UNIMPLEMENTED: 6,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The table printed by --help and copied into the README. */
export const EXIT_CODE_HELP = `Exit codes:
  0  ok
  1  failure: agent internal error, anything not listed below (a waited-for operation that
     ended failed exits with the code of its reason, 1 for reasons not listed)
  2  usage error: bad command line or topology file, or the agent rejected an argument (INVALID_ARGUMENT)
  3  not found: no such volume, brick, device or operation (NOT_FOUND)
  4  refused: a precondition does not hold, e.g. DEVICE_HAS_SIGNATURE, BRICK_IN_USE,
     GENERATION_STALE, DEVICE_NOT_ALLOWED, VOLUME_EXISTS, NO_BRICK, or a placement that
     cannot be made (NOT_ENOUGH_NODES, NOT_ENOUGH_ZONES, NOT_ENOUGH_CAPACITY)
  5  agent unreachable: no agent on the socket, or no answer within --timeout
  6  unimplemented: the agent does not serve this call yet (UNIMPLEMENTED)`;

/**
 * A failure that ends a brickctl command: what to print, why (a stable SCREAMING reason,
 * the agent's brickd-reason when it came from the agent) and the exit code.
 */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    readonly reason: string,
    message: string,
    /** The gRPC status name when the failure is a control call's, e.g. FAILED_PRECONDITION. */
    readonly status?: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export function usageError(message: string): CliError {
  return new CliError(EXIT.USAGE, 'USAGE', message);
}

const EXIT_OF_STATUS: Partial<Record<grpc.status, ExitCode>> = {
  [grpc.status.INVALID_ARGUMENT]: EXIT.USAGE,
  [grpc.status.NOT_FOUND]: EXIT.NOT_FOUND,
  [grpc.status.FAILED_PRECONDITION]: EXIT.REFUSED,
  [grpc.status.ALREADY_EXISTS]: EXIT.REFUSED,
  [grpc.status.RESOURCE_EXHAUSTED]: EXIT.REFUSED,
  [grpc.status.PERMISSION_DENIED]: EXIT.REFUSED,
  [grpc.status.ABORTED]: EXIT.REFUSED,
  [grpc.status.OUT_OF_RANGE]: EXIT.REFUSED,
  [grpc.status.UNAVAILABLE]: EXIT.UNREACHABLE,
  [grpc.status.DEADLINE_EXCEEDED]: EXIT.UNREACHABLE,
  [grpc.status.UNIMPLEMENTED]: EXIT.UNIMPLEMENTED,
};

/**
 * Exit codes of the agent's reasons that reach brickctl without a status: the error_reason
 * of a failed operation. Reasons not listed are failures (1).
 */
const EXIT_OF_REASON: Partial<Record<ErrorCode | 'INTERNAL', ExitCode>> = {
  INVALID_ARGUMENT: EXIT.USAGE,
  DEVICE_NOT_FOUND: EXIT.NOT_FOUND,
  BRICK_NOT_FOUND: EXIT.NOT_FOUND,
  VOLUME_NOT_FOUND: EXIT.NOT_FOUND,
  OPERATION_NOT_FOUND: EXIT.NOT_FOUND,
  DEVICE_NOT_ALLOWED: EXIT.REFUSED,
  DEVICE_TOO_SMALL: EXIT.REFUSED,
  DEVICE_IN_USE: EXIT.REFUSED,
  DEVICE_HAS_SIGNATURE: EXIT.REFUSED,
  DEVICE_IS_BRICK: EXIT.REFUSED,
  BRICK_FOREIGN: EXIT.REFUSED,
  BRICK_IN_USE: EXIT.REFUSED,
  GENERATION_STALE: EXIT.REFUSED,
  VOLUME_EXISTS: EXIT.REFUSED,
  VOLUME_FULL: EXIT.REFUSED,
  NO_BRICK: EXIT.REFUSED,
  NOT_IMPLEMENTED: EXIT.UNIMPLEMENTED,
};

export function exitCodeOfReason(reason: string): ExitCode {
  return EXIT_OF_REASON[reason as ErrorCode] ?? EXIT.FAILURE;
}

function statusName(code: number): string {
  return (grpc.status as unknown as Record<number, string>)[code] ?? String(code);
}

/**
 * The CliError for a failed control call. `context` says what was being done ("volume
 * status v1", "node a: AdoptDevice /dev/sdb") and prefixes the message.
 */
export function fromCallError(err: unknown, context: string, target?: string): CliError {
  if (err instanceof CliError) return err;
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code !== 'number') {
    return new CliError(EXIT.FAILURE, 'INTERNAL', `${context}: ${(err as Error)?.message ?? String(err)}`);
  }
  const status = statusName(e.code);
  const fromAgent = e.metadata?.get(REASON_KEY)[0];
  const reason = typeof fromAgent === 'string' && fromAgent ? fromAgent : status;
  let message = e.details || status;
  if (e.code === grpc.status.UNAVAILABLE && !fromAgent) {
    // grpc-js: "No connection established. Last error: Error: connect ENOENT /x.sock. Resolution note: "
    const cause = /Last error: (?:Error: )?(.*?)\.?\s*(?:Resolution note:.*)?$/s.exec(message)?.[1];
    message = `agent unreachable${target ? ` at ${target.replace(/^unix:\/\//, '')}` : ''} (${cause || message})`;
  }
  if (e.code === grpc.status.DEADLINE_EXCEEDED && !fromAgent) message = `no answer from the agent in time (${message}); see --timeout`;
  // The agent's messages already start with their reason ("DEVICE_HAS_SIGNATURE: ..."); others get it.
  if (!message.startsWith(`${reason}:`)) message = `${reason}: ${message}`;
  const exitCode = EXIT_OF_STATUS[e.code] ?? EXIT.FAILURE;
  return new CliError(exitCode, reason, `${context}: ${message}`, status);
}

/** Whether a failed call may be retried with the same request id. */
export function isRetryable(err: unknown): boolean {
  const code = (err as Partial<grpc.ServiceError>)?.code;
  return code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED;
}
