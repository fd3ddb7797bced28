// brickio: block I/O with per-block CRC32C on a replica's data and sums files.
//
// Blocking POSIX calls only; runs on a libuv pool thread (see brickio.h for the layout,
// the hole rule and who owns what). Every loop retries EINTR and short transfers.
//
// Vocabulary used below: block b spans [b·bs, b·bs + bs) of the data file; its "extent" is
// that span clipped at EOF (the last block may be short). A block's CRC always covers its
// whole extent, so a write or read that covers only part of an extent is an "edge" and
// needs the rest of the extent from disk (writes) or a scratch buffer (reads).
#include "brickio/brickio.h"

#include <endian.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "brickio/crc.h"

namespace brickd::brickio {
namespace {

constexpr const char* kData = "data file";
constexpr const char* kSums = "sums file";
// Scrub and re-sum scan the data file in chunks of this many bytes (at least one block).
constexpr uint64_t kScanChunk = 1u << 20;

IoError Fail(int errnum, const char* syscall, const char* file = "") {
  return IoError{errnum, syscall, file, {}};
}

// Uninitialized scratch memory (edge blocks, scan chunks); zeroed only where needed.
std::unique_ptr<uint8_t[]> Scratch(size_t len) { return std::unique_ptr<uint8_t[]>(new uint8_t[len]); }

// The size only, asked for alone: statx with STATX_SIZE. A full fstat also asks for the
// ctime, and since Linux 6.13 (multigrain timestamps) a queried ctime makes the file's next
// write take a fine-grained timestamp, i.e. an inode transaction per write instead of one
// per clock tick. Measured on XFS over a loop device: fstat before each 4 KiB block write
// added 35-47 µs to a concurrent RWF_DSYNC log write (the store's QD1 path).
IoError FileSize(int fd, const char* file, uint64_t* size) {
  struct statx stx;
  if (statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &stx) == 0) {
    if ((stx.stx_mask & STATX_SIZE) != 0) {
      *size = stx.stx_size;
      return {};
    }
  } else if (errno != ENOSYS) {
    return Fail(errno, "statx", file);
  }
  struct stat st;  // a kernel without statx (before 4.11), or one that left the size out
  if (fstat(fd, &st) != 0) return Fail(errno, "fstat", file);
  *size = static_cast<uint64_t>(st.st_size);
  return {};
}

// pread until `len` bytes or EOF; *got is how many arrived. `directAlign` is the
// alignment of an O_DIRECT descriptor's reads (0: a buffered one): a direct read comes back
// short only at EOF, where it may end on any byte, and asking again from there would be an
// unaligned read (EINVAL), so a short read that ends off the alignment is the end.
IoError PreadFull(int fd, uint8_t* buffer, size_t len, uint64_t offset, size_t* got, const char* file,
                  size_t directAlign = 0) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, buffer + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(errno, directAlign ? "pread(O_DIRECT)" : "pread", file);
    }
    if (n == 0) break;  // EOF
    done += static_cast<size_t>(n);
    if (directAlign && done % directAlign != 0) break;  // EOF
  }
  *got = done;
  return {};
}

IoError PwriteFull(int fd, const uint8_t* buffer, size_t len, uint64_t offset, const char* file) {
  size_t done = 0;
  while (done < len) {
    ssize_t n = pwrite(fd, buffer + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(errno, "pwrite", file);
    }
    if (n == 0) return Fail(EIO, "pwrite", file);  // no progress on a regular file: do not spin
    done += static_cast<size_t>(n);
  }
  return {};
}

// Drop `n` transferred bytes from the front of iov[*index..], skipping emptied entries.
void AdvanceIovecs(std::vector<iovec>& iov, size_t* index, size_t n) {
  while (*index < iov.size() && (n > 0 || iov[*index].iov_len == 0)) {
    iovec& head = iov[*index];
    if (n >= head.iov_len) {
      n -= head.iov_len;
      ++*index;
    } else {
      head.iov_base = static_cast<uint8_t*>(head.iov_base) + n;
      head.iov_len -= n;
      n = 0;
    }
  }
}

