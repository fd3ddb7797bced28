// The demo's view of a primary's replication metrics: scrape /metrics on the agent's
// namespace address (from inside that namespace), pick out one volume's replication series,
// and print them as a small table.
//
// Series read (src/agent/metrics.ts): brickd_volume_durable_seq, and per peer
// brickd_replication_peer_state (0/1 per link state), brickd_replication_peer_lag_seqs,
// brickd_replication_peer_lag_bytes, brickd_replication_resync_progress_ratio and
// brickd_replication_resync_eta_seconds and brickd_replication_resync_data_bytes (present
// only while a resync runs), and
// brickd_replication_quorum_lost_total; per volume brickd_volume_replicas,
// brickd_volume_replicas_in_sync (the primary plus the peers whose link is streaming),
// brickd_volume_write_quorum (W) and brickd_volume_quorum_met.
//
// Touches nothing: it runs one short-lived `node` child per scrape in the namespace.
import { run } from '../dist/src/exec.js';

// The child that fetches a URL inside the namespace: the body on stdout, exit 1 on a non-2xx.
const FETCH_CHILD =
  'const r = await fetch(process.argv[1], { signal: AbortSignal.timeout(5000) });' +
  'process.stdout.write(await r.text()); process.exitCode = r.ok ? 0 : 1;';

/** GET http://address/path from inside a namespace (`command` = the nsenter prefix); resolves with the body. */
export async function fetchIn(command, address, urlPath) {
  const [tool, ...prefix] = command;
  const { stdout } = await run(tool, [...prefix, process.execPath, '--input-type=module', '-e', FETCH_CHILD, `http://${address}${urlPath}`], { timeoutMs: 10_000 });
  return stdout;
}

/** Prometheus text → [{ name, labels, value }] (the subset of the format prom-client writes). */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, key, value] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/**
 * One volume's replication state on its primary, from parsed samples. `names` maps node
 * ids to the demo's node names. Peers are listed in name order.
 */
export function replicationSnapshot(samples, volumeId, names, writeQuorum) {
  const of = (name) => samples.filter((s) => s.name === name && s.labels.volume === volumeId);
  const peerValue = (name, peer) => of(name).find((s) => s.labels.peer === peer)?.value;
  const peerIds = [...new Set(of('brickd_replication_peer_state').map((s) => s.labels.peer))];
  const peers = peerIds
    .map((id) => {
      const ratio = peerValue('brickd_replication_resync_progress_ratio', id);
      return {
        peer: names.get(id) ?? id,
        state: of('brickd_replication_peer_state').find((s) => s.labels.peer === id && s.value === 1)?.labels.state ?? 'unknown',
        lagSeqs: peerValue('brickd_replication_peer_lag_seqs', id) ?? 0,
        lagBytes: peerValue('brickd_replication_peer_lag_bytes', id) ?? 0,
        ...(ratio === undefined ? {} : {
              resync: {
                ratio,
                etaSeconds: peerValue('brickd_replication_resync_eta_seconds', id) ?? -1,
                dataBytes: peerValue('brickd_replication_resync_data_bytes', id) ?? 0,
              },
            }),
      };
    })
    .sort((a, b) => a.peer.localeCompare(b.peer));
  const volumeValue = (name) => of(name)[0]?.value;
  return {
    durableSeq: volumeValue('brickd_volume_durable_seq') ?? 0,
    replicas: volumeValue('brickd_volume_replicas') ?? peers.length + 1,
    inSync: volumeValue('brickd_volume_replicas_in_sync') ?? 0,
    writeQuorum: volumeValue('brickd_volume_write_quorum') ?? writeQuorum,
    quorumMet: volumeValue('brickd_volume_quorum_met') === 1,
    quorumLostWrites: of('brickd_replication_quorum_lost_total')[0]?.value ?? 0,
    peers,
  };
}

/** Scrape a primary and return its snapshot of `volumeId`. */
export async function scrapeReplication(node, volumeId, names, writeQuorum) {
  const text = await fetchIn(node.command, node.metricsAddress, '/metrics');
  return replicationSnapshot(parseMetrics(text), volumeId, names, writeQuorum);
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

export function formatResync(resync) {
  if (!resync) return '-';
  const eta = resync.etaSeconds >= 0 ? `, eta ${Math.ceil(resync.etaSeconds)} s` : '';
  return `${Math.floor(resync.ratio * 100)}% compared, ${formatBytes(resync.dataBytes)} sent${eta}`;
}

/** Rows of string cells, the first the header → lines with padded columns (numeric columns right-aligned). */
export function formatTable(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const numeric = rows[0].map((_, i) => rows.slice(1).every((r) => /^[\d.]+( [KMG]?i?B)?$/.test(r[i])));
  return rows.map((r) => r.map((cell, i) => (numeric[i] ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join('  ').trimEnd());
}

/** The stage's table, as lines to print. */
export function formatSnapshot(snapshot) {
  const s = snapshot;
  const head =
    `replicas in sync ${s.inSync}/${s.replicas}   ` +
    `write quorum W=${s.writeQuorum}: ${s.quorumMet ? 'met' : 'LOST'} (quorum-lost writes ${s.quorumLostWrites})   ` +
    `durable seq ${s.durableSeq}`;
  const rows = [['peer', 'link', 'lag seqs', 'lag bytes', 'resync'], ...s.peers.map((p) => [p.peer, p.state, String(p.lagSeqs), formatBytes(p.lagBytes), formatResync(p.resync)])];
  return [head, ...formatTable(rows)];
}
