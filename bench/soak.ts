/**
 * Soak (issue 19): does the agent leak under steady connection churn?
 *
 * The real agent (bench/lib/agent.ts: the CLI from dist/ when it is fresh,
 * ebpf receiver at the cgroup-v2 root with its default settings,
 * k8s_attributes, prometheus exporter) and one load generator
 * (bench/lib/loadgen.c) churning loopback connections at a fixed rate for
 * the whole run; this process scrapes /metrics every 15 s (what a Prometheus
 * does) and samples the agent's RSS (/proc/<pid>/status VmRSS) and CPU
 * (utime + stime of every thread, /proc/<pid>/stat) every 10 s.
 *
 * Reported: the least-squares slope of RSS (MB/h) and of CPU (% of one core
 * per hour) over the whole run and of RSS over its second half — a leak
 * shows as a slope that does not vanish — and the medians of the first and of the last 5 minutes side by
 * side (ratio last/first). The first minute is left out of the slope (heap
 * and JIT warm-up is growth, not a leak).
 *
 * Opt-in, never part of the default `npm run bench` (30 minutes would break
 * the suite's 10-minute budget): `npm run bench -- soak`. run.ts extends its
 * total budget by this module's budgetSeconds for opt-in modules.
 * SOAK_SECONDS sets the duration (default 1800; e.g. SOAK_SECONDS=120 for a
 * smoke run; the first/last windows shrink to a third of a run shorter than
 * 15 minutes). SOAK_RATE sets connections/s (default 500).
 */
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { sampleValue, startAgent } from './lib/agent.js';
import { runChurn } from './lib/loadgen.js';
import { kernelUnavailable } from './lib/probe.js';
import { figure, median, sleep, SkipBenchmark, type BenchContext, type Figure } from './lib/types.js';

export const title = 'Soak: 30 minutes of connection churn (RSS and CPU over time)';

const envInt = (name: string, dflt: number): number => {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${v}"`);
  return n;
};

const SECONDS = envInt('SOAK_SECONDS', 1800);
const RATE = envInt('SOAK_RATE', 500);
const SAMPLE_MS = 10_000;
const SEGMENT_S = 300;
const SCRAPE_MS = 15_000;
/** Left out of the slopes (heap and JIT warm-up is growth, not a leak); a fifth of a short run. */
const WARMUP_S = Math.min(60, SECONDS / 5);
/** Start-up, the final drain and the report on top of the churn itself. */
export const budgetSeconds = SECONDS + 180;

/** Fields of /proc/<pid>/stat after the command name (field 3 is index 0). */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of every thread of a process, seconds (fields 14 and 15 of /proc/<pid>/stat, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const f = statFields(pid);
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Least-squares slope of y over x. */
export function slope(xs: readonly number[], ys: readonly number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
  }
  return sxx === 0 ? NaN : sxy / sxx;
}

