// The store's two replication hooks, on a real brick: onMutation hands out every mutation
// in seq order (the primary side), applyReplicated applies them with the primary's seq and
// file ids (the replica side). Two stores fed this way hold the same tree, byte for byte.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import type { Mutation } from '../../src/store/mutations.js';
import { native } from '../../src/native.js';
import { rejectsWithCode } from '../helpers/assert.js';
import { needsRoot } from '../helpers/loop.js';
import { replicaDir, testBrick, testStore } from '../helpers/store.js';

t.test('a replica fed by onMutation/applyReplicated ends identical, file ids included', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const shipped: Array<{ seq: bigint; mutation: Mutation }> = [];
  const primary = await testStore(t, brick, { volumeId: 'p' }, { directWriteBytes: 16 * 1024, onMutation: (seq, mutation) => shipped.push({ seq, mutation }) });
  const replica = await testStore(t, brick, { volumeId: 'r' }, { directWriteBytes: 16 * 1024 });

  await primary.mkdir('d');
  await primary.create('d/f');
  await primary.write('d/f', 0, Buffer.alloc(100_000, 1)); // direct on the primary
  await primary.write('d/f', 50, Buffer.from('small'));
  await primary.symlink('f', 'd/l');
  await primary.link('d/f', 'g');
  await primary.rename('d/f', 'd/f2');
  await primary.truncate('g', 70_000);
  await primary.setattr('g', { mode: 0o600 });
  await primary.create('gone');
  await primary.unlink('gone');
  t.same(shipped.map((s) => s.seq), shipped.map((_, i) => BigInt(i + 1)), 'every mutation, in seq order');
  const write = shipped.find((s) => s.mutation.op === 'write' && s.mutation.data.length === 100_000);
  t.ok(write, 'a large write is shipped as a write with its data');

  for (const { seq, mutation } of shipped) {
    await replica.applyReplicated(seq, mutation, mutation.op === 'write' ? native.crc32c(mutation.data) : undefined);
  }
  t.equal(replica.durableSeq, primary.durableSeq);
  t.same(await replica.readdir(''), await primary.readdir(''));
  t.same(await replica.readdir('d'), await primary.readdir('d'));
  for (const name of ['d/f2', 'g']) {
    t.equal((await replica.stat(name)).fid, (await primary.stat(name)).fid, `${name}: same file id`);
    t.ok((await replica.read(name, 0, 200_000)).equals(await primary.read(name, 0, 200_000)), `${name}: same bytes`);
  }
  t.equal((await replica.stat('g')).mode, 0o600);
  t.equal(await replica.readlink('d/l'), 'f');
  const onDisk = (dir: string) => readFile(path.join(dir, 'data', 'g'));
  t.ok((await onDisk(replicaDir(brick, 'r'))).equals(await onDisk(replicaDir(brick, 'p'))), 'identical in data/ too');

  // A resend after a reconnect is a no-op; a gap is refused and changes nothing.
  const last = shipped[shipped.length - 1]!;
  await replica.applyReplicated(last.seq, last.mutation);
  t.equal(replica.durableSeq, last.seq);
  await rejectsWithCode(t, replica.applyReplicated(last.seq + 2n, { op: 'mkdir', path: 'x', fid: '0123456789abcdef', mode: 0o755 }), 'SEQ_GAP');
  await rejectsWithCode(
    t,
    replica.applyReplicated(last.seq + 1n, { op: 'write', fid: (await primary.stat('g')).fid!, offset: 0, data: Buffer.from('abc') }, 12345),
    'CHECKSUM_MISMATCH',
  );
  await rejectsWithCode(t, replica.applyReplicated(last.seq + 1n, { op: 'mkdir', path: '../escape', fid: '0123456789abcdef', mode: 0o755 }), 'NAME_INVALID');
  t.equal(replica.durableSeq, last.seq, 'refused mutations left no trace');
});

t.test('a write refused for its CRC is never handed to replication; malformed fids are refused', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const shipped: bigint[] = [];
  const store = await testStore(t, brick, {}, { directWriteBytes: 16 * 1024, onMutation: (seq) => shipped.push(seq) });
  await store.create('f');
  const big = Buffer.alloc(100_000, 3);
  await rejectsWithCode(t, store.write('f', 0, big, (native.crc32c(big) ^ 1) >>> 0), 'CHECKSUM_MISMATCH');
  t.same(shipped, [1n], 'only the create was shipped');
  await rejectsWithCode(t, store.applyReplicated(2n, { op: 'write', fid: '../../../etc/x', offset: 0, data: Buffer.from('x') }), 'NAME_INVALID');
  t.equal(store.durableSeq, 1n);
});
