// Agent configuration: defaults, then a JSON file, then BRICKD_* environment variables,
// then command-line flags (each later source wins). Every value is validated here, with a
// message naming the key and where it came from; nothing downstream re-checks types.
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { BrickdError } from '../errors.js';
import { validateAllowlist } from '../brick/allowlist.js';
import { MAX_KEYS } from '../store/activity.js';

export type EmbeddedMode = 'auto' | 'on' | 'off';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface AgentConfig {
  /** Where the agent keeps its node id, mount points and (embedded) loop-file devices. */
  stateDir: string;
  /** Failure-domain label reported to orchestrators. */
  zone: string;
  /** Globs of device paths the agent may open and adopt (see allowlist.ts). Empty = none. */
  allow: string[];
  /** Devices smaller than this are not eligible (XFS needs 300 MiB). */
  minSizeBytes: number;
  fsType: 'xfs' | 'ext4';
  /** auto: embedded loop-file devices when `allow` is empty. */
  embedded: EmbeddedMode;
  embeddedCount: number;
  embeddedSizeBytes: number;
  /** Unmount bricks and detach embedded loop devices on shutdown (off: bricks stay mounted). */
  unmountOnExit: boolean;
  logLevel: LogLevel;
  controlSocket: string;
  /**
   * Group (name or numeric gid) allowed to use the control socket besides root: the socket
   * becomes mode 0660 owned by it. Empty: mode 0600, root only.
   */
  controlSocketGroup: string;
  /**
   * host:port of an optional TCP listener for remote orchestrators, or "off". Mutual TLS
   * only: the agent presents controlTlsCert/Key and accepts clients whose certificate is
   * signed by controlTlsCa.
   */
  controlTcpAddress: string;
  controlTlsCert: string;
  controlTlsKey: string;
  controlTlsCa: string;
  /**
   * host:port of the HTTP endpoint serving /metrics, /healthz and /readyz, or "off".
   * Loopback by default: in the DaemonSet (host network) the kubelet probes it there.
   */
  metricsAddress: string;
  /**
   * host:port where this agent serves its replicas to primaries, or "off" (no replication:
   * only volumes without peers). In the DaemonSet it is the node's address.
   */
  replicationAddress: string;
  /** The address peers should dial, if it differs from replicationAddress (e.g. 0.0.0.0 there). Empty: replicationAddress. */
  advertiseAddress: string;
  /** Names the cluster in every replication handshake; peers of another cluster are refused. */
  clusterId: string;
  /** File holding the cluster's shared replication secret (at least 16 bytes); required when replication is on. */
  replicationSecretFile: string;
  /** How long a write waits for its write quorum before it fails with QUORUM_LOST (ms). */
  quorumTimeoutMs: number;
  /**
   * Resync throttle of primaries whose volume sets none: data bytes per second sent to each
   * replica being resynced (0: unthrottled). A volume's own rate (CreateVolume/UpdateVolume)
   * wins.
   */
  resyncRateBytesPerSec: number;
  /**
   * Extents (4 MiB parts of files) each replica's activity log keeps named once their writes
   * are durable (DRBD's al-extents): after an unclean stop, the store re-sums and the
   * replicas compare at most this much recently written data besides what was in flight.
   * More: a restart after a crash compares more; fewer: a writer moving over more than this
   * at once logs more often. 1..4096.
   */
  activityLogExtents: number;
}

export const DEFAULT_CONFIG: AgentConfig = {
  stateDir: '/var/lib/brickd',
  zone: 'default',
  allow: [],
  minSizeBytes: 300 * 2 ** 20,
  fsType: 'xfs',
  embedded: 'auto',
  embeddedCount: 3,
  embeddedSizeBytes: 2 ** 30,
  unmountOnExit: false,
  logLevel: 'info',
  controlSocket: '/run/brickd/control.sock',
  controlSocketGroup: '',
  controlTcpAddress: 'off',
  controlTlsCert: '',
  controlTlsKey: '',
  controlTlsCa: '',
  metricsAddress: '127.0.0.1:9464',
  replicationAddress: 'off',
  advertiseAddress: '',
  clusterId: 'brickd',
  replicationSecretFile: '',
  quorumTimeoutMs: 10_000,
  resyncRateBytesPerSec: 100 * 2 ** 20,
  activityLogExtents: 1024,
};

type Key = keyof AgentConfig;

