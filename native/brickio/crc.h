// The one seam between brickio and a CRC32C implementation.
//
// brickio checksums every block through this single function so that the implementation
// behind it can be swapped without touching the I/O code: today crc_temp.cc (a plain
// SSE4.2 loop), later a call into native/checksum (the fast multi-chain implementation).
#pragma once

#include <cstddef>
#include <cstdint>

namespace brickd {

// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of `len` bytes, starting from an
// initial value of 0 (i.e. the standard ~0 preset and final inversion are applied inside):
// Crc32cForBlocks("123456789", 9) == 0xE3069283. Pure CPU, thread-safe, any alignment.
uint32_t Crc32cForBlocks(const uint8_t* data, size_t len);

}  // namespace brickd
