// Capacity: the volume size limit is enforced with an ENOSPC-style error and nothing half
// written; a brick that really fills up gives the same clean error, never a corrupt replica.
import t from 'tap';
import { ReplicaStore } from '../../src/store/store.js';
import { rejectsWithCode } from '../helpers/assert.js';
import { needsRoot } from '../helpers/loop.js';
import { replicaDir, testBrick, testStore } from '../helpers/store.js';

const skip = needsRoot();

t.test('the volume size limit: refused writes change nothing', { skip }, async (t) => {
  const brick = await testBrick(t);
  const store = await testStore(t, brick, { sizeLimitBytes: 100_000 });
  await store.create('f');
  await store.write('f', 0, Buffer.alloc(90_000, 1));
  const before = store.durableSeq;
  const err = await rejectsWithCode(t, store.write('f', 90_000, Buffer.alloc(20_000, 2)), 'VOLUME_FULL', /exceed the volume size limit 100000/);
  t.equal((err as NodeJS.ErrnoException).errno, -28, 'errno ENOSPC');
  await rejectsWithCode(t, store.truncate('f', 200_000), 'VOLUME_FULL');
  t.equal(store.durableSeq, before, 'nothing logged');
  t.equal((await store.stat('f')).size, 90_000, 'nothing written');
  await store.write('f', 0, Buffer.alloc(90_000, 3));
  t.pass('overwriting inside the file needs no new space');
  await store.write('f', 90_000, Buffer.alloc(10_000, 4));
  t.equal(store.usedBytes, 100_000, 'exactly full is allowed');
  await store.truncate('f', 50_000);
  t.equal(store.usedBytes, 50_000, 'truncate gives space back');
  await store.create('g');
  await store.write('g', 0, Buffer.alloc(50_000, 5));
  await store.unlink('g');
  t.equal(store.usedBytes, 50_000, 'unlink gives space back');
  t.equal(store.statfs().sizeLimitBytes, 100_000);
});

t.test('a full brick: clean VOLUME_FULL, replica intact and reopenable', { skip, timeout: 120_000 }, async (t) => {
  // A 64 MiB ext4 brick with a volume limit far above it: the brick runs out first.
  const brick = await testBrick(t, 64, 'ext4');
  const dir = replicaDir(brick);
  const store = await testStore(t, brick, { sizeLimitBytes: 2 ** 30 }, { brickReserveBytes: 4 * 2 ** 20, segmentBytes: 2 ** 20 });
  const chunk = Buffer.alloc(1 << 20, 7);
  let written = 0;
  let refused: unknown;
  await store.create('big');
  for (let i = 0; i < 200 && !refused; i++) {
    try {
      await store.write('big', written, chunk);
      written += chunk.length;
    } catch (err) {
      refused = err;
    }
  }
  t.match(refused, { code: 'VOLUME_FULL', message: /the brick has \d+ bytes free/ }, 'refused before the brick is full');
  t.ok(written > 30 * 2 ** 20, `wrote ${written >> 20} MiB first`);
  // Small writes still fit in the reserve-protected space? They are refused the same way.
  await rejectsWithCode(t, store.write('big', written, chunk), 'VOLUME_FULL');
  await store.close();
  const again = await ReplicaStore.open(dir, { checkpointIntervalMs: 0, segmentBytes: 2 ** 20 });
  t.teardown(() => again.close());
  let intact = 0;
  for (let off = 0; off < written; off += 1 << 20) {
    const data = await again.read('big', off, 1 << 20);
    if (data.length === 1 << 20 && data.every((b) => b === 7)) intact += data.length;
  }
  t.equal(intact, written, 'every accepted write is there and verifies');
});

t.test('the brick filled by someone else: clean errors, acknowledged data intact after reopen', { skip, timeout: 120_000 }, async (t) => {
  const brick = await testBrick(t, 64, 'ext4');
  const dir = replicaDir(brick);
  const options = { brickReserveBytes: 1 << 20, segmentBytes: 1 << 20, checkpointIntervalMs: 0 };
  const store = await testStore(t, brick, { sizeLimitBytes: 2 ** 30 }, options);
  await store.create('keep');
  const keep = Buffer.alloc(3 << 20, 9);
  await store.write('keep', 0, keep);
  await store.create('more');
  // Another writer takes almost all the space, behind the store's back.
  const { run } = await import('../../src/exec.js');
  const { statfs } = await import('node:fs/promises');
  const s = await statfs(brick.root);
  const filler = `${brick.root}/filler`;
  await run('fallocate', ['-l', String(s.bavail * s.bsize - (256 << 10)), filler]);
  const errors: string[] = [];
  for (let i = 0; i < 4; i++) {
    try {
      await store.write('more', i << 20, Buffer.alloc(1 << 20, 1));
    } catch (err) {
      errors.push((err as { code: string }).code);
      t.comment((err as Error).message);
    }
  }
  t.ok(errors.length > 0, `writes were refused (${errors.join(', ')})`);
  t.ok(errors.every((c) => c === 'VOLUME_FULL' || c === 'STORE_CLOSED' || c === 'ENOSPC'), 'only clean errors');
  await store.close();
  const { unlink } = await import('node:fs/promises');
  await unlink(filler);
  const again = await ReplicaStore.open(dir, options);
  t.teardown(() => again.close());
  t.same(await again.read('keep', 0, keep.length), keep, 'acknowledged data intact and verified');
  const more = await again.stat('more');
  for (let off = 0; off < more.size; off += 1 << 20) await again.read('more', off, 1 << 20);
  t.pass('every block of the partly written file verifies');
  await again.write('more', 0, Buffer.alloc(1000, 2));
  t.pass('writable again once space is back');
});