const SIZE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, kib: 2 ** 10, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30, t: 2 ** 40, tib: 2 ** 40 };

function invalid(key: string, source: string, why: string): BrickdError {
  return new BrickdError('CONFIG_INVALID', `${key} (from ${source}): ${why}`, { key, source });
}

/** Parse one raw value (a string from env/flags, or any JSON value from the file) for `key`. */
function parseValue(key: Key, raw: unknown, source: string): AgentConfig[Key] {
  const str = (): string => {
    if (typeof raw !== 'string' || raw.length === 0) throw invalid(key, source, 'expected a non-empty string');
    return raw;
  };
  const size = (min: number): number => {
    let n: number;
    if (typeof raw === 'number') n = raw;
    else {
      const m = /^(\d+)\s*([a-z]*)$/i.exec(String(raw).trim());
      const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
      if (!m || unit === undefined) throw invalid(key, source, `expected a size like 1073741824, 512MiB or 1GiB, got ${JSON.stringify(raw)}`);
      n = Number(m[1]) * unit;
    }
    if (!Number.isSafeInteger(n) || n < min) throw invalid(key, source, `expected a whole number of bytes ≥ ${min}, got ${JSON.stringify(raw)}`);
    return n;
  };
  const oneOf = <T extends string>(values: readonly T[]): T => {
    if (!values.includes(raw as T)) throw invalid(key, source, `expected one of ${values.join(', ')}, got ${JSON.stringify(raw)}`);
    return raw as T;
  };
  const absolutePath = (): string => {
    const p = str();
    if (!path.isAbsolute(p)) throw invalid(key, source, `expected an absolute path, got ${JSON.stringify(p)}`);
    return path.normalize(p);
  };
  const address = (allowOff: boolean): string => {
    const a = str();
    if (allowOff && a === 'off') return a;
    if (!parseListenAddress(a)) {
      throw invalid(key, source, `expected ${allowOff ? '"off" or ' : ''}host:port with an IP address and a port 1-65535 (127.0.0.1:9464, [::1]:9464), got ${JSON.stringify(a)}`);
    }
    return a;
  };
  const bool = (): boolean => {
    if (typeof raw === 'boolean') return raw;
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw invalid(key, source, `expected true or false, got ${JSON.stringify(raw)}`);
  };
  switch (key) {
    case 'controlTlsCert':
    case 'controlTlsKey':
    case 'controlTlsCa':
      if (raw === '') return raw;
      return absolutePath();
    case 'stateDir':
    case 'replicationSecretFile':
    case 'controlSocket':
      return absolutePath();
    case 'zone': {
      const z = str();
      if (!/^[A-Za-z0-9._-]{1,63}$/.test(z)) throw invalid(key, source, 'expected 1-63 characters of A-Z a-z 0-9 . _ -');
      return z;
    }
    case 'allow': {
      const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : undefined;
      if (!list) throw invalid(key, source, 'expected a list of /dev/... globs');
      try {
        validateAllowlist(list);
      } catch (err) {
        throw invalid(key, source, (err as Error).message);
      }
      return list;
    }
    case 'minSizeBytes':
    case 'resyncRateBytesPerSec':
      return size(0);
    case 'embeddedSizeBytes':
      return size(64 * 2 ** 20);
    case 'embeddedCount': {
      const n = typeof raw === 'number' ? raw : Number(raw);
      if (!Number.isInteger(n) || n < 1 || n > 16) throw invalid(key, source, `expected an integer 1..16, got ${JSON.stringify(raw)}`);
      return n;
    }
    case 'fsType':
      return oneOf(['xfs', 'ext4'] as const);
    case 'embedded':
      return oneOf(['auto', 'on', 'off'] as const);
    case 'logLevel':
      return oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const);
    case 'unmountOnExit':
      return bool();
    case 'controlSocketGroup': {
      if (raw === '') return raw;
      const g = typeof raw === 'number' ? String(raw) : str();
      if (!/^(\d{1,10}|[a-z_][a-z0-9_-]{0,31})$/.test(g)) throw invalid(key, source, `expected a group name or a numeric gid, got ${JSON.stringify(raw)}`);
      return g;
    }
    case 'clusterId': {
      const id = str();
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id)) throw invalid(key, source, 'expected 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit');
      return id;
    }
    case 'activityLogExtents': {
      const n = typeof raw === 'number' ? raw : Number(raw);
      if (!Number.isInteger(n) || n < 1 || n > MAX_KEYS) throw invalid(key, source, `expected an integer 1..${MAX_KEYS}, got ${JSON.stringify(raw)}`);
      return n;
    }
    case 'quorumTimeoutMs': {
      const n = typeof raw === 'number' ? raw : Number(raw);
      if (!Number.isInteger(n) || n < 100 || n > 3_600_000) throw invalid(key, source, `expected milliseconds 100..3600000, got ${JSON.stringify(raw)}`);
      return n;
    }
    case 'advertiseAddress':
      if (raw === '') return raw;
      return address(false);
    case 'replicationAddress':
    case 'controlTcpAddress':
    case 'metricsAddress':
      return address(true);
  }
}

