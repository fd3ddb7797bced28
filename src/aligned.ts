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
// The memory is the buffer's own (allocUnsafeSlow: never a slice of Node's shared pool, and
// an ArrayBuffer's backing store never moves), over-allocated by up to 4 KiB - 1 bytes to
// find the boundary; contents are uninitialized, as with Buffer.allocUnsafe.
import { native } from './native.js';

/** O_DIRECT's alignment for addresses, offsets and lengths on the bricks' filesystems. */
export const DIRECT_IO_ALIGNMENT = 4096;

/**
 * An uninitialized buffer of `length` bytes whose first byte is 4 KiB-aligned (below 4 KiB,
 * which O_DIRECT would not take anyway, a plain one). `buffer.byteOffset` is where it starts
 * in its ArrayBuffer.
 */
export function allocAligned(length: number): Buffer {
  if (length < DIRECT_IO_ALIGNMENT) return Buffer.allocUnsafeSlow(length);
  const memory = Buffer.allocUnsafeSlow(length + DIRECT_IO_ALIGNMENT - 1);
  const start = (DIRECT_IO_ALIGNMENT - native.addressOffset(memory, DIRECT_IO_ALIGNMENT)) % DIRECT_IO_ALIGNMENT;
  return memory.subarray(start, start + length);
}
