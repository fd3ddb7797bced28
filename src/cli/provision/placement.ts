// Replica placement for the reference provisioner: a pure function that picks N bricks on
// N distinct nodes for a volume, spread over failure zones, or says precisely why it cannot.
//
// How it works:
//   1. A brick fits when its free space is at least the volume size; a node is eligible
//      when one of its bricks fits. Its free capacity is the sum over its fitting bricks.
//      A zone's free capacity is the sum over its eligible nodes.
//   2. Zones are ordered by free capacity (most first), nodes within a zone likewise;
//      ties break on the name in natural order ("2" before "10"), so the same input always
//      gives the same placement.
//   3. Round-robin over the zones: each round takes the next node of every zone that has
//      one left, until N nodes are taken. Every zone thus holds at most one replica more
//      than any other zone that still had nodes to offer: replicas double up in a zone only
//      when there are fewer usable zones than replicas.
//   4. On each chosen node the replica goes to the fitting brick with the most free space.
//   5. `first` (the node that must hold the primary, e.g. the mount node) is taken before
//      the round-robin, as its zone's pick of round one.
//
// Policies (spreadZones):
//   prefer (default) - spread as far as the zones allow; if there are fewer usable zones
//                      than replicas, double up and say so in `warnings` (as Heketi does
//                      without strict zone checking).
//   strict           - every replica in a different zone, or refuse with NOT_ENOUGH_ZONES
//                      (Heketi's zone_checking: strict).
//
// Two replicas never share a node: that is not a policy but an invariant of the result.
import { formatBytes } from '../format.js';

export type SpreadZones = 'prefer' | 'strict';
export const SPREAD_ZONES: readonly SpreadZones[] = ['prefer', 'strict'];

export interface PlacementBrick {
  brickId: string;
  /** Bytes a new replica may still use on this brick. */
  freeBytes: number;
}

export interface PlacementNode {
  /** Unique name of the node (the provisioner uses the topology name). */
  name: string;
  zone: string;
  bricks: readonly PlacementBrick[];
}

export interface PlacementRequest {
  replicas: number;
  sizeBytes: number;
  nodes: readonly PlacementNode[];
  spreadZones?: SpreadZones;
  /** Name of a node that must hold the first replica (the primary). */
  first?: string;
}

export interface PlacedReplica {
  node: string;
  zone: string;
  brickId: string;
  /** Free bytes of that brick before this replica. */
  brickFreeBytes: number;
}

export type PlacementRefusalCode = 'NOT_ENOUGH_NODES' | 'NOT_ENOUGH_ZONES' | 'NOT_ENOUGH_CAPACITY' | 'UNKNOWN_NODE';

export type PlacementResult =
  | { ok: true; replicas: PlacedReplica[]; zones: string[]; warnings: string[] }
  | { ok: false; code: PlacementRefusalCode; message: string };

const naturally = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true }) || (a < b ? -1 : a > b ? 1 : 0);

interface Candidate {
  node: PlacementNode;
  /** Fitting bricks, most free first. */
  fitting: PlacementBrick[];
  freeBytes: number;
}

