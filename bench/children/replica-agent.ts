// Bench child: a replica agent reduced to its replication part, as the replication and
// resync cases run them. Creates (or, restarted on the same directory, opens and recovers)
// one replica store in a directory on a brick the parent mounted, and serves it with a
// ReplicaServer on HOST:PORT (default 127.0.0.1 and a free port; the port is reported in
// `ready`). Run in a network namespace by the parent (bench/netns.ts), HOST is the node's
// address there.
// argv: replicaDir volumeId nodeId clusterId sizeLimitBytes [host [port]]; the secret comes
// in BRICKD_BENCH_SECRET (hex) so it is not on a command line.
import { ReplicaServer } from '../../src/replication/server.js';
import { ReplicaStore } from '../../src/store/store.js';
import { serveChild } from './serve.js';

await serveChild(async () => {
  const [dir, volumeId, nodeId, clusterId, sizeLimit, host = '127.0.0.1', port = '0'] = process.argv.slice(2);
  if (!dir || !volumeId || !nodeId || !clusterId || !sizeLimit) throw new Error('usage: replica-agent DIR VOLUME NODE CLUSTER SIZE_LIMIT_BYTES [HOST [PORT]]');
  const secret = Buffer.from(process.env.BRICKD_BENCH_SECRET ?? '', 'hex');
  // The store as the agent runs it: default options (as the local store in the same case).
  // create() opens an existing replica of the same settings, replaying its log.
  const store = await ReplicaStore.create(dir, { volumeId, sizeLimitBytes: Number(sizeLimit) });
  const server = new ReplicaServer({ clusterId, nodeId, secret });
  server.addVolume(store);
  const listening = await server.listen(Number(port), host);
  return {
    info: { port: listening.port },
    async close() {
      await server.close();
      await store.close();
    },
    counters: () => {
      const s = server.stats;
      return { mutations: s.mutations, payloadBytes: s.payloadBytes, acks: s.acks, pauses: s.pauses, resyncs: s.resyncs, resyncsCompleted: s.resyncsCompleted };
    },
  };
});
