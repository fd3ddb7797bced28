// Placeholder until the mount concern lands.
#include <napi.h>
namespace brickd {
void InitMount(Napi::Env, Napi::Object) {}
}  // namespace brickd
