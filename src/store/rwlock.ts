// Per-key reader/writer locks: many readers or one writer per key (a file id), FIFO fair.
// Used so a read never sees a block whose data and checksum are mid-update.
interface Entry {
  readers: number;
  writer: boolean;
  queue: Array<{ write: boolean; grant: () => void }>;
}

export class KeyedRwLock {
  private readonly entries = new Map<string, Entry>();

  async withRead<T>(key: string, fn: () => Promise<T>): Promise<T> {
    await this.acquire(key, false);
    try {
      return await fn();
    } finally {
      this.release(key, false);
    }
  }

  async withWrite<T>(key: string, fn: () => Promise<T>): Promise<T> {
    await this.acquire(key, true);
    try {
      return await fn();
    } finally {
      this.release(key, true);
    }
  }

  private acquire(key: string, write: boolean): Promise<void> {
    let e = this.entries.get(key);
    if (!e) {
      e = { readers: 0, writer: false, queue: [] };
      this.entries.set(key, e);
    }
    const free = write ? !e.writer && e.readers === 0 : !e.writer && e.queue.length === 0;
    if (free && e.queue.length === 0) {
      if (write) e.writer = true;
      else e.readers++;
      return Promise.resolve();
    }
    return new Promise((grant) => e.queue.push({ write, grant }));
  }

  private release(key: string, write: boolean): void {
    const e = this.entries.get(key)!;
    if (write) e.writer = false;
    else e.readers--;
    while (e.queue.length > 0 && !e.writer) {
      const next = e.queue[0]!;
      if (next.write && e.readers > 0) break;
      e.queue.shift();
      if (next.write) e.writer = true;
      else e.readers++;
      next.grant();
      if (next.write) break;
    }
    if (!e.writer && e.readers === 0 && e.queue.length === 0) this.entries.delete(key);
  }
}
