// The record of changed regions (src/replication/changed.ts): exact per region,
// whole files on truncate, namespace mutations ignored, bounded with the coverage moving up
// as the regions touched longest ago are forgotten; the last change of a byte range (what a
// repair asks of a peer); cut back after a crash (truncateTo). No I/O: runs anywhere.
import t from 'tap';
import { ChangedRegions } from '../../src/replication/changed.js';

const MiB = 2 ** 20;
const A = 'aaaaaaaaaaaaaaaa';
const B = 'bbbbbbbbbbbbbbbb';
const plain = (m: ReturnType<ChangedRegions['since']>) =>
  m && Object.fromEntries([...m.files].map(([fid, r]) => [fid, r === 'all' ? 'all' : [...r].sort((x, y) => x - y)]));

t.test('since(X) is exactly the regions touched after X', async (t) => {
  const c = new ChangedRegions(10n);
  t.equal(c.coveredFrom, 11n);
  c.record(11n, { op: 'write', fid: A, offset: MiB - 1, data: Buffer.alloc(2) }); // regions 0 and 1
  c.record(12n, { op: 'writeDirect', fid: B, offset: 5 * MiB, length: 3 * MiB }); // 5, 6, 7
  c.record(13n, { op: 'create', path: 'x', fid: 'cccccccccccccccc', mode: 0o644 });
  c.record(14n, { op: 'rename', from: 'x', to: 'y', fid: 'cccccccccccccccc' });
  c.record(15n, { op: 'write', fid: A, offset: 0, data: Buffer.alloc(10) }); // region 0 again
  t.same(plain(c.since(10n)), { [A]: [0, 1], [B]: [5, 6, 7] });
  t.same(plain(c.since(11n)), { [A]: [0], [B]: [5, 6, 7] }, 'region 1 was last touched at 11');
  t.same(plain(c.since(12n)), { [A]: [0] }, 'namespace mutations change no bytes');
  t.same(plain(c.since(15n)), {}, 'nothing after the last seq');
  t.equal(c.since(9n), undefined, 'before the start: not covered');
  c.record(16n, { op: 'truncate', fid: B, size: 100 });
  t.same(plain(c.since(15n)), { [B]: 'all' }, 'a truncate: the whole file');
  c.record(17n, { op: 'write', fid: B, offset: 0, data: Buffer.alloc(1) });
  t.same(plain(c.since(15n)), { [B]: 'all' }, 'whole stays whole');
  t.same(plain(c.since(16n)), { [B]: [0] });
  t.equal(c.recordedThrough, 17n, 'recorded through the last seq (what a re-attach checks before continuing it)');
  c.record(18n, { op: 'unlink', path: 'y', fid: 'cccccccccccccccc' });
  t.equal(c.recordedThrough, 18n, 'namespace mutations count there too');
});

t.test('bounded: the regions touched longest ago are forgotten and coverage moves past them', async (t) => {
  const c = new ChangedRegions(0n, { maxRegions: 3 });
  c.record(1n, { op: 'write', fid: A, offset: 0, data: Buffer.alloc(1) }); // A:0 @1
  c.record(2n, { op: 'write', fid: A, offset: MiB, data: Buffer.alloc(1) }); // A:1 @2
  c.record(3n, { op: 'write', fid: A, offset: 0, data: Buffer.alloc(1) }); // A:0 @3 (moves to the end)
  c.record(4n, { op: 'write', fid: B, offset: 0, data: Buffer.alloc(1) }); // B:0 @4
  t.equal(c.coveredFrom, 1n, 'three regions: all kept');
  c.record(5n, { op: 'write', fid: B, offset: MiB, data: Buffer.alloc(1) }); // B:1 @5: A:1 (@2) goes
  t.equal(c.coveredFrom, 3n, 'A:1, last touched at 2, forgotten: seqs up to 2 no longer covered');
  t.equal(c.since(1n), undefined);
  t.same(plain(c.since(2n)), { [A]: [0], [B]: [0, 1] }, 'from 3 on, exact');
  t.same(plain(c.since(4n)), { [B]: [1] });
  c.record(6n, { op: 'writeDirect', fid: A, offset: 10 * MiB, length: 3 * MiB }); // three regions at once
  t.equal(c.coveredFrom, 6n, 'a write of three regions pushes out everything older');
  t.same(plain(c.since(5n)), { [A]: [10, 11, 12] });
  c.record(7n, { op: 'writeDirect', fid: B, offset: 0, length: 2 * MiB }); // B:0, B:1 @7: A:10, A:11 go, A:12 @6 stays
  t.equal(c.coveredFrom, 7n, 'part of one write forgotten: coverage moves past it');
  const back = ChangedRegions.restore(JSON.parse(JSON.stringify(c.snapshot())));
  t.same(plain(back.since(6n)), plain(c.since(6n)), 'a snapshot with a region kept from a partly forgotten write restores');
  t.equal(back.lastChange(A, 12 * MiB, 1), 6n);
  t.equal(back.lastChange(A, 10 * MiB, 1), 6n, 'a forgotten region: the seq before coverage');
});

