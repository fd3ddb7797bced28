// Block-device probe, signature wipe and discard (see device.h for the contract).
//
// How signatures are found: one libblkid low-level probe over our own descriptor, with the
// superblocks chain (TYPE, USAGE, LABEL, UUID, magic offset; bad checksums accepted) and
// the partitions chain (PTTYPE, PTUUID, magic offset) both enabled, configured as
// util-linux wipefs configures it. blkid_do_probe() then walks the probers one result at a
// time. To see *every* signature rather than the first of each chain, the probe hides the
// magic bytes it just reported (in libblkid's in-memory buffers only, never on disk) and
// steps back so the same prober runs again: that is how a GPT disk shows its primary
// header, its backup header at the end, and then the protective MBR. The wipe loop does
// the same with blkid_do_wipe(), which zeroes the magic on disk and steps back itself.
//
// Safety: wipe and discard open the device O_EXCL, which the kernel refuses (EBUSY) while
// the device is mounted, is a swap area, or is claimed by md, device-mapper or another
// exclusive opener, so nothing is written to a device in use. Loops that depend on
// libblkid making progress are bounded.
#include "device/device.h"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

namespace brickd {
namespace {

// More signatures than this on one device means libblkid is not making progress (or the
// device is hostile): stop rather than loop forever on a pool thread.
constexpr size_t kMaxSignatures = 64;

// BLKRRPART right after a wipe may meet a transient EBUSY (a partition held open for a
// moment, e.g. by udev probing it); wipefs retries the same way.
constexpr int kRereadAttempts = 5;
constexpr auto kRereadDelay = std::chrono::milliseconds(250);

// An owned file descriptor, closed when it goes out of scope.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { Reset(); }
  int get() const { return fd_; }
  // Close now and report close(2)'s errno (0 on success). For descriptors we wrote through.
  int Close() {
    int fd = std::exchange(fd_, -1);
    return fd >= 0 && ::close(fd) != 0 ? errno : 0;
  }

 private:
  void Reset() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));  // error ignored: only Close() reports one
  }

  int fd_ = -1;
};

struct ProbeDeleter {
  void operator()(blkid_probe pr) const { blkid_free_probe(pr); }
};
using ProbePtr = std::unique_ptr<std::remove_pointer_t<blkid_probe>, ProbeDeleter>;

// errno after a libblkid call that failed, or EIO when the library left errno unset.
int LibblkidErrno() { return errno != 0 ? errno : EIO; }

// Open `path` with `flags` and check that it is a block device (ENOTBLK otherwise).
SysError OpenBlockDevice(const std::string& path, int flags, UniqueFd& fd, dev_t& rdev) {
  UniqueFd opened(::open(path.c_str(), flags | O_CLOEXEC));
  if (opened.get() < 0) return SysError::FromErrno(errno, "open", path);
  struct stat st {};
  if (::fstat(opened.get(), &st) != 0) return SysError::FromErrno(errno, "fstat", path);
  if (!S_ISBLK(st.st_mode)) return SysError::FromErrno(ENOTBLK, "open", path);
  rdev = st.st_rdev;
  fd = std::move(opened);
  return {};
}

// libblkid initialises its debug mask from the environment on first use, in a global with
// no lock. Do that once, before any pool thread creates a probe; after it, every call here
// touches only its own probe object.
void InitLibblkidOnce() {
  static std::once_flag once;
  std::call_once(once, [] { blkid_init_debug(0); });
}

