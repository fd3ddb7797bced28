// I/O memory: buffers for large direct I/O, carved from 2 MiB regions that the kernel is
// asked to back with transparent huge pages.
//
// Why: a direct read or write pins the caller's pages and hands them to the device as a
// scatter list, one segment per physically contiguous run. Ordinary anonymous memory on a
// long-running machine comes back in scattered 4 KiB pages, so a 1 MiB buffer is ~256
// segments, more than many queues take in one request (a loop device: 128 segments; many
// NVMe queues a similar number), and the block layer splits every large I/O. Measured on the test VM
// (2026-11-27): 1 MiB direct reads at 4 in flight through an XFS loop brick ran at
// 1500-1950 MiB/s from scattered buffers (2 loop requests per MiB) and 2820-3190 MiB/s from
// huge-page buffers (1 request per MiB). See docs/store.md, "Reads".
//
// A region is one 2 MiB-aligned anonymous mapping with MADV_HUGEPAGE; buffers are carved
// from the current region at 4 KiB boundaries (bump allocation), a buffer larger than a
// region gets a mapping of its own. Each buffer holds a reference on its region; the last
// release either keeps the region for reuse (a few idle ones: reuse costs no page faults or
// zeroing) or unmaps it. Contents are uninitialized, as with Buffer.allocUnsafe.
//
// If the kernel has no huge pages to give (THP "never", or memory too fragmented), the
// regions are ordinary pages: still 4 KiB-aligned and correct, only not contiguous.
//
// Thread safety: Allocate and Release may be called from any thread (a mutex guards the
// pool; references are atomic). Free of napi: memory_napi.cc wraps it for JS.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace brickd::iomem {

inline constexpr size_t kRegionBytes = size_t{2} << 20;  // one PMD-sized huge page
inline constexpr size_t kCarveAlign = 4096;              // O_DIRECT's alignment
inline constexpr size_t kMaxIdleRegions = 8;             // kept for reuse after release

struct Region;

struct Slice {
  uint8_t* data = nullptr;  // nullptr: mmap failed (ENOMEM)
  Region* region = nullptr;
};

// `length` bytes (> 0), 4 KiB-aligned, from the shared pool.
Slice Allocate(size_t length);
// Drop the reference a Slice holds on its region. Exactly once per successful Allocate.
void Release(Region* region);

struct Stats {
  size_t mappedRegions;  // standard regions currently mapped (in use, current or idle)
  size_t idleRegions;    // of which kept idle for reuse
  size_t largeMappings;  // mappings of buffers larger than a region
};
Stats GetStats();

}  // namespace brickd::iomem
