// Placeholder until the device concern lands.
#include <napi.h>
namespace brickd {
void InitDevice(Napi::Env, Napi::Object) {}
}  // namespace brickd
