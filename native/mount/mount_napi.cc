// napi bindings of the mount concern: mount and umount, both returning promises.
//
// Arguments are checked and copied on the loop thread; Execute() makes the system call on a
// libuv pool thread without touching napi; the promise settles on the loop thread with
// undefined or a node-shaped system error (syscall 'mount' / 'umount2', path = target).
#include <napi.h>

#include <string>
#include <utility>

#include "common/args.h"
#include "common/worker.h"
#include "mount/mount.h"

namespace brickd {
namespace {

class MountWorker final : public PromiseWorker {
 public:
  MountWorker(Napi::Env env, std::string source, std::string target, std::string fstype, uint32_t flags,
              std::string data)
      : PromiseWorker(env, "brickd.mount"),
        source_(std::move(source)),
        target_(std::move(target)),
        fstype_(std::move(fstype)),
        flags_(flags),
        data_(std::move(data)) {}

 protected:
  void Execute() override { error_ = Mount(source_, target_, fstype_, flags_, data_); }

 private:
  const std::string source_;
  const std::string target_;
  const std::string fstype_;
  const uint32_t flags_;
  const std::string data_;
};

class UmountWorker final : public PromiseWorker {
 public:
  UmountWorker(Napi::Env env, std::string target, uint32_t flags)
      : PromiseWorker(env, "brickd.umount"), target_(std::move(target)), flags_(flags) {}

 protected:
  void Execute() override { error_ = Umount(target_, flags_); }

 private:
  const std::string target_;
  const uint32_t flags_;
};

// mount(source: string, target: string, fstype: string, flags: number, data: string): Promise<void>
Napi::Value MountJs(const Napi::CallbackInfo& info) {
  std::string source = args::String(info, 0, "source");
  std::string target = args::String(info, 1, "target");
  std::string fstype = args::String(info, 2, "fstype");
  uint32_t flags = args::Flags(info, 3, "flags");
  std::string data = args::String(info, 4, "data");
  return (new MountWorker(info.Env(), std::move(source), std::move(target), std::move(fstype), flags,
                          std::move(data)))
      ->Queue();
}

// umount(target: string, flags: number): Promise<void>
Napi::Value UmountJs(const Napi::CallbackInfo& info) {
  std::string target = args::String(info, 0, "target");
  uint32_t flags = args::Flags(info, 1, "flags");
  return (new UmountWorker(info.Env(), std::move(target), flags))->Queue();
}

}  // namespace

void InitMount(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, MountJs, "mount"));
  exports.Set("umount", Napi::Function::New(env, UmountJs, "umount"));
}

}  // namespace brickd
