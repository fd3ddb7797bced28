// napi glue: building JS errors from C++.
//
// System errors keep node's fs shape ({ code, errno, syscall, path } and a message like
// "EIO: i/o error, pwrite '/x'") so TypeScript handles them like any node error.
// Plain C++ code reports failures as a SysError value (common/sys_error.h, free of napi);
// only the *_napi.cc files and this glue turn them into JS errors.
#pragma once

#include <napi.h>

#include <string>

#include "common/sys_error.h"

namespace brickd {

// "ENOENT" for ENOENT, "E<n>" for an errno with no name.
std::string ErrnoName(int errnum);

// Error object shaped like node's fs errors.
Napi::Error MakeSystemError(Napi::Env env, const SysError& err);

// Misuse from JS (wrong type, out of range): TypeError/RangeError naming the argument.
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message);

}  // namespace brickd
