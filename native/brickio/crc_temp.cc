// Temporary CRC32C behind brickio's seam (crc.h) until native/checksum is merged.
//
// One serial chain of the SSE4.2 crc32 instruction, 8 bytes at a time, with a bitwise
// fallback for CPUs without SSE4.2 (and non-x86 builds). At merge this file goes away and
// Crc32cForBlocks calls the checksum module's fastest path instead.
#include "brickio/crc.h"

#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace brickd {
namespace {

uint32_t Crc32cBitwise(const uint8_t* data, size_t len) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < len; i++) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t Crc32cSse42(const uint8_t* data, size_t len) {
  uint64_t crc = 0xFFFFFFFFu;
  while (len >= 8) {
    uint64_t word;
    std::memcpy(&word, data, 8);  // unaligned-safe load
    crc = _mm_crc32_u64(crc, word);
    data += 8;
    len -= 8;
  }
  uint32_t crc32 = static_cast<uint32_t>(crc);
  while (len-- > 0) crc32 = _mm_crc32_u8(crc32, *data++);
  return ~crc32;
}

bool HaveSse42() {
  // Function-local static: evaluated on first use, after libgcc's cpu model is set up
  // (__builtin_cpu_init makes that explicit, as GCC asks of early callers).
  static const bool have = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") != 0;
  }();
  return have;
}
#endif

}  // namespace

uint32_t Crc32cForBlocks(const uint8_t* data, size_t len) {
#if defined(__x86_64__)
  if (HaveSse42()) return Crc32cSse42(data, len);
#endif
  return Crc32cBitwise(data, len);
}

}  // namespace brickd
