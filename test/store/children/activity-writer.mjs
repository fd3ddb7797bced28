// Child process of test/store/activity.test.ts (not a test itself): opens (or creates) a
// replica and writes without end into three files at random offsets, 8 writers at once, in
// the write-back mode: it prints {"applied": ...} once a write is in the data file (visible
// to reads) and {"done": n} once it is durable (each writer flushes every few writes). The
// parent SIGKILLs it, or it kills itself at a named crash point (BRICKD_CRASH_POINT), and
// then checks that the activity log named every write applied and not yet durable.
// argv: replicaDir
import { ReplicaStore } from '../../../dist/src/store/store.js';
import { crashPointFromEnv } from '../../../dist/src/store/crashpoints.js';

const [dir] = process.argv.slice(2);
const random = Math.random; // the check does not depend on which writes were made
const SIZES = [100, 4096, 20_000, 65_536, 300_000];
const FILE_BYTES = 16 * 2 ** 20;
const report = (line) => process.stdout.write(JSON.stringify(line) + '\n');
const options = { segmentBytes: 1 << 20, checkpointBytes: 2 << 20, checkpointIntervalMs: 200, activity: { extentBytes: 1 << 20, capacity: 16 }, crashPoint: crashPointFromEnv() };
const store = await ReplicaStore.create(dir, { volumeId: 'activity', sizeLimitBytes: 200 * 2 ** 20 }, options);
const files = [];
for (const name of ['a', 'b', 'c']) files.push((await store.stat(name).catch(() => undefined))?.fid ?? (await store.create(name)).fid);
report({ open: String(store.durableSeq) });

let id = 0;
async function writer() {
  for (let i = 1; ; i++) {
    const fid = files[Math.floor(random() * files.length)];
    const length = SIZES[Math.floor(random() * SIZES.length)];
    const offset = Math.floor((random() * (FILE_BYTES - length)) / 512) * 512;
    const n = id++;
    const { durable } = await store.write({ fid }, offset, Buffer.alloc(length, n & 0xff), undefined, { wait: 'applied' });
    report({ applied: n, fid, offset, length });
    void durable.then(() => report({ done: n }));
    if (i % 16 === 0) await store.flush();
  }
}
await Promise.all(Array.from({ length: 8 }, writer));
