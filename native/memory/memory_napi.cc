// napi binding of the I/O memory pool (memory/iomem.h): buffers for large direct I/O.
//
// allocIoMemory(length) returns an ArrayBuffer of exactly `length` bytes over a slice of a
// huge-page region: its own ArrayBuffer (byteOffset 0), so JS code that reuses a buffer's
// whole ArrayBuffer (the frame decoder's payload rooms) never reaches a neighbour's slice.
// V8 counts an external ArrayBuffer's length as external memory, so garbage collection
// sees these buffers the way it sees Buffer.allocUnsafeSlow's.
//
// Ownership: the slice's region reference belongs to the ArrayBuffer and is dropped in its
// finalizer, which node runs on the loop thread once the ArrayBuffer is collected.
// Synchronous (an mmap at most); loop thread.
#include <napi.h>

#include <cerrno>

#include "common/args.h"
#include "common/errors.h"
#include "memory/iomem.h"

namespace brickd {
namespace {

// A buffer larger than this is a caller bug, not an I/O buffer (the store's largest
// request is far below it).
constexpr uint64_t kMaxIoMemory = uint64_t{1} << 30;

// allocIoMemory(length: number): ArrayBuffer
Napi::Value AllocIoMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::optional<uint64_t> length = args::OptionalUint(info, 0, "length");
  if (!length || *length == 0 || *length > kMaxIoMemory) {
    args::ThrowWithCode(Napi::RangeError::New(env, "The value of \"length\" is out of range. It must be an integer >= 1 and <= 1073741824"),
                        "ERR_OUT_OF_RANGE");
  }
  const iomem::Slice slice = iomem::Allocate(static_cast<size_t>(*length));
  if (!slice.data) throw MakeSystemError(env, SysError::FromErrno(ENOMEM, "mmap"));
  try {
    return Napi::ArrayBuffer::New(
        env, slice.data, static_cast<size_t>(*length),
        [](Napi::Env, void*, iomem::Region* region) { iomem::Release(region); }, slice.region);
  } catch (...) {
    // No ArrayBuffer owns the slice (node calls no finalizer for a failed create): drop
    // its reference here.
    iomem::Release(slice.region);
    throw;
  }
}

// ioMemoryStats(): { mappedRegions, idleRegions, largeMappings }
Napi::Value IoMemoryStats(const Napi::CallbackInfo& info) {
  const iomem::Stats stats = iomem::GetStats();
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("mappedRegions", Napi::Number::New(info.Env(), static_cast<double>(stats.mappedRegions)));
  out.Set("idleRegions", Napi::Number::New(info.Env(), static_cast<double>(stats.idleRegions)));
  out.Set("largeMappings", Napi::Number::New(info.Env(), static_cast<double>(stats.largeMappings)));
  return out;
}

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("allocIoMemory", Napi::Function::New(env, AllocIoMemory, "allocIoMemory"));
  exports.Set("ioMemoryStats", Napi::Function::New(env, IoMemoryStats, "ioMemoryStats"));
}

}  // namespace brickd
