// napi glue: checking a binding's arguments on the loop thread, before any work is queued.
//
// TypeScript validates first; these checks are the native side's own guard, so a wrong
// call fails with node's error shapes instead of reaching a system call with garbage:
// TypeError (code ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE) or RangeError
// (ERR_OUT_OF_RANGE), each naming the argument. Every helper throws a Napi::Error (C++
// exceptions are on), so a binding calls them first and queues its worker only after.
// Loop thread only.
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace brickd::args {

// 2^53 - 1: the largest integer a JS number holds exactly.
inline constexpr double kMaxSafeInteger = 9007199254740991.0;

inline std::string Describe(const Napi::Value& value) {
  switch (value.Type()) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "type boolean";
    case napi_number: return "type number (" + value.ToString().Utf8Value() + ")";
    case napi_string: return "type string";
    case napi_symbol: return "type symbol";
    case napi_function: return "function";
    case napi_bigint: return "type bigint";
    default: return "an instance of Object";
  }
}

[[noreturn]] inline void ThrowWithCode(Napi::Error error, const char* code) {
  error.Set("code", Napi::String::New(error.Env(), code));
  throw error;
}

[[noreturn]] inline void ThrowInvalidType(const Napi::Value& value, const char* name, const char* expected) {
  ThrowWithCode(Napi::TypeError::New(value.Env(), std::string("The \"") + name + "\" argument must be " + expected +
                                                      ". Received " + Describe(value)),
                "ERR_INVALID_ARG_TYPE");
}

// A string argument, as UTF-8. Embedded NUL bytes are refused: the C string handed to the
// kernel would silently end at the first one and name a different file.
inline std::string String(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value value = info[index];
  if (!value.IsString()) ThrowInvalidType(value, name, "of type string");
  std::string text = value.As<Napi::String>().Utf8Value();
  if (text.find('\0') != std::string::npos) {
    ThrowWithCode(Napi::TypeError::New(info.Env(), std::string("The argument '") + name +
                                                       "' must be a string without null bytes"),
                  "ERR_INVALID_ARG_VALUE");
  }
  return text;
}

// A non-negative safe integer (byte offsets and lengths); `undefined` gives std::nullopt.
inline std::optional<uint64_t> OptionalUint(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value value = info[index];
  if (value.IsUndefined()) return std::nullopt;
  if (!value.IsNumber()) ThrowInvalidType(value, name, "of type number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0) || number > kMaxSafeInteger || std::trunc(number) != number) {
    ThrowWithCode(Napi::RangeError::New(info.Env(), std::string("The value of \"") + name +
                                                        "\" is out of range. It must be a non-negative safe integer. "
                                                        "Received " + value.ToString().Utf8Value()),
                  "ERR_OUT_OF_RANGE");
  }
  return static_cast<uint64_t>(number);
}

// A 32-bit flag word (MS_* / MNT_* bits): an integer in [0, 2^32).
inline uint32_t Flags(const Napi::CallbackInfo& info, size_t index, const char* name) {
  Napi::Value value = info[index];
  if (!value.IsNumber()) ThrowInvalidType(value, name, "of type number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0) || number > 4294967295.0 || std::trunc(number) != number) {
    ThrowWithCode(Napi::RangeError::New(info.Env(), std::string("The value of \"") + name +
                                                        "\" is out of range. It must be an integer >= 0 and < 2**32. "
                                                        "Received " + value.ToString().Utf8Value()),
                  "ERR_OUT_OF_RANGE");
  }
  return static_cast<uint32_t>(number);
}

}  // namespace brickd::args
