// The I/O memory pool (iomem.h): 2 MiB huge-page regions, carved by bump allocation.
#include "memory/iomem.h"

#include <sys/mman.h>

#include <mutex>
#include <vector>

namespace brickd::iomem {

struct Region {
  uint8_t* base;
  size_t bytes;           // kRegionBytes, or a large buffer's own rounded-up size
  std::atomic<int> refs;  // one per live Slice, plus one while it is the pool's current region
};

namespace {

std::mutex poolMutex;
Region* current = nullptr;  // the region being carved; the pool holds one reference on it
size_t carved = 0;          // bytes of `current` handed out
std::vector<Region*> idle;  // released standard regions, unmapped only past kMaxIdleRegions
size_t mappedRegions = 0;
size_t largeMappings = 0;

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// A 2 MiB-aligned anonymous mapping of `bytes` (a multiple of 2 MiB), advised for huge
// pages. mmap only promises page alignment: map one region more and trim both ends.
uint8_t* MapAligned(size_t bytes) {
  const size_t span = bytes + kRegionBytes;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = RoundUp(start, kRegionBytes);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + span, used = aligned + bytes;
  if (end > used) munmap(reinterpret_cast<void*>(used), end - used);
  // Best effort: EINVAL where the kernel has no THP; the memory is usable either way.
  madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
  return reinterpret_cast<uint8_t*>(aligned);
}

Region* NewRegion(size_t bytes) {
  uint8_t* base = MapAligned(bytes);
  if (!base) return nullptr;
  return new Region{base, bytes, {0}};
}

// Called with poolMutex held, for a region whose last reference is gone.
void RetireLocked(Region* region) {
  if (region->bytes == kRegionBytes && idle.size() < kMaxIdleRegions) {
    idle.push_back(region);
    return;
  }
  munmap(region->base, region->bytes);
  (region->bytes == kRegionBytes ? mappedRegions : largeMappings)--;
  delete region;
}

}  // namespace

Slice Allocate(size_t length) {
  const size_t need = RoundUp(length, kCarveAlign);
  std::lock_guard<std::mutex> lock(poolMutex);
  if (need > kRegionBytes) {
    Region* own = NewRegion(RoundUp(need, kRegionBytes));
    if (!own) return {};
    own->refs.store(1);
    largeMappings++;
    return {own->base, own};
  }
  if (!current || kRegionBytes - carved < need) {
    Region* next = nullptr;
    if (!idle.empty()) {
      next = idle.back();
      idle.pop_back();
    } else if ((next = NewRegion(kRegionBytes))) {
      mappedRegions++;
    } else {
      return {};
    }
    // The pool's reference moves to the new current region; the old one lives on for as
    // long as slices of it do.
    next->refs.store(1);
    if (current && current->refs.fetch_sub(1) == 1) RetireLocked(current);
    current = next;
    carved = 0;
  }
  uint8_t* data = current->base + carved;
  carved += need;
  current->refs.fetch_add(1);
  return {data, current};
}

void Release(Region* region) {
  if (region->refs.fetch_sub(1) != 1) return;
  std::lock_guard<std::mutex> lock(poolMutex);
  // Only the pool itself could take a reference again (an idle region back to current),
  // and it does so under this mutex, after RetireLocked put the region there.
  RetireLocked(region);
}

Stats GetStats() {
  std::lock_guard<std::mutex> lock(poolMutex);
  return {mappedRegions, idle.size(), largeMappings};
}

}  // namespace brickd::iomem
