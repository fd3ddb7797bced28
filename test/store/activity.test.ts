// The activity log (src/store/activity.ts): the parts of a replica that applies may be
// writing are named durably before a byte is written, so that after an unclean stop the
// store can say where its tree may hold changes its write log lacks. First the log alone
// (on a file of a real brick): keys per mutation, the hot path, least-recently-used
// eviction of unpinned keys only, torn and unreadable slots, a clean close. Then a real
// store in a child process SIGKILLed in the middle of writes: every write in flight is named.
import { open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { ACTIVITY_FILE, ActivityLog, hasSuspects, MAX_KEYS, SLOT_BYTES, type Suspects } from '../../src/store/activity.js';
import type { Mutation } from '../../src/store/mutations.js';
import { run } from '../../src/exec.js';
import { ReplicaStore } from '../../src/store/store.js';
import { runUntilKilled } from '../helpers/child.js';
import { needsRoot } from '../helpers/loop.js';
import { replicaDir, testBrick } from '../helpers/store.js';

const MiB = 2 ** 20;
const A = 'aaaaaaaaaaaaaaaa';
const B = 'bbbbbbbbbbbbbbbb';
const write = (fid: string, offset: number, length: number): Mutation => ({ op: 'write', fid, offset, data: Buffer.alloc(length) });
/** Suspects as sorted strings, for comparison. */
const named = (s: Suspects): string[] => (s.all ? ['all'] : [...s.ranges.map((r) => `${r.fid}@${r.offset}+${r.length ?? 'file'}`), ...(s.namespace ? ['namespace'] : [])].sort());
/** What the log names now, as an unclean stop would leave it: a second open of its file. */
async function afterCrash(file: string, extentBytes = MiB): Promise<string[]> {
  const { log, suspects } = await ActivityLog.open(file, { extentBytes });
  await log.close(false);
  return named(suspects);
}

t.test('the activity log alone', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const file = path.join(brick.root, ACTIVITY_FILE);
  let { log, suspects } = await ActivityLog.open(file, { extentBytes: MiB, capacity: 3 });
  t.notOk(hasSuspects(suspects), 'a new log names nothing');

  const w1 = write(A, 100, 10);
  const first = log.enter(w1);
  t.ok(first instanceof Promise, 'a part not yet named: the apply waits for a transaction');
  await first;
  const w2 = write(A, 2000, 10);
  t.equal(log.enter(w2), undefined, 'the same extent again: no wait, no I/O');
  const w3 = write(A, MiB - 10, 20); // two extents
  const tr = { op: 'truncate', fid: B, size: 0 } as const;
  const mk = { op: 'mkdir', path: 'd', fid: B, mode: 0o755 } as const;
  await Promise.all([log.enter(w3), log.enter(tr), log.enter(mk)]);
  t.same(await afterCrash(file), [`${A}@0+${MiB}`, `${A}@${MiB}+${MiB}`, `${B}@0+file`, 'namespace'].sort(), 'a crash now: every part entered is named (extents, the truncated file, the namespace)');

  // Pinned keys never leave: four in flight over a capacity of three.
  t.equal(log.size, 4, 'four keys pinned, over a capacity of three');
  for (const m of [w1, w2, w3, tr, mk]) log.leave(m);
  // Unpinned, they stay until room is needed, least recently used first.
  const w4 = write(B, 5 * MiB, 1);
  await log.enter(w4);
  t.equal(log.size, 3, 'a new key past the capacity lets the least recently used unpinned one go');
  const now = await afterCrash(file);
  t.ok(now.includes(`${B}@${5 * MiB}+${MiB}`) && !now.includes(`${A}@0+${MiB}`), `the oldest went, the newest is named: ${now.join(' ')}`);

  // A clean close: nothing pinned, so the next open names nothing.
  log.leave(w4);
  await log.close();
  ({ log, suspects } = await ActivityLog.open(file, { extentBytes: MiB, capacity: 3 }));
  t.notOk(hasSuspects(suspects), 'after a clean close the log names nothing');

  // Suspects stay pinned until released, across transactions that would let them go.
  const w5 = write(A, 7 * MiB, 1);
  await log.enter(w5);
  await log.close(false); // an unclean stop with w5 in flight
  ({ log, suspects } = await ActivityLog.open(file, { extentBytes: MiB, capacity: 1 }));
  t.same(named(suspects), [`${A}@${7 * MiB}+${MiB}`], 'the write in flight at the stop is suspect');
  for (let i = 0; i < 3; i++) {
    const m = write(B, i * MiB, 1);
    await log.enter(m);
    log.leave(m);
  }
  t.ok((await afterCrash(file)).includes(`${A}@${7 * MiB}+${MiB}`), 'an unreleased suspect outlives eviction and a second crash');
  log.releaseSuspects();
  for (let i = 3; i < 5; i++) {
    const m = write(B, i * MiB, 1);
    await log.enter(m);
    log.leave(m);
  }
  t.notOk((await afterCrash(file)).includes(`${A}@${7 * MiB}+${MiB}`), 'released, it leaves like any other key');
  await log.close();

  // Torn writes: the newest slot damaged, the one before it is used.
  ({ log } = await ActivityLog.open(file, { extentBytes: MiB }));
  const w6 = write(A, 0, 1);
  await log.enter(w6);
  const before = await afterCrash(file);
  const w7 = write(B, 9 * MiB, 1);
  await log.enter(w7);
  await log.close(false);
  const bytes = await readFile(file);
  const slot = SLOT_BYTES;
  const newest = bytes.readBigUInt64LE(16) > bytes.readBigUInt64LE(slot + 16) ? 0 : slot;
  bytes.writeUInt8(bytes.readUInt8(newest + 40) ^ 0x01, newest + 40); // inside its keys
  await writeFile(file, bytes);
  const afterTear = await afterCrash(file);
  t.same(afterTear, before, 'a torn newest slot: the previous set, which named everything applied before that transaction');
  // Neither slot readable: everything is suspect, and stays so until released.
  const handle = await open(file, 'r+');
  await handle.write(Buffer.alloc(64, 0xee), 0, 64, 0);
  await handle.write(Buffer.alloc(64, 0xee), 0, 64, slot);
  await handle.close();
  ({ log, suspects } = await ActivityLog.open(file, { extentBytes: MiB }));
  t.same(named(suspects), ['all'], 'an unreadable log: everything is suspect');
  t.same(await afterCrash(file), ['all'], 'and a crash before it is released keeps saying so');
  log.releaseSuspects();
  await log.close();
  t.notOk(hasSuspects((await ActivityLog.open(file)).suspects), 'released and closed cleanly: nothing');

  // A sequential writer finds the next extents logged before it gets there.
  const seq = (await ActivityLog.open(path.join(brick.root, 'activity-seq'), { extentBytes: MiB })).log;
  const C = 'cccccccccccccccc';
  const seqWrites = Array.from({ length: 8 }, (_, i) => write(C, i * (MiB / 2), MiB / 2));
  const opening = seq.enter(seqWrites[0]!);
  t.ok(opening instanceof Promise, 'a new file: the first write waits');
  await opening;
  let waited = 0;
  for (const m of seqWrites.slice(1)) {
    await new Promise((r) => setTimeout(r, 20)); // time for a transaction asked in the background
    const wait = seq.enter(m);
    if (wait) waited++;
    await wait;
  }
  t.equal(waited, 0, 'writes that follow each other over four extents never wait: the next extents were asked for ahead');
  await seq.close(false);

  const tiny = (await ActivityLog.open(path.join(brick.root, 'activity-tiny'), { extentBytes: 4096 })).log;
  t.same(tiny.keysOf(write(A, 2 ** 52, 1)), [`${A}:${0xffffffff}`], 'an extent index past what a key holds: the whole file');
  await tiny.close();

  await t.rejects(ActivityLog.open(file, { capacity: MAX_KEYS + 1 }), RangeError, 'a capacity past what a slot holds is refused');
  await t.rejects(ActivityLog.open(file, { extentBytes: 3 * MiB }), RangeError, 'an extent size that is not a power of two is refused');
});

