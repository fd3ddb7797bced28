// The agent's HTTP endpoint: /metrics (Prometheus), /healthz (liveness), /readyz (readiness).
//
// It listens on `metricsAddress`, loopback by default: in the DaemonSet the pod shares the
// host's network, so the kubelet probes 127.0.0.1 and nothing else on the network sees it.
// It serves from early in start-up, so that liveness holds while a long recovery (log
// replay) runs, and closes last on shutdown, so readiness reports "stopping" meanwhile.
//
//   /healthz  200 while the process answers at all.
//   /readyz   200 only when the agent is running, every brick it can mount is mounted, and
//             the control socket answers a call; otherwise 503 with the reasons as JSON.
//             A brick that no restart can mount (missing device, another node's, a newer
//             format, an interrupted adoption) is reported but does not make the node
//             unready: it needs an operator, and an unready pod would only stall rollouts.
//
// Bounded: GET and HEAD only, no request body read, a few dozen connections at most, short
// timeouts. Readiness changes are logged once each, not per probe.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { BrickState, BrickStatus } from '../brick/manager.js';
import { BrickdError, isSystemError } from '../errors.js';
import type { Logger } from '../log.js';
import type { AgentState } from './agent.js';
import type { ListenAddress } from './config.js';
import type { AgentMetrics } from './metrics.js';

/** Brick states the agent itself could turn into `mounted`: these make the node unready. */
const SHOULD_BE_MOUNTED: ReadonlySet<BrickState> = new Set(['unmounted', 'error']);

const MAX_CONNECTIONS = 64;
const CONTROL_PROBE_TIMEOUT_MS = 2000;

export interface HealthSource {
  state(): AgentState;
  /** The brick table, once start-up has built it. */
  bricks(): BrickStatus[] | undefined;
  /** Resolves if the control socket answers a call within `timeoutMs`. */
  probeControl(timeoutMs: number): Promise<void>;
}

export interface Readiness {
  ready: boolean;
  state: AgentState;
  reasons: string[];
  /** Bricks per state, e.g. { mounted: 3, missing: 1 }. */
  bricks: Partial<Record<BrickState, number>>;
}

export async function evaluateReadiness(source: HealthSource, controlTimeoutMs = CONTROL_PROBE_TIMEOUT_MS): Promise<Readiness> {
  const state = source.state();
  const reasons: string[] = [];
  const bricks: Partial<Record<BrickState, number>> = {};
  if (state !== 'running') reasons.push(`agent is ${state}`);
  for (const b of source.bricks() ?? []) {
    bricks[b.state] = (bricks[b.state] ?? 0) + 1;
    if (SHOULD_BE_MOUNTED.has(b.state)) reasons.push(`brick ${b.brickId} is ${b.state}${b.reason ? `: ${b.reason}` : ''}`);
  }
  if (state === 'running') {
    try {
      await source.probeControl(controlTimeoutMs);
    } catch (err) {
      reasons.push(`control socket does not answer: ${(err as Error).message}`);
    }
  }
  return { ready: reasons.length === 0, state, reasons, bricks };
}

export interface AgentHttpOptions {
  address: ListenAddress;
  metrics: AgentMetrics;
  health: HealthSource;
  log: Logger;
}

export class AgentHttpServer {
  private readonly server: http.Server;
  private lastReady: boolean | undefined;

  constructor(private readonly options: AgentHttpOptions) {
    this.server = http.createServer({ requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 }, (req, res) => {
      void this.handle(req, res);
    });
    this.server.maxConnections = MAX_CONNECTIONS;
  }

  /** The address actually bound (after listen). */
  get address(): AddressInfo | undefined {
    const a = this.server.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  async listen(): Promise<void> {
    const { host, port } = this.options.address;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        this.server.off('listening', onListening);
        reject(
          isSystemError(err, 'EADDRINUSE') || isSystemError(err, 'EADDRNOTAVAIL') || isSystemError(err, 'EACCES')
            ? new BrickdError('METRICS_ADDRESS_UNAVAILABLE', `cannot listen on ${host}:${port} for /metrics, /healthz and /readyz: ${err.message}`, { host, port }, err)
            : err,
        );
      };
      const onListening = () => {
        this.server.off('error', onError);
        resolve();
      };
      this.server.once('error', onError);
      this.server.once('listening', onListening);
      this.server.listen({ host, port, exclusive: true });
    });
    this.options.log.info({ address: `${host}:${port}` }, 'http endpoint serving');
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      // Idle keep-alive connections (a scraper's) would hold close() open until they time out.
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { allow: 'GET, HEAD' });
        return;
      }
      switch (url.pathname) {
        case '/healthz':
          send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
          return;
        case '/readyz': {
          const readiness = await evaluateReadiness(this.options.health);
          this.noteReadiness(readiness);
          send(res, readiness.ready ? 200 : 503, 'application/json', JSON.stringify(readiness) + '\n');
          return;
        }
        case '/metrics': {
          const { contentType, body } = await this.options.metrics.render();
          send(res, 200, contentType, body);
          return;
        }
        default:
          send(res, 404, 'text/plain; charset=utf-8', 'not found: try /metrics, /healthz or /readyz\n');
      }
    } catch (err) {
      this.options.log.error({ err, path: url.pathname }, 'http request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `internal error: ${(err as Error).message}\n`);
      else res.destroy();
    }
  }

  /** Log a change of readiness once, with its reasons. */
  private noteReadiness(readiness: Readiness): void {
    if (readiness.ready === this.lastReady) return;
    this.lastReady = readiness.ready;
    if (readiness.ready) this.options.log.info({ bricks: readiness.bricks }, 'node ready');
    else this.options.log.warn({ reasons: readiness.reasons, bricks: readiness.bricks }, 'node not ready');
  }
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