// `flags` are pwritev2 flags: RWF_DSYNC makes each call durable for its range when it returns
// (write and data flush in one syscall, as O_DSYNC would).
IoError PwritevFull(int fd, std::vector<iovec> iov, uint64_t offset, const char* file, int flags = 0) {
  size_t index = 0;
  AdvanceIovecs(iov, &index, 0);
  while (index < iov.size()) {
    int count = static_cast<int>(std::min<size_t>(iov.size() - index, IOV_MAX));
    ssize_t n = pwritev2(fd, &iov[index], count, static_cast<off_t>(offset), flags);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(errno, flags ? "pwritev2(RWF_DSYNC)" : "pwritev", file);
    }
    if (n == 0) return Fail(EIO, "pwritev", file);
    offset += static_cast<uint64_t>(n);
    AdvanceIovecs(iov, &index, static_cast<size_t>(n));
  }
  return {};
}

// preadv until every iovec is full or EOF; *got is the total that arrived.
IoError PreadvFull(int fd, std::vector<iovec> iov, uint64_t offset, size_t* got, const char* file) {
  size_t index = 0, done = 0;
  AdvanceIovecs(iov, &index, 0);
  while (index < iov.size()) {
    int count = static_cast<int>(std::min<size_t>(iov.size() - index, IOV_MAX));
    ssize_t n = preadv(fd, &iov[index], count, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(errno, "preadv", file);
    }
    if (n == 0) break;  // EOF
    done += static_cast<size_t>(n);
    AdvanceIovecs(iov, &index, static_cast<size_t>(n));
  }
  *got = done;
  return {};
}

// ── sums file ─────────────────────────────────────────────────────────────────────────

// Stored CRCs of blocks [firstBlock, firstBlock+count). Entries past the sums file's EOF
// read as 0 (holes), like the sparse ranges inside it.
IoError LoadSums(int sumsFd, uint64_t firstBlock, size_t count, std::vector<uint32_t>* sums) {
  sums->assign(count, 0);
  size_t got = 0;
  uint8_t* bytes = reinterpret_cast<uint8_t*>(sums->data());
  if (IoError err = PreadFull(sumsFd, bytes, count * 4, firstBlock * 4, &got, kSums)) return err;
  // Bytes past EOF stay zero from assign(); a torn last entry (file not a multiple of 4)
  // keeps its zero high bytes and simply fails verification if the block is not zero.
  for (uint32_t& sum : *sums) sum = le32toh(sum);
  return {};
}

IoError StoreSums(int sumsFd, uint64_t firstBlock, const uint32_t* crcs, size_t count) {
  std::vector<uint32_t> le(count);
  for (size_t i = 0; i < count; i++) le[i] = htole32(crcs[i]);
  return PwriteFull(sumsFd, reinterpret_cast<const uint8_t*>(le.data()), count * 4, firstBlock * 4, kSums);
}

bool IsAllZero(const uint8_t* data, size_t len) {
  // First byte zero, and every byte equal to its predecessor: memcmp runs at memory speed.
  return len == 0 || (data[0] == 0 && std::memcmp(data, data + 1, len - 1) == 0);
}

// The verification rule: the CRC of the extent matches, or the stored value is 0 and the
// extent is all zeros (a hole that was never written).
bool BlockVerifies(const uint8_t* extent, size_t len, uint32_t stored) {
  // Zero test first for a stored 0: cheaper than a CRC, and a non-zero block fails it fast.
  if (stored == 0 && IsAllZero(extent, len)) return true;
  return Crc32cForBlocks(extent, len) == stored;
}

uint64_t BlockCount(uint64_t size, uint32_t blockSize) { return size / blockSize + (size % blockSize != 0); }

