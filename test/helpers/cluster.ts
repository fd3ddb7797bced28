// Three brickd agent processes on loopback with replication on, and one volume replicated
// across them: its primary on the first agent, replicas on the other two, W=2 unless told.
// Configured only through their control sockets, as an orchestrator would. Teardown is the
// agents' own (test/helpers/control.ts).
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Test } from 'tap';
import { testSecretFile } from './agent.js';
import { startControlAgent, type ControlAgent, type ControlApi } from './control.js';

export interface Cluster {
  agents: [ControlAgent, ControlAgent, ControlAgent];
  /** Agent i as a peer: its node id and replication address. */
  peer(i: number): { nodeId: string; address: string };
}

export async function replicatedCluster(
  t: Test,
  options: { volumeId: string; sizeLimitBytes: number; writeQuorum?: number; args?: string[] },
): Promise<Cluster> {
  const secretFile = await testSecretFile(t);
  const agents: ControlAgent[] = [];
  for (let i = 0; i < 3; i++) agents.push(await startControlAgent(t, { embeddedCount: 1, embeddedSizeMiB: 1024, secretFile, ...(options.args ? { args: options.args } : {}) }));
  const infos = await Promise.all(agents.map((x) => x.api.getNodeInfo({})));
  const peer = (i: number) => ({ nodeId: infos[i]!.nodeId, address: infos[i]!.replicationAddress });
  const { volumeId, sizeLimitBytes } = options;
  for (const r of agents.slice(1)) await r.api.createVolume({ volumeId, sizeLimitBytes, role: 'replica', generation: 1 });
  await agents[0]!.api.createVolume({ volumeId, sizeLimitBytes, role: 'primary', generation: 1, peers: [peer(1), peer(2)], writeQuorum: options.writeQuorum ?? 2 });
  return { agents: agents as Cluster['agents'], peer };
}

/** The replica's plain data directory on the agent's one brick (what an admin reads without brickd). */
export async function dataDirOf(agent: ControlAgent, volumeId: string): Promise<string> {
  const bricks = path.join(agent.stateDir, 'bricks');
  const [brick] = await readdir(bricks);
  return path.join(bricks, brick!, 'volumes', volumeId, 'data');
}

/** The mount point of the agent's one brick. */
export async function brickOf(agent: ControlAgent, volumeId: string): Promise<string> {
  return path.dirname(path.dirname(path.dirname(await dataDirOf(agent, volumeId))));
}

/** Until the primary's two peers stream and have acknowledged everything it applied (60 s at most). */
export async function caughtUp(status: () => ReturnType<ControlApi['getVolumeStatus']>): Promise<void> {
  for (const deadline = Date.now() + 60_000; ; ) {
    const s = await status();
    if (s.peers.length === 2 && s.peers.every((p) => p.state === 'streaming' && BigInt(p.ackedSeq) === BigInt(s.appliedSeq))) return;
    if (Date.now() > deadline) throw new Error(`the replicas never caught up: ${JSON.stringify(s.peers)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Run a shell script (tools on the mount run in their own processes); rejects with its stderr. */
export function sh(script: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', script], { timeout: timeoutMs, maxBuffer: 16 * 2 ** 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${script}: ${err.message} ${stderr}`)) : resolve(stdout)));
  });
}