function validate(request: PlacementRequest): void {
  if (!Number.isInteger(request.replicas) || request.replicas < 1) throw new RangeError(`replicas must be an integer ≥ 1, got ${request.replicas}`);
  if (!Number.isSafeInteger(request.sizeBytes) || request.sizeBytes < 1) throw new RangeError(`sizeBytes must be a whole number of bytes ≥ 1, got ${request.sizeBytes}`);
  if (request.spreadZones !== undefined && !SPREAD_ZONES.includes(request.spreadZones)) {
    throw new RangeError(`spreadZones must be ${SPREAD_ZONES.join(' or ')}, got ${JSON.stringify(request.spreadZones)}`);
  }
  const names = new Set<string>();
  for (const node of request.nodes) {
    if (names.has(node.name)) throw new RangeError(`nodes: ${JSON.stringify(node.name)} appears twice`);
    names.add(node.name);
  }
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** Place `replicas` replicas of `sizeBytes` on distinct nodes (see the top of this file). */
export function placeReplicas(request: PlacementRequest): PlacementResult {
  validate(request);
  const { replicas, sizeBytes, nodes } = request;
  const policy = request.spreadZones ?? 'prefer';
  const size = formatBytes(sizeBytes);
  const refuse = (code: PlacementRefusalCode, message: string): PlacementResult => ({ ok: false, code, message });

  const candidates: Candidate[] = nodes.map((node) => {
    const fitting = node.bricks.filter((b) => b.freeBytes >= sizeBytes).sort((a, b) => b.freeBytes - a.freeBytes || naturally(a.brickId, b.brickId));
    return { node, fitting, freeBytes: fitting.reduce((sum, b) => sum + b.freeBytes, 0) };
  });
  const eligible = candidates.filter((c) => c.fitting.length > 0);
  const allZones = [...new Set(nodes.map((n) => n.zone))].sort(naturally);
  const eligibleZones = [...new Set(eligible.map((c) => c.node.zone))].sort(naturally);
  const sortedNames = nodes.map((n) => n.name).sort(naturally);
  const largest = (c: Candidate) => Math.max(0, ...c.node.bricks.map((b) => b.freeBytes));

  if (request.first !== undefined && !nodes.some((n) => n.name === request.first)) {
    return refuse('UNKNOWN_NODE', `node ${JSON.stringify(request.first)} is not one of the ${plural(nodes.length, 'node')} (${sortedNames.join(', ') || 'none'})`);
  }
  if (nodes.length < replicas) {
    return refuse('NOT_ENOUGH_NODES', `${plural(replicas, 'replica')} need ${plural(replicas, 'node')} (never two on one node); there ${nodes.length === 1 ? 'is' : 'are'} ${nodes.length}${nodes.length ? ` (${sortedNames.join(', ')})` : ''}`);
  }
  if (policy === 'strict' && allZones.length < replicas) {
    return refuse('NOT_ENOUGH_ZONES', `--spread-zones strict: ${plural(replicas, 'replica')} need ${plural(replicas, 'zone')}; the nodes are in ${plural(allZones.length, 'zone')} (${allZones.join(', ')})`);
  }
  const short = candidates.filter((c) => c.fitting.length === 0).sort((a, b) => naturally(a.node.name, b.node.name));
  const shortList = short.map((c) => `${c.node.name}: largest brick has ${formatBytes(largest(c))} free`).join('; ');
  if (eligible.length < replicas) {
    return refuse('NOT_ENOUGH_CAPACITY', `${plural(replicas, 'replica')} of ${size} need ${plural(replicas, 'node')} with a brick of ${size} free; ${eligible.length} ${eligible.length === 1 ? 'has' : 'have'} one (${shortList})`);
  }
  if (policy === 'strict' && eligibleZones.length < replicas) {
    return refuse('NOT_ENOUGH_CAPACITY', `--spread-zones strict: ${plural(replicas, 'replica')} of ${size} need ${plural(replicas, 'zone')} with a brick of ${size} free; only ${eligibleZones.join(', ')} ${eligibleZones.length === 1 ? 'has' : 'have'} one (${shortList})`);
  }
  const firstCandidate = request.first === undefined ? undefined : candidates.find((c) => c.node.name === request.first)!;
  if (firstCandidate && firstCandidate.fitting.length === 0) {
    return refuse('NOT_ENOUGH_CAPACITY', `node ${firstCandidate.node.name} must hold the primary but has no brick with ${size} free (largest: ${formatBytes(largest(firstCandidate))})`);
  }

  // Zones, then nodes within a zone, most free capacity first.
  const byZone = new Map<string, Candidate[]>();
  for (const c of eligible) byZone.set(c.node.zone, [...(byZone.get(c.node.zone) ?? []), c]);
  for (const list of byZone.values()) list.sort((a, b) => b.freeBytes - a.freeBytes || naturally(a.node.name, b.node.name));
  const zoneFree = (zone: string) => byZone.get(zone)!.reduce((sum, c) => sum + c.freeBytes, 0);
  const zoneOrder = [...byZone.keys()].sort((a, b) => zoneFree(b) - zoneFree(a) || naturally(a, b));

  const chosen: Candidate[] = [];
  const taken = new Map<string, number>(); // zone → nodes taken from it
  if (firstCandidate) {
    chosen.push(firstCandidate);
    byZone.set(firstCandidate.node.zone, byZone.get(firstCandidate.node.zone)!.filter((c) => c !== firstCandidate));
    taken.set(firstCandidate.node.zone, 1);
  }
  for (let round = 1; chosen.length < replicas; round++) {
    let progressed = false;
    for (const zone of zoneOrder) {
      if (chosen.length >= replicas) break;
      if ((taken.get(zone) ?? 0) >= round) continue; // this zone already gave its node of this round
      const next = byZone.get(zone)!.shift();
      if (!next) continue;
      chosen.push(next);
      taken.set(zone, (taken.get(zone) ?? 0) + 1);
      progressed = true;
    }
    // Unreachable given the checks above (enough eligible nodes); a guard against looping forever.
    if (!progressed && [...byZone.values()].every((list) => list.length === 0)) {
      return refuse('NOT_ENOUGH_CAPACITY', `only ${chosen.length} of ${replicas} replicas could be placed`);
    }
  }

  const placed = chosen.map((c) => ({ node: c.node.name, zone: c.node.zone, brickId: c.fitting[0]!.brickId, brickFreeBytes: c.fitting[0]!.freeBytes }));
  const zones = [...new Set(placed.map((p) => p.zone))];
  const warnings: string[] = [];
  if (zones.length < replicas) {
    const why =
      allZones.length < replicas
        ? `the nodes are in ${plural(allZones.length, 'zone')}`
        : `only ${plural(eligibleZones.length, 'zone')} (${eligibleZones.join(', ')}) ${eligibleZones.length === 1 ? 'has' : 'have'} a node with ${size} free`;
    for (const zone of zones) {
      const here = placed.filter((p) => p.zone === zone);
      if (here.length > 1) warnings.push(`zone ${zone} holds ${here.length} of ${replicas} replicas (${here.map((p) => p.node).join(', ')}): ${why}; losing that zone loses them all`);
    }
  }
  return { ok: true, replicas: placed, zones, warnings };
}
