// Writes a benchmark run to disk: one <case>.json per case (everything measured, with the
// machine and parameters), charts of each family under charts/ (bench/charts.ts), and a
// REPORT.md with one table per case family, each figure beside its baseline, the ratio of
// the medians and the ratio of every round, then the family's charts and its targets
// marked pass or short.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { roundRatios, type CaseResult, type ResultRow, type Target } from './case.js';
import { formatNumber, writeCharts, type ChartFile } from './charts.js';
import type { MachineInfo, StorageInfo } from './machine.js';

export { formatNumber };

export interface CaseRecord {
  case: string;
  family: string;
  description: string;
  startedAt: string;
  durationMs: number;
  quick: boolean;
  machine: MachineInfo;
  /** Absent when the case threw; `error` says why. */
  result?: CaseResult;
  error?: string;
}

export interface RunInfo {
  startedAt: string;
  durationMs: number;
  quick: boolean;
  machine: MachineInfo;
}

/** The charts written for a run, or why none could be (the report is written all the same). */
export interface ReportCharts {
  files: ChartFile[];
  error?: string;
}

/** Writes the JSON files, the charts and REPORT.md into `dir`; returns the markdown. */
export async function writeReport(dir: string, run: RunInfo, records: CaseRecord[]): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const record of records) {
    await writeFile(path.join(dir, `${record.case}.json`), `${JSON.stringify(record, null, 2)}\n`);
  }
  // The figures took minutes to measure: a chart that fails to draw must not lose them.
  const charts: ReportCharts = await writeCharts(dir, records).then(
    (files) => ({ files }),
    (err: unknown) => ({ files: [], error: err instanceof Error ? err.message : String(err) }),
  );
  const markdown = renderMarkdown(run, records, charts);
  await writeFile(path.join(dir, 'REPORT.md'), markdown);
  return markdown;
}

export function renderMarkdown(run: RunInfo, records: CaseRecord[], charts: ReportCharts = { files: [] }): string {
  const m = run.machine;
  const lines = [
    '# brickd benchmark report',
    '',
    `Run started ${run.startedAt}, ${run.quick ? 'quick (smoke) run: figures are indicative only' : 'full run'}, ` +
      `took ${(run.durationMs / 1000).toFixed(1)} s.`,
    '',
    '| machine | |',
    '| --- | --- |',
    `| CPU | ${m.cpuModel} (${m.cpuId}), ${m.logicalCpus} logical CPUs` +
      `${m.cpuMHz > 0 ? ` at ${m.cpuMHz} MHz` : ''}${m.virtualized ? ', virtualized' : ''} |`,
    `| CPU features | ${m.cpuFeatures.join(' ') || 'none of interest'} |`,
    `| memory | ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB |`,
    `| kernel | ${m.kernel} |`,
    `| node | ${m.node} (V8 ${m.v8}, ${m.arch}) |`,
    `| load average at start | ${m.loadAverage.toFixed(2)} |`,
    ...(m.storage ?? []).map(storageLine),
  ];
  if (charts.error !== undefined) lines.push('', `Charts could not be drawn: ${charts.error}`);

  const families = [...new Set(records.map((r) => r.family))];
  for (const family of families) {
    const members = records.filter((r) => r.family === family);
    lines.push('', `## ${family}`, '');
    for (const r of members) lines.push(`- \`${r.case}\`: ${r.description}`);
    // The per-round column only where some row has rounds on both sides.
    const perRound = members.some((r) => (r.result?.rows ?? []).some((row) => roundRatios(row) !== undefined));
    const blanks = perRound ? ' | | | |' : ' | | |';
    lines.push(
      '',
      `| case | metric | value | baseline | ratio |${perRound ? ' ratio per round |' : ''}`,
      `| --- | --- | ---: | ---: | ---: |${perRound ? ' ---: |' : ''}`,
    );
    for (const r of members) {
      if (r.error !== undefined) lines.push(`| ${r.case} | failed: ${cell(r.error)}${blanks}`);
      else if (r.result?.skipped !== undefined) lines.push(`| ${r.case} | skipped: ${cell(r.result.skipped)}${blanks}`);
      else for (const row of r.result?.rows ?? []) lines.push(rowLine(r.case, row, perRound));
    }
    for (const chart of charts.files.filter((c) => c.family === family)) lines.push('', ...chartLines(chart));
    const targets = members.flatMap((r) => (r.result?.targets ?? []).map((t) => ({ case: r.case, t })));
    if (targets.length > 0) {
      lines.push('', 'Targets:', '');
      for (const { case: name, t } of targets) lines.push(`- ${targetLine(name, t)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Table cell text: a `|` would end the cell, a newline the row. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ');
}

function rowLine(caseName: string, row: ResultRow, perRound: boolean): string {
  const value = `${formatNumber(row.value)} ${row.unit}`;
  const baseline = row.baseline ? `${formatNumber(row.baseline.value)} ${row.unit} (${cell(row.baseline.label)})` : '';
  const ratio = row.ratio !== undefined ? formatRatio(row.ratio) : '';
  const rounds = perRound ? ` ${(roundRatios(row) ?? []).map((r) => r.toFixed(2)).join(' / ')} |` : '';
  return `| ${caseName} | ${cell(row.metric)} | ${value} | ${baseline} | ${ratio} |${rounds}`;
}

/** The chart as an image (the PNG, else the SVG) with a link to its SVG. */
function chartLines(chart: ChartFile): string[] {
  if (chart.png !== undefined) return [`![${chart.title}](${chart.png})`, '', `Chart as SVG: [${chart.svg}](${chart.svg})`];
  return [`![${chart.title}](${chart.svg})`, '', `PNG not rendered (${cell(chart.pngError ?? 'unknown reason')}); the SVG above is the chart.`];
}

function storageLine(s: StorageInfo): string {
  const what = s.role === 'temp dir' ? `storage: temp dir ${s.path} (loop-file bricks)` : `storage: --device ${s.path}`;
  const parts: string[] = [];
  if (s.fsType) parts.push(`${s.fsType} on ${s.mountSource ?? '?'} mounted at ${s.mountPoint ?? '?'}`);
  const d = s.device;
  if (d) {
    const facts = [`${(d.sizeBytes / 2 ** 30).toFixed(1)} GiB`];
    if (d.model) facts.push(d.model);
    if (d.rotational !== undefined) facts.push(d.rotational ? 'rotational' : 'non-rotational');
    if (d.disk) facts.push(`partition of ${d.disk}`);
    if (d.loopBackingFile) facts.push(`loop device over ${d.loopBackingFile}`);
    parts.push(`block device ${d.name} (${d.devNumber}): ${facts.join(', ')}`);
  } else if (s.role === 'temp dir' && s.fsType) parts.push('no block device under it');
  else if (s.role === 'device') parts.push('not found');
  return `| ${what} | ${cell(parts.join('; '))} |`;
}

function targetLine(caseName: string, t: Target): string {
  const mark = t.pass ? '**pass**' : '**SHORT**';
  const comparison = t.comparison === '>=' ? '≥' : '≤';
  return `${mark} ${caseName}: ${t.description} (required ${comparison} ${formatRatio(t.required)}, measured ${formatRatio(t.ratio)})`;
}

export function formatRatio(ratio: number): string {
  return `${ratio.toFixed(2)}×`;
}
