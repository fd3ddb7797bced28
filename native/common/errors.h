// napi glue: building JS errors from C++.
//
// System errors keep node's fs shape ({ code, errno, syscall, path } and a message like
// "EIO: i/o error, pwrite '/x'") so TypeScript handles them like any node error.
// Plain C++ code reports failures as a SysError value; only the *_napi.cc files and this
// glue turn them into JS errors.
#pragma once

#include <napi.h>

#include <string>

namespace brickd {

// A failed system call, captured on a worker thread and turned into a JS error on the loop.
struct SysError {
  int errnum = 0;           // errno value (positive); 0 means no error
  std::string syscall;      // e.g. "open", "ioctl(BLKGETSIZE64)", "blkid_do_probe"
  std::string path;         // the file or device concerned, may be empty
  std::string detail;       // optional extra text appended to the message

  explicit operator bool() const { return errnum != 0; }
  static SysError FromErrno(int errnum, std::string syscall, std::string path = {}) {
    return SysError{errnum, std::move(syscall), std::move(path), {}};
  }
};

// "ENOENT" for ENOENT, "E<n>" for an errno with no name.
std::string ErrnoName(int errnum);

// Error object shaped like node's fs errors.
Napi::Error MakeSystemError(Napi::Env env, const SysError& err);

// Misuse from JS (wrong type, out of range): TypeError/RangeError naming the argument.
[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message);

}  // namespace brickd
