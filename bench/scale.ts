/**
 * Scale (issue 8 figure 4): the agent's memory and scrape time with 10,000
 * pods indexed, 50,000 series and 100,000 live tracked connections.
 *
 * - A fake API server with 10,000 pods (loopback addresses 127.1.x.y, see
 *   bench/lib/cluster.ts) in 10 namespaces; the first 50 are servers, each
 *   with its own Service (port 80 -> the servers' port).
 * - The real agent (bench/lib/agent.ts, through the CLI: ebpf receiver at the
 *   cgroup-v2 root with default settings, k8s_attributes on that server,
 *   prometheus exporter).
 * - Series: client pods each open one connection to one of the 50 servers
 *   (bound source address, 100 bytes, close). Each connection is seen by
 *   both sockets (reporter source and destination); each reporter's label
 *   set appears in the workload and service counter families and the
 *   duration and RTT histograms (a bucket line each). "Series" are Prometheus
 *   time series: the kmesh_tcp_* sample lines of /metrics, as in
 *   metrics.scrape_50k_series. A first batch of 400 clients measures the
 *   lines one pair adds; then just enough further clients to reach 50,000.
 * - Phase A (comparison): scrapes and RSS with those series, no other load.
 * - Then 50,000 idle loopback connection pairs (127.0.0.1, bench/lib/loadgen.c
 *   `hold`, in children that raise their own RLIMIT_NOFILE) = 100,000 live
 *   sockets the agent tracks (its connection table and the periodic
 *   sk_storage iterator walk every report_interval).
 * - Phase B (the figures): RSS (/proc/<pid>/status VmRSS) every second and
 *   back-to-back scrapes of /metrics (500 ms apart) for a window covering
 *   several report_interval walks.
 * Everything (held connections, servers, agent, fake API server) is closed
 * by the module's cleanups, also on failure.
 *
 * Run: npm run bench -- scale   (root)
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { loadavg } from 'node:os';
import type { KubeObject } from '../test/helpers/fakeApiServer.js';
import { countSeries, sampleValue, startAgent, tsxLoaderOverheadMB, type AgentProcess } from './lib/agent.js';
import { loopbackPodIp, podObject, serviceObject, startFakeCluster } from './lib/cluster.js';
import { holdConnections, type HeldConnections } from './lib/loadgen.js';
import { kernelUnavailable } from './lib/probe.js';
import { figure, median, percentile, sleep, SkipBenchmark, type BenchContext, type Figure } from './lib/types.js';

export const title = 'Scale: agent RSS and scrape time at 10,000 pods, 50,000 series, 100,000 live connections';
export const budgetSeconds = 150;

const PODS = 10_000;
const NAMESPACES = 10;
const SERVERS = 50;
const MAX_CLIENTS = 5_000;
const FIRST_BATCH = 400;
const HELD_PAIRS = 50_000;
const TARGET_SERIES = 50_000;
const RSS_TARGET_MB = 200;
const SCRAPE_TARGET_MS = 250;
const CONCURRENCY = 100;

const round1 = (x: number): number => Math.round(x * 10) / 10;

function podName(i: number): string {
  return i < SERVERS ? `srv-${i}` : `cli-${i}`;
}

function clusterObjects(port: number): KubeObject[] {
  const out: KubeObject[] = [];
  for (let n = 0; n < NAMESPACES; n++) out.push({ kind: 'Namespace', apiVersion: 'v1', metadata: { name: `bench-${n}` } });
  for (let i = 0; i < PODS; i++) {
    out.push(podObject({ name: podName(i), namespace: `bench-${i % NAMESPACES}`, ip: loopbackPodIp(i), ...(i < SERVERS ? { port } : {}) }));
  }
  for (let s = 0; s < SERVERS; s++) out.push(serviceObject(`srv-${s}`, `bench-${s % NAMESPACES}`, `10.96.0.${s + 1}`, `srv-${s}`, port));
  return out;
}

/** Listens on every server pod's address, all on the same port (picked free on the first). */
async function startServers(): Promise<{ servers: Server[]; port: number }> {
  const servers: Server[] = [];
  let port = 0;
  try {
    for (let s = 0; s < SERVERS; s++) {
      const server = createServer((sock: Socket) => {
        sock.on('data', () => undefined);
        sock.on('end', () => sock.end());
        sock.on('error', () => undefined);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, loopbackPodIp(s), () => resolve());
      });
      servers.push(server);
      if (port === 0) {
        const a = server.address();
        port = typeof a === 'object' && a !== null ? a.port : 0;
      }
    }
  } catch (err) {
    for (const s of servers) s.close();
    throw err;
  }
  return { servers, port };
}

