/**
 * bench/results.json (machine-readable) and BENCHMARKS.md (for people).
 * A filtered run (`npm run bench -- kernel`) replaces only the modules it ran
 * and keeps the others' last results, each with its own date, machine and
 * command, so the file is always complete and honest about when what was measured.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describeMachine, type MachineInfo } from './machine.js';
import type { Figure } from './types.js';

export interface ModuleResult {
  name: string;
  title: string;
  command: string;
  ranAt: string;
  durationSeconds: number;
  machine: MachineInfo;
  quick: boolean;
  figures: Figure[];
  /** Set when the module could not run here (e.g. not root); figures empty. */
  skipped?: string;
  /** Set when the module failed; figures may be partial. */
  error?: string;
}

/** One figure of two checkouts measured alternately (bench/sideBySide.ts). */
export interface SideBySideRow {
  id: string;
  title: string;
  unit: string;
  /** Runs pooled over every round, per side. */
  baseRuns: number[];
  candidateRuns: number[];
  baseMedian: number;
  candidateMedian: number;
  /** candidate / base medians. */
  ratio: number;
}

/** A change measured beside the commit before it: same machine, runs alternating between the two checkouts. */
export interface SideBySide {
  title: string;
  /** How both sides were run (the alternation) and merged. */
  command: string;
  ranAt: string;
  machine: MachineInfo;
  base: string;
  candidate: string;
  rounds: number;
  rows: SideBySideRow[];
  notes?: string;
}

export interface Results {
  /** Last time any module was run. */
  updated: string;
  modules: Record<string, ModuleResult>;
  /** Side-by-side comparisons of a change with its previous commit, newest last (replaced by title). */
  sideBySide?: SideBySide[];
}

export function readResults(path: string): Results {
  if (!existsSync(path)) return { updated: '', modules: {} };
  try {
    const r = JSON.parse(readFileSync(path, 'utf8')) as Results;
    if (r && typeof r.modules === 'object') return r;
  } catch {
    // unreadable: start over
  }
  return { updated: '', modules: {} };
}

export function writeResults(path: string, r: Results): void {
  writeFileSync(path, JSON.stringify(r, null, 2) + '\n');
}

/** Numbers the way a reader wants them: 3 significant digits, thousands separated. */
export function fmt(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a >= 1000) return Math.round(n).toLocaleString('en-US');
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  if (a === 0) return '0';
  return n.toPrecision(3);
}

function metCell(f: Figure): string {
  if (f.target === undefined) return '';
  if (f.met === undefined) return `${f.target}: not measured`;
  return `${f.target}: **${f.met ? 'met' : 'NOT met'}**`;
}

const HOW_TO_READ = `## How to read these

Each figure is the median of several runs made by one \`npm run bench\`; min–max shows how much
the runs spread. Where a figure has a comparison, both were measured alternately in the same
process run, so the ratio is meaningful even on a noisy machine while the absolute numbers
are only as good as the machine (see the machine line: a small virtual machine gives low
absolute figures). To size a node:

- **Kernel overhead** (\`kernel.churn\`): how much slower the node opens and closes TCP
  connections because the probe is attached. A ratio of 0.95 means a workload bound on
  connection setup loses at most 5% of its connection rate; workloads that move data on
  long-lived connections pay nothing per packet (there is no per-packet hook).
  \`kernel.sockops_ns\` is the kernel CPU time per sockops callback: multiply by the
  invocations per connection (in its notes) and your connections/s to get the kernel CPU the
  probe costs (e.g. 10k connections/s × 17 invocations × 450 ns = 7.7% of one core).
  \`kernel.churn_floor_*\` are the same churn with stripped-down probes (bench/lib/floor.bpf.c)
  measured the same way: \`dispatch\` only turns the state callback on, \`storage\` also creates and
  deletes the per-socket storage an sk_storage iterator walks, \`records\` also puts the four
  open/close records through the ringbuf. They bound what any probe of this design can
  reach on the machine: the agent's probe cannot do better than \`records\`.
- **Lost records** (\`kernel.lost_records\`): records dropped because the ringbuf was full.
  Non-zero means the agent under-counts connections at that rate; give the agent more CPU
  or a bigger ringbuf. If the machine could not reach the target rate, the notes say so.
- **Drain rate** (\`drain.*\`): the most records per second the kernel can hand to the agent
  (about 4 records per short connection: open and close on both sockets). Divide by 4 for
  the ceiling on connections/s one agent can observe; the receiver pipeline figures are
  judged against it. \`drain.iterator\`: the cost of the periodic report walk: tracked
  sockets / this rate is the CPU time of one walk every \`report_interval\`.
- **Pipeline throughput** (receiver): records per second the agent turns into metrics on one
  core. If it is below the records/s your node produces (4 × connections/s), the agent
  falls behind and the ringbuf overflows (lost records).
- **Freshness** (\`freshness.p99\`, \`freshness.p50\`): how long after a connection closes its
  bytes are on the real agent's \`/metrics\` (ringbuf drain interval + processing + the scrape
  itself), judged on the p99 over all connections. Add your Prometheus scrape interval to get
  how stale a dashboard can be; alerts on connection counts cannot react faster than this.
- **Scale** (\`scale.rss\`, \`scale.scrape\`): the real agent's memory (RSS) and scrape time with
  10,000 pods indexed, 50,000 Prometheus series (sample lines, histogram buckets included) and
  100,000 live connections; the comparison is the same agent before the connections were
  opened, so the ratio is what tracking the connections costs. Set the agent's memory limit
  above the peak in the notes, and the Prometheus \`scrape_timeout\` above the slowest scrape
  (the periodic iterator walk runs on a thread of the addon: a scrape during it competes for CPU only). An RSS figure
  measured from source (tsx) includes the loader; the notes say which.
- **OTLP** (\`otlp.metric_points_per_sec\`): metric data points per second the otlp exporter
  pushes to a receiver; divide by your series count for the shortest useful
  \`export_interval\`. \`otlp.export_50k_series\` says whether one export of a large store gets
  through a receiver with default gRPC limits; \`otlp.store_50k_points_per_sec\` is the rate for a
  50,000-series store, beside the SDK serializer path and the Prometheus exposition of the same
  series. Log records per second over OTLP are
  \`logs.otlp_records_per_sec\`: compare with the access-log volume you expect (one log record
  per closed connection).
`;

