#include "common/errors.h"

#include <cstring>

namespace brickd {

std::string ErrnoName(int errnum) {
  const char* name = strerrorname_np(errnum);
  return name ? std::string(name) : "E" + std::to_string(errnum);
}

Napi::Error MakeSystemError(Napi::Env env, const SysError& err) {
  std::string code = ErrnoName(err.errnum);
  std::string message = code + ": " + std::strerror(err.errnum) + ", " + err.syscall;
  if (!err.path.empty()) message += " '" + err.path + "'";
  if (!err.detail.empty()) message += " (" + err.detail + ")";
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  obj.Set("code", code);
  obj.Set("errno", -err.errnum);
  obj.Set("syscall", err.syscall);
  if (!err.path.empty()) obj.Set("path", err.path);
  return error;
}

void ThrowTypeError(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

void ThrowRangeError(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}

}  // namespace brickd
