// CRC32C implementations: slice-by-8 tables, one SSE4.2 chain, and three SSE4.2 chains
// combined with PCLMULQDQ; plus runtime CPU dispatch and the per-block helper.
//
// How the fast path works. The crc32 instruction has a latency of about 3 cycles but can
// start one per cycle, so a single chain (each step needs the previous CRC) runs at a third
// of what the unit can do. Crc32cSse42ThreeWay cuts a long buffer into chunks of three
// equal streams A, B, C of L bytes, runs one chain per stream (they are independent, so the
// CPU overlaps them), then merges the three partial CRCs into the CRC of A||B||C:
//
//   Let R(s, M) be the raw CRC state (no pre/post inversion) after feeding message M
//   starting from state s. CRC is linear over GF(2), and feeding n zero bytes multiplies
//   the state by x^(8n) mod P, so
//       R(s, M||N) = R(s, M)·x^(8|N|)  xor  R(0, N)                                (1)
//   Applying (1) twice:
//       R(s, A||B||C) = R(s, A)·x^(16L)  xor  R(0, B)·x^(8L)  xor  R(0, C)   (mod P)
//   so chain A starts from the running state and chains B and C start from 0.
//
// The two multiplications mod P use PCLMULQDQ (carry-less multiply) and then the crc32
// instruction itself as the reduction (see CarrylessProduct below), with one 32-bit constant
// per stream length, computed at compile time. We chose this over a table of
// "multiply by x^(8L)" lookups (zlib/Adler style): it needs no extra tables competing for
// L1 with the data, costs two multiplies per chunk, and every x86-64 CPU with SSE4.2 since
// Westmere (2010) has PCLMULQDQ. A CPU with SSE4.2 but no PCLMULQDQ (Nehalem, 2008) gets the
// table: slower than one chain there, but crc32cImpl names only these two paths.
#include "checksum/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>  // _mm_crc32_*
#include <wmmintrin.h>  // _mm_clmulepi64_si128
#endif

namespace brickd {
namespace {

// Reflected Castagnoli polynomial: bit i holds the coefficient of x^(31-i), the bit order
// the crc32 instruction and the tables below use. This is x^32 mod P.
constexpr uint32_t kPoly = 0x82F63B78u;

// ── polynomial arithmetic mod P, in the reflected representation (compile time) ─────────

// v·x mod P: shifting right raises every degree by one; a coefficient pushed out of
// x^31 becomes x^32, which is replaced by x^32 mod P.
constexpr uint32_t TimesX(uint32_t v) { return (v >> 1) ^ ((v & 1u) ? kPoly : 0u); }

constexpr uint32_t MultiplyModP(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  for (int degree = 0; degree < 32; ++degree) {  // b holds (original b)·x^degree
    if (a & (0x80000000u >> degree)) product ^= b;
    b = TimesX(b);
  }
  return product;
}

// x^n mod P by square-and-multiply.
constexpr uint32_t XPowModP(uint64_t n) {
  uint32_t result = 0x80000000u;  // x^0
  uint32_t square = 0x40000000u;  // x^1, then x^2, x^4, ...
  for (; n != 0; n >>= 1) {
    if (n & 1u) result = MultiplyModP(result, square);
    square = MultiplyModP(square, square);
  }
  return result;
}

static_assert(XPowModP(32) == kPoly, "x^32 mod P is the polynomial's low terms");
static_assert(MultiplyModP(XPowModP(100), XPowModP(23)) == XPowModP(123));

// ── slice-by-8 tables ───────────────────────────────────────────────────────────────────

// kTables[0][b] is the raw CRC of the single byte b; kTables[k][b] is that CRC followed by
// k zero bytes, so eight bytes can be folded with eight independent lookups.
using Tables = std::array<std::array<uint32_t, 256>, 8>;

constexpr Tables MakeTables() {
  Tables tables{};
  for (uint32_t byte = 0; byte < 256; ++byte) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? kPoly : 0u);
    tables[0][byte] = crc;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (size_t byte = 0; byte < 256; ++byte) {
      const uint32_t prev = tables[k - 1][byte];
      tables[k][byte] = (prev >> 8) ^ tables[0][prev & 0xFFu];
    }
  }
  return tables;
}