// Recompute and store the CRC of every block in [firstBlock, endBlock) from the data file,
// whose size is `size`, reading `kScanChunk` at a time. endBlock must be ≤ BlockCount(size).
IoError SumRange(int dataFd, int sumsFd, uint64_t firstBlock, uint64_t endBlock, uint32_t blockSize, uint64_t size) {
  if (firstBlock >= endBlock) return {};
  const uint64_t chunkBlocks = std::max<uint64_t>(1, kScanChunk / blockSize);
  auto buffer = Scratch(std::min(chunkBlocks, endBlock - firstBlock) * blockSize);
  std::vector<uint32_t> crcs;
  for (uint64_t block = firstBlock; block < endBlock; block += chunkBlocks) {
    uint64_t blocks = std::min(chunkBlocks, endBlock - block);
    uint64_t start = block * blockSize;
    size_t want = static_cast<size_t>(std::min(blocks * blockSize, size - start));
    size_t got = 0;
    if (IoError err = PreadFull(dataFd, buffer.get(), want, start, &got, kData)) return err;
    // A shorter read means the file shrank under us (the caller should have serialized):
    // sum what exists as if it were all there was, never bytes we did not read.
    crcs.clear();
    for (uint64_t i = 0; i < blocks && i * blockSize < got; i++) {
      size_t len = std::min<size_t>(blockSize, got - i * blockSize);
      crcs.push_back(Crc32cForBlocks(buffer.get() + i * blockSize, len));
    }
    if (IoError err = StoreSums(sumsFd, block, crcs.data(), crcs.size())) return err;
    if (got < want) break;
  }
  return {};
}

}  // namespace

// ── thin wrappers ─────────────────────────────────────────────────────────────────────

IoError Writev(int fd, const iovec* buffers, size_t count, uint64_t offset, bool dsync) {
  return PwritevFull(fd, std::vector<iovec>(buffers, buffers + count), offset, "", dsync ? RWF_DSYNC : 0);
}

IoError ReadInto(int fd, uint8_t* buffer, size_t len, uint64_t offset, size_t* bytesRead) {
  return PreadFull(fd, buffer, len, offset, bytesRead, "");
}

IoError Fdatasync(int fd) {
  while (fdatasync(fd) != 0) {
    if (errno != EINTR) return Fail(errno, "fdatasync");
  }
  return {};
}

IoError Fsync(int fd) {
  while (fsync(fd) != 0) {
    if (errno != EINTR) return Fail(errno, "fsync");
  }
  return {};
}

// ── writeBlocks ───────────────────────────────────────────────────────────────────────
//
// Which CRCs a write changes, with old size S, new size S' = max(S, offset+len):
//   - every block the write touches. A block whose whole new extent [b·bs, min(b·bs+bs, S'))
//     lies inside the write is summed straight from the caller's buffer (the body of a large
//     write is never copied). The first and last touched blocks may be edges: their extent is
//     assembled in scratch from the bytes on disk (zeros past S) overlaid with the new bytes.
//   - the old short last block, if the write starts past it (offset > S, S not aligned): the
//     bytes between S and the write become zeros of a now full block, so its CRC changes.
//     Blocks strictly between it and the write are holes and keep their stored 0.
// Order: data first, then the sums (one contiguous pwrite, plus one 4-byte pwrite for a
// detached old last block). See brickio.h for what a crash in between means.
// Alignment of offsets, lengths and memory for writes through an O_DIRECT descriptor.
constexpr uint64_t kDirectAlign = 4096;
// The aligned copy is kept per thread and reused. Allocated per write, a 1 MiB copy cost an
// mmap, 256 page faults (the kernel zeroing each page) and an munmap every time (glibc
// serves requests of this size with mmap, however often they repeat): measured as most
// of a pool thread's time under 1 MiB replicated writes. A pool thread runs one job at a
// time and a job uses the copy only inside one WriteBlocks call, so nothing shares it;
// 1 MiB per pool thread is what it costs in memory (larger writes go in 1 MiB pieces).
constexpr size_t kBounceBytes = 1u << 20;

