// Placeholder until the checksum concern lands.
#include <napi.h>
namespace brickd {
void InitChecksum(Napi::Env, Napi::Object) {}
}  // namespace brickd
