// napi binding of the socket concern: the credentials of the process at the other end of a
// connected Unix socket (SO_PEERCRED), for the control socket's per-call audit log.
//
// getsockopt(SO_PEERCRED) does not block (the kernel recorded the credentials when the
// peer connected), so it runs on the loop thread and returns a plain object, or throws a
// node-shaped system error (syscall 'getsockopt(SO_PEERCRED)').
#include <napi.h>
#include <sys/socket.h>

#include <cerrno>
#include <cmath>

#include "common/errors.h"

namespace brickd {
namespace {

// peerCredentials(fd: number): { pid: number, uid: number, gid: number }
Napi::Value PeerCredentialsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) ThrowTypeError(env, "The \"fd\" argument must be of type number");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 2147483647.0 && d == std::trunc(d))) ThrowRangeError(env, "The \"fd\" argument must be an integer >= 0 and <= 2147483647");
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (getsockopt(static_cast<int>(d), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    throw MakeSystemError(env, SysError::FromErrno(errno, "getsockopt(SO_PEERCRED)"));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentialsJs, "peerCredentials"));
}

}  // namespace brickd