uint8_t* ThreadBounce() {
  thread_local std::unique_ptr<uint8_t, decltype(&std::free)> bounce(nullptr, &std::free);
  if (!bounce) {
    void* memory = nullptr;
    if (posix_memalign(&memory, kDirectAlign, kBounceBytes) != 0) return nullptr;
    bounce.reset(static_cast<uint8_t*>(memory));
  }
  return bounce.get();
}

IoError WriteBlocks(int dataFd, int sumsFd, const uint8_t* data, size_t len, uint64_t offset,
                    uint32_t blockSize, std::optional<uint32_t> expectedCrc, int directFd) {
  if (expectedCrc) {
    uint32_t actual = Crc32cForBlocks(data, len);
    if (actual != *expectedCrc) {
      char detail[80];
      std::snprintf(detail, sizeof detail, "expected 0x%08" PRIx32 ", computed 0x%08" PRIx32, *expectedCrc, actual);
      return IoError{EBADMSG, "crc32c", "", detail};
    }
  }
  if (len == 0) return {};  // pwrite of nothing changes neither the size nor any block

  uint64_t oldSize = 0;
  if (IoError err = FileSize(dataFd, kData, &oldSize)) return err;
  const uint64_t end = offset + len;
  const uint64_t newSize = std::max(oldSize, end);
  const uint64_t firstBlock = offset / blockSize;
  const uint64_t lastBlock = (end - 1) / blockSize;

  std::unique_ptr<uint8_t[]> scratch;  // one block, allocated only if there is an edge
  // The extent of `block` in the file after the write, assembled in scratch: on-disk bytes
  // (zeros past the old EOF) with [offset, end) overlaid. Returns its CRC.
  auto sumAssembled = [&](uint64_t block, uint32_t* crc) -> IoError {
    if (!scratch) scratch = Scratch(blockSize);
    const uint64_t start = block * blockSize;
    const size_t extent = static_cast<size_t>(std::min<uint64_t>(blockSize, newSize - start));
    size_t onDisk = oldSize > start ? static_cast<size_t>(std::min<uint64_t>(extent, oldSize - start)) : 0;
    size_t got = 0;
    if (IoError err = PreadFull(dataFd, scratch.get(), onDisk, start, &got, kData)) return err;
    std::memset(scratch.get() + got, 0, extent - got);
    const uint64_t from = std::max(start, offset), to = std::min(start + extent, end);
    if (from < to) std::memcpy(scratch.get() + (from - start), data + (from - offset), to - from);
    *crc = Crc32cForBlocks(scratch.get(), extent);
    return {};
  };

  // Large aligned writes bypass the page cache (O_DIRECT descriptor of the same file), so
  // the fdatasync that makes them durable only flushes instead of writing them back:
  // measured here, 1 MiB writes synced every 4 ran ~4x faster direct than buffered. The
  // caller's buffer has no alignment guarantee: unless it happens to be aligned, it goes
  // through this thread's aligned copy, piece by piece, and then the blocks it covers whole
  // are summed from the copy just made (in cache) instead of from the caller's buffer first:
  // one pass over the caller's memory instead of two. Edge blocks are summed first, as
  // always: they need the bytes on disk before the write replaces them.
  const bool direct = directFd >= 0 && offset % kDirectAlign == 0 && len % kDirectAlign == 0;
  const bool throughCopy = direct && reinterpret_cast<uintptr_t>(data) % kDirectAlign != 0;
  // Pieces are whole multiples of the block size (kBounceBytes is), so with the write
  // starting on a block boundary every whole block lies inside one piece.
  const bool sumFromCopy = throughCopy && offset % blockSize == 0 && kBounceBytes % blockSize == 0;

  std::vector<uint32_t> crcs(lastBlock - firstBlock + 1);
  for (uint64_t block = firstBlock; block <= lastBlock; block++) {
    const uint64_t start = block * blockSize;
    const uint64_t extentEnd = std::min(start + blockSize, newSize);
    uint32_t& crc = crcs[block - firstBlock];
    if (start >= offset && extentEnd <= end) {
      if (!sumFromCopy) crc = Crc32cForBlocks(data + (start - offset), extentEnd - start);
    } else if (IoError err = sumAssembled(block, &crc)) {
      return err;
    }
  }

  // The old short last block, zero-extended by a write that starts in a later block.
  std::optional<uint32_t> oldLastCrc;
  const uint64_t oldLastBlock = oldSize / blockSize;
  if (oldSize % blockSize != 0 && oldLastBlock < firstBlock) {
    uint32_t crc = 0;
    if (IoError err = sumAssembled(oldLastBlock, &crc)) return err;
    oldLastCrc = crc;
  }

  if (direct && !throughCopy) {
    if (IoError err = PwriteFull(directFd, data, len, offset, kData)) return err;
  } else if (direct) {
    uint8_t* bounce = ThreadBounce();
    if (!bounce) return IoError{ENOMEM, "posix_memalign", kData, ""};
    for (size_t done = 0; done < len;) {
      const size_t piece = std::min(len - done, kBounceBytes);
      std::memcpy(bounce, data + done, piece);
      for (uint64_t start = offset + done; sumFromCopy && start < offset + done + piece; start += blockSize) {
        const uint64_t extentEnd = std::min(start + blockSize, newSize);
        // A block running past the write is an edge, summed above.
        if (extentEnd <= end) crcs[start / blockSize - firstBlock] = Crc32cForBlocks(bounce + (start - offset - done), extentEnd - start);
      }
      if (IoError err = PwriteFull(directFd, bounce, piece, offset + done, kData)) return err;
      done += piece;
    }
  } else if (IoError err = PwriteFull(dataFd, data, len, offset, kData)) {
    return err;
  }
  if (oldLastCrc && oldLastBlock + 1 == firstBlock) {
    // Adjacent to the written range: one contiguous sums write.
    crcs.insert(crcs.begin(), *oldLastCrc);
    return StoreSums(sumsFd, oldLastBlock, crcs.data(), crcs.size());
  }
  if (oldLastCrc) {
    if (IoError err = StoreSums(sumsFd, oldLastBlock, &*oldLastCrc, 1)) return err;
  }
  return StoreSums(sumsFd, firstBlock, crcs.data(), crcs.size());
}

