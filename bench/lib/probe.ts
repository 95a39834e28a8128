/**
 * The agent's BPF probe for benchmarks: the real object through the native
 * addon, with the agent's default tunables. Every probe opened here is closed
 * by closeAllProbes() (run.ts calls it after each module, on failure and on
 * signals); links are never pinned, so nothing stays attached even if the
 * process is killed.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { BpfProbe as BpfProbeT } from '../../native/index.js';

export type BpfProbe = BpfProbeT;

/** The agent's defaults (src/receiver/ebpf/config.ts): wake-up threshold and drain interval. */
export const AGENT_WAKEUP_BYTES = 65_536;
export const AGENT_DRAIN_INTERVAL_MS = 100;

const open = new Set<BpfProbe>();

/** Why kernel benchmarks cannot run here, or undefined. */
export function kernelUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)';
  if (!existsSync(new URL('../../bpf/tcp_probe.bpf.o', import.meta.url))) return 'bpf/tcp_probe.bpf.o missing: run npm run build';
  if (!existsSync(new URL('../../native/build/Release/kmesh_bpf.node', import.meta.url))) return 'native addon missing: run npm run build';
  return undefined;
}

/** The first cgroup2 mount (as the receiver auto-detects it), or KMESH_BENCH_CGROUP. */
export function cgroupRoot(): string {
  if (process.env.KMESH_BENCH_CGROUP) return process.env.KMESH_BENCH_CGROUP;
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [, mnt, type] = line.split(' ');
    if (type === 'cgroup2' && mnt) return mnt;
  }
  throw new Error('no cgroup2 mount found in /proc/self/mounts');
}

export interface OpenProbeOptions {
  wakeupBytes?: number;
  ringbufBytes?: number;
  /** Kernel BPF run-time stats for programStats() (not what the agent runs with). Default false. */
  runTimeStats?: boolean;
  attach?: boolean;
}

/** Loads bpf/tcp_probe.bpf.o (and attaches it at the cgroup-v2 root unless attach: false). */
export async function openProbe(opts: OpenProbeOptions = {}): Promise<BpfProbe> {
  const { BpfProbe, defaultObjectPath } = await import('../../native/index.js');
  const tunables: { wakeupBytes: number; ringbufBytes?: number; runTimeStats?: boolean } = { wakeupBytes: opts.wakeupBytes ?? AGENT_WAKEUP_BYTES };
  if (opts.ringbufBytes !== undefined) tunables.ringbufBytes = opts.ringbufBytes;
  if (opts.runTimeStats !== undefined) tunables.runTimeStats = opts.runTimeStats;
  const probe = new BpfProbe(defaultObjectPath, tunables);
  open.add(probe);
  try {
    probe.load();
    if (opts.attach !== false) probe.attachCgroup(cgroupRoot());
  } catch (err) {
    closeProbe(probe);
    throw err;
  }
  return probe;
}

export function closeProbe(probe: BpfProbe): void {
  open.delete(probe);
  probe.close();
}

export function closeAllProbes(): void {
  for (const p of open) {
    try {
      p.close();
    } catch {
      // best effort
    }
  }
  open.clear();
}
