// Placeholder until the brickio concern lands.
#include <napi.h>
namespace brickd {
void InitBrickio(Napi::Env, Napi::Object) {}
}  // namespace brickd