// ── readBlocks ────────────────────────────────────────────────────────────────────────

// A read through the O_DIRECT descriptor, for large reads (the caller decides which): the
// covering block range is read in pieces of at most kBounceBytes, each straight into the
// caller's buffer when that part of it is aligned and wholly requested, else into this
// thread's aligned copy; every block is verified where it landed and the requested bytes
// are copied out of the copy. The range starts aligned (the caller checks), and every piece
// but the last is a whole number of blocks, so no block straddles two pieces.
// Coherent with buffered writes of the same file: the kernel writes dirty page-cache pages
// of the range back before a direct read of it, and the store's range lock keeps writes
// out while the read runs.
IoError ReadBlocksDirect(int directFd, int sumsFd, uint8_t* buffer, uint64_t offset, uint64_t end, uint64_t size,
                         uint32_t blockSize, ReadBlocksResult* result) {
  const uint64_t firstBlock = offset / blockSize;
  const uint64_t rangeStart = firstBlock * blockSize;
  const uint64_t rangeEnd = std::min(((end - 1) / blockSize + 1) * blockSize, size);
  std::vector<uint32_t> sums;
  if (IoError err = LoadSums(sumsFd, firstBlock, (rangeEnd - rangeStart + blockSize - 1) / blockSize, &sums)) return err;
  uint8_t* bounce = nullptr;

  for (uint64_t pos = rangeStart; pos < rangeEnd;) {
    const uint64_t want = std::min<uint64_t>(kBounceBytes, (rangeEnd - pos + kDirectAlign - 1) / kDirectAlign * kDirectAlign);
    const bool intoBuffer =
        pos >= offset && pos + want <= end && reinterpret_cast<uintptr_t>(buffer + (pos - offset)) % kDirectAlign == 0;
    if (!intoBuffer && !bounce && !(bounce = ThreadBounce())) return IoError{ENOMEM, "posix_memalign", kData, ""};
    uint8_t* landed = intoBuffer ? buffer + (pos - offset) : bounce;
    size_t got = 0;
    if (IoError err = PreadFull(directFd, landed, static_cast<size_t>(want), pos, &got, kData, kDirectAlign)) return err;
    const uint64_t pieceEnd = std::min<uint64_t>(pos + got, rangeEnd);
    if (pieceEnd < std::min<uint64_t>(pos + want, rangeEnd)) {
      // The file shrank since fstat (the caller should have serialized): what arrived is
      // all there is. Blocks past the new EOF are neither verified nor reported.
      size = pieceEnd;
      end = std::min(end, size);
    }
    for (uint64_t start = pos; start < pieceEnd && start < end; start += blockSize) {
      const size_t extent = static_cast<size_t>(std::min<uint64_t>(blockSize, size - start));
      if (!BlockVerifies(landed + (start - pos), extent, sums[(start - rangeStart) / blockSize])) {
        result->badBlock = static_cast<int64_t>(start / blockSize);
        result->bytes = end > offset ? end - offset : 0;
        return {};
      }
    }
    if (!intoBuffer) {
      const uint64_t from = std::max(pos, offset), to = std::min(pieceEnd, end);
      if (from < to) std::memcpy(buffer + (from - offset), bounce + (from - pos), static_cast<size_t>(to - from));
    }
    if (pieceEnd < pos + want) break;
    pos = pieceEnd;
  }
  result->bytes = end > offset ? end - offset : 0;
  return {};
}