interface Sample {
  /** Seconds since the churn started. */
  t: number;
  rssMB: number;
  /** % of one core over the last interval. */
  cpuPct: number;
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

/** Sum of every sample of one family in Prometheus text (all label sets). */
function sumSamples(body: string, name: string): number {
  let total = 0;
  for (const line of body.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  return total;
}

export async function run(ctx: BenchContext): Promise<Figure[]> {
  const why = kernelUnavailable();
  if (why !== undefined) throw new SkipBenchmark(why);
  const load = loadavg()[0]!;
  const agent = await startAgent(ctx, {});
  ctx.log(`agent pid ${agent.pid} (${agent.how}) healthy, RSS ${agent.rssMB().toFixed(0)} MB; churn ${RATE}/s for ${SECONDS} s`);

  const samples: Sample[] = [];
  const t0 = Date.now();
  // loadgen bounds one churn to 600 s: consecutive segments (new ephemeral
  // server ports each time, same labels: the series set does not grow).
  const churn = (async () => {
    const total = { connections: 0, seconds: 0, errors: 0, segments: 0 };
    for (let left = SECONDS; left > 0; left -= SEGMENT_S) {
      const r = await runChurn({ seconds: Math.min(SEGMENT_S, left), rate: RATE, clients: 4, servers: 4, ports: 4 });
      total.connections += r.connections;
      total.seconds += r.seconds;
      total.errors += r.errors;
      total.segments++;
    }
    return total;
  })();
  let churnDone = false;
  const churnResult = churn.finally(() => (churnDone = true));
  churnResult.catch(() => undefined); // awaited below

  let scrapeFailures = 0;
  let lastScrape = 0;
  let cpu0 = cpuSeconds(agent.pid);
  let tPrev = Date.now();
  while (!churnDone && Date.now() < ctx.deadline - 60_000) {
    await sleep(1_000);
    const now = Date.now();
    if (now - lastScrape >= SCRAPE_MS) {
      lastScrape = now;
      await agent.scrape(10_000).catch(() => scrapeFailures++);
    }
    if (now - tPrev >= SAMPLE_MS) {
      const cpu1 = cpuSeconds(agent.pid);
      samples.push({ t: (now - t0) / 1000, rssMB: agent.rssMB(), cpuPct: (100 * (cpu1 - cpu0)) / ((now - tPrev) / 1000) });
      cpu0 = cpu1;
      tPrev = now;
      if (samples.length % 30 === 0) {
        const s = samples[samples.length - 1]!;
        ctx.log(`t=${s.t.toFixed(0)} s RSS ${s.rssMB.toFixed(1)} MB CPU ${s.cpuPct.toFixed(1)} %`);
      }
    }
  }
  const churned = await churnResult;
  const body = (await agent.scrape()).body;
  const lost = sampleValue(body, 'kmesh_otel_ebpf_kernel_lost_records_total');
  const received = sumSamples(body, 'kmesh_otel_ebpf_records_received_total');
  // A niced agent (inherited from `nice npm run bench`) on a loaded machine
  // drains the ringbuf late and loses records: say so in the notes.
  const niceness = Number(statFields(agent.pid)[16]);
  const { leftover, programs } = await agent.stop();

  const steady = samples.filter((s) => s.t >= WARMUP_S);
  if (steady.length < 3) throw new Error(`only ${samples.length} samples (run too short or the churn ended early)`);
  const hours = steady.map((s) => s.t / 3600);
  const rssSlope = slope(hours, steady.map((s) => s.rssMB));
  // A step (a burst of other traffic on the node, a heap resize) early in
  // the run weighs on the whole-run slope; a leak also shows in the second half.
  const secondHalf = samples.filter((s) => s.t >= samples[samples.length - 1]!.t / 2);
  const rssSlope2 = slope(secondHalf.map((s) => s.t / 3600), secondHalf.map((s) => s.rssMB));
  const cpuSlope = slope(hours, steady.map((s) => s.cpuPct));
  const span = samples[samples.length - 1]!.t;
  const windowS = Math.min(300, span / 3);
  // A smoke run's window can end before its first sample: take that one then.
  const firstWindow = samples.filter((s) => s.t <= windowS);
  const first = firstWindow.length > 0 ? firstWindow : samples.slice(0, 1);
  const last = samples.filter((s) => s.t > span - windowS);
  const win = windowS >= 300 ? '5 min' : `${windowS.toFixed(0)} s`;
  const common =
    `${churned.connections.toLocaleString('en-US')} loopback connections in ${churned.seconds.toFixed(0)} s ` +
    `(loadgen churn paced at ${RATE}/s in ${churned.segments} consecutive segments, 4 clients, 4 server ports, 64-byte request and response, ${churned.errors} errors), ` +
    `/metrics scraped every ${SCRAPE_MS / 1000} s (${scrapeFailures} failed), samples every ${SAMPLE_MS / 1000} s (${samples.length}); ` +
    `kernel records at the end: ${received} decoded (the agent sees every TCP socket of the node; the churn alone makes 4 per connection), ${lost} lost (ringbuf full). Agent: ${agent.how}, nice ${niceness}, default receiver settings, metrics pipeline only. ` +
    `${leftover.length === 0 ? `None of its ${programs} BPF programs left loaded or attached after it exited` : `BPF programs ${leftover.join(', ')} left loaded or attached`}; ` +
    `1-min load average at start ${load.toFixed(2)} on ${cpus().length} cores.`;
  return [
    figure({
      id: 'soak.rss_slope',
      title: 'Agent RSS trend under steady churn (least-squares slope)',
      unit: 'MB/h',
      runs: [round1(rssSlope)],
      notes: `Slope of VmRSS over the samples after the first ${WARMUP_S} s (${steady.length} samples over ${round1(span / 60)} min). ${common}`,
    }),
    figure({
      id: 'soak.rss_slope_second_half',
      title: 'Agent RSS trend under steady churn, second half of the run (least-squares slope)',
      unit: 'MB/h',
      runs: [round1(rssSlope2)],
      notes: `Slope of VmRSS over the ${secondHalf.length} samples of the second half of the run. ${common}`,
    }),
    figure({
      id: 'soak.cpu_slope',
      title: 'Agent CPU trend under steady churn (least-squares slope)',
      unit: '%/h',
      runs: [round1(cpuSlope)],
      notes: `Slope of the agent's CPU (% of one core, all threads, per ${SAMPLE_MS / 1000} s interval) after the first ${WARMUP_S} s. ${common}`,
    }),
    figure({
      id: 'soak.rss',
      title: `Agent RSS, last ${win} (per sample)`,
      unit: 'MB',
      runs: last.map((s) => round1(s.rssMB)),
      comparison: { title: `first ${win} of the same run`, runs: first.map((s) => round1(s.rssMB)) },
      notes: common,
    }),
    figure({
      id: 'soak.cpu',
      title: `Agent CPU, last ${win} (per sample)`,
      unit: '% of one core',
      runs: last.map((s) => round1(s.cpuPct)),
      comparison: { title: `first ${win} of the same run`, runs: first.map((s) => round1(s.cpuPct)) },
      notes: `Median over all samples ${round1(median(samples.map((s) => s.cpuPct)))} %. ${common}`,
    }),
  ];
}