export interface ListenAddress {
  host: string;
  port: number;
}

/** "127.0.0.1:9464" or "[::1]:9464" → { host, port }; undefined if it is not one. IP literals only: a name could resolve to anything. */
export function parseListenAddress(address: string): ListenAddress | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  if (!m) return undefined;
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  const family = net.isIP(host);
  if (family === 0 || (m[1] !== undefined) !== (family === 6) || port < 1 || port > 65535) return undefined;
  return { host, port };
}

/** Environment variable and flag name of each key: stateDir ↔ BRICKD_STATE_DIR ↔ --state-dir. */
const KEYS = Object.keys(DEFAULT_CONFIG) as Key[];
const envName = (key: Key) => 'BRICKD_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase();
const flagName = (key: Key) => '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());

export interface ConfigSources {
  /** Path of a JSON config file (also BRICKD_CONFIG or --config). */
  file?: string;
  env?: NodeJS.ProcessEnv;
  argv?: readonly string[];
}

function set(config: AgentConfig, key: Key, value: AgentConfig[Key]): void {
  (config as unknown as Record<Key, unknown>)[key] = value;
}

/** Parse `--key value`, `--key=value`, `--flag` (booleans) and `--allow` (repeatable). */
export function parseFlags(argv: readonly string[]): { values: Partial<Record<Key, unknown>>; config?: string } {
  const values: Partial<Record<Key, unknown>> = {};
  let config: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const inline = eq > 0 ? arg.slice(eq + 1) : undefined;
    const next = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw invalid(name, 'flags', 'missing value');
      return v;
    };
    if (name === '--config') {
      config = next();
      continue;
    }
    if (name === '--embedded' && inline === undefined) {
      values.embedded = 'on';
      continue;
    }
    if (name === '--no-embedded') {
      values.embedded = 'off';
      continue;
    }
    const key = KEYS.find((k) => flagName(k) === name);
    if (!key) throw invalid(name, 'flags', `unknown flag; known: --config ${KEYS.map(flagName).join(' ')} --no-embedded`);
    if (typeof DEFAULT_CONFIG[key] === 'boolean' && inline === undefined) values[key] = true;
    else if (key === 'allow') values.allow = [...((values.allow as string[]) ?? []), next()];
    else values[key] = next();
  }
  return config === undefined ? { values } : { values, config };
}

export async function loadConfig(sources: ConfigSources = {}): Promise<AgentConfig> {
  const env = sources.env ?? {};
  const flags = parseFlags(sources.argv ?? []);
  const config: AgentConfig = { ...DEFAULT_CONFIG, allow: [] };

  const file = flags.config ?? sources.file ?? env.BRICKD_CONFIG;
  if (file) {
    let json: unknown;
    try {
      json = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      throw new BrickdError('CONFIG_INVALID', `cannot read config file ${file}: ${(err as Error).message}`, { file }, err);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw invalid('(file)', file, 'expected a JSON object');
    for (const [key, raw] of Object.entries(json)) {
      if (!KEYS.includes(key as Key)) throw invalid(key, file, `unknown key; known: ${KEYS.join(', ')}`);
      set(config, key as Key, parseValue(key as Key, raw, file));
    }
  }
  for (const key of KEYS) {
    const raw = env[envName(key)];
    if (raw !== undefined) set(config, key, parseValue(key, raw, envName(key)));
  }
  for (const [key, raw] of Object.entries(flags.values)) set(config, key as Key, parseValue(key as Key, raw, flagName(key as Key)));
  return config;
}

export function embeddedEnabled(config: AgentConfig): boolean {
  return config.embedded === 'on' || (config.embedded === 'auto' && config.allow.length === 0);
}