// A probe over `fd` (not owned by the probe: blkid_free_probe leaves it open), configured
// as wipefs configures its own: every superblock with its magic, label and UUID, bad
// checksums accepted (a damaged superblock is still a signature), and partition tables with
// their magic. BLKID_PARTS_FORCE_GPT (also what wipefs sets) finds GPT headers even when
// the protective MBR in sector 0 is gone, e.g. after a stray `dd` over the first sector.
SysError NewProbe(int fd, const std::string& path, ProbePtr& out) {
  InitLibblkidOnce();
  errno = 0;
  ProbePtr pr(blkid_new_probe());
  if (!pr) return SysError::FromErrno(LibblkidErrno(), "blkid_new_probe", path);
  errno = 0;
  if (blkid_probe_set_device(pr.get(), fd, 0, 0) != 0) {
    return SysError::FromErrno(LibblkidErrno(), "blkid_probe_set_device", path);
  }
  if (blkid_probe_enable_superblocks(pr.get(), 1) != 0 ||
      blkid_probe_set_superblocks_flags(pr.get(), BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE | BLKID_SUBLKS_LABEL |
                                                      BLKID_SUBLKS_UUID | BLKID_SUBLKS_MAGIC |
                                                      BLKID_SUBLKS_BADCSUM) != 0 ||
      blkid_probe_enable_partitions(pr.get(), 1) != 0 ||
      blkid_probe_set_partitions_flags(pr.get(), BLKID_PARTS_MAGIC | BLKID_PARTS_FORCE_GPT) != 0) {
    return SysError::FromErrno(EINVAL, "blkid_probe_enable", path);
  }
  out = std::move(pr);
  return {};
}

// The probe's current result as a signature: a superblock (TYPE) or a partition table
// (PTTYPE). False when the result carries no magic string and offset; wipefs skips those
// too, since there is nothing it could erase.
bool ReadSignature(blkid_probe pr, DeviceSignature& sig) {
  const char* type = nullptr;
  const char* offset = nullptr;
  const char* usage = nullptr;
  const char* label = nullptr;
  const char* uuid = nullptr;
  size_t magic_length = 0;
  if (blkid_probe_lookup_value(pr, "TYPE", &type, nullptr) == 0) {
    if (blkid_probe_lookup_value(pr, "SBMAGIC_OFFSET", &offset, nullptr) != 0 ||
        blkid_probe_lookup_value(pr, "SBMAGIC", nullptr, &magic_length) != 0) {
      return false;
    }
    if (blkid_probe_lookup_value(pr, "USAGE", &usage, nullptr) != 0) usage = "";
    if (blkid_probe_lookup_value(pr, "LABEL", &label, nullptr) != 0) label = "";
    if (blkid_probe_lookup_value(pr, "UUID", &uuid, nullptr) != 0) uuid = "";
  } else if (blkid_probe_lookup_value(pr, "PTTYPE", &type, nullptr) == 0) {
    if (blkid_probe_lookup_value(pr, "PTMAGIC_OFFSET", &offset, nullptr) != 0 ||
        blkid_probe_lookup_value(pr, "PTMAGIC", nullptr, &magic_length) != 0) {
      return false;
    }
    usage = "partition_table";
    label = "";
    if (blkid_probe_lookup_value(pr, "PTUUID", &uuid, nullptr) != 0) uuid = "";
  } else {
    return false;
  }
  char* end = nullptr;
  errno = 0;
  unsigned long long parsed = std::strtoull(offset, &end, 10);
  if (errno != 0 || end == offset || *end != '\0' || magic_length == 0) return false;
  sig.type = type;
  sig.usage = usage;
  sig.offset = parsed;
  sig.magic_length = magic_length;
  sig.label = label;
  sig.uuid = uuid;
  return true;
}

// Read one unsigned decimal number from a sysfs attribute. Returns errno (0 on success).
int ReadSysfsNumber(const std::string& file, uint64_t& value) {
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return errno;
  char text[32] = {};
  ssize_t n = ::read(fd.get(), text, sizeof(text) - 1);
  if (n < 0) return errno;
  char* end = nullptr;
  errno = 0;
  unsigned long long parsed = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text) return EINVAL;
  value = parsed;
  return 0;
}

// Whether the request queue behind `rdev` accepts discard. A partition has no queue of its
// own in sysfs: its parent disk's is the one that matters. No sysfs entry at all (sysfs not
// mounted, an odd driver) reads as "no discard": the conservative answer.
SysError QueueSupportsDiscard(dev_t rdev, const std::string& path, bool& discard) {
  const std::string base = "/sys/dev/block/" + std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev));
  uint64_t max_bytes = 0;
  int err = ReadSysfsNumber(base + "/queue/discard_max_bytes", max_bytes);
  if (err == ENOENT && ::access((base + "/partition").c_str(), F_OK) == 0) {
    err = ReadSysfsNumber(base + "/../queue/discard_max_bytes", max_bytes);
  }
  if (err == ENOENT) {
    discard = false;
    return {};
  }
  if (err != 0) {
    SysError error = SysError::FromErrno(err, "read", path);
    error.detail = base + "/queue/discard_max_bytes";
    return error;
  }
  discard = max_bytes > 0;
  return {};
}

