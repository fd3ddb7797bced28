// On-disk format fixtures: data written by format version 1 must open in every later
// version. replica-v1.tar.gz is a replica left as a crash leaves it (a checkpointed part and
// a log tail); brick-v1.json is a brick manifest. See test/fixtures/make-replica-v1.mjs.
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { readBrickManifest } from '../../src/brick/manifest.js';
import { ReplicaStore } from '../../src/store/store.js';
import { needsRoot, tempDir } from '../helpers/loop.js';
import { replicaDir, testBrick } from '../helpers/store.js';

const FIXTURES = path.resolve(import.meta.dirname, '..', 'fixtures');

t.test('brick manifest v1 reads', async (t) => {
  const dir = await tempDir(t);
  await copyFile(path.join(FIXTURES, 'brick-v1.json'), path.join(dir, 'brickd.json'));
  t.match(await readBrickManifest(dir), {
    version: 1,
    brickId: '5f1c2a9e-7b3d-4e8f-9a0b-1c2d3e4f5a6b',
    fsType: 'xfs',
    label: 'brickd-5f1c2',
    tags: { zone: 'a' },
  });
});

t.test('replica v1 opens, replays its log tail, and reads back verified', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const dir = replicaDir(brick, 'fixture-v1');
  await mkdir(dir, { recursive: true });
  execFileSync('tar', ['--xattrs', '--xattrs-include=trusted.*', '-C', dir, '-xzf', path.join(FIXTURES, 'replica-v1.tar.gz')]);
  const store = await ReplicaStore.open(dir, { segmentBytes: 1 << 20, checkpointIntervalMs: 0 });
  t.teardown(() => store.close());
  t.equal(store.volumeId, 'fixture-v1');
  t.equal(store.durableSeq, 13n, 'every logged mutation is there');
  t.same(await store.readdir(''), ['docs', 'late-link', 'link']);
  t.same(await store.readdir('docs'), ['blob', 'late', 'readme.txt']);
  t.equal((await store.read('docs/readme.txt', 0, 100)).toString(), 'brickd replica format 1\nsecond line, from the log\n');
  t.equal(await store.readlink('link'), 'docs/readme.txt');
  const late = await store.read('late-link', 0, 6000);
  t.equal(late.length, 5012);
  t.ok(late.subarray(0, 5000).every((b) => b === 0));
  t.equal(late.subarray(5000).toString(), 'after a hole');
  t.equal((await store.stat('docs/late')).nlink, 2);
  const blob = await store.read('docs/blob', 0, 200_000);
  t.equal(blob.length, 135_536);
  t.ok(blob.subarray(0, 65_536).every((b) => b === 0xab));
  t.ok(blob.subarray(65_536, 70_000).every((b) => b === 0xcd));
  t.ok(blob.subarray(70_000).every((b) => b === 0xcd));
  await store.write('docs/readme.txt', 0, Buffer.from('B'));
  t.equal((await store.read('docs/readme.txt', 0, 1)).toString(), 'B', 'writable after opening');
});
