// Child process of the store crash tests (not a test itself): a seeded sequence of
// overlapping writes (small ones logged, large ones direct) and truncates on two files,
// one at a time, with no checkpoint in between, so that recovery must replay records
// onto a tree that already holds later ones. The parent stops it with a crash point after
// the N-th durable mutation and compares the files with the same sequence replayed in memory.
// argv: replicaDir seed count
import { ReplicaStore } from '../../../dist/src/store/store.js';
import { crashPointFromEnv } from '../../../dist/src/store/crashpoints.js';

const [dir, seedText, countText] = process.argv.slice(2);
const { overwriteOps } = await import('./overwrite-ops.mjs');
const store = await ReplicaStore.create(dir, { volumeId: 'overwrite', sizeLimitBytes: 64 << 20 }, {
  segmentBytes: 4 << 20,
  checkpointBytes: 1 << 40,
  checkpointIntervalMs: 0,
  directWriteBytes: 32 * 1024,
  crashPoint: crashPointFromEnv(),
});
for (const op of overwriteOps(Number(seedText), Number(countText))) {
  if (op.kind === 'create') await store.create(op.file);
  else if (op.kind === 'write') await store.write(op.file, op.offset, Buffer.alloc(op.length, op.fill));
  else await store.truncate(op.file, op.size);
}
process.exit(0);
