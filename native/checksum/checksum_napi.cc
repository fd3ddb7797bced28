// napi bindings of the checksum concern: crc32c, crc32cSingleChain, crc32cTable,
// crc32cBlocks and crc32cImpl, typed in src/native.ts.
//
// All calls are sync: they are pure CPU over memory the caller owns and passes in, and
// they read it in place (no copy) without keeping any reference after returning.
// src/native.ts hands these functions to callers as they are (a JS wrapper would add a
// call per block on the hot path), so the arguments are checked here: misuse throws
// TypeError (wrong type) or RangeError (bad value) naming the argument.
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "checksum/crc32c.h"
#include "common/errors.h"

namespace brickd {
namespace {

// The bytes of a Uint8Array (Buffer included). napi already offsets the data pointer by the
// view's byteOffset, so sub-views of a larger buffer checksum exactly their own bytes.
struct ByteSpan {
  const uint8_t* data;
  size_t length;
};

ByteSpan DataArg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  // One napi call checks the type and yields length and data (it fails, without throwing,
  // for anything that is not a typed array). The wrappers (IsTypedArray(), As<Uint8Array>())
  // would make three; at 4 KiB per call that is a visible share of the time.
  const Napi::Value value = info[index];
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(info.Env(), value, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    ThrowTypeError(info.Env(), std::string("The \"") + name + "\" argument must be a Uint8Array or Buffer");
  }
  return {static_cast<const uint8_t*>(data), length};
}

// A finished CRC to continue from; undefined means 0 (start a new CRC).
uint32_t InitialArg(const Napi::CallbackInfo& info, size_t index) {
  const Napi::Value value = info[index];
  const napi_valuetype type = value.Type();
  if (type == napi_undefined) return 0;
  if (type != napi_number) ThrowTypeError(info.Env(), "The \"initial\" argument must be a uint32 number");
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0 && number <= 4294967295.0 && std::trunc(number) == number)) {
    ThrowRangeError(info.Env(), "The \"initial\" argument must be an integer in [0, 4294967295]");
  }
  return static_cast<uint32_t>(number);
}

using Crc32cFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);

template <Crc32cFn kImpl>
Napi::Value Crc32cBinding(const Napi::CallbackInfo& info) {
  const ByteSpan bytes = DataArg(info, 0, "data");
  const uint32_t initial = InitialArg(info, 1);
  return Napi::Number::New(info.Env(), kImpl(initial, bytes.data, bytes.length));
}

Napi::Value Crc32cSingleChainBinding(const Napi::CallbackInfo& info) {
  static const bool has_sse42 = CpuHasSse42();
  if (!has_sse42) {
    Napi::Error error = Napi::Error::New(info.Env(), "crc32cSingleChain needs a CPU with SSE4.2");
    error.Set("code", "CPU_UNSUPPORTED");
    throw error;
  }
  return Crc32cBinding<Crc32cSse42>(info);
}

// crc32cBlocks(data, blockSize, out) -> number of CRCs written.
Napi::Value Crc32cBlocksBinding(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const ByteSpan bytes = DataArg(info, 0, "data");

  const Napi::Value block_size_value = info[1];
  if (!block_size_value.IsNumber()) ThrowTypeError(env, "The \"blockSize\" argument must be a number");
  const double block_size = block_size_value.As<Napi::Number>().DoubleValue();
  // 2^53: beyond that a JS number is no longer an exact integer.
  if (!(block_size >= 1 && block_size <= 9007199254740991.0 && std::trunc(block_size) == block_size)) {
    ThrowRangeError(env, "The \"blockSize\" argument must be a positive integer");
  }

  const Napi::Value out_value = info[2];
  if (!out_value.IsTypedArray() || out_value.As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    ThrowTypeError(env, "The \"out\" argument must be a Uint32Array");
  }
  auto out = out_value.As<Napi::Uint32Array>();

  const size_t count = Crc32cBlockCount(bytes.length, static_cast<size_t>(block_size));
  if (out.ElementLength() < count) {
    ThrowRangeError(env, "The \"out\" argument must have room for " + std::to_string(count) +
                             " CRCs (one per block), it has " + std::to_string(out.ElementLength()));
  }
  // Writing a CRC into bytes still to be read would corrupt later blocks' results.
  const auto* out_begin = reinterpret_cast<const uint8_t*>(out.Data());
  const auto* out_end = out_begin + count * sizeof(uint32_t);
  if (count > 0 && out_begin < bytes.data + bytes.length && bytes.data < out_end) {
    ThrowRangeError(env, "The \"out\" argument must not share memory with \"data\"");
  }

  const size_t written = Crc32cBlocks(bytes.data, bytes.length, static_cast<size_t>(block_size), out.Data());
  return Napi::Number::New(env, static_cast<double>(written));
}

}  // namespace

void InitChecksum(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32c", Napi::Function::New<Crc32cBinding<Crc32c>>(env, "crc32c"));
  exports.Set("crc32cSingleChain", Napi::Function::New<Crc32cSingleChainBinding>(env, "crc32cSingleChain"));
  exports.Set("crc32cTable", Napi::Function::New<Crc32cBinding<Crc32cTable>>(env, "crc32cTable"));
  exports.Set("crc32cBlocks", Napi::Function::New<Crc32cBlocksBinding>(env, "crc32cBlocks"));
  // Read-only, as typed: the choice is made once per process and cannot be changed from JS.
  exports.DefineProperty(
      Napi::PropertyDescriptor::Value("crc32cImpl", Napi::String::New(env, Crc32cImplName()), napi_enumerable));
}

}  // namespace brickd
