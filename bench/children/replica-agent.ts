// Bench child: a replica agent reduced to its replication part, as the replication case
// runs two of them. Creates one replica store in a directory on a brick the parent
// mounted, serves it with a ReplicaServer on 127.0.0.1 (a free port, reported in `ready`).
// argv: replicaDir volumeId nodeId clusterId sizeLimitBytes; the secret comes in
// BRICKD_BENCH_SECRET (hex) so it is not on a command line.
import { ReplicaServer } from '../../src/replication/server.js';
import { ReplicaStore } from '../../src/store/store.js';
import { serveChild } from './serve.js';

await serveChild(async () => {
  const [dir, volumeId, nodeId, clusterId, sizeLimit] = process.argv.slice(2);
  if (!dir || !volumeId || !nodeId || !clusterId || !sizeLimit) throw new Error('usage: replica-agent DIR VOLUME NODE CLUSTER SIZE_LIMIT_BYTES');
  const secret = Buffer.from(process.env.BRICKD_BENCH_SECRET ?? '', 'hex');
  // The store as the agent runs it: default options (as the local store in the same case).
  const store = await ReplicaStore.create(dir, { volumeId, sizeLimitBytes: Number(sizeLimit) });
  const server = new ReplicaServer({ clusterId, nodeId, secret });
  server.addVolume(store);
  const { port } = await server.listen(0, '127.0.0.1');
  return {
    info: { port },
    async close() {
      await server.close();
      await store.close();
    },
    counters: () => ({ mutations: server.stats.mutations, payloadBytes: server.stats.payloadBytes, acks: server.stats.acks, pauses: server.stats.pauses }),
  };
});
