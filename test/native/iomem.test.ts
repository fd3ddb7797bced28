// The addon's I/O memory (native/memory/iomem.h) and allocAligned's use of it: buffers of
// their own ArrayBuffer carved from 2 MiB regions, backed by a huge page where the kernel
// allows, returned once collected; and allocIoMemory's argument checks.
//
// The pool is process-wide, so scenarios that look at its state run in a fresh child
// (children/iomem-probe.mjs, on the built dist/).
import { execFile } from 'node:child_process';
import { constants, readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { allocAligned, HUGE_IO_BYTES } from '../../src/aligned.js';
import { run } from '../../src/exec.js';
import { native } from '../../src/native.js';
import { loopDevice, needsRoot } from '../helpers/loop.js';

const execFileAsync = promisify(execFile);
const MiB = 2 ** 20;
const PROBE = path.join(import.meta.dirname, 'children', 'iomem-probe.mjs');

async function probe<T>(scenario: string): Promise<T> {
  const { stdout } = await execFileAsync(process.execPath, ['--expose-gc', PROBE, scenario], { timeout: 60_000 });
  return JSON.parse(stdout) as T;
}

t.test('regions are carved in order, each buffer its own ArrayBuffer; a buffer over 2 MiB gets its own mapping', async (t) => {
  const seen = await probe<{
    offsets: number[];
    lengths: number[];
    ownArrayBuffers: boolean[];
    intact: boolean[];
    stats: { mappedRegions: number; idleRegions: number; largeMappings: number };
  }>('carve');
  // First region: [0, 1 MiB) and [1 MiB, 2 MiB). Second: 128 KiB at 0, then 5000 B at 128 KiB.
  t.same(seen.offsets, [0, MiB, 0, 128 * 1024, 0], 'offsets within their 2 MiB region');
  t.same(seen.lengths, [MiB, MiB, 128 * 1024, 5000, 5 * MiB], 'exactly the length asked');
  t.same(seen.ownArrayBuffers, [true, true, true, true, true], 'byteOffset 0 and nothing after it in the ArrayBuffer');
  t.same(seen.intact, [true, true, true, true, true], 'filling one buffer leaves its neighbours alone');
  t.same(seen.stats, { mappedRegions: 2, idleRegions: 0, largeMappings: 1 });
});

const thp = (() => {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1];
  } catch {
    return undefined;
  }
})();

t.test('a touched region is one transparent huge page', { skip: thp === undefined || thp === 'never' ? `transparent huge pages are ${thp ?? 'not built into this kernel'}` : false }, async (t) => {
  const seen = await probe<{ before: number; after: number }>('huge');
  t.ok(seen.before >= 0, 'smaps_rollup reports AnonHugePages');
  t.ok(seen.after - seen.before >= 2048, `AnonHugePages grew by ${seen.after - seen.before} kB (want >= 2048)`);
});

t.test('collected buffers give their regions back: 2 GiB through 1 MiB buffers neither grows mappings nor RSS', async (t) => {
  const seen = await probe<{ baseline: number; rss: number; peakRegions: number; stats: { mappedRegions: number; idleRegions: number; largeMappings: number } }>('release');
  t.ok(seen.peakRegions <= 64, `at most ${seen.peakRegions} regions mapped at once (64 MiB of buffers between collections)`);
  t.ok(seen.stats.mappedRegions <= 9, `after the last collection ${seen.stats.mappedRegions} regions mapped (8 idle + 1 current at most)`);
  t.ok(seen.stats.idleRegions <= 8, 'the idle list is bounded');
  t.ok(seen.rss - seen.baseline < 200, `RSS grew by ${(seen.rss - seen.baseline).toFixed(0)} MiB over 2 GiB allocated`);
});

t.test('allocAligned takes I/O memory from HUGE_IO_BYTES up', async (t) => {
  for (const length of [HUGE_IO_BYTES, MiB, 3 * MiB + 5]) {
    const b = allocAligned(length);
    t.equal(b.length, length);
    t.equal(b.byteOffset, 0, `${length} bytes: its own ArrayBuffer`);
    t.equal(b.buffer.byteLength, length);
    t.equal(native.addressOffset(b, 4096), 0, 'on a 4 KiB boundary');
  }
  const below = allocAligned(HUGE_IO_BYTES - 4096);
  t.ok(below.buffer.byteLength > below.length, 'below it: allocUnsafeSlow memory, over-allocated to find the boundary');
});

t.test('allocIoMemory: bad lengths are typed errors', async (t) => {
  const cases: [string, unknown, string, RegExp][] = [
    ['zero', 0, 'RangeError', /"length"/],
    ['negative', -1, 'RangeError', /"length"/],
    ['fractional', 1.5, 'RangeError', /"length"/],
    ['over 1 GiB', 2 ** 30 + 1, 'RangeError', /"length"/],
    ['a string', '4096', 'TypeError', /"length"/],
    ['missing', undefined, 'RangeError', /"length"/],
  ];
  for (const [name, length, type, message] of cases) {
    t.throws(() => native.allocIoMemory(length as number), { name: type, message, code: /^ERR_/ }, name);
  }
  t.equal(native.allocIoMemory(1).byteLength, 1, 'one byte is a valid request');
});

// What the I/O memory is for: a 1 MiB direct read reaches the device as one request. A loop
// device takes at most max_segments segments per request (128 here); a buffer of scattered
// 4 KiB pages needs one per page, so its 1 MiB reads would be split (docs/store.md, "Reads").
const noHugePages = thp === undefined || thp === 'never' ? `transparent huge pages are ${thp ?? 'not built into this kernel'}` : false;
t.test('a 1 MiB direct read into allocAligned memory reaches a loop device as one request', { skip: needsRoot() || noHugePages }, async (t) => {
  const device = await loopDevice(t, 64);
  const queue = `/sys/class/block/${path.basename(device)}/queue`;
  const maxSegments = Number(readFileSync(`${queue}/max_segments`, 'utf8'));
  // Where one request could take a whole 1 MiB of scattered pages, there is nothing to show.
  if (maxSegments * 4096 >= MiB) return t.plan(0, `this loop device takes ${maxSegments} segments per request: scattered pages would not be split either`);
  await run('udevadm', ['settle']).catch(() => {}); // the attach's own probe reads first
  const handle = await open(device, constants.O_RDONLY | constants.O_DIRECT);
  t.teardown(() => handle.close());
  const requests = () => Number(readFileSync(`/sys/class/block/${path.basename(device)}/stat`, 'utf8').trim().split(/\s+/)[0]);
  const buffers = [allocAligned(MiB), allocAligned(MiB)];
  const before = requests();
  for (let i = 0; i < 8; i++) await handle.read(buffers[i % 2]!, 0, MiB, i * MiB);
  t.equal(requests() - before, 8, `8 reads of 1 MiB, 8 device requests (max_segments ${maxSegments})`);
});
