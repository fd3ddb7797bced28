// The provisioner's topology file (src/cli/provision/topology.ts): Heketi-shaped files parse
// to the expected nodes, and every kind of mistake gets an error naming where it is.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { loadTopology, parseTopology, selectCluster, TopologyError } from '../../src/cli/provision/topology.js';
import { tempDir } from '../helpers/loop.js';

/** A valid three-node, three-zone file as Heketi users write it. */
const HEKETI_STYLE = `{
  "clusters": [
    {
      "nodes": [
        {
          "node": { "hostnames": { "manage": ["unix:///run/brickd/a.sock"], "storage": ["10.0.0.1"] }, "zone": 1 },
          "devices": ["/dev/sdb", { "name": "/dev/sdc", "destroydata": true }]
        },
        {
          "node": { "hostnames": { "manage": ["/run/brickd/b.sock"], "storage": ["10.0.0.2"] }, "zone": 2, "name": "node-b", "replication": "10.0.1.2:7500" },
          "devices": [{ "name": "/dev/disk/by-id/nvme-X", "tags": { "class": "ssd" } }]
        },
        {
          "node": { "hostnames": { "manage": ["unix:/run/brickd/c.sock"], "storage": ["fd00::3"] }, "zone": "rack-3", "tags": { "row": "7" } }
        }
      ]
    }
  ]
}`;

/** The valid file with one node field replaced (JSON path under clusters[0].nodes[0]). */
function withNode(patch: (node: Record<string, any>) => void): string {
  const doc = JSON.parse(HEKETI_STYLE);
  patch(doc.clusters[0].nodes[0]);
  return JSON.stringify(doc);
}

function rejects(t: Test, text: string, where: string, why: RegExp, label?: string): void {
  try {
    parseTopology(text, 'topo.json');
    t.fail(`${label ?? where}: accepted`);
  } catch (err) {
    t.type(err, TopologyError, label ?? where);
    const e = err as TopologyError;
    t.equal(e.where, where, `${label ?? where}: where`);
    t.match(e.why, why, `${label ?? where}: why`);
    t.equal(e.code, 'TOPOLOGY_INVALID');
    t.ok(e.message.startsWith(`topo.json: ${where}`), `${label ?? where}: message names the file and place`);
  }
}

t.test('a Heketi-style file parses with its defaults', async (t) => {
  const topo = parseTopology(HEKETI_STYLE);
  t.equal(topo.clusters.length, 1);
  const [a, b, c] = topo.clusters[0]!.nodes;
  t.same(
    { name: a!.name, manage: a!.manage, storage: a!.storage, zone: a!.zone, replication: a!.replication },
    { name: 'unix:///run/brickd/a.sock', manage: 'unix:///run/brickd/a.sock', storage: ['10.0.0.1'], zone: '1', replication: '10.0.0.1:7400' },
    'name defaults to the manage endpoint; replication to storage[0]:7400; numeric zone as a string',
  );
  t.same(a!.devices, [
    { name: '/dev/sdb', destroyData: false, tags: {} },
    { name: '/dev/sdc', destroyData: true, tags: {} },
  ]);
  t.equal(b!.name, 'node-b');
  t.equal(b!.manage, 'unix:///run/brickd/b.sock', 'a bare path is a Unix socket');
  t.equal(b!.replication, '10.0.1.2:7500');
  t.same(b!.devices[0]!.tags, { class: 'ssd' });
  t.equal(c!.manage, 'unix:///run/brickd/c.sock', 'unix:/path is accepted too');
  t.equal(c!.zone, 'rack-3', 'a zone may be a name');
  t.equal(c!.replication, '[fd00::3]:7400', 'an IPv6 storage address is bracketed');
  t.same(c!.devices, [], 'devices may be left out');
  t.same(c!.tags, { row: '7' });
  t.equal(c!.where, 'clusters[0].nodes[2]');
  t.equal(topo.clusters[0]!.name, '0', 'an unnamed cluster is named by its index');
});

