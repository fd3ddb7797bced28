// Turning an options string ("noatime,inode64") into mount(2)'s flags and data.
//
// Generic VFS words become MS_* bits; everything else is filesystem-specific and goes to
// the data string unchanged, for the filesystem to accept or refuse.
import { MountFlags } from '../native.js';

const FLAG_WORDS: Record<string, number> = {
  ro: MountFlags.MS_RDONLY,
  nosuid: MountFlags.MS_NOSUID,
  nodev: MountFlags.MS_NODEV,
  noexec: MountFlags.MS_NOEXEC,
  sync: MountFlags.MS_SYNCHRONOUS,
  dirsync: MountFlags.MS_DIRSYNC,
  noatime: MountFlags.MS_NOATIME,
  nodiratime: MountFlags.MS_NODIRATIME,
  relatime: MountFlags.MS_RELATIME,
  lazytime: MountFlags.MS_LAZYTIME,
};
const NEUTRAL_WORDS = new Set(['rw', 'defaults']);

export function parseMountOptions(options: string): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const word of options.split(',').map((w) => w.trim()).filter(Boolean)) {
    const bit = FLAG_WORDS[word];
    if (bit !== undefined) flags |= bit;
    else if (!NEUTRAL_WORDS.has(word)) data.push(word);
  }
  return { flags, data: data.join(',') };
}

/** The mount options brickd uses for a brick of each filesystem type. */
export const BRICK_MOUNT_OPTIONS: Record<'xfs' | 'ext4', string> = {
  // inode64: inodes anywhere on the device (the Gluster/Heketi brick setting); noatime: no
  // metadata write per read.
  xfs: 'noatime,inode64',
  ext4: 'noatime',
};
