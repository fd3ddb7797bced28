// napi glue: the one base class for every blocking native call.
//
// How it works: JS calls a binding, the binding validates its arguments on the loop thread,
// copies what it needs (strings, numbers) into a PromiseWorker subclass, keeps a reference
// to any caller-owned Buffer (so it cannot be collected while the pool thread uses it),
// queues the worker and returns its promise. Execute() runs on a libuv pool thread and
// must not touch napi; it records failure in `error_`. On the loop thread the promise is
// resolved with Result() or rejected with a node-shaped system error. napi frees the worker.
#pragma once

#include <napi.h>

#include "common/errors.h"

namespace brickd {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Queue() {
    Napi::AsyncWorker::Queue();
    return deferred_.Promise();
  }

 protected:
  // Pool thread. Do the work; on failure set error_ (no napi calls here).
  void Execute() override = 0;
  // Loop thread. Build the resolved value (undefined by default).
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

  // Keep a caller-owned buffer alive until the worker is done.
  void Retain(Napi::Value buffer) { retained_.Reset(buffer.As<Napi::Object>(), 1); }

  SysError error_;

 private:
  void OnOK() override {
    Napi::Env env = Env();
    if (error_) {
      deferred_.Reject(MakeSystemError(env, error_).Value());
      return;
    }
    try {
      deferred_.Resolve(Result(env));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference retained_;
};

}  // namespace brickd