std::string Describe(const DeviceSignature& sig) { return sig.type + " at offset " + std::to_string(sig.offset); }

std::string DescribeAll(const std::vector<DeviceSignature>& sigs) {
  std::string text;
  for (const DeviceSignature& sig : sigs) text += (text.empty() ? "" : ", ") + Describe(sig);
  return text.empty() ? "none" : text;
}

}  // namespace

SysError ProbeDevice(const std::string& path, DeviceProbe& out) {
  UniqueFd fd;  // declared before the probe: the probe is freed first, then the fd closed
  dev_t rdev = 0;
  if (SysError err = OpenBlockDevice(path, O_RDONLY, fd, rdev)) return err;

  // Each ioctl writes a differently sized integer; the types below are the kernel's.
  uint64_t size = 0;
  int logical = 0;
  unsigned int physical = 0;
  unsigned short rotational = 0;
  if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) return SysError::FromErrno(errno, "ioctl(BLKGETSIZE64)", path);
  if (::ioctl(fd.get(), BLKSSZGET, &logical) != 0) return SysError::FromErrno(errno, "ioctl(BLKSSZGET)", path);
  if (::ioctl(fd.get(), BLKPBSZGET, &physical) != 0) return SysError::FromErrno(errno, "ioctl(BLKPBSZGET)", path);
  if (::ioctl(fd.get(), BLKROTATIONAL, &rotational) != 0) {
    return SysError::FromErrno(errno, "ioctl(BLKROTATIONAL)", path);
  }
  out.size_bytes = size;
  out.logical_sector_size = static_cast<uint32_t>(logical);
  out.physical_sector_size = physical;
  out.rotational = rotational != 0;
  if (SysError err = QueueSupportsDiscard(rdev, path, out.discard)) return err;

  // Busy: the kernel refuses a second exclusive open while the device is mounted or
  // claimed. Our own descriptor above is not exclusive, so it does not count.
  {
    UniqueFd exclusive(::open(path.c_str(), O_RDONLY | O_EXCL | O_CLOEXEC));
    if (exclusive.get() >= 0) {
      out.busy = false;
    } else if (errno == EBUSY) {
      out.busy = true;
    } else {
      SysError err = SysError::FromErrno(errno, "open", path);
      err.detail = "exclusive open to test whether the device is in use";
      return err;
    }
  }

  ProbePtr pr;
  if (SysError err = NewProbe(fd.get(), path, pr)) return err;
  out.signatures.clear();
  int rc = 0;
  errno = 0;
  while ((rc = blkid_do_probe(pr.get())) == 0) {
    DeviceSignature sig;
    if (!ReadSignature(pr.get(), sig)) continue;  // nothing to hide: libblkid moves on by itself
    if (out.signatures.size() >= kMaxSignatures) {
      SysError err = SysError::FromErrno(EIO, "blkid_do_probe", path);
      err.detail = "more than " + std::to_string(kMaxSignatures) + " signatures";
      return err;
    }
    out.signatures.push_back(sig);
    // Hide the magic in libblkid's buffers (not on disk) and run the same prober again, so
    // a second copy (a backup superblock, GPT's backup header) or the next signature shows.
    if (blkid_probe_hide_range(pr.get(), sig.offset, sig.magic_length) != 0 || blkid_probe_step_back(pr.get()) != 0) {
      return SysError::FromErrno(LibblkidErrno(), "blkid_probe_hide_range", path);
    }
    errno = 0;
  }
  if (rc < 0) return SysError::FromErrno(LibblkidErrno(), "blkid_do_probe", path);
  std::stable_sort(out.signatures.begin(), out.signatures.end(),
                   [](const DeviceSignature& a, const DeviceSignature& b) { return a.offset < b.offset; });
  return {};
}

