// Crash-safe small-file writes shared by every on-disk manifest (bricks, replicas, node id).
//
// How it works: write the whole content to `<file>.tmp-<pid>-<n>`, fdatasync it, rename it
// over `<file>`, then fsync the directory so the rename itself is durable. After a crash
// at any point the file holds either the old or the new content, never a mix; a leftover
// temp file is ignored by readers and overwritten by the next write.
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';

let tempCounter = 0;

export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const temp = `${file}.tmp-${process.pid}-${tempCounter++}`;
  const handle = await open(temp, 'w', mode);
  try {
    await handle.writeFile(data);
    await handle.datasync();
  } catch (err) {
    await handle.close();
    await unlink(temp).catch(() => {});
    throw err;
  }
  await handle.close();
  await rename(temp, file);
  await fsyncDir(path.dirname(file));
}

/** fsync a directory so entries created, renamed or removed in it are durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
