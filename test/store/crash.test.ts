// Crash safety of the store (DESIGN.md invariant 4): a child process writes with sync and is
// SIGKILLed, at random moments and at every named crash point in the write path; each time
// the replica is reopened (recovery replays the log) and checked: every mutation the child
// saw resolve is present with the right bytes, and every block of every file verifies.
import { spawn } from 'node:child_process';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ReplicaStore } from '../../src/store/store.js';
import { overwriteOps } from './children/overwrite-ops.mjs';
import { native } from '../../src/native.js';
import { runUntilKilled } from '../helpers/child.js';
import { needsRoot } from '../helpers/loop.js';
import { cutPower } from '../helpers/mount.js';
import { replicaDir, testBrick } from '../helpers/store.js';

const CHILD = path.join(import.meta.dirname, 'children', 'crash-writer.mjs');

type Ack =
  | { op: 'open'; durableSeq: string }
  | { op: 'create'; path: string }
  | { op: 'write'; path: string; offset: number; length: number; crc: number }
  | { op: 'rename'; from: string; to: string }
  | { op: 'unlink'; path: string };

/** Run the child until it dies (killed by us `killAfterMs` after it opened, or by its crash point). */
function runChild(dir: string, cycle: number, seed: number, killAfterMs: number | undefined, crashPoint?: string): Promise<Ack[]> {
  return runUntilKilled<Ack>(CHILD, [dir, String(cycle), String(seed)], { ...(killAfterMs !== undefined ? { killAfterMs } : {}), ...(crashPoint ? { crashPoint } : {}) });
}

/** Where each file acknowledged so far lives now, and what it must contain. */
class Model {
  readonly files = new Map<
    string,
    { names: Set<string>; settled: boolean; mayBeGone: boolean; writes: Array<{ offset: number; length: number; crc: number }> }
  >();
  /** Names whose unlink was acknowledged: they must never come back. */
  readonly gone = new Set<string>();
  private byName = new Map<string, string>();

  apply(acks: Ack[]): void {
    for (const ack of acks) {
      if (ack.op === 'create') {
        this.files.set(ack.path, { names: new Set([ack.path, `${ack.path}.done`]), settled: false, mayBeGone: false, writes: [] });
        this.byName.set(ack.path, ack.path);
      } else if (ack.op === 'write') {
        this.files.get(this.byName.get(ack.path)!)!.writes.push(ack);
      } else if (ack.op === 'rename') {
        const f = this.files.get(this.byName.get(ack.from)!)!;
        f.names = new Set([ack.to]);
        f.settled = true;
        this.byName.set(ack.to, this.byName.get(ack.from)!);
        // Right after this rename the writer unlinks its file from two rounds before: that
        // unlink may have happened even if the child died before reporting it.
        const m = /^(.*-f)(\d+)$/.exec(ack.from)!;
        const older = this.files.get(`${m[1]}${Number(m[2]) - 2}`);
        if (older) older.mayBeGone = true;
      } else if (ack.op === 'unlink') {
        this.files.delete(this.byName.get(ack.path)!);
        this.gone.add(ack.path);
      }
    }
  }
}

async function verify(t: Test, dir: string, model: Model, run?: { generation: number; openSeq: bigint }): Promise<void> {
  const store = await ReplicaStore.open(dir, { segmentBytes: 1 << 20, checkpointIntervalMs: 0 });
  try {
    if (run) {
      // Every seq the child made (after the seq it opened at) is known to be its generation's.
      const made = store.appliedSeq - run.openSeq;
      const wrong = [run.openSeq + 1n, store.appliedSeq].filter((s) => s > run.openSeq && store.generationAt(s) !== run.generation);
      t.same(wrong, [], `generation ${run.generation} recorded for the ${made} seqs made after seq ${run.openSeq}`);
      if (run.openSeq > 0n) t.ok((store.generationAt(run.openSeq) ?? Infinity) < run.generation, `seq ${run.openSeq} keeps an earlier generation`);
    }
    const names = new Set(await store.readdir(''));
    for (const name of model.gone) if (names.has(name)) t.fail(`${name} was unlinked (acknowledged) but is back`);
    let checked = 0;
    for (const [id, file] of model.files) {
      const present = [...file.names].filter((n) => names.has(n));
      if (present.length === 0 && file.mayBeGone) continue;
      if (present.length !== 1) {
        t.fail(`${id}: expected exactly one of ${[...file.names].join(', ')}, found ${present.join(', ') || 'none'}`);
        continue;
      }
      for (const w of file.writes) {
        const bytes = await store.read(present[0]!, w.offset, w.length);
        if (bytes.length !== w.length || native.crc32c(bytes) !== w.crc) t.fail(`${present[0]} [${w.offset}+${w.length}] lost or changed`);
        checked++;
      }
    }
    // Every block of every file, acknowledged or not, must verify after recovery.
    for (const name of names) {
      const st = await store.stat(name);
      for (let off = 0; off < st.size; off += 1 << 20) await store.read(name, off, 1 << 20);
    }
    t.pass(`${checked} acknowledged writes intact, ${names.size} files verify`);
  } finally {
    await store.close();
  }
}

