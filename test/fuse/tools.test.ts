// Real tools on a real mount, in child processes (the FUSE ops run on this process's loop):
// `cp -a` of a tree with nested dirs, symlinks, modes and a few MiB of random files, and a
// `tar` round trip out of the mount, compared with sha256sum and mode/type/link lists; a
// sqlite3 database in WAL mode under an insert workload, intact after a remount; and a bind
// mount in a new mount namespace, as a container runtime makes it.
// Skips without root (loop devices, mkfs, mount, unshare) or without /dev/fuse.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { FuseMount } from '../../src/fuse/mount.js';
import { storeBackend } from '../../src/volume/backend.js';
import { fuseVolume, needsFuse } from '../helpers/fuse.js';
import { tempDir } from '../helpers/loop.js';
import { mountInfoAt } from '../helpers/mount.js';

function sh(script: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', script], { timeout: timeoutMs, maxBuffer: 16 * 2 ** 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${script}: ${err.message} ${stderr}`)) : resolve(stdout)));
  });
}

/** Content hashes and (path, type, mode, link target) of every entry under `dir`. */
async function treeListing(dir: string): Promise<{ sums: string; entries: string }> {
  const q = JSON.stringify(dir);
  const sums = await sh(`cd ${q} && find . -type f -print0 | sort -z | xargs -0 sha256sum`);
  const entries = await sh(`cd ${q} && find . -mindepth 1 -printf '%p %y %m %l\\n' | sort`);
  return { sums, entries };
}

async function makeTree(root: string): Promise<void> {
  await mkdir(path.join(root, 'a', 'b', 'c'), { recursive: true });
  await mkdir(path.join(root, 'empty'));
  await mkdir(path.join(root, 'private'), { mode: 0o700 });
  await chmod(path.join(root, 'private'), 0o700);
  const sizes = [0, 1, 4095, 4096, 4097, 65536, 200_000, 1_500_000, 2_100_000];
  for (const [i, size] of sizes.entries()) {
    const dir = [root, path.join(root, 'a'), path.join(root, 'a', 'b', 'c'), path.join(root, 'private')][i % 4]!;
    await writeFile(path.join(dir, `f${i}.bin`), randomBytes(size));
  }
  await writeFile(path.join(root, 'script.sh'), '#!/bin/sh\necho hi\n');
  await chmod(path.join(root, 'script.sh'), 0o755);
  await writeFile(path.join(root, 'secret'), 'x');
  await chmod(path.join(root, 'secret'), 0o600);
  await symlink('a/b/c/f2.bin', path.join(root, 'rel-link'));
  await symlink('/nonexistent/target', path.join(root, 'dangling'));
  await symlink('../..', path.join(root, 'a', 'b', 'up'));
}

t.test('cp -a into the mount and a tar round trip out of it', { skip: needsFuse() }, async (t) => {
  const v = await fuseVolume(t);
  const work = await tempDir(t);
  const src = path.join(work, 'src');
  await makeTree(src);
  const want = await treeListing(src);

  await sh(`cp -a ${JSON.stringify(src)} ${JSON.stringify(path.join(v.mnt, 'tree'))}`);
  const inMount = await treeListing(path.join(v.mnt, 'tree'));
  t.equal(inMount.sums, want.sums, 'sha256sum of every file');
  t.equal(inMount.entries, want.entries, 'types, modes and link targets');

  const out = path.join(work, 'out');
  await mkdir(out);
  await sh(`tar -C ${JSON.stringify(path.join(v.mnt, 'tree'))} -cf ${JSON.stringify(path.join(work, 'tree.tar'))} . && tar -C ${JSON.stringify(out)} -xpf ${JSON.stringify(path.join(work, 'tree.tar'))}`);
  const extracted = await treeListing(out);
  t.equal(extracted.sums, want.sums, 'tar c from the mount, x elsewhere: same contents');
  t.equal(extracted.entries, want.entries, 'and same modes and links');

  // And tar x into the mount.
  await sh(`mkdir ${JSON.stringify(path.join(v.mnt, 'untarred'))} && tar -C ${JSON.stringify(path.join(v.mnt, 'untarred'))} -xpf ${JSON.stringify(path.join(work, 'tree.tar'))}`);
  t.equal((await treeListing(path.join(v.mnt, 'untarred'))).sums, want.sums, 'tar x into the mount');
});

t.test('sqlite3 in WAL mode: inserts, remount, integrity_check', { skip: needsFuse() }, async (t) => {
  const v = await fuseVolume(t);
  const db = JSON.stringify(path.join(v.mnt, 'app.db'));
  t.equal((await sh(`sqlite3 ${db} 'PRAGMA journal_mode=WAL;'`)).trim(), 'wal');
  await sh(`sqlite3 ${db} 'CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB, note TEXT); CREATE INDEX kv_note ON kv(note);'`);
  let script = '';
  for (let batch = 0; batch < 20; batch++) {
    script += 'BEGIN;';
    for (let i = 0; i < 100; i++) script += `INSERT INTO kv (v, note) VALUES (randomblob(${100 + ((batch * 37 + i) % 900)}), 'n${(batch * 100 + i) % 97}');`;
    script += 'COMMIT;';
  }
  script += 'DELETE FROM kv WHERE k % 7 = 0; UPDATE kv SET note = note || \'x\' WHERE k % 5 = 0;';
  await sh(`sqlite3 ${db} ${JSON.stringify(script)}`);
  const count = (await sh(`sqlite3 ${db} 'SELECT count(*) FROM kv;'`)).trim();
  t.equal(count, String(2000 - Math.floor(2000 / 7)), 'rows after the workload');

  await v.fuse.unmount();
  t.equal(await mountInfoAt(v.mnt), undefined, 'unmounted');
  const again = new FuseMount();
  await again.mount(storeBackend(v.store), v.mnt);
  t.teardown(() => again.unmount());
  t.equal((await sh(`sqlite3 ${db} 'PRAGMA integrity_check;'`)).trim(), 'ok', 'integrity_check after remount');
  t.equal((await sh(`sqlite3 ${db} 'SELECT count(*) FROM kv;'`)).trim(), count, 'every row is there');
  t.equal((await sh(`sqlite3 ${db} 'PRAGMA journal_mode;'`)).trim(), 'wal');
});

t.test('a bind mount in a new mount namespace, as a container runtime makes it', { skip: needsFuse() }, async (t) => {
  const v = await fuseVolume(t);
  const target = await tempDir(t, 'brickd-bind-');
  const out = await sh(`unshare -m sh -c 'mount --bind ${v.mnt} ${target} && echo data > ${target}/x && cat ${target}/x'`);
  t.equal(out, 'data\n', 'written and read through the bind mount');
  t.equal(await readFile(path.join(v.mnt, 'x'), 'utf8'), 'data\n', 'visible through the mount');
  t.equal((await v.store.read('x', 0, 100)).toString(), 'data\n', 'and in the store');
  t.equal(await mountInfoAt(target), undefined, 'the bind mount lived only in its namespace');
});