export function renderMarkdown(r: Results, order: readonly string[]): string {
  const names = [...order.filter((n) => r.modules[n]), ...Object.keys(r.modules).filter((n) => !order.includes(n)).sort()];
  const mods = names.map((n) => r.modules[n]!);
  const machines = [...new Set(mods.map((m) => describeMachine(m.machine)))];
  const lines: string[] = [];
  lines.push('# Benchmarks', '');
  lines.push(
    'Generated by `npm run bench` (all modules) or `npm run bench -- <module> ...` (some; the others keep their last',
    'results). Machine-readable: [`bench/results.json`](bench/results.json). Do not edit by hand.',
    '',
  );
  lines.push(`- Last updated: ${r.updated}`);
  if (machines.length === 1) lines.push(`- Machine: ${machines[0]}`);
  else lines.push(`- Machines: see each section (results come from ${machines.length} different machines)`);
  if (mods.some((m) => m.quick)) lines.push('- **Some sections are quick smoke runs (BENCH_QUICK=1): not for publishing.**');
  lines.push('');

  lines.push('## Summary', '');
  lines.push('| Figure | Median | Min–max | Comparison (median) | Ratio | Target |');
  lines.push('|---|---|---|---|---|---|');
  for (const m of mods) {
    if (m.skipped || (m.error && m.figures.length === 0)) {
      lines.push(`| ${m.title} | ${m.skipped ? `skipped: ${m.skipped}` : `failed: ${m.error}`} | | | | |`);
      continue;
    }
    for (const f of m.figures) {
      const cmp = f.comparison ? `${f.comparison.title}: ${fmt(f.comparison.median)}` : '';
      const ratio = f.comparison ? f.comparison.ratio.toFixed(3) : '';
      lines.push(`| ${f.title} | ${fmt(f.median)} ${f.unit} | ${fmt(f.min)}–${fmt(f.max)} | ${cmp} | ${ratio} | ${metCell(f)} |`);
    }
  }
  lines.push('');

  for (const s of r.sideBySide ?? []) {
    lines.push(`## Side by side: ${s.title}`, '');
    lines.push(`- Command: \`${s.command}\``);
    lines.push(`- Ran: ${s.ranAt}, ${s.rounds} alternating rounds per side`);
    lines.push(`- Machine: ${describeMachine(s.machine)}`);
    lines.push(`- Base: ${s.base}; candidate: ${s.candidate}`);
    if (s.notes) lines.push(`- ${s.notes}`);
    lines.push('');
    lines.push('| Figure | Base (median) | Candidate (median) | Candidate / base | Base runs | Candidate runs |');
    lines.push('|---|---|---|---|---|---|');
    for (const row of s.rows) {
      lines.push(
        `| ${row.title} (\`${row.id}\`) | ${fmt(row.baseMedian)} ${row.unit} | ${fmt(row.candidateMedian)} ${row.unit} | ${row.ratio.toFixed(3)} | ` +
          `${row.baseRuns.map(fmt).join(', ')} | ${row.candidateRuns.map(fmt).join(', ')} |`,
      );
    }
    lines.push('');
  }

  for (const m of mods) {
    lines.push(`## ${m.title}`, '');
    lines.push(`- Command: \`${m.command}\``);
    lines.push(`- Ran: ${m.ranAt} (${m.durationSeconds.toFixed(0)} s)${m.quick ? ' — quick smoke run' : ''}`);
    lines.push(`- Machine: ${describeMachine(m.machine)}`);
    if (m.skipped) lines.push(`- Skipped: ${m.skipped}`);
    if (m.error) lines.push(`- **Failed**: ${m.error}`);
    lines.push('');
    for (const f of m.figures) {
      lines.push(`### ${f.title}`, '');
      lines.push(`- \`${f.id}\`: **${fmt(f.median)} ${f.unit}** median of ${f.runs.length} runs, min–max ${fmt(f.min)}–${fmt(f.max)}`);
      lines.push(`- Runs: ${f.runs.map(fmt).join(', ')}`);
      if (f.command && f.command !== m.command) lines.push(`- Command: \`${f.command}\``);
      if (f.comparison) {
        lines.push(
          `- Against ${f.comparison.title} (same run): ${fmt(f.comparison.median)} ${f.unit} median ` +
            `${f.comparison.runs ? `(runs ${f.comparison.runs.map(fmt).join(', ')})` : ''}; ratio **${f.comparison.ratio.toFixed(3)}**`,
        );
      }
      if (f.target !== undefined) lines.push(`- Target: ${f.target}: **${f.met === undefined ? 'not measured' : f.met ? 'met' : 'NOT met'}**`);
      if (f.notes) lines.push(`- ${f.notes}`);
      lines.push('');
    }
  }
  lines.push(HOW_TO_READ);
  return lines.join('\n');
}