// One preadv fills the covering block range [firstBlock·bs, min(lastBlock·bs + bs, EOF)):
// blocks whose extent lies inside the request go straight into the caller's buffer (for a
// block-aligned request that is all of them, no scratch at all); a head or tail edge block
// goes into scratch, is verified there, and only its requested part is copied out.
IoError ReadBlocks(int dataFd, int sumsFd, uint8_t* buffer, size_t len, uint64_t offset,
                   uint32_t blockSize, ReadBlocksResult* result, int directFd) {
  *result = ReadBlocksResult{};
  if (len == 0) return {};
  uint64_t size = 0;
  if (IoError err = FileSize(dataFd, kData, &size)) return err;
  if (offset >= size) return {};

  uint64_t end = std::min<uint64_t>(offset + len, size);
  const uint64_t firstBlock = offset / blockSize;
  if (directFd >= 0 && firstBlock * blockSize % kDirectAlign == 0) {
    return ReadBlocksDirect(directFd, sumsFd, buffer, offset, end, size, blockSize, result);
  }
  const uint64_t lastBlock = (end - 1) / blockSize;
  const uint64_t rangeStart = firstBlock * blockSize;
  const uint64_t rangeEnd = std::min((lastBlock + 1) * blockSize, size);

  auto extentEnd = [&](uint64_t block) { return std::min(block * blockSize + blockSize, size); };
  auto isEdge = [&](uint64_t block) { return block * blockSize < offset || extentEnd(block) > end; };
  const bool headEdge = isEdge(firstBlock);
  const bool tailEdge = lastBlock != firstBlock && isEdge(lastBlock);

  std::unique_ptr<uint8_t[]> scratch;
  if (headEdge || tailEdge) scratch = Scratch(size_t{blockSize} * (headEdge + tailEdge));
  uint8_t* headScratch = headEdge ? scratch.get() : nullptr;
  uint8_t* tailScratch = tailEdge ? scratch.get() + (headEdge ? blockSize : 0) : nullptr;

  // Where each block's extent lands in memory.
  auto blockMemory = [&](uint64_t block) -> uint8_t* {
    if (block == firstBlock && headScratch) return headScratch;
    if (block == lastBlock && tailScratch) return tailScratch;
    return buffer + (block * blockSize - offset);
  };

  std::vector<iovec> iov;
  {
    const uint64_t directFirst = firstBlock + (headEdge ? 1 : 0);
    const uint64_t directEnd = lastBlock + 1 - (tailEdge ? 1 : 0);  // exclusive
    if (headEdge) iov.push_back({headScratch, static_cast<size_t>(extentEnd(firstBlock) - rangeStart)});
    if (directFirst < directEnd) {
      uint64_t from = directFirst * blockSize, to = extentEnd(directEnd - 1);
      iov.push_back({buffer + (from - offset), static_cast<size_t>(to - from)});
    }
    if (tailEdge) iov.push_back({tailScratch, static_cast<size_t>(rangeEnd - lastBlock * blockSize)});
  }
  size_t got = 0;
  if (IoError err = PreadvFull(dataFd, iov, rangeStart, &got, kData)) return err;
  if (got < rangeEnd - rangeStart) {
    // The file shrank since fstat (the caller should have serialized): what arrived is all
    // there is. Blocks past the new EOF are neither verified nor reported.
    size = rangeStart + got;
    if (offset >= size) return {};
    end = std::min(end, size);
  }

  std::vector<uint32_t> sums;
  const uint64_t verifyEnd = (end - 1) / blockSize + 1;  // exclusive
  if (IoError err = LoadSums(sumsFd, firstBlock, verifyEnd - firstBlock, &sums)) return err;
  for (uint64_t block = firstBlock; block < verifyEnd; block++) {
    const size_t extent = static_cast<size_t>(extentEnd(block) - block * blockSize);
    if (!BlockVerifies(blockMemory(block), extent, sums[block - firstBlock])) {
      result->badBlock = static_cast<int64_t>(block);
      break;
    }
  }

  // Copy the requested parts of the edge blocks out of scratch.
  if (headScratch) {
    const uint64_t to = std::min(extentEnd(firstBlock), end);
    std::memcpy(buffer, headScratch + (offset - rangeStart), static_cast<size_t>(to - offset));
  }
  if (tailScratch && lastBlock * blockSize < end) {
    const uint64_t from = lastBlock * blockSize;
    std::memcpy(buffer + (from - offset), tailScratch, static_cast<size_t>(end - from));
  }
  result->bytes = end - offset;
  return {};
}

