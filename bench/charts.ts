// Charts of a benchmark run, drawn with Vega-Lite: per report family, one grouped bar
// chart of its throughput rows, one of its IOPS rows and one of its latency rows (p50,
// p99, ... side by side in panels of their own). Each group of bars is one metric: the
// subject's median beside its baseline's, the baseline named in the legend, and a dot per
// round on each bar, so the spread that the medians hide stays visible.
//
// Writes only into <report dir>/charts/: <family-slug>-<kind>.svg, and .png beside it
// when it can be rendered (resvg, the fonts of the machine); a PNG that cannot be rendered
// is reported, never fatal. Rendering runs in this process, without a browser.
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { ResultRow } from './case.js';
import type { CaseRecord } from './report.js';

export type ChartKind = 'throughput' | 'iops' | 'latency';

export interface ChartSpec {
  family: string;
  kind: ChartKind;
  /** File name without extension: <family-slug>-<kind>. */
  name: string;
  title: string;
  /** The metric labels on the chart's axis, in order. */
  metrics: string[];
  spec: TopLevelSpec;
}

export interface ChartFile {
  family: string;
  kind: ChartKind;
  title: string;
  metrics: string[];
  /** Paths relative to the report directory. */
  svg: string;
  png?: string;
  /** Why there is no PNG. */
  pngError?: string;
}

const KINDS: ChartKind[] = ['throughput', 'iops', 'latency'];

/** Bytes per second of each throughput unit the cases use. */
const BYTES_PER_SECOND: Record<string, number> = {
  'B/s': 1,
  'kB/s': 1e3,
  'KB/s': 1e3,
  'MB/s': 1e6,
  'GB/s': 1e9,
  'KiB/s': 2 ** 10,
  'MiB/s': 2 ** 20,
  'GiB/s': 2 ** 30,
};

/** Microseconds per latency (or duration) unit. */
const MICROSECONDS: Record<string, number> = { ns: 1e-3, µs: 1, us: 1, ms: 1e3, s: 1e6 };

function kindOf(unit: string): ChartKind | undefined {
  if (unit in BYTES_PER_SECOND) return 'throughput';
  if (unit === 'IOPS' || unit === 'ops/s') return 'iops';
  if (unit in MICROSECONDS) return 'latency';
  return undefined;
}

/** One chart's rows in one unit: the rows' own when they agree, else MiB/s or µs. */
function commonUnit(kind: ChartKind, units: string[]): { unit: string; scale: (value: number, from: string) => number } {
  const distinct = [...new Set(units)];
  if (distinct.length === 1) return { unit: distinct[0]!, scale: (v) => v };
  if (kind === 'throughput') return { unit: 'MiB/s', scale: (v, from) => (v * BYTES_PER_SECOND[from]!) / 2 ** 20 };
  // Milliseconds sit between the µs of a 4 KiB write and the seconds of a resync.
  if (kind === 'latency') return { unit: 'ms', scale: (v, from) => (v * MICROSECONDS[from]!) / 1e3 };
  return { unit: distinct[0]!, scale: (v) => v };
}

export function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '') || 'family';
}

/** "4 KiB QD1 latency p99" → base "4 KiB QD1 latency", percentile "p99". */
export function splitPercentile(metric: string): { base: string; percentile?: string } {
  const match = /(?:^|[\s,(])(p\d+(?:\.\d+)?)(?=$|[\s,)])/.exec(metric);
  if (!match) return { base: metric };
  const base = (metric.slice(0, match.index) + metric.slice(match.index + match[0].length)).replace(/\s{2,}/g, ' ').replace(/[\s,]+$/, '').trim();
  return { base: base || metric, percentile: match[1]! };
}

const SUBJECT = 'subject: what the bold label names';

/**
 * The rows of bands within a metric's group, top to bottom: its name (written above its
 * bars: a long name then needs no room left of the axis), its subject, its baseline.
 */
