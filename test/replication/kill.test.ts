// Replica agents in their own processes (children/replica-agent.mjs), SIGKILLed mid-stream
// while a primary keeps writing with W=2 of 3, restarted on the same store, caught up from
// the retained queue. At the end both agents are SIGKILLed once more and their stores are
// reopened here (log replay): every write the primary acknowledged must be on every replica.
import t from 'tap';
import { native } from '../../src/native.js';
import { ReplicaStore } from '../../src/store/store.js';
import { needsRoot } from '../helpers/loop.js';
import { startPrimary, startReplicaProcess as startAgent, treeOf, until } from '../helpers/replication.js';
import { replicaDir, testBrick } from '../helpers/store.js';
import { xorshift as rng } from '../helpers/random.js';

/** xorshift32 from a logged seed. */

const SIZES = [512, 4096, 9000, 65_536, 100_000];

t.test('SIGKILL replica agents mid-stream, restart, catch up: every acked write is on every replica', { skip: needsRoot(), timeout: 240_000 }, async (t) => {
  const seed = Number(process.env.BRICKD_TEST_SEED ?? Date.now() % 1_000_000);
  t.comment(`seed ${seed}`);
  const random = rng(seed);
  const bricks = [await testBrick(t, 1024), await testBrick(t, 1024)]; // room for ~100 MiB of writes plus the write logs
  const dirs = bricks.map((b) => replicaDir(b, 'vol1'));
  const agents = [await startAgent(t, dirs[0]!, 'r0', 0), await startAgent(t, dirs[1]!, 'r1', 0)];
  const ports = agents.map((a) => a.port);
  const p = await startPrimary(t, { replicas: ports.map((port, i) => ({ port, name: `r${i}` })), writeQuorum: 2, timeoutMs: 20_000, store: { checkpointBytes: 8 * 2 ** 20, checkpointIntervalMs: 200 }, link: { reconnectMinMs: 20, reconnectMaxMs: 100 } });
  await until(() => p.links.every((l) => l.state === 'streaming'), 'both links streaming');

  // Writers: each fills its own file with non-overlapping blocks, so every acked block has
  // exactly one expected content.
  const acked: Array<{ file: string; offset: number; length: number; crc: number }> = [];
  const failures: Error[] = [];
  let stop = false;
  const writer = async (k: number) => {
    const file = `w${k}`;
    await p.replicated(p.store.create(file));
    let offset = 0;
    let i = 0;
    while (!stop) {
      const length = SIZES[Math.floor(random() * SIZES.length)]!;
      const data = Buffer.alloc(length, (k * 31 + i++) & 0xff);
      data.writeUInt32LE(offset, 0);
      try {
        await p.replicated(p.store.write(file, offset, data));
        acked.push({ file, offset, length, crc: native.crc32c(data) >>> 0 });
      } catch (err) {
        failures.push(err as Error);
        return;
      }
      offset += length;
    }
  };
  const writers = [0, 1, 2].map((k) => writer(k));

  const cycles = 6;
  for (let cycle = 0; cycle < cycles; cycle++) {
    const victim = cycle % 2;
    await until(() => acked.length >= (cycle + 1) * 40 || failures.length > 0, `${(cycle + 1) * 40} acked writes`, 60_000);
    // Kill at a random moment within the next few writes.
    await new Promise((r) => setTimeout(r, Math.floor(random() * 30)));
    agents[victim]!.child.kill('SIGKILL');
    await agents[victim]!.exited;
    const replicaAckedAtKill = p.links[victim]!.ackedSeq;
    const ackedAtKill = acked.length;
    await until(() => acked.length >= ackedAtKill + 15 || failures.length > 0, 'writes acked with one replica down', 60_000);
    t.equal(failures.length, 0, `cycle ${cycle}: r${victim} killed, writes still acked (${acked.length - ackedAtKill} more)`);
    agents[victim] = await startAgent(t, dirs[victim]!, `r${victim}`, ports[victim]!);
    t.ok(agents[victim]!.durableSeq >= replicaAckedAtKill, `r${victim} recovered seq ${agents[victim]!.durableSeq} ≥ the ${replicaAckedAtKill} it had acked`);
    await until(() => p.links[victim]!.state === 'streaming' && p.links[victim]!.ackedSeq >= p.queue.lastSeq - 50n, `r${victim} caught up`, 60_000);
  }
  stop = true;
  await Promise.all(writers);
  t.same(
    failures.map((e) => e.message),
    [],
    'no write failed',
  );
  const last = p.queue.lastSeq;
  await until(() => p.links.every((l) => l.ackedSeq >= last), `both replicas durable at ${last}`, 60_000).catch((err: Error) => {
    for (const a of agents) a.child.kill('SIGUSR2');
    const links = p.links.map((l) => ({ name: l.name, state: l.state, acked: String(l.ackedSeq), sent: String(l.sentSeq), stats: l.stats, error: l.lastError?.message }));
    return new Promise((_, reject) => setTimeout(() => reject(new Error(`${err.message}: ${JSON.stringify(links)} queue ${p.queue.firstSeq}..${p.queue.lastSeq}`)), 500));
  });
  t.ok(p.links.every((l) => l.stats.sessions === cycles / 2 + 1), `each link resumed ${cycles / 2} times`);

  // Kill both agents without warning, then read their stores here after replay.
  for (const a of agents) a.child.kill('SIGKILL');
  await Promise.all(agents.map((a) => a.exited));
  const primaryTree = await treeOf(p.store);
  for (const [i, dir] of dirs.entries()) {
    const store = await ReplicaStore.open(dir);
    t.teardown(() => store.close().catch(() => {}));
    t.ok(store.durableSeq >= last, `r${i} reopened at seq ${store.durableSeq} ≥ ${last}`);
    let bad = 0;
    for (const w of acked) {
      const data = await store.read(w.file, w.offset, w.length);
      if (data.length !== w.length || native.crc32c(data) >>> 0 !== w.crc) bad++;
    }
    t.equal(bad, 0, `r${i}: all ${acked.length} acked writes read back with their CRC`);
    t.same(await treeOf(store), primaryTree, `r${i}: identical to the primary`);
  }
});