t.test('lastChange and repairMinSeq: the last seq that changed a byte range', async (t) => {
  const c = new ChangedRegions(100n);
  t.equal(c.lastChange(A, 0, 4096), 100n, 'never changed while recorded: the seq before coverage');
  c.record(101n, { op: 'write', fid: A, offset: 3 * MiB, data: Buffer.alloc(4096) });
  c.record(102n, { op: 'write', fid: B, offset: 0, data: Buffer.alloc(4096) });
  t.equal(c.lastChange(A, 3 * MiB + 8192, 4096), 101n, 'same region: its last write');
  t.equal(c.lastChange(A, 0, 4096), 100n, 'another region of the file: unchanged');
  t.equal(c.lastChange(A, 2 * MiB, 2 * MiB), 101n, 'a range across regions: the latest of them');
  c.record(103n, { op: 'truncate', fid: A, size: 0 });
  t.equal(c.lastChange(A, 0, 4096), 103n, 'a truncate changes every byte of the file');
  t.equal(c.repairMinSeq(A, 0, 4096, 200n), 103n);
  t.equal(c.repairMinSeq(A, 0, 4096, 102n), 102n, 'capped at the applied seq');
  t.equal(c.repairMinSeq(B, MiB, 4096, 200n), 100n);
});

t.test('truncateTo: after a crash lost the last recorded mutations, their regions stay as changed at the last recovered seq', async (t) => {
  const c = new ChangedRegions(0n);
  c.record(1n, { op: 'write', fid: A, offset: 0, data: Buffer.alloc(1) }); // A region 0
  c.record(2n, { op: 'write', fid: A, offset: 3 * MiB, data: Buffer.alloc(1) }); // A region 3
  c.record(3n, { op: 'write', fid: B, offset: 0, data: Buffer.alloc(1) }); // lost
  c.record(4n, { op: 'truncate', fid: A, size: 0 }); // lost
  t.ok(c.truncateTo(2n));
  t.equal(c.recordedThrough, 2n, 'the record ends at the recovered seq');
  t.same(plain(c.since(1n)), { [A]: 'all', [B]: [0] }, 'the lost mutations\' regions count as changed at seq 2');
  t.same(plain(c.since(2n)), {}, 'and not after it');
  c.record(3n, { op: 'write', fid: B, offset: MiB, data: Buffer.alloc(1) }); // seq 3 numbered again
  t.same(plain(c.since(2n)), { [B]: [1] });
  t.same(ChangedRegions.restore(c.snapshot()).snapshot(), c.snapshot(), 'still a valid record (seqs in order)');
  t.ok(c.truncateTo(9n), 'a seq at or past the end: nothing to do');
  t.equal(c.recordedThrough, 3n);
  const small = new ChangedRegions(0n, { maxRegions: 1 });
  small.record(1n, { op: 'write', fid: A, offset: 0, data: Buffer.alloc(1) });
  small.record(2n, { op: 'write', fid: B, offset: 0, data: Buffer.alloc(1) });
  small.record(3n, { op: 'write', fid: A, offset: 0, data: Buffer.alloc(1) }); // coverage moves to 3
  t.notOk(small.truncateTo(1n), 'a record that no longer covers the recovered seq is useless');
});

t.test("a store's suspect note: its ranges as changed at its seq; `all` leaves nothing before it covered", async (t) => {
  const c = new ChangedRegions(10n);
  c.record(11n, { op: 'write', fid: A, offset: 0, data: Buffer.alloc(1) });
  // What an unclean stop may have left unlogged (store/activity.ts), noted at seq 12.
  c.record(12n, { op: 'suspect', ranges: [{ fid: A, offset: 4 * MiB, length: 4 * MiB }, { fid: B, offset: 0 }], namespace: true, all: false });
  t.same(plain(c.since(11n)), { [A]: [4, 5, 6, 7], [B]: 'all' }, 'a replica at the recovered seq is compared there');
  t.same(plain(c.since(10n)), { [A]: [0, 4, 5, 6, 7], [B]: 'all' }, 'and one further behind there too, beside what it missed');
  t.same(plain(c.since(12n)), {}, 'nothing after the note');
  c.record(13n, { op: 'suspect', ranges: [], namespace: false, all: true });
  t.equal(c.since(12n), undefined, 'suspect anywhere: a replica before the note is compared in full');
  t.same(plain(c.since(13n)), {}, 'one after it is not');
  c.record(14n, { op: 'write', fid: B, offset: MiB, data: Buffer.alloc(1) });
  t.same(plain(c.since(13n)), { [B]: [1] }, 'and the record goes on');
});
