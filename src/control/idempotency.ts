// Remembering mutating calls by request id, so an orchestrator can retry after a timeout
// and get the first call's answer instead of a second action.
//
// The first call with a request id runs; later calls with the same id and the same method
// get the same promise (in flight or settled). The same id on another method is refused
// (REQUEST_ID_REUSED). Bounded: at most MAX_ENTRIES ids of at most MAX_REQUEST_ID_LENGTH
// characters, the oldest forgotten first. In memory only: an agent restart forgets them,
// which is safe because every mutating call is also naturally idempotent (adopting our own
// brick again returns it, deleting a gone volume succeeds).
import { BrickdError } from '../errors.js';

const MAX_ENTRIES = 10_000;
/** Request ids are kept in memory: bounded so that 10,000 of them cannot take gigabytes. */
const MAX_REQUEST_ID_LENGTH = 256;

export class RequestLog {
  private readonly entries = new Map<string, { method: string; result: Promise<unknown> }>();

  run<T>(method: string, requestId: string | undefined, fn: () => Promise<T>): Promise<T> {
    if (!requestId) return fn();
    if (requestId.length > MAX_REQUEST_ID_LENGTH || requestId.includes('\0')) {
      return Promise.reject(new BrickdError('INVALID_ARGUMENT', `request_id must be at most ${MAX_REQUEST_ID_LENGTH} characters without NUL`));
    }
    const found = this.entries.get(requestId);
    if (found) {
      if (found.method !== method) {
        return Promise.reject(new BrickdError('REQUEST_ID_REUSED', `request id ${JSON.stringify(requestId)} was used for ${found.method}, not ${method}`));
      }
      return found.result as Promise<T>;
    }
    const result = fn();
    this.entries.set(requestId, { method, result });
    // A call that failed is not remembered: its retry should run again.
    result.catch(() => this.entries.delete(requestId));
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    return result;
  }
}
