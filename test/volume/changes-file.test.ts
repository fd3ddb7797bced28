// The record of changed regions across a clean restart (src/volume/changes-file.ts and
// ChangedRegions.snapshot/restore): a round trip keeps it exact; taking the file deletes it
// whatever it holds; a damaged or foreign file is ignored. Plain files: runs anywhere.
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { ChangedRegions } from '../../src/replication/changed.js';
import { silentLogger } from '../../src/log.js';
import { saveChanges, takeChanges } from '../../src/volume/changes-file.js';
import { tempDir } from '../helpers/loop.js';

const A = 'aaaaaaaaaaaaaaaa';
const MiB = 2 ** 20;

async function replicaDir(t: Parameters<typeof tempDir>[0]): Promise<string> {
  const dir = await tempDir(t, 'brickd-changes-');
  await mkdir(path.join(dir, '.brickd'), { recursive: true });
  return dir;
}

t.test('saved at close, taken once at the next start, exact', async (t) => {
  const dir = await replicaDir(t);
  const c = new ChangedRegions(10n, { maxRegions: 100 });
  c.record(11n, { op: 'write', fid: A, offset: 0, data: Buffer.alloc(10) });
  c.record(12n, { op: 'writeDirect', fid: A, offset: 4 * MiB, length: MiB });
  c.record(13n, { op: 'truncate', fid: 'bbbbbbbbbbbbbbbb', size: 0 });
  c.record(14n, { op: 'mkdir', path: 'd', fid: 'cccccccccccccccc', mode: 0o755 });
  await saveChanges(dir, c, 7);
  const taken = await takeChanges(dir, silentLogger);
  t.equal(taken?.generation, 7);
  const r = taken!.changes;
  t.equal(r.recordedThrough, 14n);
  t.equal(r.coveredFrom, 11n);
  t.same(r.since(11n), c.since(11n));
  t.same(r.since(10n), c.since(10n));
  t.equal(r.since(9n), undefined, 'coverage kept');
  t.equal(r.lastChange(A, 4 * MiB, 4096), 12n);
  r.record(15n, { op: 'write', fid: A, offset: 0, data: Buffer.alloc(1) });
  t.same([...(r.since(14n)!.files.get(A) as Set<number>)], [0], 'and it records on');
  await t.rejects(stat(path.join(dir, '.brickd', 'changes.json')), { code: 'ENOENT' }, 'taking deletes the file');
  t.equal(await takeChanges(dir, silentLogger), undefined, 'a second start finds nothing');
});

t.test('a damaged or foreign file is deleted and ignored', async (t) => {
  const dir = await replicaDir(t);
  const file = path.join(dir, '.brickd', 'changes.json');
  const good = new ChangedRegions(0n);
  good.record(1n, { op: 'write', fid: A, offset: 0, data: Buffer.alloc(1) });
  await saveChanges(dir, good, 1);
  const saved = JSON.parse(await readFile(file, 'utf8'));
  const cases: Array<[string, unknown]> = [
    ['not JSON', '{ nope'],
    ['another format', { ...saved, format: 'something-else' }],
    ['a newer version', { ...saved, version: 2 }],
    ['no generation', { ...saved, generation: 'one' }],
    ['a seq that is no number', { ...saved, record: { ...saved.record, recordedThrough: '1e3' } }],
    ['an entry past what was recorded', { ...saved, record: { ...saved.record, touched: [[`${A}:0`, 5]] } }],
    ['a key that is not fid:region', { ...saved, record: { ...saved.record, touched: [['../x:0', 1]] } }],
    ['seqs out of order', { ...saved, record: { ...saved.record, recordedThrough: '3', touched: [[`${A}:0`, 3], [`${A}:1`, 2]] } }],
    ['a key twice', { ...saved, record: { ...saved.record, recordedThrough: '3', touched: [[`${A}:0`, 1], [`${A}:0`, 2]] } }],
    ['more entries than its bound', { ...saved, record: { ...saved.record, maxRegions: 1, recordedThrough: '3', touched: [[`${A}:0`, 1], [`${A}:1`, 2]] } }],
  ];
  for (const [name, content] of cases) {
    await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content));
    t.equal(await takeChanges(dir, silentLogger), undefined, `${name}: ignored`);
    await t.rejects(stat(file), { code: 'ENOENT' }, `${name}: deleted`);
  }
});
