// The benchmark program: `npm run bench [-- --quick] [--case NAME ...] [--peer NAME ...] [--out DIR]
// [--device /dev/X ... --destroy-data]`.
//
// Runs the selected cases one after another (never in parallel: they would compete for
// the same cores), prints progress on stderr, writes <case>.json files and REPORT.md into
// bench/results/<ISO-timestamp>/ (or --out DIR) and prints the report on stdout.
// Benchmarks are not tests: a target that falls short is marked SHORT in the report,
// while a case that fails to run makes the exit status 1.
//
// --device: the bricks go on these real devices instead of loop files, and everything on
// them is destroyed. Refused (exit 2, before any case runs and without writing to any
// device) unless --destroy-data is given and every device is eligible under the agent's
// own adoption rules (bench/device.ts).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchCase } from './case.js';
import { stopLeftoverChildren } from './child.js';
import { crc32cCase } from './cases/crc32c.js';
import { fuseCase } from './cases/fuse.js';
import { fuseNullCase } from './cases/fuse-null.js';
import { replicationCase } from './cases/replication.js';
import { resyncCase } from './cases/resync.js';
import { storeCase } from './cases/store.js';
import { useBenchDevices } from './brick.js';
import { checkBenchDevices, describeRefusals } from './device.js';
import { describeMachine, describeStorage } from './machine.js';
import { PEERS } from './peers/peers.js';
import { writeReport, type CaseRecord } from './report.js';
import { tuneV8Heap } from '../src/v8-heap.js';

const CASES: BenchCase[] = [crc32cCase, storeCase, replicationCase, resyncCase, fuseNullCase, fuseCase];

const USAGE = `usage: npm run bench -- [--quick] [--case NAME]... [--peer NAME]... [--out DIR] [--device PATH... --destroy-data]
  --quick         short smoke run (fewer, shorter rounds)
  --case NAME     run only this case (repeatable); cases: ${CASES.map((c) => c.name).join(', ')}
  --peer NAME     also measure this other system side by side (repeatable); peers:
${Object.entries(PEERS).map(([name, what]) => `                  ${name}: ${what}`).join('\n')}
  --out DIR       write results into DIR instead of bench/results/<timestamp>/
  --device PATH   put the bricks on this block device instead of loop files (repeatable, one per
                  brick a case holds at once); it must be eligible as the agent would judge it
                  (blank, unmounted, unused, at least 300 MiB). ALL DATA ON IT IS DESTROYED.
  --destroy-data  confirm that the --device disks may be formatted and wiped`;

function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

// dist/bench/run.js and bench/run.ts sit at different depths under the project root.
function projectRoot(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return here.endsWith(path.join('dist', 'bench')) ? path.resolve(here, '..', '..') : path.resolve(here, '..');
}

/** ISO 8601 basic format (20261125T195942Z): sortable and safe in a file name. */
function timestamp(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        case: { type: 'string', multiple: true },
        peer: { type: 'string', multiple: true },
        out: { type: 'string' },
        device: { type: 'string', multiple: true },
        'destroy-data': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const unknown = (values.case ?? []).filter((name) => !CASES.some((c) => c.name === name));
  if (unknown.length > 0) {
    console.error(`unknown case: ${unknown.join(', ')}\n${USAGE}`);
    return 2;
  }
  const unknownPeers = (values.peer ?? []).filter((name) => !Object.hasOwn(PEERS, name));
  if (unknownPeers.length > 0) {
    console.error(`unknown peer: ${unknownPeers.join(', ')}\n${USAGE}`);
    return 2;
  }
  const peers = [...new Set(values.peer ?? [])];
  const selected = values.case ? CASES.filter((c) => values.case!.includes(c.name)) : CASES;
  const quick = values.quick ?? false;

  const given = values.device ?? [];
  if (values['destroy-data'] && given.length === 0) {
    console.error(`--destroy-data confirms --device: give the devices to use\n${USAGE}`);
    return 2;
  }
  if (given.length > 0 && !values['destroy-data']) {
    // Refused before the devices are even probed: nothing is opened without the confirmation.
    console.error(
      `refusing --device ${given.join(', ')}: the benchmark formats ${given.length > 1 ? 'these devices' : 'this device'} ` +
        'and destroys all data on it; add --destroy-data to confirm',
    );
    return 2;
  }
  const check = await checkBenchDevices(given);
  if (check.refusals.length > 0) {
    console.error(`${describeRefusals(check.refusals)}\nno device was written to; a --device must be eligible as the agent would judge it`);
    return 2;
  }
  const devices = check.devices;
  useBenchDevices(devices);

  const started = new Date();
  const machine = { ...describeMachine(), storage: await describeStorage(devices) };
  const outDir = path.resolve(values.out ?? path.join(projectRoot(), 'bench', 'results', timestamp(started)));
  progress(`${machine.cpuModel}, ${machine.logicalCpus} CPUs, node ${machine.node}; ${quick ? 'quick' : 'full'} run`);
  if (devices.length > 0) progress(`bricks on ${devices.join(', ')} (formatted, then wiped)`);

  const records: CaseRecord[] = [];
  for (const benchCase of selected) {
    progress(`case ${benchCase.name}: start`);
    const caseStart = Date.now();
    const record: CaseRecord = {
      case: benchCase.name,
      family: benchCase.family,
      description: benchCase.description,
      startedAt: new Date(caseStart).toISOString(),
      durationMs: 0,
      quick,
      machine,
    };
    try {
      record.result = await benchCase.run({ quick, peers, devices, progress: (m) => progress(`${benchCase.name}: ${m}`) });
    } catch (err) {
      record.error = err instanceof Error ? err.message : String(err);
      progress(`case ${benchCase.name}: failed: ${record.error}`);
    }
    const leftovers = await stopLeftoverChildren();
    if (leftovers.length > 0) progress(`case ${benchCase.name}: stopped child processes it left running: ${leftovers.join(', ')}`);
    record.durationMs = Date.now() - caseStart;
    progress(`case ${benchCase.name}: done in ${(record.durationMs / 1000).toFixed(1)} s`);
    records.push(record);
  }

  const run = { startedAt: started.toISOString(), durationMs: Date.now() - started.getTime(), quick, machine };
  const markdown = await writeReport(outDir, run, records);
  process.stdout.write(markdown);
  progress(`results in ${outDir}`);
  return records.some((r) => r.error !== undefined) ? 1 : 0;
}

// The cases run brickd's data path in this process too (a primary, a store): as the agent runs it.
tuneV8Heap();
process.exitCode = await main();