const CHILD = path.join(import.meta.dirname, 'children', 'activity-writer.mjs');

type Line = { open: string } | { applied: number; fid: string; offset: number; length: number } | { done: number };

t.test('a store SIGKILLed in the middle of writes names every write applied and not yet durable; settled, it names nothing', { skip: needsRoot(), timeout: 180_000 }, async (t) => {
  const brick = await testBrick(t, 512);
  const dir = replicaDir(brick, 'activity');
  let checked = 0;
  for (let run = 0; run < 8; run++) {
    // Half at a named point right after a write's bytes reached the data file (its record
    // may not be durable yet), half at a random moment.
    const crashPoint = run % 2 === 0 ? `apply.after:${30 + run * 11}` : undefined;
    const lines = await runUntilKilled<Line>(CHILD, [dir], crashPoint ? { crashPoint } : { killAfterMs: 150 + run * 40 });
    // Applied and not durable: its bytes are in the data file, its record may not be.
    const started = new Map<number, { fid: string; offset: number; length: number }>();
    for (const line of lines) {
      if ('applied' in line) started.set(line.applied, line);
      else if ('done' in line) started.delete(line.done);
    }
    const store = await ReplicaStore.open(dir, { checkpointIntervalMs: 0, activity: { extentBytes: MiB, capacity: 16 } });
    const suspects = store.suspects;
    t.notOk(suspects.all, 'the log was readable');
    const ranges = suspects.all ? [] : suspects.ranges;
    const covered = (fid: string, at: number) => ranges.some((r) => r.fid === fid && (r.length === undefined || (r.offset <= at && at < r.offset + r.length)));
    const missed = [...started.values()].filter((w) => !covered(w.fid, w.offset) || !covered(w.fid, w.offset + w.length - 1));
    t.same(missed, [], `run ${run} (${crashPoint ?? 'a random moment'}): all ${started.size} writes applied and not durable are named among ${ranges.length} suspect ranges`);
    checked += started.size;
    t.ok(ranges.length <= 16 + started.size * 2, 'and the log holds no more than its capacity and what was in flight');
    const seq = await store.settleSuspects();
    t.equal(seq, store.durableSeq, 'settled: a local record of its own, durable');
    t.notOk(hasSuspects(store.suspects), 'and nothing is suspect any more');
    await store.close();
    const reopened = await ReplicaStore.open(dir, { checkpointIntervalMs: 0, activity: { extentBytes: MiB } });
    t.notOk(hasSuspects(reopened.suspects), 'after a clean close nothing is named (the settled record replays as a no-op)');
    await reopened.close();
  }
  t.ok(checked > 0, `${checked} writes were applied and not durable at a kill`);
});

