// A description of the machine a benchmark ran on, written with every result: figures
// from different machines (or from a noisy one) must not be compared blindly.
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface MachineInfo {
  cpuModel: string;
  /** x86 family/model/stepping: identifies the core when a VM hides the model name. */
  cpuId: string;
  logicalCpus: number;
  cpuMHz: number;
  /** The CPU features brickd's fast paths depend on, as /proc/cpuinfo names them. */
  cpuFeatures: string[];
  /** Running under a hypervisor: timings are noisier and steal time is possible. */
  virtualized: boolean;
  kernel: string;
  memoryBytes: number;
  /** 1-minute load average when the run started: another busy process skews results. */
  loadAverage: number;
  node: string;
  v8: string;
  arch: string;
  hostname: string;
}

const FEATURES_OF_INTEREST = ['sse4_2', 'pclmulqdq', 'avx2', 'avx512f', 'vpclmulqdq'];

function cpuinfoField(cpuinfo: string, field: string): string | undefined {
  return new RegExp(`^${field}\\s*:\\s*(.*)$`, 'm').exec(cpuinfo)?.[1]?.trim();
}

export function describeMachine(): MachineInfo {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux: fall back to what node reports
  }
  const flags = new Set((cpuinfoField(cpuinfo, 'flags') ?? '').split(/\s+/));
  const cpus = os.cpus();
  return {
    cpuModel: cpuinfoField(cpuinfo, 'model name') ?? cpus[0]?.model ?? 'unknown',
    cpuId: ['cpu family', 'model', 'stepping']
      .map((field) => `${field.replace('cpu ', '')} ${cpuinfoField(cpuinfo, field) ?? '?'}`)
      .join(' '),
    logicalCpus: cpus.length,
    // os.cpus() reports 0 MHz in some VMs; /proc/cpuinfo still has the nominal clock.
    cpuMHz: Math.round(Number(cpuinfoField(cpuinfo, 'cpu MHz') ?? 0)) || cpus[0]?.speed || 0,
    cpuFeatures: FEATURES_OF_INTEREST.filter((f) => flags.has(f)),
    virtualized: flags.has('hypervisor'),
    kernel: `${os.type()} ${os.release()} ${os.version()}`,
    memoryBytes: os.totalmem(),
    loadAverage: os.loadavg()[0] ?? 0,
    node: process.version,
    v8: process.versions.v8,
    arch: process.arch,
    hostname: os.hostname(),
  };
}
