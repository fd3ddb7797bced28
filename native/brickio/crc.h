// The one seam between brickio and the CRC32C implementation: every block checksum in
// brickio goes through this function, which uses the checksum module's fastest path
// (three interleaved SSE4.2 chains combined with PCLMULQDQ, or the table fallback).
#pragma once

#include <cstddef>
#include <cstdint>

#include "checksum/crc32c.h"

namespace brickd {

// CRC32C of `len` bytes from an initial value of 0: Crc32cForBlocks("123456789", 9) == 0xE3069283.
inline uint32_t Crc32cForBlocks(const uint8_t* data, size_t len) { return Crc32c(0, data, len); }

}  // namespace brickd
