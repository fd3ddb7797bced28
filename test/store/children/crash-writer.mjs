// Child process of the store crash tests (not a test itself): opens (or creates) a replica,
// then writes without end, reporting each mutation on stdout only after it resolved
// (durable). The parent SIGKILLs it at a random moment, or it kills itself at a named crash
// point (BRICKD_CRASH_POINT), and then checks that every reported mutation survived.
//
// Workload: `writers` concurrent loops, each creating its own files and filling them with
// non-overlapping writes of mixed sizes (small ones go through the log, large ones straight
// to the data file), then renaming the full file. No acknowledged byte is ever overwritten,
// so the check is exact: every acknowledged write must read back with its CRC.
// argv: replicaDir cycle seed
import { ReplicaStore } from '../../../dist/src/store/store.js';
import { crashPointFromEnv } from '../../../dist/src/store/crashpoints.js';
import { native } from '../../../dist/src/native.js';

const [dir, cycle, seedText] = process.argv.slice(2);
let seed = Number(seedText) >>> 0 || 1;
const random = () => {
  // xorshift32: reproducible from the seed the parent logs
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed / 2 ** 32;
};
const SIZES = [1, 100, 4096, 5000, 20_000, 65_536, 100_000, 300_000];

const report = (line) => process.stdout.write(JSON.stringify(line) + '\n');
const options = { segmentBytes: 1 << 20, checkpointBytes: 2 << 20, checkpointIntervalMs: 200, directWriteBytes: 64 * 1024, crashPoint: crashPointFromEnv() };
const store = await ReplicaStore.create(dir, { volumeId: 'crash', sizeLimitBytes: 200 * 2 ** 20 }, options);
// Each cycle runs at its own generation: its first mutation writes a generation start
// (store/generations.ts), which a kill at any point must leave in place for every seq it made.
await store.raiseGeneration(Number(cycle) + 1);
report({ op: 'open', durableSeq: String(store.durableSeq) });

async function writer(id) {
  for (let n = 0; ; n++) {
    const name = `c${cycle}-w${id}-f${n}`;
    await store.create(name);
    report({ op: 'create', path: name });
    let offset = 0;
    const writes = 2 + Math.floor(random() * 6);
    for (let i = 0; i < writes; i++) {
      const length = SIZES[Math.floor(random() * SIZES.length)];
      const data = Buffer.alloc(length);
      for (let b = 0; b < length; b += 4096) data.fill((random() * 256) | 0, b, Math.min(length, b + 4096));
      const crc = native.crc32c(data);
      await store.write(name, offset, data, crc);
      report({ op: 'write', path: name, offset, length, crc });
      offset += length + Math.floor(random() * 3) * 4096; // sometimes leave a hole
    }
    await store.rename(name, `${name}.done`);
    report({ op: 'rename', from: name, to: `${name}.done` });
    if (n >= 2) {
      // Keep the volume from filling up: each writer keeps its last two files.
      const old = `c${cycle}-w${id}-f${n - 2}.done`;
      await store.unlink(old);
      report({ op: 'unlink', path: old });
    }
  }
}
await Promise.all([writer(0), writer(1), writer(2), writer(3)]);
