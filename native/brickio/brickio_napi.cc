// napi bindings of brickio: argument checks on the loop thread, one PromiseWorker per call.
//
// Threading: each binding runs on the JS (loop) thread. It validates every argument
// (TypeError naming the argument for a wrong type, RangeError for a bad value), copies the
// scalars and strings into a worker, and queues it; the blocking work runs in Execute() on
// a libuv pool thread, through brickio.h only, with no napi calls there.
//
// Ownership: caller buffers are never copied. The worker takes the raw pointer on the loop
// thread and holds a strong reference to the Uint8Array (PromiseWorker::Retain) until the
// promise settles, so the memory cannot be collected while a pool thread reads or writes it.
// (napi_get_typedarray_info also moves a small on-heap typed array's bytes off the V8 heap,
// so the pointer cannot be moved by a GC either.) writev retains an array the binding made
// itself, so a caller that mutates its own array mid-flight cannot drop a buffer in use.
// The caller must not detach (transfer) an ArrayBuffer with an operation in flight, as with
// node's own fs calls.
#include <napi.h>

#include <cmath>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "brickio/brickio.h"
#include "common/worker.h"

namespace brickd {
namespace {

// ── argument validation (loop thread) ────────────────────────────────────────────────
// Messages and codes follow node's own validators (ERR_INVALID_ARG_TYPE, ERR_OUT_OF_RANGE,
// ERR_INVALID_ARG_VALUE) so that misuse reads the same as a misused fs call.

[[noreturn]] void ThrowWithCode(Napi::Error error, const char* code) {
  error.Value().Set("code", Napi::String::New(error.Env(), code));
  throw error;
}

std::string Describe(const Napi::Value& value) {
  if (value.IsUndefined()) return "undefined";
  if (value.IsNull()) return "null";
  if (value.IsNumber()) {
    double d = value.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 1e21) return std::to_string(static_cast<long long>(d));
    return value.ToString().Utf8Value();
  }
  if (value.IsString()) return "type string";
  if (value.IsBoolean()) return "type boolean";
  if (value.IsFunction()) return "function";
  if (value.IsArray()) return "an instance of Array";
  return "type " + std::string(value.IsObject() ? "object" : "unknown");
}

[[noreturn]] void ThrowArgType(const Napi::Value& value, const std::string& name, const std::string& expected) {
  ThrowWithCode(Napi::TypeError::New(value.Env(), "The \"" + name + "\" argument must be " + expected +
                                                      ". Received " + Describe(value)),
                "ERR_INVALID_ARG_TYPE");
}

[[noreturn]] void ThrowArgRange(const Napi::Value& value, const std::string& name, const std::string& expected) {
  ThrowWithCode(Napi::RangeError::New(value.Env(), "The value of \"" + name + "\" is out of range. It must be " +
                                                       expected + ". Received " + Describe(value)),
                "ERR_OUT_OF_RANGE");
}

constexpr double kMaxSafeInteger = 9007199254740991.0;  // Number.MAX_SAFE_INTEGER

double ArgNumber(const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) ThrowArgType(value, name, "of type number");
  return value.As<Napi::Number>().DoubleValue();
}

// A non-negative safe integer (offsets, sizes, block indexes, counts).
uint64_t ArgUint(const Napi::Value& value, const char* name) {
  double d = ArgNumber(value, name);
  if (!(d >= 0 && d <= kMaxSafeInteger && d == std::trunc(d))) ThrowArgRange(value, name, "an integer >= 0 and <= 2^53 - 1");
  return static_cast<uint64_t>(d);
}

int ArgFd(const Napi::Value& value, const char* name) {
  double d = ArgNumber(value, name);
  if (!(d >= 0 && d <= 2147483647.0 && d == std::trunc(d))) ThrowArgRange(value, name, "an integer >= 0 and <= 2147483647");
  return static_cast<int>(d);
}

uint32_t ArgBlockSize(const Napi::Value& value) {
  double d = ArgNumber(value, "blockSize");
  if (!(d == std::trunc(d) && d >= 0 && d <= brickio::kMaxBlockSize && brickio::IsValidBlockSize(static_cast<uint64_t>(d)))) {
    ThrowArgRange(value, "blockSize", "a power of two >= 512 and <= 1048576");
  }
  return static_cast<uint32_t>(d);
}

