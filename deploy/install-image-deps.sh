#!/usr/bin/env bash
# The run-time system packages of the brickd container image, and the one place that
# installs them (deploy/Dockerfile's final stage runs it).
#
#   install-image-deps.sh --install   install them, verify the tools and libraries are there,
#                                     and drop apt's lists (image builds only: as root)
#   install-image-deps.sh --list      print the packages, one a line
#   install-image-deps.sh --check     verify, without installing anything, that each is a
#                                     real, installable package of the image's Debian
#                                     release, using this machine's apt (CI runs this from
#                                     test/deploy/image.test.ts, so the list cannot rot unseen)
#
# Only what the agent needs at run time: no compiler, no headers (the Dockerfile's build
# stage has those). Every tool the agent runs (src/exec.ts, TOOL_PACKAGES) must come from a
# package listed here; the test checks that too.
#
# Exit codes: 0 ok, 1 a package or tool is missing, 2 usage, 3 cannot check on this machine.
set -euo pipefail

# The Debian release of the image's base, node:20-bookworm-slim.
IMAGE_DEBIAN_RELEASE=bookworm

PACKAGES=(
  xfsprogs   # mkfs.xfs, xfs_admin: brick filesystems (XFS is the default)
  e2fsprogs  # mkfs.ext4: ext4 bricks
  util-linux # losetup, blkid: embedded loop-file devices, device inspection
  libblkid1  # linked by the native addon: signature probing and wiping
  fuse       # fusermount: FUSE 2 mounts and their lazy unmount (fuse-native)
  libfuse2   # libfuse.so.2, loaded by fuse-native's prebuilt binary
)

# What --install verifies afterwards: commands on PATH and shared libraries the loader knows.
TOOLS=(mkfs.xfs xfs_admin mkfs.ext4 losetup blkid fusermount)
LIBRARIES=(libblkid.so.1 libfuse.so.2)

# die MESSAGE [EXIT_CODE]
die() {
  echo "install-image-deps: $1" >&2
  exit "${2:-1}"
}

install_packages() {
  [ "$(id -u)" = 0 ] || die "--install needs root (it runs apt-get)" 1
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"
  # An image layer keeps nothing it does not run: no package lists, no .deb cache.
  apt-get clean
  rm -rf /var/lib/apt/lists/*
  local missing=()
  for tool in "${TOOLS[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  for lib in "${LIBRARIES[@]}"; do ldconfig -p | grep -q " $lib " || missing+=("$lib"); done
  [ ${#missing[@]} -eq 0 ] || die "installed, yet missing: ${missing[*]}"
  echo "install-image-deps: installed ${PACKAGES[*]}"
}

check_packages() {
  command -v apt-cache >/dev/null || die "cannot check: no apt-cache (not a Debian machine)" 3
  local release
  # shellcheck source=/dev/null
  release=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  # apt answers for this machine's release; an answer about another release proves nothing.
  [ "$release" = "$IMAGE_DEBIAN_RELEASE" ] ||
    die "cannot check: this machine is Debian '${release:-unknown}', the image is $IMAGE_DEBIAN_RELEASE" 3
  # Two apt-cache calls for the whole list (each one loads apt's cache: seconds on a busy machine).
  # A purely virtual name (e.g. awk) has no "Package:" stanza; a missing one has nothing.
  local shown candidates bad=()
  shown=$(apt-cache show --no-all-versions "${PACKAGES[@]}" 2>/dev/null | sed -n 's/^Package: //p' || true)
  candidates=$(apt-cache policy "${PACKAGES[@]}" 2>/dev/null |
    awk '/^[^ ].*:$/ { name = substr($0, 1, length($0) - 1) } /^  Candidate: / { print name, $2 }' || true)
  for p in "${PACKAGES[@]}"; do
    if ! grep -qxF -- "$p" <<<"$shown"; then
      bad+=("$p (no such package)")
    elif ! awk -v p="$p" '$1 == p && $2 != "(none)" { found = 1 } END { exit !found }' <<<"$candidates"; then
      bad+=("$p (no installable version)")
    fi
  done
  [ ${#bad[@]} -eq 0 ] || die "not installable on Debian $IMAGE_DEBIAN_RELEASE: ${bad[*]}"
  echo "install-image-deps: ${#PACKAGES[@]} packages installable on Debian $IMAGE_DEBIAN_RELEASE: ${PACKAGES[*]}"
}

case "${1:-}" in
  --install) install_packages ;;
  --list) printf '%s\n' "${PACKAGES[@]}" ;;
  --check) check_packages ;;
  *) die "usage: $0 --install | --list | --check" 2 ;;
esac
