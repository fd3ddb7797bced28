// mount(2) and umount2(2), nothing more. Plain C++/POSIX, no napi: mount_napi.cc binds it.
//
// What it may touch: the mount table, only at the target it is given. No policy and no
// option parsing: TypeScript turns option words into MS_* bits and the fs-specific `data`
// string, and decides what may be mounted where.
//
// Threading: both calls block (a filesystem may replay its journal at mount, flush at
// unmount) and are meant for a libuv pool thread. They keep no state between calls.
#pragma once

#include <cstdint>
#include <string>

#include "common/sys_error.h"

namespace brickd {

// mount(source, target, fstype, flags, data). An empty source, fstype or data is passed as
// NULL (what a remount or bind mount wants). Errors carry syscall "mount", path = target,
// and the source and type in the detail.
SysError Mount(const std::string& source, const std::string& target, const std::string& fstype, uint32_t flags,
               const std::string& data);

// umount2(target, flags) with MNT_* flags. Errors carry syscall "umount2", path = target.
SysError Umount(const std::string& target, uint32_t flags);

}  // namespace brickd