SysError WipeSignatures(const std::string& path, std::vector<DeviceSignature>& erased) {
  UniqueFd fd;  // declared before the probe: the probe is freed first, then the fd closed
  dev_t rdev = 0;
  // O_EXCL: a mounted or held device fails here, before anything is written.
  if (SysError err = OpenBlockDevice(path, O_RDWR | O_EXCL, fd, rdev)) return err;
  ProbePtr pr;
  if (SysError err = NewProbe(fd.get(), path, pr)) return err;

  bool erased_partition_table = false;
  int rc = 0;
  errno = 0;
  while ((rc = blkid_do_probe(pr.get())) == 0) {
    DeviceSignature sig;
    if (!ReadSignature(pr.get(), sig)) continue;
    // blkid_do_wipe steps back after erasing, so the same prober looks again. Seeing an
    // erased signature come back means the write did not take: fail instead of spinning.
    bool again = std::any_of(erased.begin(), erased.end(), [&](const DeviceSignature& done) {
      return done.offset == sig.offset && done.type == sig.type;
    });
    if (again || erased.size() >= kMaxSignatures) {
      SysError err = SysError::FromErrno(EIO, "blkid_do_wipe", path);
      err.detail = (again ? Describe(sig) + " is still there after being erased"
                          : "more than " + std::to_string(kMaxSignatures) + " signatures") +
                   "; erased so far: " + DescribeAll(erased);
      return err;
    }
    errno = 0;
    if (blkid_do_wipe(pr.get(), 0) != 0) {  // zeroes the magic on disk, fsyncs, steps back
      SysError err = SysError::FromErrno(LibblkidErrno(), "blkid_do_wipe", path);
      err.detail = "erasing " + Describe(sig) + "; erased so far: " + DescribeAll(erased);
      return err;
    }
    erased.push_back(sig);
    if (sig.usage == "partition_table") erased_partition_table = true;
    errno = 0;
  }
  if (rc < 0) {
    SysError err = SysError::FromErrno(LibblkidErrno(), "blkid_do_probe", path);
    err.detail = "erased so far: " + DescribeAll(erased);
    return err;
  }
  pr.reset();

  if (::fsync(fd.get()) != 0) return SysError::FromErrno(errno, "fsync", path);

  // Tell the kernel the partition table is gone so stale partition devices disappear. A
  // device without partition support (a loop device without partscan) answers EINVAL:
  // there is nothing to re-read. We still hold the O_EXCL descriptor, as wipefs does.
  if (erased_partition_table) {
    for (int attempt = 1;; ++attempt) {
      if (::ioctl(fd.get(), BLKRRPART) == 0 || errno == EINVAL) break;
      if (errno != EBUSY || attempt == kRereadAttempts) {
        SysError err = SysError::FromErrno(errno, "ioctl(BLKRRPART)", path);
        err.detail = "the signatures were erased (" + DescribeAll(erased) +
                     ") but the kernel still uses the old partition table";
        return err;
      }
      std::this_thread::sleep_for(kRereadDelay);  // pool thread: a short wait is acceptable
    }
  }

  if (int err = fd.Close()) return SysError::FromErrno(err, "close", path);
  return {};
}

SysError DiscardDevice(const std::string& path, uint64_t offset, std::optional<uint64_t> length) {
  UniqueFd fd;
  dev_t rdev = 0;
  // O_EXCL: never discard under a mounted filesystem or another exclusive user.
  if (SysError err = OpenBlockDevice(path, O_WRONLY | O_EXCL, fd, rdev)) return err;
  uint64_t range[2] = {offset, 0};
  if (length) {
    range[1] = *length;
  } else {
    uint64_t size = 0;
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) return SysError::FromErrno(errno, "ioctl(BLKGETSIZE64)", path);
    if (offset > size) {
      SysError err = SysError::FromErrno(EINVAL, "ioctl(BLKDISCARD)", path);
      err.detail = "offset " + std::to_string(offset) + " is past the end of the device (" + std::to_string(size) +
                   " bytes)";
      return err;
    }
    range[1] = size - offset;
  }
  if (::ioctl(fd.get(), BLKDISCARD, range) != 0) return SysError::FromErrno(errno, "ioctl(BLKDISCARD)", path);
  if (int err = fd.Close()) return SysError::FromErrno(err, "close", path);
  return {};
}

}  // namespace brickd