constexpr Tables kTables = MakeTables();

// Little-endian assembly: the CRC is reflected, so the first byte in memory is the
// lowest-order byte whatever the host's endianness. Compilers turn this into one load.
inline uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

#if defined(__x86_64__)

// Unaligned-safe 64-bit load (memcpy is the defined way; it compiles to one mov).
inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Raw state update over len bytes with one serial chain. Bytes are taken one at a time
// until p is 8-byte aligned, so every 8-byte load after that stays inside one cache line.
__attribute__((target("sse4.2"))) inline uint32_t Sse42Serial(uint32_t raw, const uint8_t* p,
                                                              size_t len) {
  for (; len > 0 && (reinterpret_cast<uintptr_t>(p) & 7u) != 0; --len) raw = _mm_crc32_u8(raw, *p++);
  uint64_t raw64 = raw;
  for (; len >= 8; len -= 8, p += 8) raw64 = _mm_crc32_u64(raw64, Load64(p));
  raw = static_cast<uint32_t>(raw64);
  for (; len > 0; --len) raw = _mm_crc32_u8(raw, *p++);
  return raw;
}

// raw·x^(8·bytes) mod P, where shift_constant = XPowModP(8·bytes - 33).
//
// Bit k of a 32-bit reflected value is the coefficient of x^(31-k), so bit k of the integer
// carry-less product of two of them is the coefficient of x^(62-k) in the true product.
// Read as a 64-bit reflected value (bit k is x^(63-k)), that is the true product times x.
// _mm_crc32_u64(0, v) computes V·x^32 mod P for a 64-bit reflected V. Together:
// raw·x^(8·bytes-33)·x·x^32 = raw·x^(8·bytes), reduced mod P.
// Callers xor several products before this single reduction, which is valid by linearity.
__attribute__((target("sse4.2,pclmul"))) inline uint64_t CarrylessProduct(uint32_t raw,
                                                                           uint32_t shift_constant) {
  const __m128i product = _mm_clmulepi64_si128(_mm_cvtsi32_si128(static_cast<int>(raw)),
                                               _mm_cvtsi32_si128(static_cast<int>(shift_constant)), 0x00);
  return static_cast<uint64_t>(_mm_cvtsi128_si64(product));
}

// Consumes whole chunks of 3 × kStreamBytes from (p, len) and returns the raw state.
// Callers align p to 8 bytes first; kStreamBytes is a multiple of 8, so all three streams
// stay aligned. That is for speed only: Load64 is correct at any address.
template <size_t kStreamBytes>
__attribute__((target("sse4.2,pclmul"))) inline uint32_t ThreeWayChunks(uint32_t raw, const uint8_t*& p,
                                                                        size_t& len) {
  static_assert(kStreamBytes % 8 == 0 && kStreamBytes >= 8);
  constexpr uint32_t kShiftOneStream = XPowModP(8 * kStreamBytes - 33);
  constexpr uint32_t kShiftTwoStreams = XPowModP(16 * kStreamBytes - 33);
  for (; len >= 3 * kStreamBytes; len -= 3 * kStreamBytes, p += 3 * kStreamBytes) {
    uint64_t a = raw, b = 0, c = 0;
    for (size_t i = 0; i < kStreamBytes; i += 8) {
      a = _mm_crc32_u64(a, Load64(p + i));
      b = _mm_crc32_u64(b, Load64(p + kStreamBytes + i));
      c = _mm_crc32_u64(c, Load64(p + 2 * kStreamBytes + i));
    }
    const uint64_t shifted = CarrylessProduct(static_cast<uint32_t>(a), kShiftTwoStreams) ^
                             CarrylessProduct(static_cast<uint32_t>(b), kShiftOneStream);
    raw = static_cast<uint32_t>(c ^ _mm_crc32_u64(0, shifted));
  }
  return raw;
}

