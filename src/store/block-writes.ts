// Groups the small block writes of concurrent mutations into one native job.
//
// Every pool job costs the loop thread a queue, a thread wake-up and a completion
// callback, which at queue depth 16 cost more loop time than the 4 KiB writes themselves
// (measured: the loop thread was the bottleneck at 100%). Writes requested in one turn of
// the event loop go to the addon together (native.writeBlocksBatch), each with its own
// result.
//
// Ordering: this adds none and removes none. Callers hold their file's lock (rwlock.ts)
// across the write, so two writes that touch the same pages never share a batch; writes
// to other pages of the file, or to other files, are independent (and a batch runs its
// entries in order anyway). The caller also keeps its file open (FileTable.use) until the returned
// promise settles, so every descriptor in a batch is open while the batch runs.
import { native } from '../native.js';

type Entry = [dataFd: number, sumsFd: number, data: Uint8Array, offset: number, blockSize: number];

export class BlockWriteBatcher {
  private entries: Entry[] = [];
  private settle: Array<{ resolve: () => void; reject: (err: unknown) => void }> = [];

  /** `maxBatch`: a batch is sent at this many writes even within one turn (bounds one job's duration). */
  constructor(private readonly maxBatch: number) {
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new RangeError(`blockWriteBatch must be an integer >= 1, got ${maxBatch}`);
  }

  /** native.writeBlocks(dataFd, sumsFd, data, offset, blockSize), sent with the others of this turn. */
  write(dataFd: number, sumsFd: number, data: Uint8Array, offset: number, blockSize: number): Promise<void> {
    if (this.entries.length === 0) process.nextTick(() => this.send());
    const done = new Promise<void>((resolve, reject) => {
      this.entries.push([dataFd, sumsFd, data, offset, blockSize]);
      this.settle.push({ resolve, reject });
    });
    if (this.entries.length >= this.maxBatch) this.send();
    return done;
  }

  // process.nextTick, queued from a promise continuation, runs once the microtask queue is
  // empty: after every mutation that this turn's completions set going has reached here.
  private send(): void {
    if (this.entries.length === 0) return;
    const entries = this.entries;
    const settle = this.settle;
    this.entries = [];
    this.settle = [];
    if (entries.length === 1) {
      const [dataFd, sumsFd, data, offset, blockSize] = entries[0]!;
      native.writeBlocks(dataFd, sumsFd, data, offset, blockSize).then(settle[0]!.resolve, settle[0]!.reject);
      return;
    }
    let sent: Promise<Array<Error | null>>;
    try {
      sent = native.writeBlocksBatch(entries);
    } catch (err) {
      // A malformed argument (a caller's bug, thrown before anything is written) fails the
      // whole batch: every write in it rejects with that error, none was done.
      for (const s of settle) s.reject(err);
      return;
    }
    sent.then(
      (errors) => errors.forEach((err, i) => (err ? settle[i]!.reject(err) : settle[i]!.resolve())),
      (err: unknown) => settle.forEach((s) => s.reject(err)),
    );
  }
}