type Slot = 'name' | 'subject' | 'baseline';

interface Bar {
  metric: string;
  panel: string;
  slot: Slot;
  series: string;
  value: number;
  label: string;
  /** Where the value label goes: past the bar and past its round dots. */
  labelAt: number;
}

interface Dot {
  metric: string;
  panel: string;
  slot: Slot;
  series: string;
  value: number;
}

interface Labelled {
  caseName: string;
  row: ResultRow;
}

/** A figure as the report and the charts print it: three significant digits or so. */
export function formatNumber(value: number): string {
  const magnitude = Math.abs(value);
  return value.toFixed(magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : 2);
}

/** The bars and dots of one chart, every value in `unit`. */
function chartData(rows: Labelled[], kind: ChartKind, prefixCase: boolean): { bars: Bar[]; dots: Dot[]; unit: string; metrics: string[]; series: string[]; panels: string[] } {
  const { unit, scale } = commonUnit(kind, rows.map(({ row }) => row.unit));
  const bars: Bar[] = [];
  const dots: Dot[] = [];
  const metrics: string[] = [];
  const series = [SUBJECT];
  const panels: string[] = [];
  // Percentile panels where there are two kinds at least (p50 and p99, or a percentile and
  // other latencies); otherwise one plain chart whose labels keep their percentile.
  const panelOf = (metric: string) => splitPercentile(metric).percentile ?? 'other latencies';
  const percentiles = kind === 'latency' && new Set(rows.map(({ row }) => panelOf(row.metric))).size > 1;
  for (const { caseName, row } of rows) {
    const split = percentiles ? splitPercentile(row.metric) : { base: row.metric };
    const panel = percentiles ? panelOf(row.metric) : '';
    let metric = prefixCase ? `${caseName}: ${split.base}` : split.base;
    // Two rows with one label in one panel would land on the same bars: number the later one.
    for (let n = 2; bars.some((b) => b.metric === metric && b.panel === panel); n++) metric = `${prefixCase ? `${caseName}: ` : ''}${split.base} (${n})`;
    if (!metrics.includes(metric)) metrics.push(metric);
    if (!panels.includes(panel)) panels.push(panel);
    const sides: Array<{ slot: Slot; series: string; value: number; samples?: number[] }> = [
      { slot: 'subject', series: SUBJECT, value: row.value, ...(row.samples ? { samples: row.samples } : {}) },
    ];
    if (row.baseline && Number.isFinite(row.baseline.value)) {
      sides.push({ slot: 'baseline', series: row.baseline.label, value: row.baseline.value, ...(row.baseline.samples ? { samples: row.baseline.samples } : {}) });
      if (!series.includes(row.baseline.label)) series.push(row.baseline.label);
    }
    for (const side of sides) {
      const value = scale(side.value, row.unit);
      const samples = (side.samples ?? []).filter(Number.isFinite).map((s) => scale(s, row.unit));
      // One round: its dot is the bar's end and tells nothing more.
      if (samples.length > 1) for (const s of samples) dots.push({ metric, panel, slot: side.slot, series: side.series, value: s });
      bars.push({ metric, panel, slot: side.slot, series: side.series, value, label: formatNumber(value), labelAt: Math.max(value, ...samples) });
    }
  }
  return { bars, dots, unit, metrics, series, panels };
}

const FONT = 'DejaVu Sans, Verdana, Helvetica, Arial, sans-serif';
const BAR_PX = 15;
const PLOT_WIDTH = 420;
const LATENCY_PANEL_WIDTH = 260;

