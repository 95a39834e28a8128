/**
 * Merges alternating benchmark runs of two checkouts (a change and the commit
 * before it) into one side-by-side table in BENCHMARKS.md, and adopts the
 * candidate's last results as this checkout's module figures.
 *
 * The runs themselves are ordinary `npm run bench -- <modules>` in each
 * checkout, alternating base / candidate / ... under the shared heavy lock,
 * each copying its bench/results.json away after it ran, e.g.:
 *
 *   for side in base new new base; do
 *     (cd /work/$side && flock /tmp/kmesh-heavy.lock npm run bench -- receiver metrics k8s
 *      && cp bench/results.json /tmp/bench/$side.$((i++)).json); done
 *
 * Then, in the candidate checkout:
 *
 *   node --import tsx bench/sideBySide.ts --title '...' --command '...' \
 *     --base-label 'main 5d570f2' --candidate-label 'arch16 61bf51b' \
 *     --base /tmp/bench/base.0.json,... --candidate /tmp/bench/new.1.json,...
 *
 * Figures are matched by id; runs are pooled over the rounds of each side
 * (module results run since `--since`, each once); the ratio is candidate
 * median / base median.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MODULES } from './lib/modules.js';
import { readResults, renderMarkdown, writeResults, type ModuleResult, type Results, type SideBySideRow } from './lib/report.js';
import { median } from './lib/types.js';

const { values } = parseArgs({
  options: {
    title: { type: 'string' },
    command: { type: 'string' },
    'base-label': { type: 'string' },
    'candidate-label': { type: 'string' },
    base: { type: 'string' },
    candidate: { type: 'string' },
    notes: { type: 'string' },
    /** Only module results run at or after this time (ISO): older copies in a results.json are not part of the comparison. */
    since: { type: 'string' },
    /** The same for the candidate's files, when its code changed during the comparison (default: --since). */
    'candidate-since': { type: 'string' },
  },
});
for (const k of ['title', 'command', 'base-label', 'candidate-label', 'base', 'candidate'] as const) {
  if (values[k] === undefined) throw new Error(`--${k} is required`);
}
const baseFiles = values.base!.split(',');
const candidateFiles = values.candidate!.split(',');
const bases = baseFiles.map(readResults);
const candidates = candidateFiles.map(readResults);

/**
 * The module results of `rs` run at or after `since`, each once: a checkout's
 * results.json keeps the modules it did not run this time, so the same
 * module result appears in several copies.
 */
function moduleRuns(rs: Results[], since: Date): ModuleResult[] {
  const seen = new Map<string, ModuleResult>();
  for (const r of rs) {
    for (const [module, m] of Object.entries(r.modules)) {
      if (new Date(m.ranAt) < since || m.skipped !== undefined) continue;
      seen.set(`${module} ${m.ranAt}`, m);
    }
  }
  return [...seen.values()];
}

/** Every figure of `ms`, runs pooled by figure id, in first-seen order. */
function pooled(ms: ModuleResult[]): Map<string, { title: string; unit: string; runs: number[] }> {
  const out = new Map<string, { title: string; unit: string; runs: number[] }>();
  for (const m of ms) {
    for (const f of m.figures) {
      const e = out.get(f.id) ?? { title: f.title, unit: f.unit, runs: [] };
      e.runs.push(...f.runs);
      out.set(f.id, e);
    }
  }
  return out;
}

const since = new Date(values.since ?? 0);
const baseRuns = moduleRuns(bases, since);
const candidateRuns = moduleRuns(candidates, new Date(values['candidate-since'] ?? values.since ?? 0));
const b = pooled(baseRuns);
const c = pooled(candidateRuns);
const compared = [...new Set(candidateRuns.map((m) => m.name))].filter((n) => baseRuns.some((m) => m.name === n));
const rows: SideBySideRow[] = [];
for (const [id, cand] of c) {
  const base = b.get(id);
  if (base === undefined || base.runs.length === 0 || cand.runs.length === 0) continue;
  const bm = median(base.runs);
  const cm = median(cand.runs);
  rows.push({ id, title: cand.title, unit: cand.unit, baseRuns: base.runs, candidateRuns: cand.runs, baseMedian: bm, candidateMedian: cm, ratio: cm / bm });
}

const repoRoot = join(import.meta.dirname, '..');
const resultsPath = join(repoRoot, 'bench', 'results.json');
const results = readResults(resultsPath);
// The candidate's figures are this checkout's figures now (its last run of each compared module).
for (const m of compared) {
  const last = candidateRuns.filter((r) => r.name === m).sort((x, y) => x.ranAt.localeCompare(y.ranAt)).pop()!;
  results.modules[m] = last;
}
const perSide = (ms: ModuleResult[]): number => Math.min(...compared.map((n) => ms.filter((m) => m.name === n).length));
const entry = {
  title: values.title!,
  command: values.command!,
  ranAt: new Date().toISOString(),
  machine: candidateRuns[candidateRuns.length - 1]!.machine,
  base: values['base-label']!,
  candidate: values['candidate-label']!,
  rounds: Math.min(perSide(baseRuns), perSide(candidateRuns)),
  rows,
  ...(values.notes !== undefined ? { notes: values.notes } : {}),
};
results.sideBySide = [...(results.sideBySide ?? []).filter((s) => s.title !== entry.title), entry];
results.updated = new Date().toISOString();
writeResults(resultsPath, results);
writeFileSync(join(repoRoot, 'BENCHMARKS.md'), renderMarkdown(results, MODULES));
process.stdout.write(`${rows.length} figures side by side over ${compared.join(', ')}\n`);
