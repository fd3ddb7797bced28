// brickio: the hot-path block I/O of a replica's files, with one CRC32C per block.
//
// Plain C++/POSIX, no napi: every function here is a blocking call that brickio_napi.cc
// runs on a libuv pool thread (one PromiseWorker per JS call), and that a C++ test or
// benchmark can call directly.
//
// On-disk layout (the contract of src/native.ts):
//   - a data file, cut into blocks of `blockSize` bytes (power of two, 512 B .. 1 MiB);
//   - a sums file holding, for block i, CRC32C(block i) as a little-endian uint32 at byte 4·i.
//     Its length is ceil(dataSize / blockSize) · 4 after every mutation made through brickio.
//   - The last block of the data file may be short: its CRC covers only the bytes before EOF.
//     When the file later grows past it, that block is re-summed over its new length.
//   - The hole rule: a stored 0 for a block whose bytes are all zero verifies. Blocks that
//     were never written (holes left by a write past EOF or by a growing truncate) keep a 0
//     in the sums file, which is itself left sparse there. A block that was written with
//     zeros stores its real CRC, which verifies too.
//
// Threading and ownership: the functions are reentrant and keep no state between calls.
// File descriptors and buffers belong to the caller, who keeps them valid for the duration
// of the call and serializes calls that touch the same blocks of one file; brickio never
// closes an fd and never keeps a pointer past its return. Scratch memory for unaligned edge
// blocks and chunked scans is allocated per call and freed before returning.
//
// Crash ordering: writeBlocks writes the data, then the sums; neither is fsync'd. After a
// crash a block may therefore fail verification until the store replays its log and
// re-sums (resumBlocks): the caller owns durability and recovery.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace brickd::brickio {

inline constexpr uint32_t kMinBlockSize = 512;
inline constexpr uint32_t kMaxBlockSize = 1u << 20;
// Largest extended attribute value Linux accepts (XATTR_SIZE_MAX).
inline constexpr size_t kMaxXattrValue = 65536;

inline bool IsValidBlockSize(uint64_t blockSize) {
  return blockSize >= kMinBlockSize && blockSize <= kMaxBlockSize && (blockSize & (blockSize - 1)) == 0;
}

// A failed system call (or a checksum mismatch), reported to the binding, which turns it
// into a node-shaped JS error. errnum 0 means success.
struct IoError {
  int errnum = 0;
  const char* syscall = "";  // static string: "pwrite", "fstat", "crc32c", ...
  const char* file = "";     // static string: "data file", "sums file", or "" when only one fd
  std::string detail;        // extra words for the message, may be empty

  explicit operator bool() const { return errnum != 0; }
};

// pwritev every buffer, in order, at `offset`, retrying short writes and EINTR. With `dsync`
// the written range is durable on return (pwritev2 with RWF_DSYNC: one syscall instead of a
// write and an fdatasync).
IoError Writev(int fd, const iovec* buffers, size_t count, uint64_t offset, bool dsync);
// pread into [buffer, buffer+len) at `offset` until full or EOF; *bytesRead is set.
IoError ReadInto(int fd, uint8_t* buffer, size_t len, uint64_t offset, size_t* bytesRead);
IoError Fdatasync(int fd);
IoError Fsync(int fd);

// Write `data` at `offset` and the CRCs of every block it touches (see brickio.cc for the
// edge-block rules). With `expectedCrc`, crc32c(data) is checked first; a mismatch returns
// EBADMSG (syscall "crc32c") and nothing is written.
IoError WriteBlocks(int dataFd, int sumsFd, const uint8_t* data, size_t len, uint64_t offset,
                    uint32_t blockSize, std::optional<uint32_t> expectedCrc, int directFd = -1);

struct ReadBlocksResult {
  uint64_t bytes = 0;     // bytes of the request available before EOF
  int64_t badBlock = -1;  // first block index that failed verification, or -1
};
// Read [offset, offset+len) (short at EOF) into `buffer`, verifying every covered block.
// With `directFd` (an O_DIRECT descriptor of the same file) the data is read through it,
// bypassing the page cache, whenever the covering block range starts 4 KiB-aligned.
IoError ReadBlocks(int dataFd, int sumsFd, uint8_t* buffer, size_t len, uint64_t offset,
                   uint32_t blockSize, ReadBlocksResult* result, int directFd = -1);

// ftruncate the data file to `size`, re-sum the blocks whose length changed, size the sums file.
IoError TruncateBlocks(int dataFd, int sumsFd, uint64_t size, uint32_t blockSize);

// Verify blocks [firstBlock, firstBlock+count) clipped at EOF, in large chunks; append the
// indexes of failing blocks to *bad, stopping once it holds maxBad of them.
IoError VerifyBlocks(int dataFd, int sumsFd, uint64_t firstBlock, uint64_t count, uint32_t blockSize,
                     size_t maxBad, std::vector<uint64_t>* bad);

// Recompute and store the CRCs of blocks [firstBlock, firstBlock+count) clipped at EOF.
IoError ResumBlocks(int dataFd, int sumsFd, uint64_t firstBlock, uint64_t count, uint32_t blockSize);

// Where an extended attribute lives: a path (symlinks not followed) or, if path is empty, an fd.
struct XattrTarget {
  std::string path;
  int fd = -1;
};
// *present is false (and *value empty) when the attribute does not exist (ENODATA).
IoError GetXattr(const XattrTarget& target, const std::string& name, std::vector<uint8_t>* value,
                 bool* present);
IoError SetXattr(const XattrTarget& target, const std::string& name, const uint8_t* value, size_t len);

}  // namespace brickd::brickio
