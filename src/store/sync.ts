// Coalescing of flushes: every caller of request() is covered by one run of `flush` that
// starts after its call. While a flush runs, new callers share the next one, so N
// concurrent requests cost at most two flushes instead of N.
export class SyncCoalescer {
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(private readonly flush: () => Promise<void>) {}

  request(): Promise<void> {
    if (!this.running) {
      this.running = this.flush().finally(() => {
        this.running = undefined;
      });
      return this.running;
    }
    this.next ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.request();
      });
    return this.next;
  }
}