t.test('SIGKILL at random moments and at named crash points loses no acknowledged write', { skip: needsRoot(), timeout: 300_000 }, async (t) => {
  const brick = await testBrick(t, 600);
  const dir = replicaDir(brick, 'crash');
  const model = new Model();
  const points = ['wal.appended:7', 'apply.before:5', 'apply.after:9', 'wal.synced:4', 'mutation.durable:6', 'checkpoint.synced:2', 'checkpoint.written:2'];
  const cycles = [...points.map((p) => ({ crashPoint: p })), ...Array.from({ length: 12 }, (_, i) => ({ killAfterMs: 150 + ((i * 137) % 500) }))];
  let cycle = 0;
  let totalAcks = 0;
  for (const plan of cycles) {
    const seed = 1000 + cycle;
    const acks = await runChild(dir, cycle, seed, 'killAfterMs' in plan ? plan.killAfterMs : undefined, 'crashPoint' in plan ? plan.crashPoint : undefined);
    t.ok(acks[0]?.op === 'open', `cycle ${cycle} (${JSON.stringify(plan)}, seed ${seed}): child opened the replica`);
    model.apply(acks);
    totalAcks += acks.length;
    await verify(t, dir, model, { generation: cycle + 1, openSeq: BigInt((acks[0] as { durableSeq?: string } | undefined)?.durableSeq ?? '0') });
    cycle++;
  }
  t.ok(totalAcks > cycles.length * 5, `the children acknowledged ${totalAcks} mutations in all`);
});

t.test('a simulated power loss (XFS shut down without flushing) at random moments loses no acknowledged write', { skip: needsRoot(), timeout: 300_000 }, async (t) => {
  // `xfs_io -x -c shutdown` (without -f) stops the brick's filesystem at once, as a crash of
  // the machine would: its dirty page cache and its unflushed journal are thrown away, and
  // only what reached the device survives (here the loop device's backing file, so the
  // device's own cache survives: a power loss on a disk with a non-volatile cache). Unlike
  // SIGKILL, this tests the order and coverage of every fsync. Then the brick is mounted
  // again (XFS replays its journal) and the replica reopened.
  const brick = await testBrick(t, 600);
  const dir = replicaDir(brick, 'powerloss');
  const model = new Model();
  let totalAcks = 0;
  const cycles = 10;
  for (let cycle = 0; cycle < cycles; cycle++) {
    const seed = 5000 + cycle;
    let restore: (() => Promise<void>) | undefined;
    const acks = await runUntilKilled<Ack>(CHILD, [dir, String(cycle), String(seed)], {
      killAfterMs: 150 + ((cycle * 211) % 600),
      beforeKill: async () => {
        restore = await cutPower(brick.root);
      },
    });
    t.ok(acks[0]?.op === 'open' && restore, `cycle ${cycle} (seed ${seed}): child opened the replica, then the brick went down`);
    await restore!();
    model.apply(acks);
    totalAcks += acks.length;
    await verify(t, dir, model, { generation: cycle + 1, openSeq: BigInt((acks[0] as { durableSeq?: string } | undefined)?.durableSeq ?? '0') });
  }
  t.ok(totalAcks > cycles * 5, `the children acknowledged ${totalAcks} mutations in all`);
});

t.test('replay onto a tree that holds later overwrites and truncates gives exactly the acknowledged state', { skip: needsRoot(), timeout: 300_000 }, async (t) => {
  const brick = await testBrick(t);
  const child = path.join(import.meta.dirname, 'children', 'overwrite-writer.mjs');
  for (let run = 0; run < 8; run++) {
    const seed = 77 + run;
    const durable = 10 + ((run * 23) % 50); // crash right after this many durable mutations
    const dir = replicaDir(brick, `overwrite${run}`);
    const env = { ...process.env, BRICKD_CRASH_POINT: `mutation.durable:${durable}` };
    const result = await new Promise<NodeJS.Signals | null>((resolve) => {
      const p = spawn(process.execPath, [child, dir, String(seed), '200'], { env, stdio: 'inherit' });
      p.on('close', (_code, signal) => resolve(signal));
    });
    t.equal(result, 'SIGKILL', `run ${run}: the child died at its crash point`);
    const model = new Map<string, Buffer>();
    for (const op of overwriteOps(seed, 200).slice(0, durable)) {
      const cur = model.get(op.file) ?? Buffer.alloc(0);
      if (op.kind === 'create') model.set(op.file, Buffer.alloc(0));
      else if (op.kind === 'truncate') {
        const next = Buffer.alloc(op.size);
        cur.copy(next, 0, 0, Math.min(cur.length, op.size));
        model.set(op.file, next);
      } else {
        const next = Buffer.alloc(Math.max(cur.length, op.offset + op.length));
        cur.copy(next);
        next.fill(op.fill, op.offset, op.offset + op.length);
        model.set(op.file, next);
      }
    }
    const store = await ReplicaStore.open(dir, { checkpointIntervalMs: 0, segmentBytes: 4 << 20 });
    for (const [file, expected] of model) {
      const actual = await store.read(file, 0, 1 << 20);
      t.ok(actual.equals(expected), `run ${run} (seed ${seed}, ${durable} durable): ${file} is exactly the acknowledged content (${actual.length} vs ${expected.length} bytes)`);
    }
    await store.close();
  }
});
