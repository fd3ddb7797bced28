// Long-running operations of the control API (adopting a device, scrubbing a volume):
// each gets an id that clients poll (GetOperation) or watch (WatchOperation).
//
// State machine: running → succeeded | failed, never back. `update` publishes progress
// to watchers; finished operations are kept (bounded, oldest dropped first) so a client
// that polls after the end still sees the result.
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { BrickdError } from '../errors.js';

export type OperationState = 'running' | 'succeeded' | 'failed';

export interface OperationRecord<T = unknown> {
  operationId: string;
  kind: string;
  target: string;
  state: OperationState;
  progress: number;
  message: string;
  errorReason?: string;
  errorMessage?: string;
  result?: T;
  startedAt: string;
  finishedAt?: string;
}

const KEEP_FINISHED = 1000;

export class Operations {
  private readonly records = new Map<string, OperationRecord>();
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  /**
   * Start `work` as an operation. `work` reports progress through its argument and resolves
   * with the result; a rejection marks the operation failed with the error's code.
   */
  start<T>(kind: string, target: string, work: (update: (progress: number, message?: string) => void) => Promise<T>): OperationRecord<T> {
    const record: OperationRecord<T> = {
      operationId: randomUUID(),
      kind,
      target,
      state: 'running',
      progress: 0,
      message: '',
      startedAt: new Date().toISOString(),
    };
    this.records.set(record.operationId, record);
    this.trim();
    const update = (progress: number, message?: string) => {
      if (record.state !== 'running') return;
      record.progress = Math.max(0, Math.min(1, progress));
      if (message !== undefined) record.message = message;
      this.publish(record);
    };
    void work(update).then(
      (result) => {
        record.result = result;
        record.state = 'succeeded';
        record.progress = 1;
        record.finishedAt = new Date().toISOString();
        this.publish(record);
      },
      (err: unknown) => {
        record.state = 'failed';
        record.errorReason = (err as { code?: string }).code ?? 'INTERNAL';
        record.errorMessage = (err as Error).message;
        record.finishedAt = new Date().toISOString();
        this.publish(record);
      },
    );
    return record;
  }

  get(operationId: string): OperationRecord {
    const record = this.records.get(operationId);
    if (!record) throw new BrickdError('OPERATION_NOT_FOUND', `no operation ${JSON.stringify(operationId)}`, { operationId });
    return record;
  }

  /** Call `listener` on every change of the operation until it finishes; returns the unsubscribe function. */
  watch(operationId: string, listener: (record: OperationRecord) => void): () => void {
    const channel = `op:${operationId}`;
    this.emitter.on(channel, listener);
    return () => this.emitter.off(channel, listener);
  }

  private publish(record: OperationRecord): void {
    this.emitter.emit(`op:${record.operationId}`, record);
  }

  private trim(): void {
    if (this.records.size <= KEEP_FINISHED) return;
    for (const [id, r] of this.records) {
      if (this.records.size <= KEEP_FINISHED) break;
      if (r.state !== 'running') this.records.delete(id);
    }
  }
}
