// The provisioner's topology file: which agents make up a cluster, their failure zones and
// the devices each may turn into bricks. JSON shaped like Heketi's topology.json so that an
// existing Heketi topology needs few edits:
//
//   { "clusters": [ { "nodes": [ {
//       "node": { "hostnames": { "manage": ["unix:///run/brickd/control.sock"], "storage": ["10.0.0.1"] },
//                 "zone": 1 },
//       "devices": ["/dev/sdb", { "name": "/dev/sdc", "destroydata": false }] } ] } ] }
//
// What the Heketi fields mean here: `hostnames.manage` is the node's brickd control endpoint
// (exactly one: `unix:///path` or an absolute socket path); `hostnames.storage` the addresses
// its peers reach it on; `zone` its failure domain (an integer ≥ 1 as in Heketi, or a name);
// `destroydata: true` lets brickd erase signatures on that device (AdoptDevice force).
// brickd additions, all optional: `node.name` (how brickctl names the node; default: the
// manage endpoint), `node.replication` (host:port of the replication endpoint; default
// storage[0]:7400), `node.tags` and device `tags` (kept in the brick manifest), cluster `name`.
//
// Validation is complete and strict: every error names the JSON path of the bad value
// (clusters[0].nodes[2].node.zone) and what was expected; unknown keys are refused, since a
// misspelt "destroydata" must not silently mean false.
import { readFile } from 'node:fs/promises';

export const DEFAULT_REPLICATION_PORT = 7400;

export interface TopologyDevice {
  /** The device path as the file gives it (/dev/sdb, /dev/disk/by-id/...). */
  name: string;
  /** Heketi's destroydata: adopt with force (erase existing signatures). */
  destroyData: boolean;
  tags: Record<string, string>;
}

export interface TopologyNode {
  /** How brickctl names the node: node.name, else the manage endpoint. */
  name: string;
  /** The control endpoint, always as a unix:///absolute/path URI. */
  manage: string;
  storage: string[];
  /** The failure domain, as a string ("1" for Heketi's zone 1). */
  zone: string;
  /** host:port of the node's replication endpoint, given to its peers. */
  replication: string;
  tags: Record<string, string>;
  devices: TopologyDevice[];
  /** Where it is in the file, for messages: clusters[0].nodes[1]. */
  where: string;
}

export interface TopologyCluster {
  /** cluster.name, else its index as a string. */
  name: string;
  nodes: TopologyNode[];
  where: string;
}

export interface Topology {
  clusters: TopologyCluster[];
}

/** A topology file that cannot be used; `where` is the JSON path of the bad value. */
export class TopologyError extends Error {
  readonly code = 'TOPOLOGY_INVALID';
  constructor(
    readonly where: string,
    readonly why: string,
    readonly source = 'topology',
  ) {
    super(`${source}: ${where ? `${where}: ` : ''}${why}`);
    this.name = 'TopologyError';
  }
}

type Json = unknown;

const ZONE_NAME = /^[A-Za-z0-9._-]{1,63}$/;
const TAG_KEY = /^[A-Za-z0-9._\/-]{1,63}$/;

const describe = (v: Json) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : JSON.stringify(v));

class Checker {
  constructor(private readonly source: string) {}

  fail(where: string, why: string): never {
    throw new TopologyError(where, why, this.source);
  }

