// Block-device mechanisms: probe (read-only), signature wipe (libblkid, as `wipefs -a`),
// and discard. Plain C++/POSIX + libblkid, no napi: device_napi.cc binds it to JS.
//
// What it may touch: only the device path it is given. Probe opens it read-only (plus one
// O_EXCL open that is closed at once, to learn whether someone holds it) and reads sysfs.
// Wipe and discard open it O_EXCL, so a mounted or otherwise held device fails with EBUSY
// before a single byte is written. No policy here (allowlists, `force`, "is this a brick"):
// the TypeScript brick layer decides whether to call these at all.
//
// Threading: every function blocks (disk I/O, ioctls) and is meant for a libuv pool thread.
// Calls on different devices may run concurrently; each call owns its descriptors and its
// libblkid probe, nothing is shared between calls.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/sys_error.h"

namespace brickd {

// One signature libblkid found, as wipefs lists it: a magic string at a byte offset.
struct DeviceSignature {
  std::string type;   // TYPE, or PTTYPE for a partition table ("gpt", "PMBR", "dos", ...)
  std::string usage;  // USAGE ("filesystem", "raid", ...), or "partition_table"
  uint64_t offset = 0;  // byte offset of the magic string on the device
  uint64_t magic_length = 0;  // bytes of magic at `offset` (what a wipe zeroes)
  std::string label;  // LABEL; empty when the signature has none
  std::string uuid;   // UUID, or PTUUID for a partition table; empty when none
};

struct DeviceProbe {
  uint64_t size_bytes = 0;            // BLKGETSIZE64
  uint32_t logical_sector_size = 0;   // BLKSSZGET
  uint32_t physical_sector_size = 0;  // BLKPBSZGET
  bool rotational = false;            // BLKROTATIONAL
  bool discard = false;               // sysfs queue/discard_max_bytes > 0
  bool busy = false;                  // an O_EXCL open failed with EBUSY
  std::vector<DeviceSignature> signatures;  // in offset order
};

// Probe `path` without changing it. ENOTBLK if it is not a block device.
SysError ProbeDevice(const std::string& path, DeviceProbe& out);

// Erase every signature libblkid finds, the way `wipefs -a` does, and append each erased
// one to `erased` in the order it was erased. Then fsync, and BLKRRPART if a partition
// table was erased. On failure `erased` still lists what was erased before it.
// Nested partition tables on a partition are wiped too (wipefs wants --force for that):
// deciding whether to wipe is the caller's job.
SysError WipeSignatures(const std::string& path, std::vector<DeviceSignature>& erased);

// BLKDISCARD over [offset, offset + length), or to the end of the device without length.
// The kernel wants both aligned to the logical sector size (EINVAL otherwise) and answers
// EOPNOTSUPP when the device cannot discard.
SysError DiscardDevice(const std::string& path, uint64_t offset, std::optional<uint64_t> length);

}  // namespace brickd
