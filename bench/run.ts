/**
 * Runs the benchmarks and writes BENCHMARKS.md and bench/results.json.
 *
 *   npm run bench                       every module below that exists
 *   npm run bench -- kernel drain       only these (others keep their last results)
 *   BENCH_QUICK=1 npm run bench         short smoke run (marked as such in the report)
 *
 * A module is bench/<name>.ts exporting `run(ctx: BenchContext): Promise<Figure[]>`
 * (see bench/lib/types.ts) and optionally `title` and `budgetSeconds`. Modules run
 * one at a time in the order of MODULES (drain before receiver: the receiver
 * compares against the raw drain rate the drain module shares). Missing modules
 * are skipped with a note. After each module, and on failure or SIGINT/SIGTERM,
 * every BPF probe is closed, every load generator killed and temp dirs removed.
 * The whole run is bounded (TOTAL_BUDGET_S); past it the run stops, writes what
 * it has and exits non-zero.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { killLoadgens, removeLoadgenBinary } from './lib/loadgen.js';
import { machineInfo } from './lib/machine.js';
import { closeAllProbes } from './lib/probe.js';
import { MODULES } from './lib/modules.js';
import { readResults, renderMarkdown, writeResults, type ModuleResult } from './lib/report.js';
import { SkipBenchmark, type BenchContext, type BenchModule, type Figure } from './lib/types.js';


const TOTAL_BUDGET_S = 570; // under 10 minutes with start-up and report writing
const DEFAULT_MODULE_BUDGET_S = 120;

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const benchDir = join(repoRoot, 'bench');
const resultsPath = join(benchDir, 'results.json');
const mdPath = join(repoRoot, 'BENCHMARKS.md');

const args = process.argv.slice(2).filter((a) => a !== '--');
const quick = process.env.BENCH_QUICK === '1' || args.includes('--quick');
const filter = args.filter((a) => !a.startsWith('--'));
for (const name of filter) {
  if (!/^[a-z0-9_]+$/.test(name)) {
    console.error(`bench: bad module name "${name}" (known: ${MODULES.join(', ')})`);
    process.exit(2);
  }
}
// Named modules outside the list run too if bench/<name>.ts exists (after the known ones).
const selected = filter.length ? [...MODULES.filter((m) => filter.includes(m)), ...filter.filter((f) => !(MODULES as readonly string[]).includes(f))] : [...MODULES];

const started = Date.now();
const globalDeadline = started + TOTAL_BUDGET_S * 1000;
const machine = machineInfo();
const results = readResults(resultsPath);
const shared = new Map<string, unknown>();
let cleanups: Array<() => void | Promise<void>> = [];
let failed = false;

const log = (msg: string): void => {
  process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(3)}s] ${msg}\n`);
};

async function cleanup(): Promise<void> {
  const fns = cleanups.reverse();
  cleanups = [];
  for (const fn of fns) {
    try {
      await fn();
    } catch (err) {
      log(`cleanup failed: ${(err as Error).message}`);
    }
  }
  closeAllProbes();
  killLoadgens();
}

function save(): void {
  results.updated = new Date().toISOString();
  writeResults(resultsPath, results);
  writeFileSync(mdPath, renderMarkdown(results, MODULES));
}

async function finalCleanup(): Promise<void> {
  await cleanup();
  removeLoadgenBinary();
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    void finalCleanup().finally(() => process.exit(130));
  });
}
process.once('exit', () => {
  // Synchronous last resort (probes close synchronously; loadgens die with us anyway).
  closeAllProbes();
  killLoadgens();
  removeLoadgenBinary();
});

const watchdog = setTimeout(() => {
  log(`total budget of ${TOTAL_BUDGET_S} s exceeded: writing partial results and stopping`);
  void finalCleanup().finally(() => {
    try {
      save();
    } finally {
      process.exit(1);
    }
  });
}, TOTAL_BUDGET_S * 1000 + 20_000);
watchdog.unref();

function commandFor(name: string): string {
  return name === 'receiver' ? 'npm run bench:receiver' : `npm run bench -- ${name}`;
}

async function runModule(name: string): Promise<void> {
  const file = join(benchDir, `${name}.ts`);
  const base: Omit<ModuleResult, 'figures'> = {
    name,
    title: name,
    command: commandFor(name),
    ranAt: new Date().toISOString(),
    durationSeconds: 0,
    machine,
    quick,
  };
  if (!existsSync(file)) {
    log(`${name}: bench/${name}.ts does not exist: skipped`);
    if (filter.includes(name)) failed = true;
    return;
  }
  const t0 = Date.now();
  let mod: Partial<BenchModule>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Partial<BenchModule>;
  } catch (err) {
    results.modules[name] = { ...base, figures: [], error: `import failed: ${(err as Error).message}` };
    failed = true;
    return;
  }
  if (typeof mod.title === 'string') base.title = mod.title;
  if (typeof mod.run !== 'function') {
    log(`${name}: exports no run(ctx): skipped`);
    results.modules[name] = { ...base, figures: [], skipped: 'bench/' + name + '.ts exports no run(ctx) (see bench/lib/types.ts)' };
    return;
  }
  const budget = (mod.budgetSeconds ?? DEFAULT_MODULE_BUDGET_S) * 1000;
  const tmpDir = mkdtempSync(join(tmpdir(), `kmesh-otel-bench-${name}-`));
  const ctx: BenchContext = {
    machine,
    repoRoot,
    module: name,
    command: base.command,
    tmpDir,
    quick,
    deadline: Math.min(t0 + budget, globalDeadline),
    log: (m) => log(`${name}: ${m}`),
    shared,
    onCleanup: (fn) => cleanups.push(fn),
  };
  log(`${name}: start (budget ${(budget / 1000).toFixed(0)} s${quick ? ', quick' : ''})`);
  let figures: Figure[] = [];
  let error: string | undefined;
  let skipped: string | undefined;
  try {
    figures = await mod.run(ctx);
    for (const f of figures) if (!f.command) f.command = base.command;
  } catch (err) {
    if (err instanceof SkipBenchmark) skipped = err.message;
    else {
      error = (err as Error).stack ?? String(err);
      failed = true;
    }
  } finally {
    await cleanup();
    rmSync(tmpDir, { recursive: true, force: true });
  }
  const r: ModuleResult = { ...base, figures, durationSeconds: (Date.now() - t0) / 1000 };
  if (skipped !== undefined) r.skipped = skipped;
  if (error !== undefined) r.error = error.split('\n')[0]!;
  results.modules[name] = r;
  log(`${name}: ${skipped ? `skipped: ${skipped}` : error ? `FAILED: ${error}` : `${figures.length} figures`} in ${r.durationSeconds.toFixed(0)} s`);
  for (const f of figures) {
    const cmp = f.comparison ? ` (${f.comparison.title} ${f.comparison.median.toFixed(1)}, ratio ${f.comparison.ratio.toFixed(3)})` : '';
    const tgt = f.target ? ` [${f.target}: ${f.met ? 'met' : 'NOT met'}]` : '';
    log(`  ${f.id}: ${f.median.toFixed(1)} ${f.unit} (${f.min.toFixed(1)}–${f.max.toFixed(1)})${cmp}${tgt}`);
  }
}

try {
  for (const name of selected) {
    if (Date.now() > globalDeadline) {
      log(`${name}: not run, total budget exhausted`);
      failed = true;
      continue;
    }
    await runModule(name);
    save(); // after every module, so an interrupted run keeps what it measured
  }
} finally {
  await finalCleanup();
}
save();
log(`wrote ${mdPath} and ${resultsPath} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
process.exit(failed ? 1 : 0);
