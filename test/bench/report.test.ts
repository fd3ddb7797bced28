// The benchmark report from synthetic records: per-round ratios in the tables, the storage
// lines of the machine section, and the charts (SVG parsed by resvg, metric labels present,
// PNG beside it or the reason why not, every chart linked from REPORT.md).
import { execFileSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import resvg from '@resvg/resvg-js';
import { roundRatios, row, target, type ResultRow } from '../../bench/case.js';
import { chartSpecs, splitPercentile } from '../../bench/charts.js';
import { describeMachine, describeStorage } from '../../bench/machine.js';
import { renderMarkdown, writeReport, type CaseRecord, type RunInfo } from '../../bench/report.js';
import { tempDir } from '../helpers/loop.js';

const machine = describeMachine();
const run: RunInfo = { startedAt: '2026-01-01T00:00:00.000Z', durationMs: 1234, quick: false, machine };

function record(name: string, family: string, rows: ResultRow[], extra: Partial<CaseRecord> = {}): CaseRecord {
  return {
    case: name,
    family,
    description: `synthetic ${name}`,
    startedAt: run.startedAt,
    durationMs: 1,
    quick: false,
    machine,
    result: { params: {}, rows, targets: [] },
    ...extra,
  };
}

const seqWrite = row('seq write 1 MiB', 'MiB/s', [100, 120, 140], { label: 'fio libaio', samples: [200, 200, 200] });
const storeRows: ResultRow[] = [
  seqWrite,
  row('seq read 1 MiB cold', 'MiB/s', [300, 330, 360], { label: 'fio read', samples: [400, 300, 360] }),
  row('4 KiB durable write QD1', 'IOPS', [1000, 1100, 900], { label: 'fio psync', samples: [2000, 2200, 1800] }),
  row('4 KiB QD1 latency p50', 'µs', [400, 410, 420], { label: 'fio clat', samples: [100, 100, 100] }),
  row('4 KiB QD1 latency p99', 'µs', [4000, 4100, 4200], { label: 'fio clat', samples: [1000, 1000, 2000] }),
  row('1 MiB write, median time to quorum', 'ms', [2, 3, 4]),
  row('CPU per GiB', 's/GiB', [1, 1, 1]),
];
const checksumRows: ResultRow[] = [
  // As crc32c.ts builds them: no baseline samples, so no per-round ratios.
  { metric: 'fast path, 1 MiB', value: 27, unit: 'GB/s', samples: [26, 27, 28], baseline: { label: 'single chain', value: 9 }, ratio: 3 },
  { metric: 'single chain (baseline), 1 MiB', value: 9, unit: 'GB/s', samples: [9, 9, 9] },
];
const records = (): CaseRecord[] => [
  record('store', 'replica store', storeRows),
  record('crc32c', 'checksum', checksumRows),
  record('gone', 'replica store', [], { result: { params: {}, rows: [], targets: [], skipped: 'needs | root' } }),
  record('broke', 'other', [], { error: 'boom' }),
];

t.test('row() keeps the baseline samples; roundRatios pairs them round by round', async (t) => {
  t.same(seqWrite.baseline, { label: 'fio libaio', value: 200, samples: [200, 200, 200] });
  t.equal(seqWrite.value, 120);
  t.equal(seqWrite.ratio, 0.6);
  t.same(roundRatios(seqWrite), [0.5, 0.6, 0.7]);
  t.equal(roundRatios(row('no baseline', 'MiB/s', [1, 2])), undefined);
  t.equal(roundRatios(checksumRows[0]!), undefined, 'no baseline samples');
  t.equal(roundRatios({ ...seqWrite, baseline: { ...seqWrite.baseline!, samples: [1, 2] } }), undefined, 'unpaired rounds');
  const samples = [1, 2, 3];
  const made = row('copy', 'MiB/s', samples, { label: 'b', samples });
  samples.push(100);
  t.same(made.samples, [1, 2, 3], 'the row keeps its own copy');
  t.same(made.baseline?.samples, [1, 2, 3]);
});

t.test('REPORT.md: a ratio-per-round column where rows have rounds on both sides', async (t) => {
  const markdown = renderMarkdown(run, records());
  const store = markdown.slice(markdown.indexOf('## replica store'), markdown.indexOf('## checksum'));
  t.match(store, '| case | metric | value | baseline | ratio | ratio per round |');
  t.match(store, '| store | seq write 1 MiB | 120 MiB/s | 200 MiB/s (fio libaio) | 0.60× | 0.50 / 0.60 / 0.70 |');
  t.match(store, '| store | seq read 1 MiB cold | 330 MiB/s | 360 MiB/s (fio read) | 0.92× | 0.75 / 1.10 / 1.00 |');
  t.match(store, '| store | 4 KiB QD1 latency p99 | 4100 µs | 1000 µs (fio clat) | 4.10× | 4.00 / 4.10 / 2.10 |');
  t.match(store, '| store | CPU per GiB | 1.00 s/GiB |  |  |  |\n', 'a row without a baseline leaves the cells empty');
  t.match(store, '| gone | skipped: needs \\| root | | | |', 'skipped rows keep the column count, a | in text is escaped');
  const checksum = markdown.slice(markdown.indexOf('## checksum'));
  t.notMatch(checksum, 'ratio per round', 'no column where no row has paired rounds');
  t.match(checksum, '| crc32c | fast path, 1 MiB | 27.0 GB/s | 9.00 GB/s (single chain) | 3.00× |\n');
});

t.test('the machine section names the storage of the run', async (t) => {
  const storage = await describeStorage([]);
  t.equal(storage.length, 1);
  const tmp = storage[0]!;
  t.equal(tmp.role, 'temp dir');
  t.equal(tmp.path, os.tmpdir());
  const expected = execFileSync('findmnt', ['-n', '-o', 'FSTYPE,TARGET', '--target', os.tmpdir()], { encoding: 'utf8' }).trim().split(/\s+/);
  t.equal(tmp.fsType, expected[0], 'the filesystem type findmnt reports');
  t.equal(tmp.mountPoint, expected[1]);

  const markdown = renderMarkdown({ ...run, machine: { ...machine, storage } }, records());
  t.match(markdown, `| storage: temp dir ${os.tmpdir()} (loop-file bricks) | ${tmp.fsType} on ${tmp.mountSource} mounted at ${tmp.mountPoint}`);
  const synthetic = renderMarkdown({ ...run, machine: { ...machine, storage: [{ role: 'device', path: '/dev/sdz', device: { name: 'sdz', devNumber: '8:16', sizeBytes: 2 ** 34, model: 'DISK', rotational: false } }] } }, []);
  t.match(synthetic, '| storage: --device /dev/sdz | block device sdz (8:16): 16.0 GiB, DISK, non-rotational |');
});

t.test('latency metrics split into percentile panels', async (t) => {
  t.same(splitPercentile('4 KiB QD1 latency p99'), { base: '4 KiB QD1 latency', percentile: 'p99' });
  t.same(splitPercentile('[disk] W=2 of 3: 4 KiB QD16 latency p50'), { base: '[disk] W=2 of 3: 4 KiB QD16 latency', percentile: 'p50' });
  t.same(splitPercentile('time to quorum'), { base: 'time to quorum' });
  t.same(splitPercentile('help50 stays'), { base: 'help50 stays' });
});

t.test('chart specs: one per family and kind, units made common', async (t) => {
  const mixed = record('mix', 'mixed', [
    row('a', 'GB/s', [1.048576], { label: 'base', samples: [2.097152] }),
    row('b', 'MiB/s', [10]),
    row('c', 'ms', [1]),
    row('d', 'µs', [500]),
  ]);
  const specs = chartSpecs([...records(), mixed]);
  t.same(
    specs.map((s) => s.name),
    ['replica-store-throughput', 'replica-store-iops', 'replica-store-latency', 'checksum-throughput', 'mixed-throughput', 'mixed-latency'],
  );
  const latency = specs.find((s) => s.name === 'replica-store-latency')!;
  t.same(latency.metrics, ['4 KiB QD1 latency', '1 MiB write, median time to quorum']);
  t.equal(specs.find((s) => s.name === 'checksum-throughput')!.title, 'checksum: throughput (GB/s)', 'one unit: kept');
  t.equal(specs.find((s) => s.name === 'replica-store-iops')!.title, 'replica store: IOPS');
  t.equal(specs.find((s) => s.name === 'mixed-throughput')!.title, 'mixed: throughput (MiB/s)', 'GB/s with MiB/s: all in MiB/s');
  t.equal(specs.find((s) => s.name === 'mixed-latency')!.title, 'mixed: latency (ms)', 'ms with µs: all in ms');
  t.match(JSON.stringify(specs.find((s) => s.name === 'mixed-latency')!.spec), '"value":0.5', '500 µs is 0.5 ms');
  const bars = JSON.stringify(specs.find((s) => s.name === 'mixed-throughput')!.spec);
  t.match(bars, '"value":1000', '1.048576 GB/s is 1000 MiB/s');
  t.match(bars, '"value":2000');
  // Durations in seconds are times; one percentile alone keeps its name and needs no panels.
  const resync = chartSpecs([record('resync', 'resync', [row('time to in sync', 's', [3]), row('write p99', 'µs', [3])])]);
  t.equal(resync[0]!.title, 'resync: latency (ms)');
  const times = chartSpecs([record('resync', 'resync', [row('time to in sync', 's', [3], { label: 'full copy', samples: [6] })])]);
  t.equal(times[0]!.title, 'resync: time (s)');
  t.notOk('concat' in times[0]!.spec, 'one plain chart');
  const p99Only = chartSpecs([record('x', 'f', [row('write p99', 'µs', [3]), row('read p99', 'µs', [4])])]);
  t.same(p99Only[0]!.metrics, ['write p99', 'read p99']);
  t.notOk('concat' in p99Only[0]!.spec);
  t.ok('concat' in resync[0]!.spec, 'a percentile beside other latencies: panels');
  // Two cases in one family: the case names the metric.
  const twoCases = chartSpecs([record('x', 'f', [row('m', 'IOPS', [1])]), record('y', 'f', [row('m', 'IOPS', [2])])]);
  t.same(twoCases[0]!.metrics, ['x: m', 'y: m']);
});

t.test('writeReport: charts as SVG and PNG next to REPORT.md, linked from it', async (t) => {
  const dir = await tempDir(t, 'brickd-report-');
  const markdown = await writeReport(dir, run, records());
  t.equal(await readFile(path.join(dir, 'REPORT.md'), 'utf8'), markdown);
  t.same(JSON.parse(await readFile(path.join(dir, 'store.json'), 'utf8')).result.rows[0].baseline.samples, [200, 200, 200]);

  const expected: Record<string, string[]> = {
    'replica-store-throughput': ['seq write 1 MiB', 'seq read 1 MiB cold', 'fio libaio', 'fio read', 'MiB/s'],
    'replica-store-iops': ['4 KiB durable write QD1', 'fio psync', 'IOPS'],
    'replica-store-latency': ['4 KiB QD1 latency', '1 MiB write, median time to quorum', 'p50', 'p99', 'latency (ms)'],
    'checksum-throughput': ['fast path, 1 MiB', 'single chain (baseline), 1 MiB', 'single chain', 'GB/s'],
  };
  const links = [...markdown.matchAll(/\]\((charts\/[^)]+)\)/g)].map((m) => m[1]!);
  for (const [name, labels] of Object.entries(expected)) {
    const svgPath = `charts/${name}.svg`;
    const svg = await readFile(path.join(dir, svgPath), 'utf8');
    t.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, `${name}: an SVG document`);
    t.match(svg, /<\/svg>\s*$/);
    const parsed = new resvg.Resvg(svg);
    t.ok(parsed.width > 100 && parsed.height > 100, `${name}: parses as SVG (${parsed.width}×${parsed.height})`);
    const texts = [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!.replace(/&amp;/g, '&'));
    for (const label of labels) t.ok(texts.some((text) => text.includes(label)), `${name}: shows "${label}"`);
    t.ok(links.includes(svgPath), `${name}: REPORT.md links the SVG`);

    const pngPath = `charts/${name}.png`;
    const png = await readFile(path.join(dir, pngPath)).catch(() => undefined);
    if (png) {
      t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${name}: a PNG`);
      t.match(markdown, `![${name.startsWith('checksum') ? 'checksum' : 'replica store'}:`, 'embedded as an image');
      t.ok(links.includes(pngPath), `${name}: REPORT.md shows the PNG`);
    } else {
      t.match(markdown, 'PNG not rendered (', `${name}: no PNG, and the report says why`);
    }
  }
  for (const link of links) t.ok((await stat(path.join(dir, link))).size > 0, `link ${link} resolves to a file`);
  t.notOk(links.some((l) => l.includes('other')), 'a family with no rows gets no chart');

  // The chart sits in its family's section, after the table.
  const storeSection = markdown.slice(markdown.indexOf('## replica store'), markdown.indexOf('## checksum'));
  t.match(storeSection, 'charts/replica-store-latency.svg');
  t.notMatch(storeSection, 'charts/checksum-');
});

t.test('targets keep their pass and SHORT marks', async (t) => {
  const withTargets = record('store', 'replica store', storeRows);
  withTargets.result!.targets = [target('seq write ≥ 85% of fio', seqWrite.ratio!, '>=', 0.85), target('p99 ≤ 5× fio', 4.1, '<=', 5)];
  const markdown = renderMarkdown(run, [withTargets]);
  t.match(markdown, '- **SHORT** store: seq write ≥ 85% of fio (required ≥ 0.85×, measured 0.60×)');
  t.match(markdown, '- **pass** store: p99 ≤ 5× fio (required ≤ 5.00×, measured 4.10×)');
});
