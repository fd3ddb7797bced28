// An undo stack for a benchmark peer's setup: each step that made something (a loop device,
// a mount, a process, a namespace) pushes the step that takes it away, and `run` takes
// everything away in reverse order. Every undo step runs even when an earlier one failed:
// a failed unmount must not keep the loop devices and the namespace behind it alive.
export class UndoStack {
  private readonly steps: Array<{ what: string; undo: () => Promise<unknown> }> = [];

  /** Register the undo of something just made; `what` names it in failure messages. */
  push(what: string, undo: () => Promise<unknown>): void {
    this.steps.push({ what, undo });
  }

  /** Run every undo step, last pushed first; resolves with one message per failed step. */
  async run(): Promise<string[]> {
    const failures: string[] = [];
    for (const { what, undo } of this.steps.splice(0).reverse()) {
      try {
        await undo();
      } catch (err) {
        failures.push(`${what}: ${(err as Error).message}`);
      }
    }
    return failures;
  }
}
