// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the checksum of every brick block.
//
// Plain C++ with no napi, so it can be tested, fuzzed and benchmarked on its own.
// Every function takes and returns the finished CRC value (as zlib's crc32() does): pass 0
// to start, or the CRC of the bytes before `data` to continue, so that
// Crc32c(Crc32c(0, a), b) == Crc32c(0, a || b). Check value: Crc32c(0, "123456789") == 0xE3069283.
#pragma once

#include <cstddef>
#include <cstdint>

namespace brickd {

// Slice-by-8 table lookup. Portable; the fallback and the reference in tests.
uint32_t Crc32cTable(uint32_t crc, const uint8_t* data, size_t len);

// One serial chain of the SSE4.2 crc32 instruction. Only call when CpuHasSse42().
uint32_t Crc32cSse42(uint32_t crc, const uint8_t* data, size_t len);

// Three interleaved SSE4.2 chains combined with PCLMULQDQ. Only call when
// CpuHasSse42() && CpuHasPclmul().
uint32_t Crc32cSse42ThreeWay(uint32_t crc, const uint8_t* data, size_t len);

// The fastest of the above this CPU supports, chosen once on first use.
uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t len);

// "sse42-3way" or "table": what Crc32c() uses on this CPU.
const char* Crc32cImplName();

bool CpuHasSse42();
bool CpuHasPclmul();

// Number of blocks Crc32cBlocks() writes: ceil(len / block_size). block_size must be > 0.
size_t Crc32cBlockCount(size_t len, size_t block_size);

// One Crc32c() per block_size bytes of data (the last block may be short), each started
// from 0, written to out[0 .. Crc32cBlockCount(len, block_size)). Returns that count.
// out must have room for that many values and must not overlap data.
size_t Crc32cBlocks(const uint8_t* data, size_t len, size_t block_size, uint32_t* out);

}  // namespace brickd
