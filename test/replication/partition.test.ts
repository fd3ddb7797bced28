// A network partition, with real agents in network namespaces (test/helpers/netns.ts): three
// brickd processes, each in its own namespace with its own address, replicating a volume
// whose primary serves a FUSE mount. The primary is cut off from both replicas:
// - it stops acknowledging: an fsync through its mount fails within the quorum timeout;
// - the orchestrator promotes a replica at generation 2 and fences the other;
// - the network heals: the old primary's writes are refused (its links end `failed`,
//   fenced), nothing of them reaches the replicas, and the new primary replicates.
// Every write acknowledged before the partition is on the new primary.
//
// Needs root, iproute2 and nsenter (network namespaces), loop devices and /dev/fuse.
import { execFile } from 'node:child_process';
import t from 'tap';
import { testSecretFile } from '../helpers/agent.js';
import { startControlAgent, type ControlAgent } from '../helpers/control.js';
import { needsFuse } from '../helpers/fuse.js';
import { mountPoint } from '../helpers/mount.js';
import { needsNetns, netnsCluster } from '../helpers/netns.js';

const VOLUME = 'pvnet';
const QUORUM_TIMEOUT_MS = 2000;

function sh(script: string, timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('sh', ['-c', script], { timeout: timeoutMs }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

const skip = needsFuse() || (await needsNetns());

t.test('partitioned primary stops acknowledging and is fenced after healing', { skip, timeout: 180_000 }, async (t) => {
  const net = await netnsCluster(t, 3);
  const secretFile = await testSecretFile(t);
  const agents: ControlAgent[] = [];
  for (const node of net.nodes) {
    agents.push(
      await startControlAgent(t, {
        embeddedCount: 1,
        embeddedSizeMiB: 1024,
        secretFile,
        replicationAddress: `${node.address}:7400`,
        command: node.command,
        args: ['--quorum-timeout-ms', String(QUORUM_TIMEOUT_MS)],
      }),
    );
  }
  const [a, b, c] = agents as [ControlAgent, ControlAgent, ControlAgent];
  const infos = await Promise.all(agents.map((x) => x.api.getNodeInfo({})));
  t.same(infos.map((i) => i.replicationAddress), net.nodes.map((n) => `${n.address}:7400`), 'each agent is reached at its namespace address');
  const peer = (i: number) => ({ nodeId: infos[i]!.nodeId, address: infos[i]!.replicationAddress });
  for (const r of [b, c]) await r.api.createVolume({ volumeId: VOLUME, sizeLimitBytes: 256 * 2 ** 20, role: 'replica', generation: 1 });
  await a.api.createVolume({ volumeId: VOLUME, sizeLimitBytes: 256 * 2 ** 20, role: 'primary', generation: 1, peers: [peer(1), peer(2)], writeQuorum: 2 });
  const mntA = await mountPoint(t, 'brickd-net-a-');
  await a.api.mountVolume({ volumeId: VOLUME, hostPath: mntA });
  t.teardown(() => a.api.unmountVolume({ volumeId: VOLUME }).catch(() => {}));

  // Acknowledged writes: each file written and fsynced (sync -f would not fail on EIO).
  const write = (dir: string, name: string, content: string) => sh(`printf '%s' '${content}' > ${dir}/${name} && dd if=/dev/null of=${dir}/${name} oflag=append conv=notrunc,fsync status=none`, 30_000);
  for (let i = 0; i < 10; i++) t.equal((await write(mntA, `acked-${i}`, `value ${i}`)).code, 0, `acked-${i} written and fsynced`);
  const peersCaughtUp = async () => (await a.api.getVolumeStatus({ volumeId: VOLUME })).peers.every((p) => p.state === 'streaming' && p.lagSeq === 0);
  const caughtUp = async () => {
    for (let i = 0; i < 300 && !(await peersCaughtUp()); i++) await new Promise((r) => setTimeout(r, 20));
  };
  await caughtUp();
  t.ok(await peersCaughtUp(), 'both replicas streaming, no lag');

  // Partition the primary.
  await net.partition(0);
  const started = Date.now();
  const cut = await write(mntA, 'during-partition', 'never acknowledged');
  const took = Date.now() - started;
  t.not(cut.code, 0, `an fsync during the partition fails (${cut.stderr.trim()})`);
  t.ok(took >= QUORUM_TIMEOUT_MS - 200 && took < QUORUM_TIMEOUT_MS + 8000, `within the quorum timeout (${took} ms)`);

  // The orchestrator promotes b (its replicas were caught up before the cut) and fences c.
  const before = await Promise.all([b, c].map((x) => x.api.getVolumeStatus({ volumeId: VOLUME })));
  t.equal(before[0]!.durableSeq, before[1]!.durableSeq, 'both replicas hold the same seq');
  await c.api.updateVolume({ volumeId: VOLUME, generation: 2 });
  await b.api.updateVolume({ volumeId: VOLUME, generation: 2, role: 'primary', setPeers: true, peers: [peer(2)], writeQuorum: 2 });
  const mntB = await mountPoint(t, 'brickd-net-b-');
  await b.api.mountVolume({ volumeId: VOLUME, hostPath: mntB });
  t.teardown(() => b.api.unmountVolume({ volumeId: VOLUME }).catch(() => {}));
  for (let i = 0; i < 10; i++) t.equal((await sh(`cat ${mntB}/acked-${i}`)).stdout, `value ${i}`, `acked-${i} is on the promoted replica`);
  t.equal((await write(mntB, 'after-promotion', 'new primary')).code, 0, 'the new primary acknowledges with its replica');

  // Heal: the old primary, still at generation 1, is refused everywhere.
  await net.heal(0);
  const seqC = (await c.api.getVolumeStatus({ volumeId: VOLUME })).durableSeq;
  const stale = await write(mntA, 'stale-primary', 'must not land');
  t.not(stale.code, 0, 'the old primary cannot acknowledge after healing');
  const status = await a.api.getVolumeStatus({ volumeId: VOLUME });
  t.ok(status.peers.some((p) => p.state === 'failed'), `its link to the fenced replica ended failed (${status.peers.map((p) => p.state).join(', ')})`);
  t.equal((await c.api.getVolumeStatus({ volumeId: VOLUME })).durableSeq, seqC, 'nothing of the stale primary reached the fenced replica');
  t.equal((await sh(`cat ${mntB}/stale-primary`)).code === 0, false, 'the stale write is not on the new primary');
  t.equal((await write(mntB, 'after-heal', 'still fine')).code, 0, 'the new primary keeps replicating');
});
