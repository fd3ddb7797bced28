#!/usr/bin/env bash
# One-off io_uring vs libuv-pool measurement (results in ../brickio-uring-vs-pool.md).
# As root: makes a 320 MiB sparse file, attaches it to a loop device, formats it XFS,
# mounts it, runs uring.cc (raw syscalls, direct vs io_uring) and pool.mjs (the addon on
# the libuv pool), then unmounts and detaches exactly what it attached.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
work=$(mktemp -d /tmp/brickd-uring-bench-XXXXXX)
dev=""
mounted=""
cleanup() {
  if [ -n "$mounted" ]; then umount "$work/mnt" || true; fi
  if [ -n "$dev" ]; then losetup -d "$dev" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

truncate -s 320M "$work/disk.img"
dev=$(losetup -f --show "$work/disk.img")
mkfs.xfs -q "$dev"
mkdir "$work/mnt"
mount "$dev" "$work/mnt"
mounted=1

g++ -std=c++20 -O2 "$here/uring.cc" -luring -o "$work/uring"
echo "== raw syscalls (uring.cc) on XFS on $dev"
"$work/uring" "$work/mnt"
echo "== addon on the libuv pool (pool.mjs)"
node "$root/bench/brickio-uring-vs-pool/pool.mjs" "$work/mnt"