Napi::Uint8Array ArgBytes(const Napi::Value& value, const std::string& name) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowArgType(value, name, "an instance of Buffer or Uint8Array");
  }
  return value.As<Napi::Uint8Array>();
}

// A string for a C call: no embedded NUL, which the call would silently cut at.
std::string ArgCString(const Napi::Value& value, const char* name, bool allowEmpty) {
  if (!value.IsString()) ThrowArgType(value, name, "of type string");
  std::string s = value.As<Napi::String>().Utf8Value();
  if (s.find('\0') != std::string::npos || (!allowEmpty && s.empty())) {
    ThrowWithCode(Napi::TypeError::New(value.Env(), std::string("The argument '") + name + "' must be a non-empty string without null bytes"),
                  "ERR_INVALID_ARG_VALUE");
  }
  return s;
}

// ── workers (Execute on a pool thread, Result on the loop thread) ──────────────────────

// Turns brickio's plain error into the node-shaped SysError the base class rejects with.
// Data and sums files have no path here, so the message names which one failed instead.
SysError ToSysError(const brickio::IoError& err, const std::string& path = {}) {
  SysError sys = SysError::FromErrno(err.errnum, err.syscall, path);
  sys.detail = err.file;
  if (!err.detail.empty()) sys.detail += (sys.detail.empty() ? "" : ": ") + err.detail;
  return sys;
}

class WritevWorker : public PromiseWorker {
 public:
  WritevWorker(Napi::Env env, int fd, Napi::Array keep, std::vector<iovec> iov, uint64_t offset, bool dsync)
      : PromiseWorker(env, "brickd.writev"), fd_(fd), iov_(std::move(iov)), offset_(offset), dsync_(dsync) {
    Retain(keep);
  }
  void Execute() override {
    if (auto err = brickio::Writev(fd_, iov_.data(), iov_.size(), offset_, dsync_)) error_ = ToSysError(err);
  }

 private:
  int fd_;
  std::vector<iovec> iov_;
  uint64_t offset_;
  bool dsync_;
};

class ReadIntoWorker : public PromiseWorker {
 public:
  ReadIntoWorker(Napi::Env env, int fd, Napi::Uint8Array buffer, uint64_t offset)
      : PromiseWorker(env, "brickd.readInto"), fd_(fd), data_(buffer.Data()), len_(buffer.ByteLength()), offset_(offset) {
    Retain(buffer);
  }
  void Execute() override {
    if (auto err = brickio::ReadInto(fd_, data_, len_, offset_, &bytesRead_)) error_ = ToSysError(err);
  }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(bytesRead_)); }

 private:
  int fd_;
  uint8_t* data_;
  size_t len_;
  uint64_t offset_;
  size_t bytesRead_ = 0;
};

class SyncWorker : public PromiseWorker {
 public:
  SyncWorker(Napi::Env env, int fd, bool dataOnly)
      : PromiseWorker(env, dataOnly ? "brickd.fdatasync" : "brickd.fsync"), fd_(fd), dataOnly_(dataOnly) {}
  void Execute() override {
    if (auto err = dataOnly_ ? brickio::Fdatasync(fd_) : brickio::Fsync(fd_)) error_ = ToSysError(err);
  }

 private:
  int fd_;
  bool dataOnly_;
};

class WriteBlocksWorker : public PromiseWorker {
 public:
  WriteBlocksWorker(Napi::Env env, int dataFd, int sumsFd, Napi::Uint8Array data, uint64_t offset, uint32_t blockSize,
                    std::optional<uint32_t> expectedCrc, int directFd)
      : PromiseWorker(env, "brickd.writeBlocks"),
        dataFd_(dataFd), sumsFd_(sumsFd), data_(data.Data()), len_(data.ByteLength()),
        offset_(offset), blockSize_(blockSize), expectedCrc_(expectedCrc), directFd_(directFd) {
    Retain(data);
  }
  void Execute() override {
    auto err = brickio::WriteBlocks(dataFd_, sumsFd_, data_, len_, offset_, blockSize_, expectedCrc_, directFd_);
    if (err) error_ = ToSysError(err);
  }