/** One short connection from client pod `c` to server pod `c % SERVERS`. */
function shortConnection(c: number, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: loopbackPodIp(c % SERVERS), port, localAddress: loopbackPodIp(c) }, () => {
      s.end(Buffer.alloc(100, 120));
    });
    s.setTimeout(10_000, () => s.destroy(new Error(`connection ${c} timed out`)));
    s.on('data', () => undefined);
    s.once('error', reject);
    s.once('close', () => resolve());
  });
}

/** Clients [from, to) connect once each, CONCURRENCY at a time. */
async function makeConnections(port: number, from: number, to: number, deadline: number): Promise<number> {
  let next = SERVERS + from;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < SERVERS + to && Date.now() < deadline) {
      const c = next++;
      await shortConnection(c, port);
      done++;
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return done;
}

interface Window {
  scrapeMs: number[];
  rssMB: number[];
  series: number;
  tracked: number;
  bodyMB: number;
}

/** Scrapes back to back (pause between) and samples RSS every second, for `seconds`. */
async function measureWindow(agent: AgentProcess, seconds: number, pauseMs: number): Promise<Window> {
  const rssMB: number[] = [agent.rssMB()];
  const timer = setInterval(() => rssMB.push(agent.rssMB()), 1_000);
  const scrapeMs: number[] = [];
  let series = 0;
  let tracked = NaN;
  let bodyMB = 0;
  try {
    const end = Date.now() + seconds * 1_000;
    while (Date.now() < end) {
      const { ms, body } = await agent.scrape();
      scrapeMs.push(round1(ms));
      if (series === 0) {
        series = countSeries(body, 'kmesh_tcp_');
        bodyMB = body.length / 2 ** 20;
      }
      tracked = sampleValue(body, 'kmesh_otel_ebpf_connections_tracked');
      await sleep(pauseMs);
    }
  } finally {
    clearInterval(timer);
  }
  return { scrapeMs, rssMB: rssMB.map(round1), series, tracked, bodyMB };
}

/** Polls the kmesh_tcp_* line count every second until it stops growing (and is >= `atLeast`), bounded by `ms`. */
async function settledSeries(agent: AgentProcess, atLeast: number, ms: number): Promise<number> {
  const end = Date.now() + ms;
  let last = -1;
  for (;;) {
    const n = countSeries((await agent.scrape()).body, 'kmesh_tcp_');
    if ((n === last && n >= atLeast) || Date.now() > end) return n;
    last = n;
    await sleep(1_000);
  }
}

/** Polls /metrics (every second) until `pred(body)` or the time is up; returns the last body. */
async function waitMetrics(agent: AgentProcess, pred: (body: string) => boolean, ms: number): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const { body } = await agent.scrape();
    if (pred(body) || Date.now() > end) return body;
    await sleep(1_000);
  }
}

