// Writes a benchmark run to disk: one <case>.json per case (everything measured, with the
// machine and parameters) and a REPORT.md with one table per case family, each figure
// beside its baseline and the ratio, followed by the family's targets marked pass or short.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { CaseResult, ResultRow, Target } from './case.js';
import type { MachineInfo } from './machine.js';

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

/** Writes the JSON files and REPORT.md into `dir`; returns the markdown. */
export async function writeReport(dir: string, run: RunInfo, records: CaseRecord[]): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const record of records) {
    await writeFile(path.join(dir, `${record.case}.json`), `${JSON.stringify(record, null, 2)}\n`);
  }
  const markdown = renderMarkdown(run, records);
  await writeFile(path.join(dir, 'REPORT.md'), markdown);
  return markdown;
}

export function renderMarkdown(run: RunInfo, records: CaseRecord[]): string {
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
  ];

  const families = [...new Set(records.map((r) => r.family))];
  for (const family of families) {
    const members = records.filter((r) => r.family === family);
    lines.push('', `## ${family}`, '');
    for (const r of members) lines.push(`- \`${r.case}\`: ${r.description}`);
    lines.push('', '| case | metric | value | baseline | ratio |', '| --- | --- | ---: | ---: | ---: |');
    for (const r of members) {
      if (r.error !== undefined) lines.push(`| ${r.case} | failed: ${r.error} | | | |`);
      else if (r.result?.skipped !== undefined) lines.push(`| ${r.case} | skipped: ${r.result.skipped} | | | |`);
      else for (const row of r.result?.rows ?? []) lines.push(rowLine(r.case, row));
    }
    const targets = members.flatMap((r) => (r.result?.targets ?? []).map((t) => ({ case: r.case, t })));
    if (targets.length > 0) {
      lines.push('', 'Targets:', '');
      for (const { case: name, t } of targets) lines.push(`- ${targetLine(name, t)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

function rowLine(caseName: string, row: ResultRow): string {
  const value = `${formatNumber(row.value)} ${row.unit}`;
  const baseline = row.baseline ? `${formatNumber(row.baseline.value)} ${row.unit} (${row.baseline.label})` : '';
  const ratio = row.ratio !== undefined ? formatRatio(row.ratio) : '';
  return `| ${caseName} | ${row.metric} | ${value} | ${baseline} | ${ratio} |`;
}

function targetLine(caseName: string, t: Target): string {
  const mark = t.pass ? '**pass**' : '**SHORT**';
  const comparison = t.comparison === '>=' ? '≥' : '≤';
  return `${mark} ${caseName}: ${t.description} (required ${comparison} ${formatRatio(t.required)}, measured ${formatRatio(t.ratio)})`;
}

export function formatNumber(value: number): string {
  const magnitude = Math.abs(value);
  return value.toFixed(magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : 2);
}

export function formatRatio(ratio: number): string {
  return `${ratio.toFixed(2)}×`;
}
