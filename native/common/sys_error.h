// A failed system call as a plain value: what the napi-free cores (device/, mount/, ...)
// return, and what the glue in errors.h turns into a node-shaped JS error.
//
// No napi.h here on purpose: the cores include this header and stay free of N-API, so they
// can be built, fuzzed and benchmarked without Node.
#pragma once

#include <string>
#include <utility>

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

}  // namespace brickd