export async function run(ctx: BenchContext): Promise<Figure[]> {
  const why = kernelUnavailable();
  if (why !== undefined) throw new SkipBenchmark(why);
  const load = loadavg()[0]!;
  const t0 = Date.now();
  const { servers, port } = await startServers();
  ctx.onCleanup(async () => {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  });
  const { kubeconfig } = await startFakeCluster(ctx, clusterObjects(port));
  const agent = await startAgent(ctx, { kubeconfig, startTimeoutMs: 90_000 });
  const startSeconds = (Date.now() - t0) / 1000;
  const idleRss = agent.rssMB();
  ctx.log(`agent pid ${agent.pid} (${agent.how}) healthy with ${PODS} pods after ${startSeconds.toFixed(1)} s, RSS ${idleRss.toFixed(0)} MB`);

  const base = countSeries((await agent.scrape()).body, 'kmesh_tcp_');
  let made = await makeConnections(port, 0, FIRST_BATCH, Date.now() + 20_000);
  const first = await settledSeries(agent, base + 1, 15_000);
  const perPair = (first - base) / made;
  if (!(perPair >= 1)) {
    // Nothing to measure: the pipeline did not turn the connections into series (a broken build, a detached probe).
    throw new Error(`no kmesh_tcp_* series appeared after ${made} connections (${first} lines, ${base} before); agent log: ${agent.stderrTail()}`);
  }
  const clients = Math.min(MAX_CLIENTS, Math.ceil((TARGET_SERIES - base) / perPair));
  made += await makeConnections(port, FIRST_BATCH, clients, Date.now() + 30_000);
  await settledSeries(agent, Math.min(TARGET_SERIES, base + perPair * made), 20_000);
  ctx.log(`${perPair.toFixed(1)} series per connection pair: ${made} pairs`);
  const quick = ctx.quick;
  const a = await measureWindow(agent, quick ? 4 : 8, 500);
  ctx.log(`phase A: ${made} connections, ${a.series} series, scrape p50 ${median(a.scrapeMs)} ms, RSS ${median(a.rssMB)} MB`);

  const tHold = Date.now();
  const held: HeldConnections = await holdConnections(quick ? 10_000 : HELD_PAIRS, 60_000);
  ctx.onCleanup(() => held.release());
  const holdSeconds = (Date.now() - tHold) / 1000;
  const wantTracked = 2 * held.count;
  await waitMetrics(agent, (b) => sampleValue(b, 'kmesh_otel_ebpf_connections_tracked') >= wantTracked, 40_000);
  ctx.log(`${held.count} pairs held (opened in ${holdSeconds.toFixed(1)} s)`);
  const b = await measureWindow(agent, quick ? 8 : 25, 500);
  const peak = agent.peakRssMB();
  ctx.log(`phase B: ${b.series} series, ${b.tracked} tracked, scrape p50 ${median(b.scrapeMs)} ms max ${Math.max(...b.scrapeMs)}, RSS max ${Math.max(...b.rssMB)} MB`);
  const heldCount = held.count;
  await held.release();
  const { leftover, programs } = await agent.stop();
  let loaderNote = '';
  if (agent.fromSource) {
    try {
      loaderNote = ` Running from source: the tsx loader alone adds ~${round1(tsxLoaderOverheadMB(ctx.repoRoot))} MB to an empty process (plus its transpiled-module caches); \`npm run build\` first to measure the compiled agent.`;
    } catch {
      loaderNote = ' Running from source (tsx loader included).';
    }
  }

  const common =
    `${PODS.toLocaleString('en-US')} pods (loopback addresses 127.1.x.y) and ${SERVERS} services in the fake API server; ` +
    `${made.toLocaleString('en-US')} client pods made one connection each to one of ${SERVERS} server pods -> ` +
    `${b.series.toLocaleString('en-US')} kmesh_tcp_* series (sample lines) on /metrics, ${round1(perPair)} per connection pair ` +
    `(2 reporters x: workload and service counters, duration and RTT histogram buckets), ${base} before the traffic; body ${round1(b.bodyMB)} MB; ` +
    `${heldCount.toLocaleString('en-US')} idle 127.0.0.1 connection pairs held (opened in ${holdSeconds.toFixed(1)} s), ` +
    `kmesh_otel_ebpf_connections_tracked ${b.tracked.toLocaleString('en-US')} at the last scrape (every TCP socket of the node counts, ` +
    `other processes' too). Agent: ${agent.how}, default receiver settings (report_interval 5s: the iterator reports ` +
    `every tracked socket every 5 s, on a thread of the addon), metrics pipeline only, healthy ${startSeconds.toFixed(1)} s after start ` +
    `with the ${PODS.toLocaleString('en-US')} pods listed. Comparison: the same agent before the held connections were opened ` +
    `(phase A, same series). ${leftover.length === 0 ? `None of its ${programs} BPF programs left loaded or attached after it exited` : `Its BPF programs ${leftover.join(', ')} were left loaded or attached`}; ` +
    `1-min load average at start: ${load.toFixed(2)}.`;
  return [
    figure({
      id: 'scale.rss',
      title: 'Agent RSS at 10,000 pods, 50,000 series, 100,000 live connections (per-second samples)',
      unit: 'MB',
      runs: b.rssMB,
      comparison: { title: 'same agent before the 100,000 connections', runs: a.rssMB },
      target: `< ${RSS_TARGET_MB} MB (every sample)`,
      check: (f) => f.max < RSS_TARGET_MB,
      notes: `RSS from /proc/<pid>/status; peak (VmHWM) ${round1(peak)} MB; right after start-up (pods indexed, no series) ${round1(idleRss)} MB.${loaderNote} ${common}`,
    }),
    figure({
      id: 'scale.scrape',
      title: 'Scrape time of /metrics at 10,000 pods, 50,000 series, 100,000 live connections (per scrape)',
      unit: 'ms',
      runs: b.scrapeMs,
      comparison: { title: 'same agent before the 100,000 connections', runs: a.scrapeMs },
      target: `< ${SCRAPE_TARGET_MS} ms (every scrape)`,
      check: (f) => f.max < SCRAPE_TARGET_MS,
      notes:
        `Time from request to the last byte of the body, over a kept-alive loopback connection, 500 ms between scrapes, ` +
        `${b.scrapeMs.length} scrapes over ${quick ? 8 : 25} s; p50 ${median(b.scrapeMs)} ms, p99 ${percentile(b.scrapeMs, 99)} ms. ` +
        `The iterator walk runs on a thread of the addon, so a scrape during a walk competes for CPU but does not wait for it. ${common}`,
    }),
  ];
}