 private:
  int dataFd_, sumsFd_;
  const uint8_t* data_;
  size_t len_;
  uint64_t offset_;
  uint32_t blockSize_;
  std::optional<uint32_t> expectedCrc_;
  int directFd_;
};

// Several independent WriteBlocks in one pool job (see writeBlocksBatch in src/native.ts):
// one queue/wake/callback for a group of small writes instead of one each. Entries run in
// order; each one's failure is its own (the others still run) and is reported in its slot.
class WriteBlocksBatchWorker : public PromiseWorker {
 public:
  struct Entry {
    int dataFd, sumsFd;
    const uint8_t* data;
    size_t len;
    uint64_t offset;
    uint32_t blockSize;
    SysError error;
  };
  WriteBlocksBatchWorker(Napi::Env env, Napi::Array keep, std::vector<Entry> entries)
      : PromiseWorker(env, "brickd.writeBlocksBatch"), entries_(std::move(entries)) {
    Retain(keep);
  }
  void Execute() override {
    for (Entry& e : entries_) {
      if (auto err = brickio::WriteBlocks(e.dataFd, e.sumsFd, e.data, e.len, e.offset, e.blockSize, std::nullopt, -1)) e.error = ToSysError(err);
    }
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, entries_.size());
    for (uint32_t i = 0; i < entries_.size(); i++) {
      out.Set(i, entries_[i].error ? MakeSystemError(env, entries_[i].error).Value() : env.Null());
    }
    return out;
  }

 private:
  std::vector<Entry> entries_;
};

class ReadBlocksWorker : public PromiseWorker {
 public:
  ReadBlocksWorker(Napi::Env env, int dataFd, int sumsFd, Napi::Uint8Array buffer, uint64_t offset, uint32_t blockSize,
                   int directFd)
      : PromiseWorker(env, "brickd.readBlocks"),
        dataFd_(dataFd), sumsFd_(sumsFd), data_(buffer.Data()), len_(buffer.ByteLength()),
        offset_(offset), blockSize_(blockSize), directFd_(directFd) {
    Retain(buffer);
  }
  void Execute() override {
    auto err = brickio::ReadBlocks(dataFd_, sumsFd_, data_, len_, offset_, blockSize_, &result_, directFd_);
    if (err) error_ = ToSysError(err);
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("bytes", Napi::Number::New(env, static_cast<double>(result_.bytes)));
    out.Set("badBlock", Napi::Number::New(env, static_cast<double>(result_.badBlock)));
    return out;
  }

 private:
  int dataFd_, sumsFd_;
  uint8_t* data_;
  size_t len_;
  uint64_t offset_;
  uint32_t blockSize_;
  int directFd_;
  brickio::ReadBlocksResult result_;
};

class TruncateBlocksWorker : public PromiseWorker {
 public:
  TruncateBlocksWorker(Napi::Env env, int dataFd, int sumsFd, uint64_t size, uint32_t blockSize)
      : PromiseWorker(env, "brickd.truncateBlocks"), dataFd_(dataFd), sumsFd_(sumsFd), size_(size), blockSize_(blockSize) {}
  void Execute() override {
    if (auto err = brickio::TruncateBlocks(dataFd_, sumsFd_, size_, blockSize_)) error_ = ToSysError(err);
  }

 private:
  int dataFd_, sumsFd_;
  uint64_t size_;
  uint32_t blockSize_;
};

// verifyBlocks (maxBad set) and resumBlocks share the block-range arguments.
class BlockRangeWorker : public PromiseWorker {
 public:
  BlockRangeWorker(Napi::Env env, int dataFd, int sumsFd, uint64_t firstBlock, uint64_t count, uint32_t blockSize,
                   std::optional<size_t> maxBad)
      : PromiseWorker(env, maxBad ? "brickd.verifyBlocks" : "brickd.resumBlocks"),
        dataFd_(dataFd), sumsFd_(sumsFd), firstBlock_(firstBlock), count_(count), blockSize_(blockSize), maxBad_(maxBad) {}
  void Execute() override {
    auto err = maxBad_ ? brickio::VerifyBlocks(dataFd_, sumsFd_, firstBlock_, count_, blockSize_, *maxBad_, &bad_)
                       : brickio::ResumBlocks(dataFd_, sumsFd_, firstBlock_, count_, blockSize_);
    if (err) error_ = ToSysError(err);
  }
  Napi::Value Result(Napi::Env env) override {
    if (!maxBad_) return env.Undefined();
    Napi::Array out = Napi::Array::New(env, bad_.size());
    for (size_t i = 0; i < bad_.size(); i++) out.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(bad_[i])));
    return out;
  }

 private:
  int dataFd_, sumsFd_;
  uint64_t firstBlock_, count_;
  uint32_t blockSize_;
  std::optional<size_t> maxBad_;
  std::vector<uint64_t> bad_;
};

