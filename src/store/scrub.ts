// Scrub: a throttled background pass that verifies every block of every file of a replica
// against its checksum and repairs what it can through the store's repair hook.
//
// State machine (ScrubState): idle → running ⇄ paused → done; stop() from running or
// paused returns to idle keeping the cursor. The walk is in fid order, `chunkBlocks` blocks
// at a time, with a token-bucket rate limit in bytes per second. The cursor (fid, block)
// and the findings are saved to .brickd/scrub.json about once a second and on pause/stop,
// so a pass interrupted by a restart resumes where it stopped instead of starting over.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isSystemError } from '../errors.js';
import { writeFileAtomic } from '../fsutil.js';
import type { Logger } from '../log.js';
import type { ReplicaStore } from './store.js';

export type ScrubState = 'idle' | 'running' | 'paused' | 'done';

export interface ScrubFinding {
  fid: string;
  block: number;
  repaired: boolean;
}

export interface ScrubProgress {
  state: ScrubState;
  /** Where the walk is: the fid being verified and its next block. */
  cursor: { fid: string; block: number } | null;
  filesScanned: number;
  bytesScanned: number;
  /** Bytes in use when the pass started (for a percentage). */
  bytesTotal: number;
  findings: ScrubFinding[];
  startedAt: string | null;
  finishedAt: string | null;
  /**
   * When the last pass that reached the end finished. Unlike finishedAt it survives the
   * start of a new pass, so "when was every block last verified" always has an answer.
   */
  lastCompletedAt: string | null;
}

export interface ScrubOptions {
  /** Verification rate limit in bytes per second (default 50 MB/s). */
  rateBytesPerSec?: number;
  chunkBlocks?: number;
  log?: Logger;
  /** At most this many findings are kept in the progress record (default 1000). */
  maxFindings?: number;
}

const SAVE_INTERVAL_MS = 1000;

export class Scrubber {
  private progressValue: ScrubProgress = {
    state: 'idle',
    cursor: null,
    filesScanned: 0,
    bytesScanned: 0,
    bytesTotal: 0,
    findings: [],
    startedAt: null,
    finishedAt: null,
    lastCompletedAt: null,
  };
  private running: Promise<void> | undefined;
  private wantPause = false;
  private wantStop = false;
  private readonly file: string;
  readonly rate: number;
  private readonly chunkBlocks: number;
  private readonly maxFindings: number;

  constructor(
    private readonly store: ReplicaStore,
    private readonly options: ScrubOptions = {},
  ) {
    this.file = path.join(store.dir, '.brickd', 'scrub.json');
    this.rate = options.rateBytesPerSec ?? 50e6;
    if (!(this.rate > 0)) throw new RangeError(`rateBytesPerSec must be > 0, got ${this.rate}`);
    this.chunkBlocks = options.chunkBlocks ?? 256;
    this.maxFindings = options.maxFindings ?? 1000;
  }

  get progress(): Readonly<ScrubProgress> {
    return this.progressValue;
  }

  /** Load a saved pass (after a restart). A pass that was running or paused can be resumed. */
  async load(): Promise<ScrubProgress> {
    try {
      const saved = JSON.parse(await readFile(this.file, 'utf8')) as ScrubProgress;
      // Files saved before lastCompletedAt existed: a finished pass is the last completion.
      const lastCompletedAt = saved.lastCompletedAt ?? (saved.state === 'done' ? saved.finishedAt : null);
      this.progressValue = { ...saved, state: saved.state === 'running' ? 'paused' : saved.state, lastCompletedAt };
    } catch (err) {
      if (!isSystemError(err, 'ENOENT')) throw err;
    }
    return this.progressValue;
  }

  /** Start a new pass, or resume a paused one. Resolves when the pass has started. */
  start(): void {
    if (this.running) {
      this.wantPause = false;
      return;
    }
    const p = this.progressValue;
    if (p.state !== 'paused') {
      this.progressValue = {
        state: 'running',
        cursor: null,
        filesScanned: 0,
        bytesScanned: 0,
        bytesTotal: this.store.usedBytes,
        findings: [],
        startedAt: new Date().toISOString(),
        finishedAt: null,
        lastCompletedAt: p.lastCompletedAt,
      };
    } else {
      p.state = 'running';
    }
    this.wantPause = this.wantStop = false;
    this.options.log?.info({ volume: this.store.volumeId, resumeAt: this.progressValue.cursor }, 'scrub start');
    this.running = this.walk().finally(() => {
      this.running = undefined;
    });
  }

  /** Pause after the current chunk; resolves once paused and saved. */
  async pause(): Promise<void> {
    if (!this.running) return;
    this.wantPause = true;
    await this.running;
  }

  /** Stop after the current chunk (state idle, cursor kept on disk for inspection). */
  async stop(): Promise<void> {
    this.wantStop = true;
    await this.running;
  }

  /** Resolves when the current pass ends (done, paused or stopped). */
  async whenIdle(): Promise<ScrubProgress> {
    await this.running;
    return this.progressValue;
  }

  private async save(): Promise<void> {
    await writeFileAtomic(this.file, JSON.stringify(this.progressValue) + '\n');
  }

  private async walk(): Promise<void> {
    const p = this.progressValue;
    const blockSize = this.store.manifest.blockSize;
    const startedMs = Date.now();
    const startBytes = p.bytesScanned;
    let lastSave = Date.now();
    const fids = await this.store.listFids();
    let index = p.cursor ? fids.findIndex((f) => f >= p.cursor!.fid) : 0;
    if (index < 0) index = fids.length;
    let block = p.cursor && fids[index] === p.cursor.fid ? p.cursor.block : 0;
    for (; index < fids.length; index++, block = 0) {
      const fid = fids[index]!;
      for (;;) {
        if (this.wantPause || this.wantStop) {
          p.state = this.wantStop ? 'idle' : 'paused';
          p.cursor = { fid, block };
          await this.save();
          this.options.log?.info({ volume: this.store.volumeId, state: p.state, cursor: p.cursor }, 'scrub halt');
          return;
        }
        const result = await this.store.scrubBlocks(fid, block, this.chunkBlocks);
        if (!result) break; // removed since the walk started
        for (const bad of result.bad) {
          if (p.findings.length < this.maxFindings) p.findings.push({ fid, block: bad, repaired: result.repaired.includes(bad) });
        }
        const scanned = Math.max(0, Math.min(this.chunkBlocks, result.blocks - block));
        p.bytesScanned += scanned * blockSize;
        block += this.chunkBlocks;
        p.cursor = { fid, block };
        if (Date.now() - lastSave > SAVE_INTERVAL_MS) {
          await this.save();
          lastSave = Date.now();
        }
        // Token bucket: do not run ahead of the configured rate.
        const aheadMs = ((p.bytesScanned - startBytes) / this.rate) * 1000 - (Date.now() - startedMs);
        if (aheadMs > 1) await new Promise((r) => setTimeout(r, aheadMs));
        if (block >= result.blocks) break;
      }
      p.filesScanned++;
    }
    p.state = 'done';
    p.cursor = null;
    p.finishedAt = new Date().toISOString();
    p.lastCompletedAt = p.finishedAt;
    await this.save();
    this.options.log?.info(
      { volume: this.store.volumeId, files: p.filesScanned, bytes: p.bytesScanned, bad: p.findings.length },
      'scrub done',
    );
  }
}
