// brickctl's human output and its size/duration syntax: aligned tables, key/value blocks,
// byte sizes both ways, and the progress display of long operations (a redrawn bar on a
// terminal, one plain line per change anywhere else so logs and pipes stay readable).
//
// Pure functions apart from ProgressDisplay, which writes to the stream it is given.

const BINARY_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 2 ** 10,
  kib: 2 ** 10,
  m: 2 ** 20,
  mib: 2 ** 20,
  g: 2 ** 30,
  gib: 2 ** 30,
  t: 2 ** 40,
  tib: 2 ** 40,
};

/**
 * Parse a size: bytes, or a number with K/M/G/T or KiB/MiB/GiB/TiB (all powers of 1024, as
 * the agent's own configuration reads them). Decimals are allowed before a unit ("1.5GiB")
 * and round down to whole bytes. Throws RangeError naming `what`.
 */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m ? BINARY_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new RangeError(`${what}: expected a size like 1073741824, 512MiB or 10GiB, got ${JSON.stringify(text)}`);
  const bytes = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`${what}: ${JSON.stringify(text)} is too large`);
  return bytes;
}

/** A byte count for people: "0 B", "512 B", "1.5 KiB", "64 MiB", "320 MiB", "10 GiB". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 1024) return `${Math.max(0, Math.floor(bytes || 0))} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes / 1024;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${value >= 100 ? value.toFixed(0) : Number(value.toFixed(1))} ${units[i]}`;
}

/** Parse a duration: "500ms", "30s", "2m", "1h", or a plain number of seconds. Throws RangeError. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) throw new RangeError(`${what}: expected a duration like 30s, 500ms or 2m, got ${JSON.stringify(text)}`);
  const scale = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const ms = Math.round(Number(m[1]) * scale);
  if (ms <= 0) throw new RangeError(`${what}: must be more than zero, got ${JSON.stringify(text)}`);
  return ms;
}

/** A percentage for people: 0.456 → "46%". */
export function formatPercent(fraction: number): string {
  return `${Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100)}%`;
}

/** A table or key/value cell; null, undefined and '' show as "-". */
export type Cell = string | number | boolean | null | undefined;

/**
 * An aligned text table: a header row, then one row per entry; columns separated by two
 * spaces, the last column not padded (no trailing blanks). Cells are single-line: newlines
 * become spaces. An empty table prints its header only, so scripts that grep for the
 * header still find it.
 */
export function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<Cell>>): string {
  const cells = [headers, ...rows].map((row) => row.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c)).replace(/\s*\n\s*/g, ' ')));
  const widths = headers.map((_, col) => Math.max(...cells.map((row) => (row[col] ?? '').length)));
  return cells
    .map((row) =>
      row
        .map((c, col) => (col === row.length - 1 ? c : c.padEnd(widths[col]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** "key: value" lines with the values aligned; empty values are shown as "-". */
export function keyValues(pairs: ReadonlyArray<readonly [string, Cell]>): string {
  const width = Math.max(0, ...pairs.map(([k]) => k.length + 1));
  return pairs.map(([k, v]) => `${(k + ':').padEnd(width)}  ${v === null || v === undefined || v === '' ? '-' : String(v)}`).join('\n');
}

/** A fixed-width bar: progressBar(0.4, 10) → "[####------]". */
export function progressBar(fraction: number, width = 30): string {
  const f = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
  const filled = Math.round(f * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

export interface ProgressUpdate {
  /** What the operation acts on, e.g. "adopt-device /dev/sdb". */
  label: string;
  /** running, succeeded, failed. */
  state: string;
  /** 0..1. */
  progress: number;
  message: string;
}

interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/**
 * Shows an operation's progress on `stream` (stderr, so that stdout stays the result).
 * On a terminal one line is redrawn in place with a bar; elsewhere a plain line is written
 * whenever the state, the message or the whole percentage changes, never a bar or a
 * carriage return.
 */
export class ProgressDisplay {
  private lastLine = '';
  private drawn = false;

  constructor(private readonly stream: ProgressStream) {}

  get interactive(): boolean {
    return Boolean(this.stream.isTTY);
  }

  update(u: ProgressUpdate): void {
    const percent = formatPercent(u.progress);
    if (this.interactive) {
      const text = `${progressBar(u.progress, 30)} ${percent.padStart(4)} ${u.label}${u.message ? ` (${u.message})` : ''}`;
      const max = Math.max(20, (this.stream.columns || 100) - 1);
      this.stream.write(`\r\x1b[K${text.slice(0, max)}`);
      this.drawn = true;
      return;
    }
    const line = `${u.label}: ${u.state} ${percent}${u.message ? ` ${u.message}` : ''}`;
    if (line === this.lastLine) return;
    this.lastLine = line;
    this.stream.write(line + '\n');
  }

  /** End the redrawn line (terminal) so that what follows starts on a fresh line. */
  finish(): void {
    if (this.drawn) this.stream.write('\n');
    this.drawn = false;
  }
}