class GetXattrWorker : public PromiseWorker {
 public:
  GetXattrWorker(Napi::Env env, brickio::XattrTarget target, std::string name)
      : PromiseWorker(env, "brickd.getXattr"), target_(std::move(target)), name_(std::move(name)) {}
  void Execute() override {
    if (auto err = brickio::GetXattr(target_, name_, &value_, &present_)) error_ = ToSysError(err, target_.path);
  }
  Napi::Value Result(Napi::Env env) override {
    if (!present_) return env.Undefined();
    // A fresh Buffer that JS owns; the pool-thread vector is freed with the worker.
    return Napi::Buffer<uint8_t>::Copy(env, value_.data(), value_.size());
  }

 private:
  brickio::XattrTarget target_;
  std::string name_;
  std::vector<uint8_t> value_;
  bool present_ = false;
};

class SetXattrWorker : public PromiseWorker {
 public:
  SetXattrWorker(Napi::Env env, brickio::XattrTarget target, std::string name, Napi::Uint8Array value)
      : PromiseWorker(env, "brickd.setXattr"),
        target_(std::move(target)), name_(std::move(name)), data_(value.Data()), len_(value.ByteLength()) {
    Retain(value);
  }
  void Execute() override {
    if (auto err = brickio::SetXattr(target_, name_, data_, len_)) error_ = ToSysError(err, target_.path);
  }

 private:
  brickio::XattrTarget target_;
  std::string name_;
  const uint8_t* data_;
  size_t len_;
};

// ── bindings (loop thread) ───────────────────────────────────────────────────────────

Napi::Value Writev(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info[0], "fd");
  if (!info[1].IsArray()) ThrowArgType(info[1], "buffers", "an instance of Array");
  Napi::Array buffers = info[1].As<Napi::Array>();
  uint64_t offset = ArgUint(info[2], "offset");
  // Our own array of the buffers, retained by the worker (see Ownership at the top).
  Napi::Array keep = Napi::Array::New(env, buffers.Length());
  std::vector<iovec> iov;
  iov.reserve(buffers.Length());
  for (uint32_t i = 0; i < buffers.Length(); i++) {
    Napi::Uint8Array buffer = ArgBytes(buffers.Get(i), "buffers[" + std::to_string(i) + "]");
    keep.Set(i, buffer);
    iov.push_back({buffer.Data(), buffer.ByteLength()});
  }
  bool dsync = false;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsBoolean()) ThrowArgType(info[3], "dsync", "of type boolean");
    dsync = info[3].As<Napi::Boolean>().Value();
  }
  return (new WritevWorker(env, fd, keep, std::move(iov), offset, dsync))->Queue();
}

Napi::Value ReadInto(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info[0], "fd");
  Napi::Uint8Array buffer = ArgBytes(info[1], "buffer");
  uint64_t offset = ArgUint(info[2], "offset");
  return (new ReadIntoWorker(info.Env(), fd, buffer, offset))->Queue();
}

Napi::Value Fdatasync(const Napi::CallbackInfo& info) {
  return (new SyncWorker(info.Env(), ArgFd(info[0], "fd"), true))->Queue();
}

Napi::Value Fsync(const Napi::CallbackInfo& info) {
  return (new SyncWorker(info.Env(), ArgFd(info[0], "fd"), false))->Queue();
}