  object(v: Json, where: string, known: readonly string[], required: readonly string[]): Record<string, Json> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(where, `expected an object, got ${describe(v)}`);
    const o = v as Record<string, Json>;
    for (const key of Object.keys(o)) {
      if (!known.includes(key)) this.fail(where, `unknown key ${JSON.stringify(key)}; known keys: ${known.join(', ')}`);
    }
    for (const key of required) {
      if (o[key] === undefined) this.fail(where, `${JSON.stringify(key)} is required`);
    }
    return o;
  }

  array(v: Json, where: string, min: number): Json[] {
    if (!Array.isArray(v)) this.fail(where, `expected an array, got ${describe(v)}`);
    if (v.length < min) this.fail(where, `expected at least ${min} entr${min === 1 ? 'y' : 'ies'}, got none`);
    return v;
  }

  string(v: Json, where: string): string {
    if (typeof v !== 'string' || v.trim() === '') this.fail(where, `expected a non-empty string, got ${describe(v)}`);
    if (v.includes('\0') || v.length > 4096) this.fail(where, 'not a valid string (NUL or longer than 4096 characters)');
    return v;
  }

  boolean(v: Json, where: string): boolean {
    if (typeof v !== 'boolean') this.fail(where, `expected true or false, got ${describe(v)}`);
    return v;
  }

  tags(v: Json, where: string): Record<string, string> {
    if (v === undefined) return {};
    const o = this.object(v, where, typeof v === 'object' && v !== null ? Object.keys(v) : [], []);
    const tags: Record<string, string> = {};
    for (const [key, value] of Object.entries(o)) {
      if (!TAG_KEY.test(key)) this.fail(`${where}.${key}`, 'tag names are 1-63 characters of A-Z a-z 0-9 . _ / -');
      if (typeof value !== 'string') this.fail(`${where}.${key}`, `tag values are strings, got ${describe(value)}`);
      tags[key] = value;
    }
    return tags;
  }

  /** A control endpoint: unix:///abs/path or /abs/path → unix:///abs/path. */
  endpoint(v: Json, where: string): string {
    const s = this.string(v, where);
    const p = s.startsWith('unix://') ? s.slice('unix://'.length) : s.startsWith('unix:') ? s.slice('unix:'.length) : s;
    if (p.startsWith('/') && !p.includes('://')) return `unix://${p}`;
    if (s.includes('://') && !s.startsWith('unix:')) {
      this.fail(where, `${JSON.stringify(s)}: only Unix-socket control endpoints are supported (unix:///path or /path); brickctl does not speak TCP with mutual TLS yet`);
    }
    this.fail(where, `${JSON.stringify(s)} is not a control endpoint: expected unix:///absolute/path or /absolute/path of the agent's control socket`);
  }

  zone(v: Json, where: string): string {
    if (typeof v === 'number') {
      if (!Number.isInteger(v) || v < 1) this.fail(where, `a numeric zone is an integer ≥ 1 (as in Heketi), got ${v}`);
      return String(v);
    }
    if (typeof v === 'string' && ZONE_NAME.test(v)) return v;
    this.fail(where, `expected an integer ≥ 1 or a name of 1-63 characters A-Z a-z 0-9 . _ -, got ${describe(v)}`);
  }

  /** host:port, [v6]:port. */
  hostPort(v: Json, where: string): string {
    const s = this.string(v, where);
    const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/.exec(s);
    const port = m ? Number(m[2]) : 0;
    if (!m || port < 1 || port > 65535) this.fail(where, `expected host:port (port 1-65535), got ${JSON.stringify(s)}`);
    return s;
  }

  devicePath(v: Json, where: string): string {
    const s = this.string(v, where);
    if (!s.startsWith('/dev/') || s.split('/').includes('..')) this.fail(where, `expected a device path under /dev/, got ${JSON.stringify(s)}`);
    return s;
  }
}

function parseDevice(c: Checker, v: Json, where: string): TopologyDevice {
  if (typeof v === 'string') return { name: c.devicePath(v, where), destroyData: false, tags: {} };
  const o = c.object(v, where, ['name', 'destroydata', 'tags'], ['name']);
  return {
    name: c.devicePath(o.name, `${where}.name`),
    destroyData: o.destroydata === undefined ? false : c.boolean(o.destroydata, `${where}.destroydata`),
    tags: c.tags(o.tags, `${where}.tags`),
  };
}

function parseNode(c: Checker, v: Json, where: string): TopologyNode {
  const entry = c.object(v, where, ['node', 'devices'], ['node']);
  const nodeWhere = `${where}.node`;
  const node = c.object(entry.node, nodeWhere, ['hostnames', 'zone', 'name', 'replication', 'tags'], ['hostnames', 'zone']);
  const hostnames = c.object(node.hostnames, `${nodeWhere}.hostnames`, ['manage', 'storage'], ['manage', 'storage']);
  const manageList = c.array(hostnames.manage, `${nodeWhere}.hostnames.manage`, 1);
  if (manageList.length > 1) c.fail(`${nodeWhere}.hostnames.manage`, `expected exactly one control endpoint, got ${manageList.length}`);
  const manage = c.endpoint(manageList[0], `${nodeWhere}.hostnames.manage[0]`);
  const storage = c.array(hostnames.storage, `${nodeWhere}.hostnames.storage`, 1).map((s, i) => c.string(s, `${nodeWhere}.hostnames.storage[${i}]`));
  const zone = c.zone(node.zone, `${nodeWhere}.zone`);
  const replication =
    node.replication === undefined
      ? `${storage[0]!.includes(':') && !storage[0]!.startsWith('[') ? `[${storage[0]}]` : storage[0]}:${DEFAULT_REPLICATION_PORT}`
      : c.hostPort(node.replication, `${nodeWhere}.replication`);
  const name = node.name === undefined ? manage : c.string(node.name, `${nodeWhere}.name`);
  const devicesRaw = entry.devices === undefined ? [] : c.array(entry.devices, `${where}.devices`, 0);
  const devices = devicesRaw.map((d, i) => parseDevice(c, d, `${where}.devices[${i}]`));
  const seen = new Map<string, number>();
  devices.forEach((d, i) => {
    const first = seen.get(d.name);
    if (first !== undefined) c.fail(`${where}.devices[${i}]`, `${d.name} is listed twice (also devices[${first}])`);
    seen.set(d.name, i);
  });
  return { name, manage, storage, zone, replication, tags: c.tags(node.tags, `${nodeWhere}.tags`), devices, where };
}