t.test('a long list of suspects is noted as whole files', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const dir = replicaDir(brick, 'many');
  const options = { checkpointIntervalMs: 0, activity: { extentBytes: 4096, capacity: 1024 } };
  const store = await ReplicaStore.create(dir, { volumeId: 'many', sizeLimitBytes: 64 * MiB }, options);
  const fids = [(await store.create('x')).fid, (await store.create('y')).fid];
  for (let i = 0; i < 600; i++) await store.write({ fid: fids[i % 2]! }, i * 8192, Buffer.alloc(10, 1));
  // A crash image: a copy of the replica while it is open, everything durable.
  const copy = replicaDir(brick, 'many-copy');
  await run('cp', ['-a', dir, copy]);
  await store.close();
  const noted: Mutation[] = [];
  const crashed = await ReplicaStore.open(copy, { ...options, onMutation: (_seq, m) => void noted.push(m) });
  t.teardown(() => crashed.close());
  t.equal(crashed.suspects.all ? 0 : crashed.suspects.ranges.length, 600, 'every extent written is suspect');
  await crashed.settleSuspects();
  t.same(noted, [{ op: 'suspect', ranges: fids.map((fid) => ({ fid, offset: 0 })), namespace: true, all: false }], 'noted as the two whole files (and the namespace): the record stays small');
});

t.test('after an unclean stop a block torn between its data and its CRC is re-summed where the log names it, and only there', { skip: needsRoot() }, async (t) => {
  const brick = await testBrick(t);
  const dir = replicaDir(brick, 'torn');
  // A checkpoint after every write: recovery replays nothing, so what the test leaves in a
  // block is what reopening finds (a replayed write would rewrite the block anyway).
  const options = { checkpointIntervalMs: 0, checkpointBytes: 1, activity: { extentBytes: 4096, capacity: 1024 } };
  let store = await ReplicaStore.create(dir, { volumeId: 'torn', sizeLimitBytes: 64 * MiB }, options);
  const cold = (await store.create('cold')).fid;
  await store.write({ fid: cold }, 0, Buffer.alloc(8192, 1));
  await store.close(); // a clean close: nothing named
  store = await ReplicaStore.open(dir, options);
  const hot = (await store.create('hot')).fid;
  await store.write({ fid: hot }, 0, Buffer.alloc(8192, 2));
  await new Promise((r) => setTimeout(r, 300)); // the checkpoint it set going
  // A crash image (a copy while open), then what a power loss can leave: a data page of an
  // unacknowledged write on disk without its CRC, in a block it shares with acknowledged bytes.
  const copy = replicaDir(brick, 'torn-copy');
  await run('cp', ['-a', dir, copy]);
  await store.close();
  for (const [name, at] of [['hot', 4096 + 100], ['cold', 4096 + 100]] as const) {
    const h = await open(path.join(copy, 'data', name), 'r+');
    await h.write(Buffer.alloc(10, 9), 0, 10, at);
    await h.close();
  }
  const crashed = await ReplicaStore.open(copy, options);
  t.teardown(() => crashed.close());
  const read = await crashed.read('hot', 0, 8192);
  t.same([...read.subarray(4096 + 100, 4096 + 110)], Array(10).fill(9), 'the torn block in a named extent reads back, its data kept');
  t.ok(read.subarray(0, 4096).equals(Buffer.alloc(4096, 2)), 'beside the acknowledged bytes');
  await t.rejects(crashed.read('cold', 0, 8192), { code: 'CHECKSUM_MISMATCH' }, 'the same damage where the log names nothing is still damage');
});