/** The Vega-Lite spec of one chart. */
function chartSpec(family: string, kind: ChartKind, rows: Labelled[], prefixCase: boolean, rounds: number): ChartSpec {
  const { bars, dots, unit, metrics, series, panels } = chartData(rows, kind, prefixCase);
  // Durations in seconds (a resync, a copy) are times rather than latencies.
  const what = kind === 'throughput' ? 'throughput' : kind === 'iops' ? 'IOPS' : unit === 's' ? 'time' : 'latency';
  const measure = what === unit ? what : `${what} (${unit})`;
  const title = `${family}: ${measure}`;
  const better = kind === 'latency' ? 'shorter is better' : 'longer is better';
  const subtitle = [
    `bars: median${rounds > 1 ? ` of ${rounds} rounds, dots: each round` : ''}; ${better}`,
    panels.length > 1 ? 'one panel per percentile, each with its own scale' : '',
  ].filter(Boolean);
  const slots: Slot[] = series.length > 1 ? ['name', 'subject', 'baseline'] : ['name', 'subject'];
  const y = { field: 'metric', type: 'nominal', sort: metrics, title: null, axis: null, scale: { paddingInner: 0.35, paddingOuter: 0.1 } } as const;
  const yOffset = { field: 'slot', type: 'nominal', sort: slots, scale: { domain: slots, paddingInner: 0.12 } } as const;
  const x = { field: 'value', type: 'quantitative', title: measure, axis: { grid: true, tickCount: 6, labelFontSize: 10 } } as const;
  const color = {
    field: 'series',
    type: 'nominal',
    title: null,
    scale: { domain: series, scheme: 'tableau10' },
    legend: { orient: 'bottom', direction: 'vertical', labelLimit: 0, labelFontSize: 11, symbolType: 'square' },
  } as const;
  const filter = (panel: string | undefined) => (panel === undefined ? [] : [{ filter: { field: 'panel', equal: panel } }]);
  const layers = (panel?: string) => [
    { data: { values: bars }, transform: filter(panel), mark: { type: 'bar' }, encoding: { y, yOffset, x, color } },
    {
      data: { values: dots },
      transform: filter(panel),
      mark: { type: 'point', filled: true, size: 18, color: '#222', opacity: 0.8 },
      encoding: { y, yOffset, x: { field: 'value', type: 'quantitative' } },
    },
    {
      data: { values: bars },
      transform: filter(panel),
      mark: { type: 'text', align: 'left', baseline: 'middle', dx: 4, fontSize: 10, color: '#333' },
      encoding: { y, yOffset, x: { field: 'labelAt', type: 'quantitative' }, text: { field: 'label' } },
    },
    {
      // The names of the metrics that have bars in this panel.
      data: { values: metrics.filter((metric) => bars.some((b) => b.metric === metric && (panel === undefined || b.panel === panel))).map((metric) => ({ metric, slot: 'name' })) },
      mark: { type: 'text', align: 'left', baseline: 'middle', fontSize: 11, fontWeight: 'bold', color: '#222' },
      encoding: { y, yOffset, x: { datum: 0, type: 'quantitative' }, text: { field: 'metric' } },
    },
  ];
  // The step is the height of one band within a group (a name line or a bar).
  const height = { step: BAR_PX };
  // Wide enough for the longest name above its bars (about 7 px a character in bold 11 px).
  const longest = Math.max(...metrics.map((m) => m.length));
  const plotWidth = (least: number) => Math.min(Math.max(least, Math.ceil(longest * 7)), 2 * least);
  const base = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: title, subtitle, anchor: 'start', fontSize: 14, subtitleFontSize: 11 },
    background: 'white',
    padding: 12,
    config: { font: FONT, view: { stroke: null }, axis: { titleFontSize: 11 } },
  };
  let spec: TopLevelSpec;
  if (panels.length > 1) {
    // One panel per percentile: a p99 is often ten times its p50, and on one axis the p50
    // bars would shrink to nothing.
    spec = {
      ...base,
      // Two panels a row: p50 beside p99, other latencies below them.
      columns: 2,
      concat: panels.map((panel) => ({
        title: { text: panel, fontSize: 12, anchor: 'middle' },
        width: plotWidth(LATENCY_PANEL_WIDTH),
        height,
        layer: layers(panel),
      })),
      // p50 and p99 panels list the same metrics in the same order, so they still line up.
      resolve: { scale: { x: 'independent', y: 'independent' } },
    } as TopLevelSpec;
  } else {
    spec = { ...base, width: plotWidth(PLOT_WIDTH), height, layer: layers() } as TopLevelSpec;
  }
  return { family, kind, name: `${slug(family)}-${kind}`, title, metrics, spec };
}

