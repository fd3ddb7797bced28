// Page-aligned buffers for data on its way to an O_DIRECT write, or to be filled by an
// O_DIRECT read.
//
// The store writes large block-aligned ranges through an O_DIRECT descriptor
// (native.writeBlocks with directFd). A caller buffer whose address is not 4 KiB-aligned
// goes through the addon's per-thread bounce copy first: one more pass over every byte
// (measured: the copy was ~9% of a replica agent's CPU samples in a sequential replicated
// write). Buffers that this codebase fills itself before handing them to the store (the
// replication decoder's payload rooms, the volume's coalesced write runs) are made here
// instead, starting on a 4 KiB boundary, so the addon writes them in place. Likewise the
// buffers large reads land in (the FUSE frontend's read scratch and read-ahead chunks):
// the addon's direct read fills them in place instead of through its copy.
//
// Every buffer is its own memory (never a slice of Node's shared pool, and an ArrayBuffer's
// backing store never moves); contents are uninitialized, as with Buffer.allocUnsafe.
// - From HUGE_IO_BYTES up (the sizes that go down the direct paths in large pieces), the
//   memory is I/O memory from the addon (native/memory/iomem.h): an ArrayBuffer of its own
//   over a slice of a 2 MiB region backed by a transparent huge page where the kernel has
//   one, so a large direct I/O is not split into a request per 128 scattered 4 KiB pages
//   (why and what it measured: iomem.h and docs/store.md, "Reads").
// - Below that, allocUnsafeSlow over-allocated by up to 4 KiB - 1 bytes to find the boundary.
import { native } from './native.js';

/** O_DIRECT's alignment for addresses, offsets and lengths on the bricks' filesystems. */
export const DIRECT_IO_ALIGNMENT = 4096;

/** Buffers of this many bytes or more come from the addon's huge-page I/O memory. */
export const HUGE_IO_BYTES = 128 * 1024;

/**
 * An uninitialized buffer of `length` bytes whose first byte is 4 KiB-aligned (below 4 KiB,
 * which O_DIRECT would not take anyway, a plain one). `buffer.byteOffset` is where it starts
 * in its ArrayBuffer, and the ArrayBuffer holds nothing else after it.
 */
export function allocAligned(length: number): Buffer {
  if (length < DIRECT_IO_ALIGNMENT) return Buffer.allocUnsafeSlow(length);
  if (length >= HUGE_IO_BYTES) return Buffer.from(native.allocIoMemory(length));
  const memory = Buffer.allocUnsafeSlow(length + DIRECT_IO_ALIGNMENT - 1);
  const start = (DIRECT_IO_ALIGNMENT - native.addressOffset(memory, DIRECT_IO_ALIGNMENT)) % DIRECT_IO_ALIGNMENT;
  return memory.subarray(start, start + length);
}
