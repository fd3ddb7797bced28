// V8 heap tuning for brickd's processes: call tuneV8Heap() first thing in an entry point
// (the agent, and the benchmark processes that run brickd's data path).
//
// Why. V8 starts incremental marking (a full mark-compact) as soon as the room left under
// the old generation's allocation limit is no larger than the new space. The limit is the
// live old generation times a growing factor (about 1.1-2 for a small heap), and a process
// that moves data fast grows its semi-spaces to their 16 MiB maximum. brickd's live heap is
// small (~12 MiB) while it allocates quickly (promises, frames, Buffers), so after every
// mark-compact the room was ~16 MiB, not more than the new space, and the next marking
// started at once: measured through a 3-replica FUSE mount, 100-130 mark-compacts per GiB
// in each agent, a third of their CPU. A growing factor of 4 leaves the room well above the
// new space: 5-20 mark-compacts per GiB, the agents' CPU per GiB 12.8 s -> 7.3 s and the
// same 1 GiB write 113 -> 187 MB/s (same machine, same run). The cost is memory: the old
// generation may grow to 4x its live size before it is collected (~50 MiB here).
//
// Setting the flag at run time works for this one: V8 reads the growing factor each time
// it recomputes the limit. (--initial-old-space-size, which would also do, only counts on
// the command line.) An operator's own NODE_OPTIONS/--heap-growing-percent wins.
import v8 from 'node:v8';

export const HEAP_GROWING_PERCENT = 300;

export function tuneV8Heap(): void {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].some((a) => a.startsWith('--heap-growing-percent'));
  if (!given) v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
}
