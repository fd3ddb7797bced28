#!/bin/sh
# Installs the Debian packages brickd needs, and only those that are missing.
#
# Run by `npm install` (preinstall) and by .ci/run. As root on Debian it installs what is
# missing with apt-get; anywhere else it names what is missing and how to get it.
# Packages needed to *build* the addon are fatal when missing; packages needed only at
# run time (mkfs, FUSE, fio for benchmarks) are reported and the install goes on.
#
# BRICKD_SKIP_SYSTEM_DEPS=1 skips the whole check (for image builds that did it already).
set -u

[ "${BRICKD_SKIP_SYSTEM_DEPS:-0}" = "1" ] && exit 0

# build time: libblkid (device probing/wiping), a C++ compiler
BUILD_PKGS="libblkid-dev g++ make python3 pkg-config"
# run time: mkfs.xfs, FUSE 2 (fuse-native loads libfuse.so.2, unmounts with fusermount),
# losetup/wipefs/blkid, iproute2 (network namespaces in tests), fio (benchmarks, baselines),
# a font for the text of the benchmark charts rendered as PNG
RUN_PKGS="xfsprogs e2fsprogs fuse libfuse2 util-linux iproute2 iptables fio sqlite3 kmod gdisk fonts-dejavu-core"

missing() {
  out=""
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || out="$out $p"
  done
  echo "$out"
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "brickd: not a Debian system; install by hand: libblkid (dev headers), xfsprogs, FUSE 2 (libfuse2 + fusermount), util-linux, fio" >&2
  exit 0
fi

need_build=$(missing $BUILD_PKGS)
need_run=$(missing $RUN_PKGS)
[ -z "$need_build$need_run" ] && exit 0

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "brickd: installing system packages:$need_build$need_run" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Debian's fuse (FUSE 2) and fuse3 packages exclude each other; fuse-native needs FUSE 2.
  if apt-get install -y -qq --no-install-recommends $need_build $need_run >/dev/null 2>&1 ||
     { apt-get update -qq >/dev/null 2>&1 &&
       apt-get install -y -qq --no-install-recommends $need_build $need_run >/dev/null; }; then
    exit 0
  fi
  echo "brickd: apt-get could not install:$need_build$need_run" >&2
  [ -n "$need_build" ] && exit 1
  exit 0
fi

if [ -n "$need_build" ]; then
  echo "brickd: cannot build the native addon, missing:$need_build" >&2
  echo "brickd: run as root:  apt-get install -y$need_build$need_run" >&2
  exit 1
fi
echo "brickd: missing run-time packages:$need_run (the agent needs them to format and serve bricks)" >&2
echo "brickd: run as root:  apt-get install -y$need_run" >&2
exit 0