// ── truncateBlocks ────────────────────────────────────────────────────────────────────
//
// At most one block changes its extent, so at most one CRC is recomputed:
//   - a shrink to a non-aligned size leaves a new short last block: re-sum it;
//   - a grow zero-extends the old short last block (old size not aligned): re-sum it over
//     its new extent. Every block past it is a hole (stored 0, left sparse).
// The sums file is first cut to the blocks that survive, then extended: that also clears
// any stale entries a crash may have left past the old EOF, so new holes really read 0.
IoError TruncateBlocks(int dataFd, int sumsFd, uint64_t size, uint32_t blockSize) {
  uint64_t oldSize = 0;
  if (IoError err = FileSize(dataFd, kData, &oldSize)) return err;
  if (ftruncate(dataFd, static_cast<off_t>(size)) != 0) return Fail(errno, "ftruncate", kData);

  const uint64_t oldCount = BlockCount(oldSize, blockSize);
  const uint64_t newCount = BlockCount(size, blockSize);
  if (ftruncate(sumsFd, static_cast<off_t>(std::min(oldCount, newCount) * 4)) != 0) return Fail(errno, "ftruncate", kSums);
  if (newCount > oldCount && ftruncate(sumsFd, static_cast<off_t>(newCount * 4)) != 0) return Fail(errno, "ftruncate", kSums);

  if (size < oldSize && size % blockSize != 0) {
    return SumRange(dataFd, sumsFd, size / blockSize, size / blockSize + 1, blockSize, size);
  }
  if (size > oldSize && oldSize % blockSize != 0) {
    return SumRange(dataFd, sumsFd, oldSize / blockSize, oldSize / blockSize + 1, blockSize, size);
  }
  return {};
}

