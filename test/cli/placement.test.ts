// Replica placement (src/cli/provision/placement.ts), a pure function: zones honoured, never
// two replicas on one node, the refusal reasons, deterministic ties, and invariants checked
// over many generated clusters.
import t from 'tap';
import { placeReplicas, type PlacementNode, type PlacementRequest, type PlacementResult } from '../../src/cli/provision/placement.js';

const GiB = 2 ** 30;

/** A node with one brick per size given (in GiB of free space). */
function node(name: string, zone: string | number, ...freeGiB: number[]): PlacementNode {
  return { name, zone: String(zone), bricks: freeGiB.map((f, i) => ({ brickId: `${name}-b${i}`, freeBytes: f * GiB })) };
}

function placed(result: PlacementResult): Extract<PlacementResult, { ok: true }> {
  if (!result.ok) throw new Error(`expected a placement, got ${result.code}: ${result.message}`);
  return result;
}

function refused(result: PlacementResult): Extract<PlacementResult, { ok: false }> {
  if (result.ok) throw new Error(`expected a refusal, got ${JSON.stringify(result.replicas)}`);
  return result;
}

const nodesOf = (r: PlacementResult) => placed(r).replicas.map((p) => p.node);

t.test('one replica per zone when there are as many zones as replicas', async (t) => {
  const r = placed(placeReplicas({ replicas: 3, sizeBytes: 10 * GiB, nodes: [node('a', 1, 100), node('b', 2, 100), node('c', 3, 100)] }));
  t.same(r.replicas.map((p) => p.zone).sort(), ['1', '2', '3']);
  t.same(r.zones.length, 3);
  t.same(r.warnings, [], 'no warning when every replica has its own zone');
});

t.test('zones honoured: six nodes in three zones give one replica per zone', async (t) => {
  const nodes = [node('a1', 'a', 50), node('a2', 'a', 60), node('b1', 'b', 70), node('b2', 'b', 40), node('c1', 'c', 30), node('c2', 'c', 35)];
  const r = placed(placeReplicas({ replicas: 3, sizeBytes: GiB, nodes }));
  t.same(new Set(r.replicas.map((p) => p.zone)).size, 3, 'three different zones');
  // Zone free capacity: a=110, b=110, c=65 → a (tie with b broken by name), b, c; in each the roomiest node.
  t.same(nodesOf(r), ['a2', 'b1', 'c2']);
});

t.test('zones are taken in order of free capacity, nodes within a zone likewise', async (t) => {
  const nodes = [node('small', 'z1', 20), node('big', 'z2', 500), node('mid', 'z3', 100)];
  t.same(nodesOf(placeReplicas({ replicas: 2, sizeBytes: GiB, nodes })), ['big', 'mid'], 'the two roomiest zones');
  t.same(nodesOf(placeReplicas({ replicas: 1, sizeBytes: GiB, nodes })), ['big']);
});

t.test('never two replicas on one node, however roomy it is', async (t) => {
  const nodes = [node('huge', 1, 1000, 1000, 1000, 1000), node('tiny', 2, 20)];
  const r = refused(placeReplicas({ replicas: 3, sizeBytes: GiB, nodes }));
  t.equal(r.code, 'NOT_ENOUGH_NODES');
  t.match(r.message, /3 replicas need 3 nodes \(never two on one node\); there are 2 \(huge, tiny\)/);
  const two = placed(placeReplicas({ replicas: 2, sizeBytes: GiB, nodes }));
  t.same(nodesOf(two), ['huge', 'tiny']);
});

t.test('prefer (default): fewer zones than replicas doubles up, with a warning', async (t) => {
  const nodes = [node('a', 1, 100), node('b', 1, 90), node('c', 2, 80)];
  const r = placed(placeReplicas({ replicas: 3, sizeBytes: GiB, nodes }));
  t.same(nodesOf(r).sort(), ['a', 'b', 'c']);
  t.equal(r.warnings.length, 1);
  t.match(r.warnings[0], /zone 1 holds 2 of 3 replicas \(a, b\): the nodes are in 2 zones; losing that zone loses them all/);
});

t.test('prefer: round-robin keeps zones within one replica of each other', async (t) => {
  const nodes = ['x', 'y', 'z'].flatMap((zone) => [1, 2, 3].map((i) => node(`${zone}${i}`, zone, 100 - i)));
  const r = placed(placeReplicas({ replicas: 5, sizeBytes: GiB, nodes }));
  const perZone = new Map<string, number>();
  for (const p of r.replicas) perZone.set(p.zone, (perZone.get(p.zone) ?? 0) + 1);
  t.same([...perZone.values()].sort(), [1, 2, 2]);
  t.equal(new Set(nodesOf(r)).size, 5, 'five distinct nodes');
});

