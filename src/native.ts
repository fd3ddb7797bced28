// The one file that loads brickd's C++ addon, and the exact types of what it exports.
//
// The addon holds mechanisms only (checksums, libblkid probing and wiping, mount(2),
// brick block I/O); every policy decision is made in TypeScript above this file.
// Anything that can block is async (a promise settled from a libuv pool thread); the
// few sync calls are pure CPU on caller-owned memory.
//
// System failures reject with node-shaped errors: { code: 'EBUSY', errno: -16,
// syscall: 'open', path: '/dev/loop3' } and a message like "EBUSY: ..., open '/dev/loop3'".
// Misuse (a wrong argument type, a negative or fractional offset) throws synchronously,
// before any work starts: TypeError (code ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE)
// or RangeError (ERR_OUT_OF_RANGE), naming the argument. Strings with NUL bytes are refused.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/**
 * One signature libblkid found on a device: a magic string at an offset, exactly what
 * `wipefs` lists. One on-disk structure may show more than once: a GPT disk shows "PMBR"
 * (the protective MBR, 0x1fe), "gpt" (primary header, 0x200) and "gpt" again (backup
 * header, last sector).
 */
export interface DeviceSignature {
  /** libblkid's TYPE (or PTTYPE): "xfs", "ext4", "gpt", "PMBR", "dos", "LVM2_member", "linux_raid_member", "swap", ... */
  type: string;
  /** libblkid's USAGE: "filesystem", "raid", "crypto", "other", or "partition_table". */
  usage: string;
  /** Byte offset of the magic on the device. */
  offset: number;
  /** Filesystem / array label, when the signature has one. */
  label?: string;
  /** UUID (PTUUID for a partition table), when the signature has one. */
  uuid?: string;
}

/** What the addon can tell about a block device without changing it. */
export interface DeviceProbe {
  path: string;
  /** Size in bytes (BLKGETSIZE64). */
  sizeBytes: number;
  /** BLKSSZGET / BLKPBSZGET. */
  logicalSectorSize: number;
  physicalSectorSize: number;
  /** BLKROTATIONAL. */
  rotational: boolean;
  /** The queue accepts discard (sysfs queue/discard_max_bytes > 0). */
  discard: boolean;
  /**
   * An exclusive open (O_EXCL on a block device) failed with EBUSY: the device is mounted,
   * or held by device-mapper, md, a swap area or another exclusive opener.
   */
  busy: boolean;
  /**
   * Every superblock and partition-table signature libblkid found, in offset order. GPT is
   * found even when its protective MBR was zeroed (libblkid's FORCE_GPT, as wipefs uses).
   */
  signatures: DeviceSignature[];
}

export interface NativeAddon {
  // ── checksum ────────────────────────────────────────────────────────────────────────
  /** CRC32C (Castagnoli) of `data`, continuing from `initial` (default 0). Fastest path. */
  crc32c(data: Uint8Array, initial?: number): number;
  /** CRC32C with one serial chain of the SSE4.2 instruction (bench baseline; throws if no SSE4.2). */
  crc32cSingleChain(data: Uint8Array, initial?: number): number;
  /** CRC32C by table lookup (the fallback; reference in tests). */
  crc32cTable(data: Uint8Array, initial?: number): number;
  /**
   * One CRC32C per `blockSize` bytes of `data`, written into `out[0..n)` where
   * n = ceil(data.length / blockSize); the last block may be short. Returns n.
   */
  crc32cBlocks(data: Uint8Array, blockSize: number, out: Uint32Array): number;
  /** Which implementation `crc32c` uses on this CPU. */
  readonly crc32cImpl: 'sse42-3way' | 'table';

  // ── device ──────────────────────────────────────────────────────────────────────────
  /** Probe a block device (read-only). Rejects with ENOTBLK if `path` is not a block device. */
  probeDevice(path: string): Promise<DeviceProbe>;
  /**
   * Erase every signature libblkid finds (as `wipefs -a`), opened O_EXCL so a mounted or
   * held device fails with EBUSY and nothing is written. Resolves with the signatures that
   * were erased, in the order they were erased (GPT: primary, backup, then PMBR). Then
   * fsyncs and, if a partition table was erased, has the kernel re-read it (BLKRRPART).
   */
  wipeSignatures(path: string): Promise<DeviceSignature[]>;
  /**
   * BLKDISCARD over [offset, offset+length), O_EXCL. `offset` defaults to 0, `length` to the
   * rest of the device. Both must be multiples of the logical sector size (EINVAL otherwise);
   * a device that cannot discard rejects with EOPNOTSUPP.
   */
  discardDevice(path: string, offset?: number, length?: number): Promise<void>;

