// A minimal async mutex: callers queue and run one at a time, in arrival order.
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  /** Run `fn` once every earlier caller has finished; its result or error passes through. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
