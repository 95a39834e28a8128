/** The machine a benchmark ran on, as printed in BENCHMARKS.md. */
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';

export interface MachineInfo {
  cores: number;
  cpuModel: string;
  kernel: string;
  node: string;
  memoryGiB: number;
  /** e.g. "KVM" when /proc/cpuinfo says a hypervisor is present. */
  virtualized: boolean;
}

export function machineInfo(): MachineInfo {
  const list = cpus();
  let virtualized = false;
  try {
    virtualized = /\bhypervisor\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    // not Linux
  }
  return {
    cores: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    kernel: release(),
    node: process.version,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    virtualized,
  };
}

export function describeMachine(m: MachineInfo): string {
  return `${m.cores} cores (${m.cpuModel}${m.virtualized ? ', virtual machine' : ''}), ${m.memoryGiB} GiB, Linux ${m.kernel}, Node ${m.node}`;
}
