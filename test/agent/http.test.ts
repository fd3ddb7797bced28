// The agent's HTTP endpoint: /healthz, /readyz and /metrics. First on a real agent process
// over embedded loop-file bricks, driven through the control API; then the server alone with
// a scripted health source, for every readiness answer a live agent cannot be made to give
// on demand (starting, a brick that failed to mount, a control socket that does not answer).
import net from 'node:net';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { parseListenAddress } from '../../src/agent/config.js';
import { AgentHttpServer, evaluateReadiness, type HealthSource } from '../../src/agent/http.js';
import type { AgentState } from '../../src/agent/agent.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import type { BrickStatus } from '../../src/brick/manager.js';
import { EventBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { controlClient, pb } from '../../src/wire/control.js';
import { cleanupAgentState, startAgent } from '../helpers/agent.js';
import { freePort, request, sample } from '../helpers/http.js';
import { needsRoot, tempDir } from '../helpers/loop.js';

const running = (l: Record<string, unknown>) => l.msg === 'agent running';

function unary<Res>(invoke: (callback: (err: grpc.ServiceError | null, response?: Res) => void) => unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    invoke((err, response) => (err ? reject(err) : resolve(response!)));
  });
}

t.test('a running agent: healthz, readyz, and metrics that follow the control API', { skip: needsRoot() }, async (t) => {
  const stateDir = await tempDir(t, 'brickd-http-');
  const socket = path.join(stateDir, 'control.sock');
  const port = await freePort();
  // Whatever happens, leave no mount or loop device of this test behind.
  cleanupAgentState(t, stateDir);
  const agent = startAgent(t, [
    '--state-dir', stateDir,
    '--embedded', '--embedded-count', '2', '--embedded-size-bytes', '320MiB',
    '--control-socket', socket,
    '--metrics-address', `127.0.0.1:${port}`,
    '--unmount-on-exit',
  ]);
  await agent.waitFor((l) => l.msg === 'http endpoint serving');
  const early = await request(port, '/healthz');
  t.equal(early.status, 200, '/healthz answers from early in start-up');
  t.equal(early.body, 'ok\n');

  const up = await agent.waitFor(running);
  const nodeId = up.nodeId as string;
  const bricks = up.bricks as Array<{ brickId: string; device: string }>;
  t.equal(bricks.length, 2);

  const ready = await request(port, '/readyz');
  t.equal(ready.status, 200, '/readyz 200 once running');
  t.same(JSON.parse(ready.body), { ready: true, state: 'running', reasons: [], bricks: { mounted: 2 } });

  let metrics = await request(port, '/metrics');
  t.equal(metrics.status, 200);
  t.match(metrics.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  let text = metrics.body;
  t.equal(sample(text, 'brickd_agent_info', { node: nodeId, zone: 'default' }), 1, 'agent info names the node');
  for (const b of bricks) {
    t.equal(sample(text, 'brickd_brick_state', { brick: b.brickId, state: 'mounted' }), 1, `brick ${b.brickId} mounted`);
    t.equal(sample(text, 'brickd_brick_state', { brick: b.brickId, state: 'missing' }), 0);
    const size = sample(text, 'brickd_brick_bytes', { brick: b.brickId, kind: 'size' }) ?? 0;
    const used = sample(text, 'brickd_brick_bytes', { brick: b.brickId, kind: 'used' }) ?? -1;
    t.ok(size > 200 * 2 ** 20 && size <= 320 * 2 ** 20, `brick size ${size}`);
    t.ok(used > 0 && used < size, `brick used ${used}`);
    // The embedded devices are allowlisted and are bricks now, so not adoptable.
    t.equal(sample(text, 'brickd_device_eligible', { device: b.device, reason: 'MOUNTED' }), 0, `${b.device} reported not eligible`);
  }
  t.equal(sample(text, 'brickd_volume_used_bytes'), undefined, 'no volume series before a volume exists');
  t.ok((sample(text, 'process_resident_memory_bytes') ?? 0) > 0, 'process metrics');
  t.ok(sample(text, 'nodejs_eventloop_lag_seconds') !== undefined, 'event loop metrics');

  const client = controlClient(socket);
  t.teardown(() => client.close());
  const created = await unary<pb.IVolume>((cb) =>
    client.createVolume(pb.CreateVolumeRequest.create({ requestId: 'r1', volumeId: 'vol1', sizeLimitBytes: 64 * 2 ** 20 }), new grpc.Metadata(), {}, cb),
  );
  t.equal(created.volumeId, 'vol1');
  text = (await request(port, '/metrics')).body;
  const volume = { volume: 'vol1' };
  t.equal(sample(text, 'brickd_volume_used_bytes', volume), 0, 'a new volume holds no bytes');
  t.equal(sample(text, 'brickd_volume_size_limit_bytes', volume), 64 * 2 ** 20);
  t.equal(sample(text, 'brickd_volume_durable_seq', volume), 0);
  t.equal(sample(text, 'brickd_checksum_errors_total', volume), 0);
  t.equal(sample(text, 'brickd_checksum_repaired_total', volume), 0);
  t.equal(sample(text, 'brickd_scrub_bytes_scanned', volume), 0);
  t.equal(sample(text, 'brickd_scrub_last_completion_timestamp_seconds', volume), 0, 'never scrubbed: 0');

  const before = Date.now() / 1000;
  const op = await unary<pb.IOperation>((cb) =>
    client.startScrub(pb.StartScrubRequest.create({ requestId: 'r2', volumeId: 'vol1' }), new grpc.Metadata(), {}, cb),
  );
  let state = op.state;
  for (let i = 0; state === 'running' && i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = await unary<pb.IOperation>((cb) =>
      client.getOperation(pb.GetOperationRequest.create({ operationId: op.operationId! }), new grpc.Metadata(), {}, cb),
    );
    state = now.state;
  }
  t.equal(state, 'succeeded', 'the scrub operation finished');
  text = (await request(port, '/metrics')).body;
  const completed = sample(text, 'brickd_scrub_last_completion_timestamp_seconds', volume) ?? 0;
  t.ok(completed >= Math.floor(before) && completed <= Date.now() / 1000 + 1, `scrub completion time ${completed} is now`);
  t.equal(sample(text, 'brickd_scrub_bytes_scanned', volume), 0, 'an empty volume scans no bytes');
  t.equal((await request(port, '/readyz')).status, 200, 'still ready with a volume');

  agent.child.kill('SIGTERM');
  t.equal(await agent.exited, 0, 'clean exit');
  await t.rejects(request(port, '/healthz'), { code: 'ECONNREFUSED' }, 'the endpoint is closed on shutdown');
});

t.test('an address in use stops the agent before it touches a device', { skip: needsRoot() }, async (t) => {
  const stateDir = await tempDir(t, 'brickd-http-busy-');
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const { port } = blocker.address() as net.AddressInfo;
  const agent = startAgent(t, ['--state-dir', path.join(stateDir, 'state'), '--embedded', '--control-socket', path.join(stateDir, 'control.sock'), '--metrics-address', `127.0.0.1:${port}`]);
  t.equal(await agent.exited, 1);
  const failed = agent.lines.find((l) => l.msg === 'start failed') as { err?: { message?: string } } | undefined;
  t.match(failed?.err?.message, /METRICS_ADDRESS_UNAVAILABLE: cannot listen on 127\.0\.0\.1:\d+/);
  t.same(await readdir(stateDir), [], 'no state dir, no devices');
});

// ── the server alone, with a scripted health source ─────────────────────────────────────

function brick(brickId: string, state: BrickStatus['state'], reason = ''): BrickStatus {
  return { brickId, state, reason, mountPath: `/x/${brickId}` };
}

async function server(t: Test, health: HealthSource): Promise<number> {
  const port = await freePort();
  const metrics = new AgentMetrics({
    bricks: () => undefined,
    volumes: () => undefined,
    info: () => ({ nodeId: 'n1', version: '9.9.9', zone: 'z' }),
    events: new EventBus(),
    log: silentLogger,
  });
  const http = new AgentHttpServer({ address: parseListenAddress(`127.0.0.1:${port}`)!, metrics, health, log: silentLogger });
  await http.listen();
  t.teardown(() => http.close());
  return port;
}

function source(state: AgentState, bricks: BrickStatus[] | undefined, control: () => Promise<void> = async () => {}): HealthSource {
  return { state: () => state, bricks: () => bricks, probeControl: control };
}

t.test('readyz: 503 with reasons until the node can serve', async (t) => {
  const starting = await request(await server(t, source('starting', undefined)), '/readyz');
  t.equal(starting.status, 503);
  t.same(JSON.parse(starting.body), { ready: false, state: 'starting', reasons: ['agent is starting'], bricks: {} });

  const broken = await evaluateReadiness(source('running', [brick('b1', 'mounted'), brick('b2', 'error', 'mount: EIO'), brick('b3', 'unmounted')]));
  t.equal(broken.ready, false);
  t.same(broken.reasons, ['brick b2 is error: mount: EIO', 'brick b3 is unmounted']);
  t.same(broken.bricks, { mounted: 1, error: 1, unmounted: 1 });

  let probed = 0;
  const deaf = await evaluateReadiness(
    source('running', [brick('b1', 'mounted')], async () => {
      probed++;
      throw new Error('14 UNAVAILABLE: No connection established');
    }),
  );
  t.equal(deaf.ready, false);
  t.same(deaf.reasons, ['control socket does not answer: 14 UNAVAILABLE: No connection established']);
  t.equal(probed, 1);

  // Bricks no restart can mount need an operator; they are reported, not made a reason.
  const port = await server(t, source('running', [brick('b1', 'mounted'), brick('b2', 'missing'), brick('b3', 'foreign'), brick('b4', 'unsupported'), brick('b5', 'incomplete')]));
  const ok = await request(port, '/readyz');
  t.equal(ok.status, 200);
  t.same(JSON.parse(ok.body), { ready: true, state: 'running', reasons: [], bricks: { mounted: 1, missing: 1, foreign: 1, unsupported: 1, incomplete: 1 } });

  const stopping = await evaluateReadiness(source('stopping', [brick('b1', 'mounted')], async () => {
    t.fail('no control probe unless running');
  }));
  t.same(stopping.reasons, ['agent is stopping']);
});

t.test('healthz, metrics, and everything else', async (t) => {
  const port = await server(t, source('starting', undefined));
  t.equal((await request(port, '/healthz')).status, 200, 'alive while starting');
  const head = await request(port, '/healthz', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.body, '', 'HEAD has no body');
  const metrics = await request(port, '/metrics');
  t.equal(metrics.status, 200);
  t.equal(sample(metrics.body, 'brickd_agent_info', { node: 'n1', version: '9.9.9', zone: 'z' }), 1);
  t.match(metrics.body, /# TYPE brickd_store_mutation_seconds histogram/);
  t.match(metrics.body, /# TYPE brickd_checksum_errors_total counter/);
  t.equal((await request(port, '/nope')).status, 404);
  const post = await request(port, '/metrics', 'POST');
  t.equal(post.status, 405);
  t.equal(post.headers.allow, 'GET, HEAD');
});

t.test('a second server on the same address is METRICS_ADDRESS_UNAVAILABLE', async (t) => {
  const port = await server(t, source('running', []));
  const metrics = new AgentMetrics({ bricks: () => undefined, volumes: () => undefined, info: () => ({ nodeId: '', version: '', zone: '' }), events: new EventBus(), log: silentLogger });
  const second = new AgentHttpServer({ address: { host: '127.0.0.1', port }, metrics, health: source('running', []), log: silentLogger });
  await t.rejects(second.listen(), { code: 'METRICS_ADDRESS_UNAVAILABLE', message: /cannot listen on 127\.0\.0\.1:\d+ .*EADDRINUSE/ });
});