// ── verifyBlocks / resumBlocks ────────────────────────────────────────────────────────

IoError VerifyBlocks(int dataFd, int sumsFd, uint64_t firstBlock, uint64_t count, uint32_t blockSize,
                     size_t maxBad, std::vector<uint64_t>* bad) {
  uint64_t size = 0;
  if (IoError err = FileSize(dataFd, kData, &size)) return err;
  const uint64_t blockCount = BlockCount(size, blockSize);
  if (firstBlock >= blockCount || count == 0 || maxBad == 0) return {};
  const uint64_t endBlock = firstBlock + std::min(count, blockCount - firstBlock);

  // Scrub reads big sequential chunks: one pread of data and one of sums per chunk.
  const uint64_t chunkBlocks = std::max<uint64_t>(1, kScanChunk / blockSize);
  auto buffer = Scratch(std::min(chunkBlocks, endBlock - firstBlock) * blockSize);
  std::vector<uint32_t> sums;
  for (uint64_t block = firstBlock; block < endBlock; block += chunkBlocks) {
    const uint64_t blocks = std::min(chunkBlocks, endBlock - block);
    const uint64_t start = block * blockSize;
    const size_t want = static_cast<size_t>(std::min(blocks * blockSize, size - start));
    size_t got = 0;
    if (IoError err = PreadFull(dataFd, buffer.get(), want, start, &got, kData)) return err;
    if (IoError err = LoadSums(sumsFd, block, static_cast<size_t>(blocks), &sums)) return err;
    for (uint64_t i = 0; i < blocks && i * blockSize < got; i++) {
      const size_t extent = std::min<size_t>(blockSize, got - i * blockSize);
      if (!BlockVerifies(buffer.get() + i * blockSize, extent, sums[i])) {
        bad->push_back(block + i);
        if (bad->size() >= maxBad) return {};
      }
    }
    if (got < want) break;  // shrank under us: nothing more to verify
  }
  return {};
}

IoError ResumBlocks(int dataFd, int sumsFd, uint64_t firstBlock, uint64_t count, uint32_t blockSize) {
  uint64_t size = 0;
  if (IoError err = FileSize(dataFd, kData, &size)) return err;
  const uint64_t blockCount = BlockCount(size, blockSize);
  if (firstBlock >= blockCount || count == 0) return {};
  return SumRange(dataFd, sumsFd, firstBlock, firstBlock + std::min(count, blockCount - firstBlock), blockSize, size);
}

// ── xattrs ────────────────────────────────────────────────────────────────────────────

IoError GetXattr(const XattrTarget& target, const std::string& name, std::vector<uint8_t>* value, bool* present) {
  // One call with the largest possible value size: no size probe, so no race between a
  // probe and the read with a concurrent setxattr.
  value->resize(kMaxXattrValue);
  ssize_t n;
  do {
    n = target.path.empty() ? fgetxattr(target.fd, name.c_str(), value->data(), value->size())
                            : lgetxattr(target.path.c_str(), name.c_str(), value->data(), value->size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    value->clear();
    *present = false;
    if (errno == ENODATA) return {};
    return Fail(errno, target.path.empty() ? "fgetxattr" : "lgetxattr");
  }
  value->resize(static_cast<size_t>(n));
  *present = true;
  return {};
}

IoError SetXattr(const XattrTarget& target, const std::string& name, const uint8_t* value, size_t len) {
  int rc;
  do {
    rc = target.path.empty() ? fsetxattr(target.fd, name.c_str(), value, len, 0)
                             : lsetxattr(target.path.c_str(), name.c_str(), value, len, 0);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return Fail(errno, target.path.empty() ? "fsetxattr" : "lsetxattr");
  return {};
}

}  // namespace brickd::brickio
