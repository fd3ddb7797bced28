// One-off measurement for bench/brickio-uring-vs-pool.md: the same write patterns as
// uring.cc, through the addon as the store calls it (each call one PromiseWorker job on the
// libuv pool, settled on the loop thread). Run after `npm run build`.
//
// Usage: node bench/brickio-uring-vs-pool/pool.mjs <dir on the test filesystem>
import { open, rm } from 'node:fs/promises';
import path from 'node:path';
import { native } from '../../dist/src/native.js';

const K4 = 4096;
const M1 = 1 << 20;
const SYNC_OPS = 2000;
const SEQ_BYTES = 192 * M1;
const dir = process.argv[2];
if (!dir) throw new Error('usage: pool.mjs <dir>');

async function openFresh(name, preallocate) {
  const file = path.join(dir, name);
  await rm(file, { force: true });
  const handle = await open(file, 'w+');
  const ones = Buffer.alloc(M1, 1);
  for (let off = 0; off < preallocate; off += M1) await native.writev(handle.fd, [ones], off);
  if (preallocate) await native.fsync(handle.fd);
  return { handle, file };
}

function report(name, us) {
  us.sort((a, b) => a - b);
  const mean = us.reduce((a, b) => a + b, 0) / us.length;
  const at = (q) => us[Math.floor(us.length * q)].toFixed(1);
  console.log(`${name.padEnd(40)} n=${String(us.length).padEnd(5)} mean ${mean.toFixed(1).padStart(7)} us  p50 ${at(0.5).padStart(7)}  p99 ${at(0.99).padStart(7)}`);
}

const now = () => Number(process.hrtime.bigint()) / 1000;

async function hopFloor() {
  const { handle, file } = await openFresh('hop', 0);
  const empty = Buffer.alloc(0);
  const us = [];
  for (let i = 0; i < SYNC_OPS * 5; i++) {
    const t0 = now();
    await native.readInto(handle.fd, empty, 0); // a pool round trip doing almost nothing
    us.push(now() - t0);
  }
  report('pool hop floor (readInto 0 bytes)', us);
  await handle.close();
  await rm(file);
}

async function sync4k(withSums) {
  const { handle, file } = await openFresh('pool4k', 64 * M1);
  const sums = withSums ? await openFresh('pool4k.sums', 0) : undefined;
  if (sums) await native.resumBlocks(handle.fd, sums.handle.fd, 0, 1e9, K4);
  const buf = Buffer.alloc(K4, 0xab);
  const us = [];
  for (let i = 0; i < SYNC_OPS; i++) {
    const offset = (i * K4) % (64 * M1);
    const t0 = now();
    if (sums) {
      await native.writeBlocks(handle.fd, sums.handle.fd, buf, offset, K4);
      await native.fdatasync(handle.fd);
      await native.fdatasync(sums.handle.fd);
    } else {
      await native.writev(handle.fd, [buf], offset);
      await native.fdatasync(handle.fd);
    }
    us.push(now() - t0);
  }
  report(withSums ? 'pool writeBlocks+2x fdatasync 4K QD1' : 'pool writev+fdatasync 4K QD1 (2 hops)', us);
  await handle.close();
  await rm(file);
  if (sums) {
    await sums.handle.close();
    await rm(sums.file);
  }
}

async function seq1m(depth, withSums) {
  const { handle, file } = await openFresh('poolseq', 0);
  const sums = withSums ? await openFresh('poolseq.sums', 0) : undefined;
  const bufs = Array.from({ length: depth }, () => Buffer.alloc(M1, 0x5c));
  const t0 = now();
  let next = 0;
  // `depth` independent chains of sequential 1 MiB writes (distinct blocks, so no lock needed).
  await Promise.all(bufs.map(async (buf) => {
    while (next < SEQ_BYTES) {
      const offset = next;
      next += M1;
      if (sums) await native.writeBlocks(handle.fd, sums.handle.fd, buf, offset, K4);
      else await native.writev(handle.fd, [buf], offset);
    }
  }));
  const writeUs = now() - t0;
  await native.fdatasync(handle.fd);
  if (sums) await native.fdatasync(sums.handle.fd);
  const totalUs = now() - t0;
  const mibs = (us) => ((SEQ_BYTES / us) * 1e6 / M1).toFixed(0).padStart(6);
  const name = `pool ${withSums ? 'writeBlocks' : 'writev'} 1M sequential QD${depth}`;
  console.log(`${name.padEnd(40)} ${mibs(writeUs)} MiB/s buffered, ${mibs(totalUs)} MiB/s incl. final fdatasync`);
  await handle.close();
  await rm(file);
  if (sums) {
    await sums.handle.close();
    await rm(sums.file);
  }
}

console.log(`UV_THREADPOOL_SIZE=${process.env.UV_THREADPOOL_SIZE ?? '4 (default)'}`);
// Warm-up (see uring.cc): the first buffered pass also pays for first-touch of guest memory.
process.stdout.write('(warm-up) ');
await seq1m(1, false);
for (let round = 0; round < 3; round++) {
  await hopFloor();
  await sync4k(false);
  await sync4k(true);
  await seq1m(1, false);
  await seq1m(4, false);
  await seq1m(1, true);
  await seq1m(4, true);
}