/** The charts of a run: one per family and kind that has rows of that kind. */
export function chartSpecs(records: readonly CaseRecord[]): ChartSpec[] {
  const specs: ChartSpec[] = [];
  const families = [...new Set(records.map((r) => r.family))];
  for (const family of families) {
    const members = records.filter((r) => r.family === family && r.result && r.result.skipped === undefined);
    const prefixCase = members.length > 1;
    const rounds = Math.max(0, ...members.flatMap((r) => r.result!.rows.map((row) => row.samples?.length ?? 0)));
    for (const kind of KINDS) {
      const rows = members.flatMap((r) => r.result!.rows.filter((row) => kindOf(row.unit) === kind && Number.isFinite(row.value)).map((row) => ({ caseName: r.case, row })));
      if (rows.length > 0) specs.push(chartSpec(family, kind, rows, prefixCase, rounds));
    }
  }
  return specs;
}

/** Render a Vega-Lite spec to SVG text, in this process (no browser, no canvas). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Where resvg looks for the machine's fonts (fontdb's system directories on Linux). */
const FONT_DIRS = ['/usr/share/fonts', '/usr/local/share/fonts', path.join(os.homedir(), '.local/share/fonts'), path.join(os.homedir(), '.fonts')];

async function hasFontFile(dir: string, depth = 4): Promise<boolean> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  if (entries.some((e) => !e.isDirectory() && /\.(ttf|otf|ttc)$/i.test(e.name))) return true;
  for (const e of entries) if (e.isDirectory() && depth > 0 && (await hasFontFile(path.join(dir, e.name), depth - 1))) return true;
  return false;
}

/** Why no PNG can be drawn on this machine, or undefined when one can. */
async function pngUnavailable(): Promise<string | undefined> {
  for (const dir of FONT_DIRS) if (await hasFontFile(dir)) return undefined;
  // Without a font resvg leaves every text out, silently: a chart of unlabelled bars.
  return `no font files in ${FONT_DIRS.join(', ')}, so a PNG would have no text (apt-get install fonts-dejavu-core)`;
}

/** SVG → PNG at twice the SVG's size, with the machine's fonts. Throws when that cannot be done. */
async function renderPng(svg: string): Promise<Buffer> {
  const { default: resvg } = await import('@resvg/resvg-js');
  const rendered = new resvg.Resvg(svg, {
    fitTo: { mode: 'zoom', value: 2 },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
  });
  return rendered.render().asPng();
}

/** Write every chart of the run under <dir>/charts/; returns what was written. */
export async function writeCharts(dir: string, records: readonly CaseRecord[]): Promise<ChartFile[]> {
  const specs = chartSpecs(records);
  if (specs.length === 0) return [];
  await mkdir(path.join(dir, 'charts'), { recursive: true });
  const files: ChartFile[] = [];
  const noPng = await pngUnavailable();
  for (const chart of specs) {
    const svg = await renderSvg(chart.spec);
    const file: ChartFile = { family: chart.family, kind: chart.kind, title: chart.title, metrics: chart.metrics, svg: `charts/${chart.name}.svg` };
    await writeFile(path.join(dir, file.svg), svg);
    try {
      if (noPng !== undefined) throw new Error(noPng);
      const png = `charts/${chart.name}.png`;
      await writeFile(path.join(dir, png), await renderPng(svg));
      file.png = png;
    } catch (err) {
      file.pngError = (err as Error).message;
    }
    files.push(file);
  }
  return files;
}
