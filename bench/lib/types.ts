/**
 * The common shape of every benchmark module (bench/<name>.ts) that
 * bench/run.ts runs:
 *
 *   export const title = 'Kernel overhead';            // optional, for the report
 *   export async function run(ctx: BenchContext): Promise<Figure[]>;
 *
 * A module measures several runs of each figure, alternating the figure and
 * its comparison within the same process run, and builds each Figure with
 * `figure()` below (median / min / max / ratio / met are computed there, so
 * every module reports them the same way).
 */
import type { MachineInfo } from './machine.js';

/** The measured alternative a figure is judged against, measured in the same run. */
export interface Comparison {
  title: string;
  /** Each run's value of the comparison, same unit as the figure (figure() always sets it). */
  runs?: number[];
  median: number;
  /** figure median / comparison median. */
  ratio: number;
}

export interface Figure {
  /** Stable id, `<module>.<name>` (e.g. `kernel.churn_attached`). */
  id: string;
  title: string;
  /** Unit of `runs` (e.g. `connections/s`, `ns`, `records/s`, `ms`, `MB`). */
  unit: string;
  /** The command that reproduces it (e.g. `npm run bench -- kernel`). */
  command: string;
  /** Each run's value. */
  runs: number[];
  median: number;
  min: number;
  max: number;
  comparison?: Comparison;
  /** Human-readable target, e.g. `ratio >= 0.95` or `p99 < 250 ms`. */
  target?: string;
  /** Whether the target was met in this run (absent when there is no target). */
  met?: boolean;
  /** What was measured, how, and anything a reader must know (honest caveats). */
  notes?: string;
}

export interface BenchContext {
  /** Where it runs (cores, CPU, kernel, Node). */
  machine: MachineInfo;
  /** Repository root (absolute). */
  repoRoot: string;
  /** The module's name (file name without .ts). */
  module: string;
  /** The command line that reproduces this module's figures. */
  command: string;
  /** A temporary directory for this module, removed after it finishes. */
  tmpDir: string;
  /** BENCH_QUICK=1: fewer/shorter runs (a smoke test, figures not for publishing). */
  quick: boolean;
  /** Wall-clock ms (Date.now()) by which the module should have returned. */
  deadline: number;
  /** Progress line on stderr (not in the report). */
  log(message: string): void;
  /**
   * Values shared between modules of the same run, e.g. `drain.rawRecordsPerSec`
   * (number) and `drain.records` (Buffer of real kernel records) set by
   * bench/drain.ts for the receiver benchmark. Modules run in the order of
   * bench/run.ts's list.
   */
  shared: Map<string, unknown>;
  /** Registers a cleanup that runs after the module, also when it fails or the run is interrupted. */
  onCleanup(fn: () => void | Promise<void>): void;
}

export interface BenchModule {
  /** Section title in BENCHMARKS.md (default: the module name). */
  title?: string;
  /** Time the module needs at most, in seconds (default 120); ctx.deadline is derived from it. */
  budgetSeconds?: number;
  run(ctx: BenchContext): Promise<Figure[]>;
}

/** Throw this from run() when the benchmark cannot run here (not root, tool missing): reported as skipped, not failed. */
export class SkipBenchmark extends Error {
  override name = 'SkipBenchmark';
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1]!;
}

export interface FigureInput {
  id: string;
  title: string;
  unit: string;
  /** Default: the module's command (run.ts fills it in). */
  command?: string;
  runs: number[];
  comparison?: { title: string; runs: number[] };
  /** Text of the target; `check` decides `met` from the computed figure. */
  target?: string;
  check?: (f: { median: number; min: number; max: number; ratio?: number }) => boolean;
  notes?: string;
}

/** Builds a Figure: median, min, max, the comparison's median and the ratio, and `met`. */
export function figure(input: FigureInput): Figure {
  const runs = input.runs.filter((x) => Number.isFinite(x));
  const f: Figure = {
    id: input.id,
    title: input.title,
    unit: input.unit,
    command: input.command ?? '',
    runs,
    median: median(runs),
    min: runs.length ? Math.min(...runs) : NaN,
    max: runs.length ? Math.max(...runs) : NaN,
  };
  if (input.comparison) {
    const cm = median(input.comparison.runs);
    f.comparison = { title: input.comparison.title, runs: input.comparison.runs, median: cm, ratio: f.median / cm };
  }
  if (input.target !== undefined) {
    f.target = input.target;
    if (input.check) f.met = runs.length > 0 && input.check({ median: f.median, min: f.min, max: f.max, ratio: f.comparison?.ratio });
  }
  if (input.notes !== undefined) f.notes = input.notes;
  return f;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
