// The highest seq such that it and every earlier one are done, when completions arrive out
// of order (log writes, applies, replicated applies). Seqs done ahead of the run wait in a
// set until the gap before them closes.
export class ContiguousSeq {
  private readonly ahead = new Set<bigint>();

  constructor(public value: bigint) {}

  /** Mark `seq` done; true if the run advanced. */
  complete(seq: bigint): boolean {
    if (seq !== this.value + 1n) {
      this.ahead.add(seq);
      return false;
    }
    this.value = seq;
    while (this.ahead.delete(this.value + 1n)) this.value++;
    return true;
  }

  /** Forget completions ahead of the run and restart it at `value`. */
  reset(value: bigint): void {
    this.ahead.clear();
    this.value = value;
  }
}