#endif  // __x86_64__

}  // namespace

uint32_t Crc32cTable(uint32_t crc, const uint8_t* data, size_t len) {
  const auto& t = kTables;
  uint32_t raw = ~crc;
  for (; len >= 8; len -= 8, data += 8) {
    const uint32_t lo = raw ^ LoadLe32(data);
    const uint32_t hi = LoadLe32(data + 4);
    raw = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
          t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
  }
  for (; len > 0; --len) raw = (raw >> 8) ^ t[0][(raw ^ *data++) & 0xFF];
  return ~raw;
}

#if defined(__x86_64__)

bool CpuHasSse42() {
  __builtin_cpu_init();  // safe to repeat; needed if we are ever called from a constructor
  return __builtin_cpu_supports("sse4.2");
}

bool CpuHasPclmul() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("pclmul");
}

__attribute__((target("sse4.2"))) uint32_t Crc32cSse42(uint32_t crc, const uint8_t* data, size_t len) {
  return ~Sse42Serial(~crc, data, len);
}

__attribute__((target("sse4.2,pclmul"))) uint32_t Crc32cSse42ThreeWay(uint32_t crc, const uint8_t* data,
                                                                      size_t len) {
  uint32_t raw = ~crc;
  // Align first (see Sse42Serial) so the streams' 8-byte loads never split a cache line.
  for (; len > 0 && (reinterpret_cast<uintptr_t>(data) & 7u) != 0; --len) raw = _mm_crc32_u8(raw, *data++);
  // Long streams amortise the combine (~15 cycles, on the critical path of chain A) over
  // many crc32 steps; the shorter tiers pick up what is left so that a 4 KiB block still
  // runs mostly three-way. Under 3 × 32 bytes a serial chain is as fast.
  raw = ThreeWayChunks<8192>(raw, data, len);
  raw = ThreeWayChunks<1024>(raw, data, len);
  raw = ThreeWayChunks<128>(raw, data, len);
  raw = ThreeWayChunks<32>(raw, data, len);
  return ~Sse42Serial(raw, data, len);
}

#else  // not x86-64: only the table exists; the SSE4.2 entry points are never selected.

bool CpuHasSse42() { return false; }
bool CpuHasPclmul() { return false; }
uint32_t Crc32cSse42(uint32_t crc, const uint8_t* data, size_t len) { return Crc32cTable(crc, data, len); }
uint32_t Crc32cSse42ThreeWay(uint32_t crc, const uint8_t* data, size_t len) {
  return Crc32cTable(crc, data, len);
}

#endif

namespace {
using Crc32cFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);
bool UseThreeWay() {
  static const bool use = CpuHasSse42() && CpuHasPclmul();  // decided once, thread-safe
  return use;
}
}  // namespace

uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t len) {
  static const Crc32cFn impl = UseThreeWay() ? Crc32cSse42ThreeWay : Crc32cTable;
  return impl(crc, data, len);
}

const char* Crc32cImplName() { return UseThreeWay() ? "sse42-3way" : "table"; }

size_t Crc32cBlockCount(size_t len, size_t block_size) {
  return len / block_size + (len % block_size != 0 ? 1 : 0);
}

size_t Crc32cBlocks(const uint8_t* data, size_t len, size_t block_size, uint32_t* out) {
  size_t count = 0;
  // Counting down what remains (rather than an offset up to len) cannot overflow, whatever
  // block_size is.
  for (size_t remaining = len; remaining > 0;) {
    const size_t this_block = remaining < block_size ? remaining : block_size;
    out[count++] = Crc32c(0, data, this_block);
    data += this_block;
    remaining -= this_block;
  }
  return count;
}

}  // namespace brickd
