// Child process of test/native/iomem.test.ts (not a test itself). The I/O memory pool is
// process-wide, so each scenario runs in a fresh process where the pool starts empty; it
// prints one JSON object with what it saw. Run with --expose-gc (the "release" scenario).
// argv: scenario ("carve" | "huge" | "release")
import { readFileSync } from 'node:fs';
import { allocAligned } from '../../../dist/src/aligned.js';
import { native } from '../../../dist/src/native.js';

const MiB = 2 ** 20;
const REGION = 2 * MiB;
const [scenario] = process.argv.slice(2);
const report = (value) => process.stdout.write(JSON.stringify(value) + '\n');
const anonHugeKiB = () => Number(/^AnonHugePages:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'))?.[1] ?? -1);
const rssMiB = () => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))[1]) / 1024;
const turns = async (n) => { for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve)); };

if (scenario === 'carve') {
  // 1 MiB + 1 MiB fill a region; 128 KiB + 5000 B (rounded to 8 KiB) start the next one;
  // 5 MiB gets a mapping of its own.
  const sizes = [MiB, MiB, 128 * 1024, 5000, 5 * MiB];
  const buffers = sizes.map((n) => (n >= 128 * 1024 ? allocAligned(n) : Buffer.from(native.allocIoMemory(n))));
  buffers.forEach((b, i) => b.fill(i + 1));
  report({
    offsets: buffers.map((b) => native.addressOffset(b, REGION)),
    lengths: buffers.map((b) => b.length),
    ownArrayBuffers: buffers.map((b) => b.byteOffset === 0 && b.buffer.byteLength === b.length),
    intact: buffers.map((b, i) => b.every((v) => v === i + 1)),
    stats: native.ioMemoryStats(),
  });
} else if (scenario === 'huge') {
  const before = anonHugeKiB();
  const buffer = allocAligned(REGION);
  buffer.fill(7);
  report({ before, after: anonHugeKiB(), thp: readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').trim() });
} else if (scenario === 'release') {
  // 2 GiB through 1 MiB buffers, each touched and dropped: collected regions go back to the
  // pool's idle list or are unmapped, so neither the mappings nor the RSS grow with it.
  const baseline = rssMiB();
  let peakRegions = 0;
  for (let i = 0; i < 2048; i++) {
    allocAligned(MiB).fill(i & 0xff);
    if (i % 64 === 63) {
      globalThis.gc();
      await turns(3); // node runs external ArrayBuffer finalizers from setImmediate
    }
    peakRegions = Math.max(peakRegions, native.ioMemoryStats().mappedRegions);
  }
  globalThis.gc();
  await turns(5);
  report({ baseline, rss: rssMiB(), peakRegions, stats: native.ioMemoryStats() });
}