Napi::Value WriteBlocks(const Napi::CallbackInfo& info) {
  int dataFd = ArgFd(info[0], "dataFd");
  int sumsFd = ArgFd(info[1], "sumsFd");
  Napi::Uint8Array data = ArgBytes(info[2], "data");
  uint64_t offset = ArgUint(info[3], "offset");
  uint32_t blockSize = ArgBlockSize(info[4]);
  std::optional<uint32_t> expectedCrc;
  if (!info[5].IsUndefined()) {
    double d = ArgNumber(info[5], "expectedCrc");
    if (!(d >= 0 && d <= 4294967295.0 && d == std::trunc(d))) ThrowArgRange(info[5], "expectedCrc", "an integer >= 0 and <= 4294967295");
    expectedCrc = static_cast<uint32_t>(d);
  }
  int directFd = -1;
  if (info.Length() > 6 && !info[6].IsUndefined()) directFd = ArgFd(info[6], "directFd");
  return (new WriteBlocksWorker(info.Env(), dataFd, sumsFd, data, offset, blockSize, expectedCrc, directFd))->Queue();
}

Napi::Value WriteBlocksBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) ThrowArgType(info[0], "entries", "an instance of Array");
  Napi::Array entries = info[0].As<Napi::Array>();
  // Our own array of the data buffers, retained by the worker (see Ownership at the top).
  Napi::Array keep = Napi::Array::New(env, entries.Length());
  std::vector<WriteBlocksBatchWorker::Entry> parsed;
  parsed.reserve(entries.Length());
  for (uint32_t i = 0; i < entries.Length(); i++) {
    const std::string name = "entries[" + std::to_string(i) + "]";
    Napi::Value value = entries.Get(i);
    if (!value.IsArray() || value.As<Napi::Array>().Length() != 5) ThrowArgType(value, name, "an array [dataFd, sumsFd, data, offset, blockSize]");
    Napi::Array entry = value.As<Napi::Array>();
    Napi::Uint8Array data = ArgBytes(entry.Get(2u), name + "[2]");
    keep.Set(i, data);
    const int dataFd = ArgFd(entry.Get(0u), (name + "[0]").c_str());
    const int sumsFd = ArgFd(entry.Get(1u), (name + "[1]").c_str());
    const uint64_t offset = ArgUint(entry.Get(3u), (name + "[3]").c_str());
    parsed.push_back({dataFd, sumsFd, data.Data(), data.ByteLength(), offset, ArgBlockSize(entry.Get(4u)), {}});
  }
  return (new WriteBlocksBatchWorker(env, keep, std::move(parsed)))->Queue();
}

Napi::Value ReadBlocks(const Napi::CallbackInfo& info) {
  int dataFd = ArgFd(info[0], "dataFd");
  int sumsFd = ArgFd(info[1], "sumsFd");
  Napi::Uint8Array buffer = ArgBytes(info[2], "buffer");
  uint64_t offset = ArgUint(info[3], "offset");
  uint32_t blockSize = ArgBlockSize(info[4]);
  int directFd = -1;
  if (info.Length() > 5 && !info[5].IsUndefined()) directFd = ArgFd(info[5], "directFd");
  return (new ReadBlocksWorker(info.Env(), dataFd, sumsFd, buffer, offset, blockSize, directFd))->Queue();
}

Napi::Value TruncateBlocks(const Napi::CallbackInfo& info) {
  int dataFd = ArgFd(info[0], "dataFd");
  int sumsFd = ArgFd(info[1], "sumsFd");
  uint64_t size = ArgUint(info[2], "size");
  uint32_t blockSize = ArgBlockSize(info[3]);
  return (new TruncateBlocksWorker(info.Env(), dataFd, sumsFd, size, blockSize))->Queue();
}

Napi::Value VerifyBlocks(const Napi::CallbackInfo& info) {
  int dataFd = ArgFd(info[0], "dataFd");
  int sumsFd = ArgFd(info[1], "sumsFd");
  uint64_t firstBlock = ArgUint(info[2], "firstBlock");
  uint64_t count = ArgUint(info[3], "count");
  uint32_t blockSize = ArgBlockSize(info[4]);
  uint64_t maxBad = ArgUint(info[5], "maxBad");
  if (maxBad == 0) ThrowArgRange(info[5], "maxBad", "an integer >= 1 and <= 2^53 - 1");
  return (new BlockRangeWorker(info.Env(), dataFd, sumsFd, firstBlock, count, blockSize, static_cast<size_t>(maxBad)))->Queue();
}