/**
 * Where JSON.parse fails in `text` (V8 does not always say): the shortest failing prefix.
 * A prefix that stops inside valid JSON fails only at its very end (or parses), one that
 * holds the bad character fails before its end, so the property is monotone and a binary
 * search finds the first bad character.
 */
function jsonErrorOffset(text: string): number {
  const failsInside = (length: number): boolean => {
    try {
      JSON.parse(text.slice(0, length));
      return false;
    } catch (err) {
      const message = (err as Error).message;
      if (message.startsWith('Unexpected end of JSON input')) return false;
      const at = /at position (\d+)/.exec(message);
      return at ? Number(at[1]) < length : true;
    }
  };
  let low = 1;
  let high = text.length;
  if (!failsInside(high)) return text.length;
  while (low < high) {
    const mid = (low + high) >> 1;
    if (failsInside(mid)) high = mid;
    else low = mid + 1;
  }
  return low - 1;
}

/** Parse and validate a topology document; `source` (the file name) prefixes error messages. */
export function parseTopology(text: string, source = 'topology'): Topology {
  const c = new Checker(source);
  let doc: Json;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    const offset = jsonErrorOffset(text);
    const before = text.slice(0, offset);
    const where = `line ${before.split('\n').length}, column ${offset - before.lastIndexOf('\n')}`;
    // V8 quotes the text around the mistake ('Unexpected token '}', ..."x": } ]" is not valid JSON'): the place is enough.
    const why = (err as Error).message.replace(/, (?:\.\.\.)?".*$/s, '').replace(/ in JSON at position \d+.*$/s, '');
    throw new TopologyError(where, `not valid JSON (${why}); the topology is a JSON file shaped like Heketi's topology.json`, source);
  }
  const top = c.object(doc, '(top level)', ['clusters'], ['clusters']);
  const clusters = c.array(top.clusters, 'clusters', 1).map((cv, ci): TopologyCluster => {
    const where = `clusters[${ci}]`;
    const cluster = c.object(cv, where, ['nodes', 'name'], ['nodes']);
    const nodes = c.array(cluster.nodes, `${where}.nodes`, 1).map((nv, ni) => parseNode(c, nv, `${where}.nodes[${ni}]`));
    return { name: cluster.name === undefined ? String(ci) : c.string(cluster.name, `${where}.name`), nodes, where };
  });

  // Across the whole file: one agent is one node, once.
  const unique = (label: string, key: (n: TopologyNode) => string) => {
    const seen = new Map<string, TopologyNode>();
    for (const node of clusters.flatMap((cl) => cl.nodes)) {
      const k = key(node);
      const first = seen.get(k);
      if (first) c.fail(node.where, `${label} ${JSON.stringify(k)} is also used by ${first.where}; each node appears once`);
      seen.set(k, node);
    }
  };
  unique('control endpoint', (n) => n.manage);
  unique('node name', (n) => n.name);
  unique('replication address', (n) => n.replication);
  const names = new Map<string, string>();
  for (const cl of clusters) {
    const first = names.get(cl.name);
    if (first) c.fail(cl.where, `cluster name ${JSON.stringify(cl.name)} is also used by ${first}`);
    names.set(cl.name, cl.where);
  }
  return { clusters };
}

/** Read and validate a topology file. A file that cannot be read is a TopologyError too. */
export async function loadTopology(file: string): Promise<Topology> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new TopologyError('', `cannot read the topology file: ${(err as Error).message}`, file);
  }
  return parseTopology(text, file);
}

/** The cluster a command works on: by name or index, or the only one. */
export function selectCluster(topology: Topology, which: string | undefined): TopologyCluster {
  if (which === undefined) {
    if (topology.clusters.length === 1) return topology.clusters[0]!;
    throw new TopologyError('clusters', `the file has ${topology.clusters.length} clusters (${topology.clusters.map((c) => c.name).join(', ')}); choose one with --cluster NAME|INDEX`);
  }
  const found = topology.clusters.find((c) => c.name === which) ?? (/^\d+$/.test(which) ? topology.clusters[Number(which)] : undefined);
  if (!found) throw new TopologyError('clusters', `no cluster ${JSON.stringify(which)}; the file has ${topology.clusters.map((c) => c.name).join(', ')}`);
  return found;
}
