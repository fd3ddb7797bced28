// mount(2) / umount2(2) wrappers (see mount.h for the contract).
#include "mount/mount.h"

#include <sys/mount.h>

#include <cerrno>

namespace brickd {
namespace {

const char* OrNull(const std::string& text) { return text.empty() ? nullptr : text.c_str(); }

}  // namespace

SysError Mount(const std::string& source, const std::string& target, const std::string& fstype, uint32_t flags,
               const std::string& data) {
  if (::mount(OrNull(source), target.c_str(), OrNull(fstype), flags, OrNull(data)) == 0) return {};
  // The errno may be about the source (ENOENT, ENOTBLK) or the type (ENODEV): name both.
  SysError err = SysError::FromErrno(errno, "mount", target);
  err.detail = "source '" + source + "', type '" + fstype + "'";
  return err;
}

SysError Umount(const std::string& target, uint32_t flags) {
  if (::umount2(target.c_str(), static_cast<int>(flags)) == 0) return {};
  return SysError::FromErrno(errno, "umount2", target);
}

}  // namespace brickd
