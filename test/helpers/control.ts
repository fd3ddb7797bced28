// A real agent serving the control API on its own socket, and a promise-based client.
//
// The agent runs on embedded loop-device bricks in a temp state dir, plus any extra loop
// devices the test allowlists. At teardown the agent is killed (by pid, by startAgent),
// then every mount under the state dir and every loop device backed by its files go.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Test } from 'tap';
import { findLoopFor } from '../../src/brick/loop.js';
import { readMountInfo } from '../../src/brick/mountinfo.js';
import { run } from '../../src/exec.js';
import { controlClient, REASON_KEY, type ControlClient } from '../../src/wire/control.js';
import { startAgent, type AgentProcess } from './agent.js';
import { tempDir } from './loop.js';

export interface ControlError extends Error {
  code: number;
  reason: string;
}

/** Promise form of every unary method: `await rpc.createVolume({...})`. */
export type Rpc = {
  [K in keyof ControlClient]: ControlClient[K] extends (req: infer Req, md: grpc.Metadata, opts: Partial<grpc.CallOptions>, cb: (err: grpc.ServiceError | null, res?: infer Res) => void) => grpc.ClientUnaryCall
    ? (req: Req) => Promise<Res>
    : never;
};

export function promisify(client: ControlClient): Rpc {
  return new Proxy({} as Rpc, {
    get: (_target, method: string) => (request: unknown) =>
      new Promise((resolve, reject) => {
        (client as unknown as Record<string, Function>)[method]!.call(client, request, new grpc.Metadata(), { deadline: Date.now() + 60_000 }, (err: grpc.ServiceError | null, res: unknown) => {
          if (!err) return resolve(res);
          const e = err as unknown as ControlError;
          e.reason = String(err.metadata?.get(REASON_KEY)[0] ?? '');
          reject(e);
        });
      }),
  });
}

export interface ControlAgent {
  stateDir: string;
  socket: string;
  agent: AgentProcess;
  client: ControlClient;
  rpc: Rpc;
  args: string[];
}

/** Clean up whatever an agent in `stateDir` left: mounts under it, loop devices over its files. */
export async function cleanStateDir(stateDir: string): Promise<void> {
  for (const m of (await readMountInfo()).filter((m) => m.target.startsWith(stateDir + '/')).reverse()) {
    await run('umount', ['-l', m.target]).catch(() => {});
  }
  const devices = path.join(stateDir, 'devices');
  for (const file of await readdir(devices).catch(() => [] as string[])) {
    const loop = await findLoopFor(path.join(devices, file)).catch(() => undefined);
    if (loop) await run('losetup', ['-d', loop]).catch(() => {});
  }
}

/** Start an agent (2 embedded 320 MiB bricks unless told) with `allow` extra devices. */
export async function startControlAgent(t: Test, options: { allow?: string[]; stateDir?: string; embeddedCount?: number } = {}): Promise<ControlAgent> {
  const stateDir = options.stateDir ?? (await tempDir(t, 'brickd-ctl-'));
  const socket = path.join(stateDir, 'control.sock');
  const args = [
    '--state-dir', stateDir,
    '--embedded',
    '--embedded-count', String(options.embeddedCount ?? 2),
    '--embedded-size-bytes', '320MiB',
    '--control-socket', socket,
    '--log-level', 'debug',
    ...(options.allow ?? []).flatMap((d) => ['--allow', d]),
  ];
  if (!options.stateDir) t.teardown(() => cleanStateDir(stateDir));
  const agent = startAgent(t, args);
  await agent.waitFor((l) => l.msg === 'agent running');
  const client = controlClient(socket);
  t.teardown(() => client.close());
  return { stateDir, socket, agent, client, rpc: promisify(client), args };
}

/** Expect a call to fail with this gRPC status and brickd reason. */
export async function expectCallError(t: Test, call: Promise<unknown>, status: grpc.status, reason: string, name?: string): Promise<ControlError | undefined> {
  try {
    await call;
  } catch (err) {
    const e = err as ControlError;
    t.equal(e.code, status, `${name ?? reason}: status ${grpc.status[status]}`);
    t.equal(e.reason, reason, `${name ?? reason}: reason`);
    t.notMatch(e.message, /\n\s+at /, `${name ?? reason}: no stack in the message`);
    return e;
  }
  t.fail(`${name ?? reason}: the call succeeded`);
  return undefined;
}
