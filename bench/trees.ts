// Whole directory trees of regular files and directories, for the resync case: a plain copy
// of a replica's data tree (the baseline a resync is measured against: what bringing a
// replica in sync costs without brickd, read + write + fsync of every byte) and a
// byte-for-byte comparison of two data trees (the check that a resynced replica holds what
// the primary holds). Symlinks and other kinds are compared by kind and target only.
// What it may touch: reads `from`/`a`/`b`; copyTree writes only under `to`, which must not
// exist yet.
import { mkdir, open, readdir, readlink, lstat } from 'node:fs/promises';
import path from 'node:path';

const CHUNK = 2 ** 20;

/** Copy every file under `from` into a new directory `to`, each file fsynced; returns the bytes copied. */
export async function copyTree(from: string, to: string): Promise<number> {
  await mkdir(to);
  let bytes = 0;
  const buffer = Buffer.allocUnsafe(CHUNK);
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const src = path.join(from, entry.name);
    const dst = path.join(to, entry.name);
    if (entry.isDirectory()) {
      bytes += await copyTree(src, dst);
      continue;
    }
    if (!entry.isFile()) continue;
    const input = await open(src, 'r');
    const output = await open(dst, 'wx');
    try {
      for (let offset = 0; ; ) {
        const { bytesRead } = await input.read(buffer, 0, CHUNK, offset);
        if (bytesRead === 0) break;
        await output.write(buffer, 0, bytesRead, offset);
        offset += bytesRead;
        bytes += bytesRead;
      }
      await output.sync();
    } finally {
      await input.close();
      await output.close();
    }
  }
  const dir = await open(to, 'r');
  await dir.sync().finally(() => dir.close());
  return bytes;
}

/** The first difference between the trees under `a` and `b` (names, kinds, sizes, bytes), or undefined. */
export async function firstDifference(a: string, b: string, where = '.'): Promise<string | undefined> {
  const [namesA, namesB] = [(await readdir(a)).sort(), (await readdir(b)).sort()];
  if (namesA.join('\0') !== namesB.join('\0')) {
    const onlyA = namesA.filter((n) => !namesB.includes(n));
    const onlyB = namesB.filter((n) => !namesA.includes(n));
    return `${where}: entries only in the first: [${onlyA.join(', ')}], only in the second: [${onlyB.join(', ')}]`;
  }
  for (const name of namesA) {
    const [pa, pb, rel] = [path.join(a, name), path.join(b, name), path.join(where, name)];
    const [sa, sb] = [await lstat(pa), await lstat(pb)];
    if (sa.isDirectory() !== sb.isDirectory() || sa.isFile() !== sb.isFile() || sa.isSymbolicLink() !== sb.isSymbolicLink()) return `${rel}: not the same kind of entry`;
    if (sa.isDirectory()) {
      const inner = await firstDifference(pa, pb, rel);
      if (inner) return inner;
    } else if (sa.isSymbolicLink()) {
      if ((await readlink(pa)) !== (await readlink(pb))) return `${rel}: symlink targets differ`;
    } else if (sa.isFile()) {
      if (sa.size !== sb.size) return `${rel}: ${sa.size} bytes against ${sb.size}`;
      const offset = await firstDifferentByte(pa, pb);
      if (offset !== undefined) return `${rel}: contents differ from byte ${offset}`;
    }
  }
  return undefined;
}

async function firstDifferentByte(a: string, b: string): Promise<number | undefined> {
  const [fa, fb] = [await open(a, 'r'), await open(b, 'r')];
  const [ba, bb] = [Buffer.allocUnsafe(CHUNK), Buffer.allocUnsafe(CHUNK)];
  try {
    for (let offset = 0; ; offset += CHUNK) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, CHUNK, offset), fb.read(bb, 0, CHUNK, offset)]);
      if (ra.bytesRead !== rb.bytesRead || !ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) {
        const n = Math.min(ra.bytesRead, rb.bytesRead);
        let i = 0;
        while (i < n && ba[i] === bb[i]) i++;
        return offset + i;
      }
      if (ra.bytesRead === 0) return undefined;
    }
  } finally {
    await fa.close();
    await fb.close();
  }
}