  // ── brickio ─────────────────────────────────────────────────────────────────────────
  // Hot-path block I/O on files of a replica, each call one job on a pool thread.
  // File descriptors belong to the caller (a node FileHandle's `fd`): it keeps them open
  // until the promise settles, and it serializes calls that touch the same blocks of one
  // file (the store's per-file lock). Checksums: one CRC32C per `blockSize` block of the
  // data file, stored as little-endian uint32 at byte 4·blockIndex of the sums file. The
  // last block's CRC covers only the bytes before EOF. A stored 0 for an all-zero block is
  // a hole (never written) and verifies.
  // Arguments are checked before any I/O: a wrong type throws a TypeError, a negative or
  // fractional offset/size/count or a `blockSize` that is not a power of two in 512..1 MiB
  // throws a RangeError (node's ERR_INVALID_ARG_TYPE / ERR_OUT_OF_RANGE codes). Caller
  // buffers are used in place, not copied, and kept alive until the promise settles: do not
  // write to (or read from) them meanwhile.

  /**
   * pwritev(2) every buffer, in order, at `offset`, retrying short writes. With `dsync` the
   * range is durable when the promise resolves (pwritev2 with RWF_DSYNC: write and data flush
   * in one syscall).
   */
  writev(fd: number, buffers: readonly Uint8Array[], offset: number, dsync?: boolean): Promise<void>;
  /** pread(2) into `buffer` at `offset` until full or EOF; resolves the bytes read. */
  readInto(fd: number, buffer: Uint8Array, offset: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
  fsync(fd: number): Promise<void>;
  /**
   * Write `data` at `offset` into the data file and the CRCs of every block it touches into
   * the sums file (edge blocks are read back to checksum them whole; a previously short last
   * block that the write extends is re-summed). If `expectedCrc` is given, crc32c(data) is
   * checked first and a mismatch rejects with code 'EBADMSG' having written nothing.
   * No fsync: the caller decides durability. `directFd`, an O_DIRECT descriptor of the same
   * data file, is used for the data when offset and length are multiples of 4096.
   */
  writeBlocks(dataFd: number, sumsFd: number, data: Uint8Array, offset: number, blockSize: number, expectedCrc?: number, directFd?: number): Promise<void>;
  /**
   * Several writeBlocks (no expectedCrc, no directFd) in one pool job, in order. Resolves
   * with one slot per entry: null when it was written, else its system error (the other
   * entries still run). A malformed entry throws before anything is written.
   */
  writeBlocksBatch(entries: ReadonlyArray<readonly [dataFd: number, sumsFd: number, data: Uint8Array, offset: number, blockSize: number]>): Promise<Array<Error | null>>;
  /**
   * Read into `buffer` from `offset` (short at EOF), verifying every block it covers
   * against the sums file. Resolves { bytes, badBlock }: badBlock is -1 when all verified,
   * else the index of the first block whose CRC did not match (buffer content is then
   * unspecified and must not be returned to a client). With `directFd` (an O_DIRECT
   * descriptor of the same file) the data is read through it, bypassing the page cache,
   * when the covering block range starts 4 KiB-aligned.
   */
  readBlocks(dataFd: number, sumsFd: number, buffer: Uint8Array, offset: number, blockSize: number, directFd?: number): Promise<{ bytes: number; badBlock: number }>;
  /** ftruncate the data file to `size`, re-sum its new last block, and size the sums file to match. */
  truncateBlocks(dataFd: number, sumsFd: number, size: number, blockSize: number): Promise<void>;
  /**
   * Verify blocks [firstBlock, firstBlock+count) (clipped at EOF) against the sums file.
   * Resolves the indexes of the blocks that failed (scrub), in order, at most `maxBad` (≥ 1)
   * of them. Reads the data in 1 MiB chunks.
   */
  verifyBlocks(dataFd: number, sumsFd: number, firstBlock: number, count: number, blockSize: number, maxBad: number): Promise<number[]>;
  /** Recompute and store the CRCs of blocks [firstBlock, firstBlock+count) (clipped at EOF) from the data (recovery, repair). */
  resumBlocks(dataFd: number, sumsFd: number, firstBlock: number, count: number, blockSize: number): Promise<void>;
  /**
   * lgetxattr(2) on a path (a symlink itself, not its target) or fgetxattr on an fd: the
   * value, or undefined if the attribute is absent (ENODATA).
   */
  getXattr(target: string | number, name: string): Promise<Buffer | undefined>;
  /** lsetxattr(2) on a path or fsetxattr on an fd, flags 0 (create or replace); value ≤ 64 KiB. */
  setXattr(target: string | number, name: string, value: Uint8Array): Promise<void>;
  /**
   * Synchronous: the address of `view`'s first byte modulo `alignment` (a power of two up to
   * 1 GiB), for starting buffers on a page boundary (src/aligned.ts).
   */
  addressOffset(view: Uint8Array, alignment: number): number;

  // ── memory ──────────────────────────────────────────────────────────────────────────
  /**
   * Synchronous: an uninitialized, 4 KiB-aligned ArrayBuffer of `length` bytes (1 B..1 GiB)
   * over huge-page I/O memory (native/memory/iomem.h), unmapped or kept for reuse once
   * collected. Throws ENOMEM (syscall 'mmap') when no memory can be mapped.
   */
  allocIoMemory(length: number): ArrayBuffer;
  /** Synchronous: the I/O memory pool's 2 MiB regions (mapped, of which idle) and its large mappings. */
  ioMemoryStats(): { mappedRegions: number; idleRegions: number; largeMappings: number };

  // ── mount ───────────────────────────────────────────────────────────────────────────
  /**
   * mount(2). `flags` are MS_* bits (see MountFlags), `data` the fs-specific options; an
   * empty source, fstype or data is passed as NULL. Errors carry syscall 'mount' and
   * path = target (the source and type are in the message).
   */
  mount(source: string, target: string, fstype: string, flags: number, data: string): Promise<void>;
  /** umount2(2) with MNT_* flags (see UmountFlags). Errors carry syscall 'umount2', path = target. */
  umount(target: string, flags: number): Promise<void>;

  // ── socket ──────────────────────────────────────────────────────────────────────────
  /**
   * The credentials of the process at the other end of the connected Unix socket `fd`, as
   * the kernel recorded them at connect (SO_PEERCRED). Synchronous: it does not block.
   * Errors carry syscall 'getsockopt(SO_PEERCRED)' (ENOTSOCK, EBADF, ...).
   */
  peerCredentials(fd: number): { pid: number; uid: number; gid: number };
}

/** mount(2) flag bits used by brickd (values from <sys/mount.h>). */
export const MountFlags = {
  MS_RDONLY: 0x1,
  MS_NOSUID: 0x2,
  MS_NODEV: 0x4,
  MS_NOEXEC: 0x8,
  MS_SYNCHRONOUS: 0x10,
  MS_REMOUNT: 0x20,
  MS_DIRSYNC: 0x80,
  MS_NOATIME: 0x400,
  MS_NODIRATIME: 0x800,
  MS_BIND: 0x1000,
  MS_RELATIME: 0x200000,
  MS_LAZYTIME: 0x2000000,
} as const;

/** umount2(2) flag bits (values from <sys/mount.h>). */
export const UmountFlags = {
  MNT_FORCE: 0x1,
  MNT_DETACH: 0x2,
  MNT_EXPIRE: 0x4,
  UMOUNT_NOFOLLOW: 0x8,
} as const;

function load(): NativeAddon {
  // dist/src/native.js and src/native.ts both sit two levels under the project root.
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = here.endsWith(path.join('dist', 'src')) ? path.resolve(here, '..', '..') : path.resolve(here, '..');
  const require = createRequire(import.meta.url);
  return require(path.join(root, 'build', 'Release', 'brickd_native.node')) as NativeAddon;
}

export const native: NativeAddon = load();