t.test('strict: fewer zones than replicas is refused with NOT_ENOUGH_ZONES', async (t) => {
  const nodes = [node('a', 1, 100), node('b', 1, 90), node('c', 2, 80)];
  const r = refused(placeReplicas({ replicas: 3, sizeBytes: GiB, nodes, spreadZones: 'strict' }));
  t.equal(r.code, 'NOT_ENOUGH_ZONES');
  t.match(r.message, /--spread-zones strict: 3 replicas need 3 zones; the nodes are in 2 zones \(1, 2\)/);
  t.ok(placeReplicas({ replicas: 2, sizeBytes: GiB, nodes, spreadZones: 'strict' }).ok, 'two replicas fit in two zones');
});

t.test('strict: zones that exist but lack room are a capacity refusal', async (t) => {
  const nodes = [node('a', 1, 100), node('b', 1, 90), node('c', 2, 5)];
  const r = refused(placeReplicas({ replicas: 2, sizeBytes: 10 * GiB, nodes, spreadZones: 'strict' }));
  t.equal(r.code, 'NOT_ENOUGH_CAPACITY');
  t.match(r.message, /need 2 zones with a brick of 10 GiB free; only 1 has one \(c: largest brick has 5 GiB free\)/);
  const prefer = placed(placeReplicas({ replicas: 2, sizeBytes: 10 * GiB, nodes }));
  t.same(nodesOf(prefer), ['a', 'b'], 'prefer doubles up in the zone that has room');
  t.match(prefer.warnings[0], /only 1 zone \(1\) has a node with 10 GiB free/);
});

t.test('not enough capacity: names the nodes that lack room', async (t) => {
  const nodes = [node('a', 1, 100), node('b', 2, 3, 4), node('c', 3, 100)];
  const r = refused(placeReplicas({ replicas: 3, sizeBytes: 10 * GiB, nodes }));
  t.equal(r.code, 'NOT_ENOUGH_CAPACITY');
  t.match(r.message, /3 replicas of 10 GiB need 3 nodes with a brick of 10 GiB free; 2 have one \(b: largest brick has 4 GiB free\)/);
});

t.test('a replica needs one brick with room: free space split over bricks does not add up', async (t) => {
  const r = refused(placeReplicas({ replicas: 1, sizeBytes: 10 * GiB, nodes: [node('a', 1, 6, 6)] }));
  t.equal(r.code, 'NOT_ENOUGH_CAPACITY');
});

t.test('the replica goes to the roomiest fitting brick of its node', async (t) => {
  const r = placed(placeReplicas({ replicas: 1, sizeBytes: 10 * GiB, nodes: [node('a', 1, 5, 40, 20)] }));
  t.equal(r.replicas[0]!.brickId, 'a-b1');
  t.equal(r.replicas[0]!.brickFreeBytes, 40 * GiB);
});

t.test('a brick with exactly the size free fits', async (t) => {
  t.ok(placeReplicas({ replicas: 1, sizeBytes: 10 * GiB, nodes: [node('a', 1, 10)] }).ok);
});

t.test('ties are broken by name in natural order, whatever the input order', async (t) => {
  const nodes = [node('n10', 'z10', 50), node('n2', 'z2', 50), node('n1', 'z1', 50)];
  const expected = ['n1', 'n2', 'n10'];
  t.same(nodesOf(placeReplicas({ replicas: 3, sizeBytes: GiB, nodes })), expected);
  t.same(nodesOf(placeReplicas({ replicas: 3, sizeBytes: GiB, nodes: [...nodes].reverse() })), expected);
  const bricks = placed(placeReplicas({ replicas: 1, sizeBytes: GiB, nodes: [{ name: 'a', zone: '1', bricks: [{ brickId: 'b2', freeBytes: GiB }, { brickId: 'b1', freeBytes: GiB }] }] }));
  t.equal(bricks.replicas[0]!.brickId, 'b1', 'equal bricks: the first by id');
});

t.test('first: the named node holds the first replica, other zones come before its own', async (t) => {
  const nodes = [node('a1', 'a', 100), node('a2', 'a', 90), node('b1', 'b', 10), node('c1', 'c', 20)];
  const r = placed(placeReplicas({ replicas: 3, sizeBytes: GiB, nodes, first: 'b1' }));
  t.same(nodesOf(r), ['b1', 'a1', 'c1']);
  const two = placed(placeReplicas({ replicas: 2, sizeBytes: GiB, nodes, first: 'a2' }));
  t.same(nodesOf(two), ['a2', 'c1'], 'the second replica avoids the first one\'s zone');
});