Napi::Value ResumBlocks(const Napi::CallbackInfo& info) {
  int dataFd = ArgFd(info[0], "dataFd");
  int sumsFd = ArgFd(info[1], "sumsFd");
  uint64_t firstBlock = ArgUint(info[2], "firstBlock");
  uint64_t count = ArgUint(info[3], "count");
  uint32_t blockSize = ArgBlockSize(info[4]);
  return (new BlockRangeWorker(info.Env(), dataFd, sumsFd, firstBlock, count, blockSize, std::nullopt))->Queue();
}

// A path string (lgetxattr/lsetxattr: a symlink itself, not its target) or an fd number.
brickio::XattrTarget ArgXattrTarget(const Napi::Value& value) {
  brickio::XattrTarget target;
  if (value.IsString()) {
    target.path = ArgCString(value, "target", false);
  } else if (value.IsNumber()) {
    target.fd = ArgFd(value, "target");
  } else {
    ThrowArgType(value, "target", "of type string or number");
  }
  return target;
}

Napi::Value GetXattr(const Napi::CallbackInfo& info) {
  brickio::XattrTarget target = ArgXattrTarget(info[0]);
  std::string name = ArgCString(info[1], "name", false);
  return (new GetXattrWorker(info.Env(), std::move(target), std::move(name)))->Queue();
}

Napi::Value SetXattr(const Napi::CallbackInfo& info) {
  brickio::XattrTarget target = ArgXattrTarget(info[0]);
  std::string name = ArgCString(info[1], "name", false);
  Napi::Uint8Array value = ArgBytes(info[2], "value");
  if (value.ByteLength() > brickio::kMaxXattrValue) {
    ThrowWithCode(Napi::RangeError::New(info.Env(), "The value of \"value.byteLength\" is out of range. It must be <= 65536. Received " +
                                                        std::to_string(value.ByteLength())),
                  "ERR_OUT_OF_RANGE");
  }
  return (new SetXattrWorker(info.Env(), std::move(target), std::move(name), value))->Queue();
}

// Synchronous: where `view` starts relative to an `alignment` boundary (its address modulo
// alignment). JS cannot see addresses; src/aligned.ts uses this to start buffers on a 4 KiB
// boundary so that O_DIRECT writes take them in place.
Napi::Value AddressOffset(const Napi::CallbackInfo& info) {
  Napi::Uint8Array view = ArgBytes(info[0], "view");
  double d = ArgNumber(info[1], "alignment");
  if (!(d == std::trunc(d) && d >= 1 && d <= (1 << 30) && (static_cast<uint64_t>(d) & (static_cast<uint64_t>(d) - 1)) == 0)) {
    ThrowArgRange(info[1], "alignment", "a power of two >= 1 and <= 1073741824");
  }
  const auto address = reinterpret_cast<uintptr_t>(view.Data());
  return Napi::Number::New(info.Env(), static_cast<double>(address % static_cast<uintptr_t>(d)));
}

}  // namespace

void InitBrickio(Napi::Env env, Napi::Object exports) {
  exports.Set("writev", Napi::Function::New(env, Writev, "writev"));
  exports.Set("readInto", Napi::Function::New(env, ReadInto, "readInto"));
  exports.Set("fdatasync", Napi::Function::New(env, Fdatasync, "fdatasync"));
  exports.Set("fsync", Napi::Function::New(env, Fsync, "fsync"));
  exports.Set("writeBlocks", Napi::Function::New(env, WriteBlocks, "writeBlocks"));
  exports.Set("writeBlocksBatch", Napi::Function::New(env, WriteBlocksBatch, "writeBlocksBatch"));
  exports.Set("readBlocks", Napi::Function::New(env, ReadBlocks, "readBlocks"));
  exports.Set("truncateBlocks", Napi::Function::New(env, TruncateBlocks, "truncateBlocks"));
  exports.Set("verifyBlocks", Napi::Function::New(env, VerifyBlocks, "verifyBlocks"));
  exports.Set("resumBlocks", Napi::Function::New(env, ResumBlocks, "resumBlocks"));
  exports.Set("getXattr", Napi::Function::New(env, GetXattr, "getXattr"));
  exports.Set("setXattr", Napi::Function::New(env, SetXattr, "setXattr"));
  exports.Set("addressOffset", Napi::Function::New(env, AddressOffset, "addressOffset"));
}

}  // namespace brickd
