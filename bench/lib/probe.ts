/**
 * The agent's BPF probe for benchmarks: the real object through the native
 * addon, with the agent's default tunables. Every probe opened here is closed
 * by closeAllProbes() (run.ts calls it after each module, on failure and on
 * signals); links are never pinned, so nothing stays attached even if the
 * process is killed.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BpfProbe as BpfProbeT } from '../../native/index.js';
import { defaultBpfObjectPath } from '../../src/paths.js';
import { choosePeriodicSource, type PeriodicSourceSetting } from '../../src/receiver/ebpf/periodicSource.js';

export type BpfProbe = BpfProbeT;

/** The agent's defaults (src/receiver/ebpf/config.ts): wake-up threshold and drain interval. */
export const AGENT_WAKEUP_BYTES = 65_536;
export const AGENT_DRAIN_INTERVAL_MS = 100;

const open = new Set<BpfProbe>();

/** Why kernel benchmarks cannot run here, or undefined. */
export function kernelUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)';
  if (!existsSync(defaultBpfObjectPath)) return `${defaultBpfObjectPath} missing: run npm run build`;
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
  /** Another object with the agent's program and map names (see floorObject()); default the agent's. */
  objectPath?: string;
  /**
   * The periodic-report source, settled as the agent does (its ladder) before
   * attaching. Default `auto` for the agent's object, `none` for another
   * object (the floor probes' iterators are stubs).
   */
  source?: PeriodicSourceSetting;
}

/** Loads bpf/tcp_probe.bpf.o (and attaches it at the cgroup-v2 root unless attach: false). */
export async function openProbe(opts: OpenProbeOptions = {}): Promise<BpfProbe> {
  const { BpfProbe } = await import('../../native/index.js');
  const tunables: { wakeupBytes: number; ringbufBytes?: number; runTimeStats?: boolean } = { wakeupBytes: opts.wakeupBytes ?? AGENT_WAKEUP_BYTES };
  if (opts.ringbufBytes !== undefined) tunables.ringbufBytes = opts.ringbufBytes;
  if (opts.runTimeStats !== undefined) tunables.runTimeStats = opts.runTimeStats;
  const probe = new BpfProbe(opts.objectPath ?? defaultBpfObjectPath, tunables);
  open.add(probe);
  try {
    probe.load();
    choosePeriodicSource(probe, opts.source ?? (opts.objectPath === undefined ? 'auto' : 'none'), {});
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

/** What each floor object does per connection (bench/lib/floor.bpf.c). */
export const FLOOR_LEVELS = {
  1: 'STATE_CB on, every run returns at once',
  2: '+ sk_storage created at connect / passive establishment, deleted at close',
  3: '+ one minimal ringbuf record per establishment and close (4 per connection)',
} as const;
export type FloorLevel = keyof typeof FLOOR_LEVELS;

const FLOOR_SOURCE = fileURLToPath(new URL('./floor.bpf.c', import.meta.url));
const BPF_DIR = fileURLToPath(new URL('../../bpf/', import.meta.url));
let floorDir: string | undefined;

/**
 * Compiles bench/lib/floor.bpf.c at FLOOR_LEVEL `level` into a temporary
 * directory (once per level and process) with the flags bpf/Makefile uses,
 * against the vmlinux.h `npm run build` generated; removed at exit.
 */
export function floorObject(level: FloorLevel): string {
  if (!floorDir) {
    floorDir = mkdtempSync(join(tmpdir(), 'kmesh-otel-floor-'));
    const dir = floorDir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  const out = join(floorDir, `floor-${level}.bpf.o`);
  if (existsSync(out)) return out;
  const clang = process.env.CLANG ?? 'clang';
  try {
    execFileSync(
      clang,
      ['-O2', '-g', '-target', 'bpf', '-D__TARGET_ARCH_x86', '-Wall', '-Werror', `-DFLOOR_LEVEL=${level}`,
        '-I', join(BPF_DIR, 'include'), '-I', BPF_DIR, '-c', FLOOR_SOURCE, '-o', out],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`compiling ${FLOOR_SOURCE} with ${clang} failed (needs bpf/vmlinux.h from npm run build): ${e.stderr?.toString() ?? e.message}`);
  }
  return out;
}