t.test('not JSON: the line and column of the mistake', async (t) => {
  rejects(t, '{\n  "clusters": [\n    { "nodes": [ } ]\n}', 'line 3, column 18', /not valid JSON \(Unexpected token '}'\); the topology is a JSON file shaped like Heketi's topology.json/);
  rejects(t, '{ "clusters": [], }', 'line 1, column 19', /not valid JSON \(Expected double-quoted property name\)/);
  rejects(t, '', 'line 1, column 1', /not valid JSON \(Unexpected end of JSON input\)/);
  rejects(t, 'clusters:\n  - nodes: []\n', 'line 1, column 1', /not valid JSON/, 'YAML is not read');
});

t.test('structure errors name the JSON path', async (t) => {
  rejects(t, '[]', '(top level)', /expected an object, got an array/);
  rejects(t, '{}', '(top level)', /"clusters" is required/);
  rejects(t, '{"clusters": []}', 'clusters', /expected at least 1 entry, got none/);
  rejects(t, '{"clusters": [{"nodes": []}]}', 'clusters[0].nodes', /expected at least 1 entry/);
  rejects(t, '{"clusters": [{"nodes": [{"devices": []}]}]}', 'clusters[0].nodes[0]', /"node" is required/);
  rejects(t, '{"clusters": [{"nodes": [{"node": {}}]}]}', 'clusters[0].nodes[0].node', /"hostnames" is required/);
  rejects(t, '{"clusters": [{"nodes": [], "id": "x"}]}', 'clusters[0]', /unknown key "id"; known keys: nodes, name/);
});

t.test('unknown keys are refused, so a misspelling cannot pass silently', async (t) => {
  rejects(
    t,
    withNode((n) => (n.devices = [{ name: '/dev/sdb', destroyData: true }])),
    'clusters[0].nodes[0].devices[0]',
    /unknown key "destroyData"; known keys: name, destroydata, tags/,
  );
  rejects(t, withNode((n) => (n.node.zones = 1)), 'clusters[0].nodes[0].node', /unknown key "zones"/);
  rejects(t, withNode((n) => (n.node.hostnames.mgmt = ['x'])), 'clusters[0].nodes[0].node.hostnames', /unknown key "mgmt"; known keys: manage, storage/);
});

t.test('zones: an integer ≥ 1 (Heketi) or a name', async (t) => {
  const where = 'clusters[0].nodes[0].node.zone';
  rejects(t, withNode((n) => delete n.node.zone), 'clusters[0].nodes[0].node', /"zone" is required/);
  rejects(t, withNode((n) => (n.node.zone = 0)), where, /a numeric zone is an integer ≥ 1 \(as in Heketi\), got 0/);
  rejects(t, withNode((n) => (n.node.zone = 1.5)), where, /integer ≥ 1/);
  rejects(t, withNode((n) => (n.node.zone = 'rack 1')), where, /expected an integer ≥ 1 or a name of 1-63 characters/);
  rejects(t, withNode((n) => (n.node.zone = null)), where, /got null/);
  t.equal(parseTopology(withNode((n) => (n.node.zone = 'eu-west-1a'))).clusters[0]!.nodes[0]!.zone, 'eu-west-1a');
});

t.test('control endpoints: exactly one Unix socket', async (t) => {
  const where = 'clusters[0].nodes[0].node.hostnames.manage';
  rejects(t, withNode((n) => (n.node.hostnames.manage = [])), where, /expected at least 1 entry/);
  rejects(t, withNode((n) => (n.node.hostnames.manage = ['/a.sock', '/b.sock'])), where, /expected exactly one control endpoint, got 2/);
  rejects(t, withNode((n) => (n.node.hostnames.manage = ['node1.example.com'])), `${where}[0]`, /not a control endpoint: expected unix:\/\/\/absolute\/path or \/absolute\/path/);
  rejects(t, withNode((n) => (n.node.hostnames.manage = ['https://node1:8443'])), `${where}[0]`, /only Unix-socket control endpoints are supported/);
  rejects(t, withNode((n) => (n.node.hostnames.manage = ['run/brickd.sock'])), `${where}[0]`, /not a control endpoint/, 'a relative path');
  rejects(t, withNode((n) => (n.node.hostnames.manage = [7])), `${where}[0]`, /expected a non-empty string, got 7/);
});

t.test('storage and replication addresses', async (t) => {
  rejects(t, withNode((n) => (n.node.hostnames.storage = [])), 'clusters[0].nodes[0].node.hostnames.storage', /expected at least 1 entry/);
  rejects(t, withNode((n) => (n.node.hostnames.storage = [''])), 'clusters[0].nodes[0].node.hostnames.storage[0]', /non-empty string/);
  rejects(t, withNode((n) => (n.node.replication = '10.0.0.1')), 'clusters[0].nodes[0].node.replication', /expected host:port \(port 1-65535\), got "10.0.0.1"/);
  rejects(t, withNode((n) => (n.node.replication = '10.0.0.1:70000')), 'clusters[0].nodes[0].node.replication', /port 1-65535/);
  t.equal(parseTopology(withNode((n) => (n.node.replication = '[fd00::1]:7400'))).clusters[0]!.nodes[0]!.replication, '[fd00::1]:7400');
});

t.test('devices', async (t) => {
  const where = 'clusters[0].nodes[0].devices';
  rejects(t, withNode((n) => (n.devices = '/dev/sdb')), where, /expected an array, got "\/dev\/sdb"/);
  rejects(t, withNode((n) => (n.devices = ['sdb'])), `${where}[0]`, /expected a device path under \/dev\/, got "sdb"/);
  rejects(t, withNode((n) => (n.devices = ['/dev/../etc/passwd'])), `${where}[0]`, /under \/dev\//);
  rejects(t, withNode((n) => (n.devices = [{ destroydata: true }])), `${where}[0]`, /"name" is required/);
  rejects(t, withNode((n) => (n.devices = [{ name: '/dev/sdb', destroydata: 'yes' }])), `${where}[0].destroydata`, /expected true or false, got "yes"/);
  rejects(t, withNode((n) => (n.devices = ['/dev/sdb', { name: '/dev/sdb' }])), `${where}[1]`, /\/dev\/sdb is listed twice \(also devices\[0\]\)/);
  rejects(t, withNode((n) => (n.devices = [{ name: '/dev/sdb', tags: { ssd: true } }])), `${where}[0].tags.ssd`, /tag values are strings, got true/);
  rejects(t, withNode((n) => (n.devices = [{ name: '/dev/sdb', tags: { 'bad key': 'x' } }])), `${where}[0].tags.bad key`, /tag names are 1-63 characters/);
});

t.test('each node once: endpoints, names and replication addresses are unique', async (t) => {
  const doc = JSON.parse(HEKETI_STYLE);
  doc.clusters[0].nodes[2].node.hostnames.manage = ['unix:///run/brickd/a.sock'];
  rejects(t, JSON.stringify(doc), 'clusters[0].nodes[2]', /control endpoint "unix:\/\/\/run\/brickd\/a.sock" is also used by clusters\[0\].nodes\[0\]; each node appears once/);
  const named = JSON.parse(HEKETI_STYLE);
  named.clusters[0].nodes[0].node.name = 'node-b';
  rejects(t, JSON.stringify(named), 'clusters[0].nodes[1]', /node name "node-b" is also used by clusters\[0\].nodes\[0\]/);
  const repl = JSON.parse(HEKETI_STYLE);
  repl.clusters[0].nodes[0].node.replication = '10.0.1.2:7500';
  rejects(t, JSON.stringify(repl), 'clusters[0].nodes[1]', /replication address "10.0.1.2:7500" is also used/);
  const twoClusters = JSON.parse(HEKETI_STYLE);
  twoClusters.clusters.push({ nodes: [twoClusters.clusters[0].nodes[0]] });
  rejects(t, JSON.stringify(twoClusters), 'clusters[1].nodes[0]', /is also used by clusters\[0\].nodes\[0\]/, 'across clusters too');
});

t.test('choosing a cluster', async (t) => {
  const doc = JSON.parse(HEKETI_STYLE);
  const other = JSON.parse(HEKETI_STYLE).clusters[0];
  other.name = 'east';
  other.nodes = [other.nodes[0]];
  other.nodes[0].node.hostnames.manage = ['/run/brickd/east.sock'];
  other.nodes[0].node.hostnames.storage = ['10.9.0.1'];
  doc.clusters.push(other);
  const topo = parseTopology(JSON.stringify(doc));
  t.throws(() => selectCluster(topo, undefined), { message: /the file has 2 clusters \(0, east\); choose one with --cluster NAME\|INDEX/ });
  t.equal(selectCluster(topo, 'east').nodes.length, 1);
  t.equal(selectCluster(topo, '1').name, 'east');
  t.equal(selectCluster(topo, '0').nodes.length, 3);
  t.throws(() => selectCluster(topo, 'west'), { message: /no cluster "west"; the file has 0, east/ });
  t.equal(selectCluster(parseTopology(HEKETI_STYLE), undefined).nodes.length, 3, 'a single cluster needs no choice');
});

t.test('loadTopology reads a file and names it in errors', async (t) => {
  const dir = await tempDir(t, 'brickctl-topo-');
  const good = path.join(dir, 'topology.json');
  await writeFile(good, HEKETI_STYLE);
  t.equal((await loadTopology(good)).clusters[0]!.nodes.length, 3);
  await t.rejects(loadTopology(path.join(dir, 'missing.json')), { code: 'TOPOLOGY_INVALID', message: /missing.json: cannot read the topology file: ENOENT/ });
  const bad = path.join(dir, 'bad.json');
  await writeFile(bad, '{"clusters": 3}');
  await t.rejects(loadTopology(bad), { message: `${bad}: clusters: expected an array, got 3` });
});
