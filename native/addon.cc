// The one module init and the one table of every export of brickd's native addon.
//
// Each concern (checksum, device, mount, ...) registers its functions through an
// Init<Concern> call below; src/native.ts is the one TypeScript file that loads this
// module and types exactly these exports.
#include <napi.h>

namespace brickd {
void InitChecksum(Napi::Env env, Napi::Object exports);  // crc32c*
void InitDevice(Napi::Env env, Napi::Object exports);    // probeDevice, wipeSignatures, discard
void InitMount(Napi::Env env, Napi::Object exports);     // mount, umount
void InitBrickio(Napi::Env env, Napi::Object exports);   // writev, readInto, *Blocks, xattrs
void InitSocket(Napi::Env env, Napi::Object exports);    // peerCredentials
void InitMemory(Napi::Env env, Napi::Object exports);    // allocIoMemory, ioMemoryStats
}  // namespace brickd

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  brickd::InitChecksum(env, exports);
  brickd::InitDevice(env, exports);
  brickd::InitMount(env, exports);
  brickd::InitBrickio(env, exports);
  brickd::InitSocket(env, exports);
  brickd::InitMemory(env, exports);
  return exports;
}

NODE_API_MODULE(brickd_native, Init)
