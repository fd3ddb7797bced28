// Child process of the replication kill tests (not a test itself): a replica agent reduced
// to its replication part. It opens (or creates) one replica store, serves it with a
// ReplicaServer on 127.0.0.1:<port>, and prints one JSON line once it listens. The parent
// SIGKILLs it mid-stream and starts it again on the same port and store.
// argv: replicaDir volumeId nodeId port; the cluster secret comes in BRICKD_TEST_SECRET.
import { ReplicaServer } from '../../../dist/src/replication/server.js';
import { ReplicaStore } from '../../../dist/src/store/store.js';

const [dir, volumeId, nodeId, port] = process.argv.slice(2);
const store = await ReplicaStore.create(
  dir,
  { volumeId, sizeLimitBytes: 200 * 2 ** 20 },
  { directWriteBytes: 64 * 1024, segmentBytes: 4 * 2 ** 20, checkpointBytes: 8 * 2 ** 20, checkpointIntervalMs: 200 },
);
const server = new ReplicaServer({ clusterId: 'test-cluster', nodeId, secret: Buffer.from(process.env.BRICKD_TEST_SECRET ?? '', 'utf8') });
server.addVolume(store);
const address = await server.listen(Number(port), '127.0.0.1');
process.stdout.write(JSON.stringify({ listening: address.port, appliedSeq: String(store.appliedSeq), durableSeq: String(store.durableSeq) }) + '\n');
// The parent's diagnostics: where this replica stands.
process.on('SIGUSR2', () => {
  const status = server.volumeStatus(volumeId);
  process.stderr.write(
    `replica-agent ${nodeId}: ${JSON.stringify({ ...status, appliedSeq: String(status?.appliedSeq), durableSeq: String(status?.durableSeq), storeDurable: String(store.durableSeq), stats: server.stats })}\n`,
  );
});
process.on('SIGTERM', () => {
  void server
    .close()
    .then(() => store.close())
    .then(() => process.exit(0));
});
