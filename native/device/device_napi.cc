// napi bindings of the device concern: probeDevice, wipeSignatures, discardDevice.
//
// Each binding checks its arguments on the loop thread (TypeError/RangeError naming the
// argument), copies them into a PromiseWorker and returns its promise. Execute() runs the
// plain C++ call from device.h on a libuv pool thread and touches no napi; Result() builds
// the JS value on the loop thread, shaped exactly as src/native.ts types it. A std::exception
// escaping Execute() (only std::bad_alloc can) is caught by node-addon-api and rejects the
// promise. The worker owns copies of everything it uses; napi deletes it after settling.
#include <napi.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/args.h"
#include "common/worker.h"
#include "device/device.h"

namespace brickd {
namespace {

// { type, usage, offset, label?, uuid? }: label and uuid only when libblkid reported them.
Napi::Object SignatureToJs(Napi::Env env, const DeviceSignature& sig) {
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("type", sig.type);
  obj.Set("usage", sig.usage);
  obj.Set("offset", Napi::Number::New(env, static_cast<double>(sig.offset)));
  if (!sig.label.empty()) obj.Set("label", sig.label);
  if (!sig.uuid.empty()) obj.Set("uuid", sig.uuid);
  return obj;
}

Napi::Array SignaturesToJs(Napi::Env env, const std::vector<DeviceSignature>& sigs) {
  Napi::Array array = Napi::Array::New(env, sigs.size());
  for (size_t i = 0; i < sigs.size(); ++i) array.Set(static_cast<uint32_t>(i), SignatureToJs(env, sigs[i]));
  return array;
}

class ProbeWorker final : public PromiseWorker {
 public:
  ProbeWorker(Napi::Env env, std::string path) : PromiseWorker(env, "brickd.probeDevice"), path_(std::move(path)) {}

 protected:
  void Execute() override { error_ = ProbeDevice(path_, probe_); }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object obj = Napi::Object::New(env);
    obj.Set("path", path_);
    // Sizes stay exact as JS numbers up to 2^53 bytes (8 PiB).
    obj.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(probe_.size_bytes)));
    obj.Set("logicalSectorSize", Napi::Number::New(env, probe_.logical_sector_size));
    obj.Set("physicalSectorSize", Napi::Number::New(env, probe_.physical_sector_size));
    obj.Set("rotational", Napi::Boolean::New(env, probe_.rotational));
    obj.Set("discard", Napi::Boolean::New(env, probe_.discard));
    obj.Set("busy", Napi::Boolean::New(env, probe_.busy));
    obj.Set("signatures", SignaturesToJs(env, probe_.signatures));
    return obj;
  }

 private:
  const std::string path_;
  DeviceProbe probe_;  // written on the pool thread, read on the loop thread after it
};

class WipeWorker final : public PromiseWorker {
 public:
  WipeWorker(Napi::Env env, std::string path) : PromiseWorker(env, "brickd.wipeSignatures"), path_(std::move(path)) {}

 protected:
  void Execute() override { error_ = WipeSignatures(path_, erased_); }
  Napi::Value Result(Napi::Env env) override { return SignaturesToJs(env, erased_); }

 private:
  const std::string path_;
  std::vector<DeviceSignature> erased_;
};

class DiscardWorker final : public PromiseWorker {
 public:
  DiscardWorker(Napi::Env env, std::string path, uint64_t offset, std::optional<uint64_t> length)
      : PromiseWorker(env, "brickd.discardDevice"), path_(std::move(path)), offset_(offset), length_(length) {}

 protected:
  void Execute() override { error_ = DiscardDevice(path_, offset_, length_); }

 private:
  const std::string path_;
  const uint64_t offset_;
  const std::optional<uint64_t> length_;
};

// probeDevice(path: string): Promise<DeviceProbe>
Napi::Value ProbeDeviceJs(const Napi::CallbackInfo& info) {
  std::string path = args::String(info, 0, "path");
  return (new ProbeWorker(info.Env(), std::move(path)))->Queue();
}

// wipeSignatures(path: string): Promise<DeviceSignature[]>
Napi::Value WipeSignaturesJs(const Napi::CallbackInfo& info) {
  std::string path = args::String(info, 0, "path");
  return (new WipeWorker(info.Env(), std::move(path)))->Queue();
}

// discardDevice(path: string, offset?: number, length?: number): Promise<void>
Napi::Value DiscardDeviceJs(const Napi::CallbackInfo& info) {
  std::string path = args::String(info, 0, "path");
  uint64_t offset = args::OptionalUint(info, 1, "offset").value_or(0);
  std::optional<uint64_t> length = args::OptionalUint(info, 2, "length");
  return (new DiscardWorker(info.Env(), std::move(path), offset, length))->Queue();
}

}  // namespace

void InitDevice(Napi::Env env, Napi::Object exports) {
  exports.Set("probeDevice", Napi::Function::New(env, ProbeDeviceJs, "probeDevice"));
  exports.Set("wipeSignatures", Napi::Function::New(env, WipeSignaturesJs, "wipeSignatures"));
  exports.Set("discardDevice", Napi::Function::New(env, DiscardDeviceJs, "discardDevice"));
}

}  // namespace brickd