t.test('first: unknown, or without room, is refused', async (t) => {
  const nodes = [node('a', 1, 100), node('b', 2, 1)];
  const unknown = refused(placeReplicas({ replicas: 1, sizeBytes: GiB, nodes, first: 'zz' }));
  t.equal(unknown.code, 'UNKNOWN_NODE');
  t.match(unknown.message, /node "zz" is not one of the 2 nodes \(a, b\)/);
  const full = refused(placeReplicas({ replicas: 1, sizeBytes: 10 * GiB, nodes, first: 'b' }));
  t.equal(full.code, 'NOT_ENOUGH_CAPACITY');
  t.match(full.message, /node b must hold the primary but has no brick with 10 GiB free \(largest: 1 GiB\)/);
});

t.test('no nodes at all', async (t) => {
  const r = refused(placeReplicas({ replicas: 1, sizeBytes: GiB, nodes: [] }));
  t.equal(r.code, 'NOT_ENOUGH_NODES');
  t.match(r.message, /1 replica need 1 node .*there are 0$/);
});

t.test('misuse throws RangeError naming the argument', async (t) => {
  const nodes = [node('a', 1, 100)];
  t.throws(() => placeReplicas({ replicas: 0, sizeBytes: GiB, nodes }), { name: 'RangeError', message: /replicas must be an integer ≥ 1/ });
  t.throws(() => placeReplicas({ replicas: 1.5, sizeBytes: GiB, nodes }), RangeError);
  t.throws(() => placeReplicas({ replicas: 1, sizeBytes: 0, nodes }), { message: /sizeBytes/ });
  t.throws(() => placeReplicas({ replicas: 1, sizeBytes: GiB, nodes: [node('a', 1, 1), node('a', 2, 1)] }), { message: /"a" appears twice/ });
  t.throws(() => placeReplicas({ replicas: 1, sizeBytes: GiB, nodes, spreadZones: 'loose' as never }), { message: /spreadZones must be prefer or strict/ });
});

/** A small deterministic PRNG (mulberry32) so that the generated clusters are the same every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

t.test('invariants over 2000 generated clusters', async (t) => {
  const random = prng(20261125);
  const pick = (n: number) => Math.floor(random() * n);
  let placedCount = 0;
  const codes = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const zones = 1 + pick(5);
    const nodes: PlacementNode[] = Array.from({ length: pick(9) }, (_, n) => ({
      name: `n${n}`,
      zone: `z${pick(zones)}`,
      bricks: Array.from({ length: pick(4) }, (_, b) => ({ brickId: `n${n}b${b}`, freeBytes: pick(200) * GiB })),
    }));
    const request: PlacementRequest = { replicas: 1 + pick(5), sizeBytes: (1 + pick(120)) * GiB, nodes, spreadZones: random() < 0.5 ? 'strict' : 'prefer' };
    const result = placeReplicas(request);
    const again = placeReplicas({ ...request, nodes: [...nodes].sort(() => random() - 0.5) });
    if (JSON.stringify(again) !== JSON.stringify(result)) t.fail(`case ${i}: input order changed the result`);
    if (!result.ok) {
      codes.add(result.code);
      continue;
    }
    placedCount++;
    const names = result.replicas.map((p) => p.node);
    if (names.length !== request.replicas) t.fail(`case ${i}: ${names.length} replicas placed, ${request.replicas} asked`);
    if (new Set(names).size !== names.length) t.fail(`case ${i}: two replicas on one node: ${names}`);
    for (const p of result.replicas) {
      const brick = nodes.find((n) => n.name === p.node)!.bricks.find((b) => b.brickId === p.brickId);
      if (!brick || brick.freeBytes < request.sizeBytes) t.fail(`case ${i}: ${p.brickId} cannot hold the replica`);
    }
    const usedZones = new Set(result.replicas.map((p) => p.zone));
    if (request.spreadZones === 'strict' && usedZones.size !== request.replicas) t.fail(`case ${i}: strict placement shares a zone`);
    // Maximal spread: as many zones as replicas, or every zone that has a node with room.
    const roomyZones = new Set(nodes.filter((n) => n.bricks.some((b) => b.freeBytes >= request.sizeBytes)).map((n) => n.zone));
    if (usedZones.size !== Math.min(request.replicas, roomyZones.size)) t.fail(`case ${i}: used ${usedZones.size} zones of ${roomyZones.size} possible for ${request.replicas} replicas`);
  }
  t.ok(placedCount > 300, `${placedCount} placements made`);
  t.same([...codes].sort(), ['NOT_ENOUGH_CAPACITY', 'NOT_ENOUGH_NODES', 'NOT_ENOUGH_ZONES'], 'every refusal reason came up');
});
