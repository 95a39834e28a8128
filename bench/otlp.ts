/**
 * OTLP metrics export (issue 8 figure 5, metrics half; the log half is
 * `logs.otlp_records_per_sec` in bench/logs.ts, not repeated here):
 *
 * 1. `otlp.metric_points_per_sec`: the real otlp metrics exporter
 *    (OtlpMetricsExporter: SeriesStore -> PeriodicExportingMetricReader ->
 *    @opentelemetry/exporter-metrics-otlp-grpc, default config: gzip) holding
 *    SERIES series, exporting back to back (forceFlush in a loop, each export
 *    carrying every series, as a cumulative export does), counted as data
 *    points received by the in-repo receiver (test/helpers/otlpReceiver.ts,
 *    full protobuf decode). Exporter child pinned to CPU 0, receiver child to
 *    CPU 1; this process only orchestrates. Comparison: compression none.
 * 2. `otlp.metric_points_per_sec_http`: the same over OTLP/HTTP (otlp_http
 *    exporter, protobuf, gzip) into the in-repo HTTP receiver; comparison: gRPC.
 * 3. `otlp.export_50k_series`: one export of a store holding 50,000 series
 *    (the scale figure's size): points the receiver got out of it.
 * 4. `otlp.store_50k_points_per_sec` (issue 18): the otlp exporter (direct
 *    encoder, gzip) exporting a 50,000-series store back to back into a
 *    counting receiver (bench/lib/countingLogsReceiver.ts: counts data points
 *    from the wire format, so the receiver is not the limit); comparison: the
 *    SDK serializer path in the same run. The exporter child also times the
 *    Prometheus exposition of the same 50,000 series (writeExposition into a
 *    discarding stream), the reference of the target.
 * 5. `otlp.store_50k_cpu_ceiling_points_per_sec` (issue 18): the same
 *    exporter child's own CPU work per export of that store before any gRPC
 *    (collect, encode, gzip, request by request), the ceiling of figure 4.
 *
 * Run: npm run bench -- otlp   (no root needed)
 */


import type { Attributes } from '@opentelemetry/api';
import { spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { otlpExporterFactory, otlpHttpExporterFactory } from '../src/exporters/otlp/factory.js';
import { MAX_POINTS_PER_REQUEST, OtlpMetricsExporter, splitResourceMetrics, type MetricsEncoding } from '../src/exporters/otlp/OtlpMetricsExporter.js';
import { MetricsEncoder } from '../src/exporters/otlp/encoding/MetricsEncoder.js';
import { StoreMetricProducer } from '../src/exporters/common/sdkMetrics.js';
import { exporterSeriesStore } from '../src/exporters/common/seriesStore.js';
import { writeExposition } from '../src/exporters/prometheus/exposition.js';
import { schemaByName } from '../src/metrics/schemas/registry.js';
import { SeriesStore } from '../src/metrics/SeriesStore.js';
import { CountingLogsReceiver } from './lib/countingLogsReceiver.js';
import { emptyFlowValues, RawAttr, type FlowPoint } from '../src/model/metrics.js';
import { OtlpHttpReceiver, OtlpReceiver } from '../test/helpers/otlpReceiver.js';
import { figure, median, sleep, type BenchContext, type Figure } from './lib/types.js';
import { BENCH_RESOURCE, selfCounter, testSettings as settings } from '../test/helpers/settings.js';

export const title = 'OTLP: metric points/s exported over gRPC and HTTP';
export const budgetSeconds = 150;

const SELF = fileURLToPath(import.meta.url);
/** Series in the throughput store: 500 label sets x 8 counter families; one export request stays under gRPC's default 4 MiB. */
const SERIES = 4_000;
const LARGE_SERIES = 50_000;
const WARMUP_MS = 2_000;
const WINDOW_MS = 3_000;

type Msg = { type: string } & Record<string, unknown>;
const send = (m: Msg): void => void process.send!(m);

/** `n` points: n/8 label sets (one source reporter flow each) with the full 23-label kmesh identity plus service labels. */
function points(n: number): FlowPoint[] {
  const out: FlowPoint[] = [];
  for (let f = 0; f < n / 8; f++) {
    const c = f % 250;
    const d = Math.floor(f / 250);
    const ns = `ns-${c % 20}`;
    const dns = `ns-${d % 20}`;
    out.push({
      ...emptyFlowValues(),
      opened: 2,
      closed: 1,
      sentBytes: 1_000 + f,
      receivedBytes: 50_000 + f,
      attributes: {
        [RawAttr.direction]: 'OUTBOUND',
        reporter: 'source',
        source_workload: `client-${c}`,
        source_canonical_service: `client-${c}`,
        source_canonical_revision: 'v1',
        source_workload_namespace: ns,
        source_principal: `spiffe://cluster.local/ns/${ns}/sa/client-${c}`,
        source_app: `client-${c}`,
        source_version: 'v1',
        source_cluster: 'Kubernetes',
        destination_pod_address: `10.245.${d >> 8}.${d & 255}`,
        destination_pod_namespace: dns,
        destination_pod_name: `server-${d}-7d9f8c6b5-x${d.toString(36)}`,
        destination_workload: `server-${d}`,
        destination_canonical_service: `server-${d}`,
        destination_canonical_revision: 'v1',
        destination_workload_namespace: dns,
        destination_principal: `spiffe://cluster.local/ns/${dns}/sa/server-${d}`,
        destination_app: `server-${d}`,
        destination_version: 'v1',
        destination_cluster: 'Kubernetes',
        destination_service: `server-${d}.${dns}.svc.cluster.local`,
        destination_service_namespace: dns,
        destination_service_name: `server-${d}`,
        request_protocol: 'tcp',
        response_flags: '-',
        connection_security_policy: 'mutual_tls',
      },
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Children

/** The in-repo receiver; counts metric data points and drops the decoded requests at once. */
/** OTLP/gRPC or OTLP/HTTP, the two exporters' protocols. */
type Protocol = 'grpc' | 'http';

/** Receiver child for the 50k-store figure: counts data points from the wire format (no decode). */
async function countingReceiverChild(): Promise<void> {
  const rx = await CountingLogsReceiver.startMetrics();
  process.on('message', (m: Msg) => {
    if (m.type === 'count') send({ type: 'count', points: rx.records, requests: rx.requests, malformed: rx.malformed, at: Date.now() });
    else if (m.type === 'exit') {
      rx.stop();
      process.exit(0);
    }
  });
  send({ type: 'ready', endpoint: rx.endpoint });
}

/** Per-stage ms of the direct path's CPU work for one export of a store, one value per run. */
interface StageMs {
  collect: number[];
  encode: number[];
  gzip: number[];
  requestBytes: number;
  gzipBytes: number;
}

/**
 * The exporter's own CPU work for one export of a store holding `pts`,
 * stage by stage, without gRPC: collect (the store's snapshot as SDK
 * MetricData) and the split into requests; then per request MetricsEncoder
 * and gzip (zlib's default level, what grpc-js compresses with). The
 * first pass fills the caches (as the exporter's first export does) and is
 * not counted.
 */
function stagesMs(pts: FlowPoint[], runs: number): StageMs {
  const s = settings('otlp', BENCH_RESOURCE);
  // The exporter's own store constructor and config defaults, with room for every series.
  const cfg = otlpExporterFactory.configSchema.parse({ max_series_per_family: LARGE_SERIES * 2 });
  const store = exporterSeriesStore<Attributes>(s, cfg);
  for (let i = 0; i < pts.length; i += 1_000) store.consume({ points: pts.slice(i, i + 1_000) });
  const producer = new StoreMetricProducer(store, s.resource);
  const encoder = new MetricsEncoder();
  const out: StageMs = { collect: [], encode: [], gzip: [], requestBytes: 0, gzipBytes: 0 };
  const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
  for (let r = 0; r <= runs; r++) {
    let t = process.hrtime.bigint();
    const parts = splitResourceMetrics(producer.collectSync().resourceMetrics, MAX_POINTS_PER_REQUEST);
    const collect = ms(t);
    // Request by request, as the sending queue does.
    let encode = 0;
    let gzip = 0;
    let bytes = 0;
    let zipped = 0;
    for (const part of parts) {
      t = process.hrtime.bigint();
      const request = encoder.encode(part);
      encode += ms(t);
      t = process.hrtime.bigint();
      zipped += gzipSync(request.bytes).length;
      gzip += ms(t);
      bytes += request.bytes.length;
      // As the sending queue does once a request is sent: its memory goes back to the encoder.
      request.release?.();
    }
    if (r === 0) continue;
    out.collect.push(collect);
    out.encode.push(encode);
    out.gzip.push(gzip);
    out.requestBytes = bytes;
    out.gzipBytes = zipped;
  }
  return out;
}

/** Median ms of `runs` renderings of the Prometheus exposition of a store holding `pts` (discarded output). */
async function expositionMs(pts: FlowPoint[], runs: number): Promise<number[]> {
  const store = new SeriesStore<string>({ schema: schemaByName('kmesh') });
  for (let i = 0; i < pts.length; i += 1_000) store.consume({ points: pts.slice(i, i + 1_000) });
  const sink = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });
  const out: number[] = [];
  // The first rendering builds the label texts (kept in the sets afterwards, as in the exporter) and is not counted.
  for (let r = 0; r <= runs; r++) {
    const t = process.hrtime.bigint();
    await writeExposition(sink(), store.snapshot(), '', '', false);
    if (r > 0) out.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  return out;
}

async function receiverChild(protocol: Protocol): Promise<void> {
  const rx = protocol === 'grpc' ? await OtlpReceiver.start() : await OtlpHttpReceiver.start();
  let pointsIn = 0;
  let requests = 0;
  const drain = (): void => {
    for (const req of rx.metricsRequests.splice(0)) {
      requests++;
      for (const rm of req.resourceMetrics ?? []) {
        for (const sm of rm.scopeMetrics ?? []) for (const m of sm.metrics ?? []) pointsIn += (m[m.data]?.dataPoints ?? []).length;
      }
    }
    rx.logsRequests.length = 0;
  };
  const timer = setInterval(drain, 20);
  process.on('message', (m: Msg) => {
    if (m.type === 'count') {
      drain();
      send({ type: 'count', points: pointsIn, requests, at: Date.now() });
    } else if (m.type === 'exit') {
      clearInterval(timer);
      void rx.stop().then(() => process.exit(0));
    }
  });
  send({ type: 'ready', endpoint: rx.endpoint });
}

/** The otlp metrics exporter with `series` series, exporting back to back until told to stop (or `once`: one export). */
async function exporterChild(
  protocol: Protocol,
  endpoint: string,
  compression: 'gzip' | 'none',
  series: number,
  once: boolean,
  encoding: MetricsEncoding = 'direct',
): Promise<void> {
  const s = settings('otlp', BENCH_RESOURCE);
  const factory = protocol === 'grpc' ? otlpExporterFactory : otlpHttpExporterFactory;
  // A long export_interval: the periodic timer must not add exports of its own; timeout well above one export.
  const cfg = factory.configSchema.parse({ endpoint, tls: { insecure: true }, compression, export_interval: '10m', timeout: '30s' });
  const exp =
    encoding === 'direct'
      ? (factory.createMetrics!(s, cfg) as OtlpMetricsExporter)
      : new OtlpMetricsExporter(s, cfg, protocol, Math.random, 'sdk');
  await exp.start({ reportFatalError: () => undefined });
  const all = points(series);
  // The Prometheus reference, same series, same pinned CPU, before the exports start.
  const reference = encoding === 'direct' && series === LARGE_SERIES && !once && compression === 'gzip';
  const exposition = reference ? await expositionMs(all, 5) : [];
  const stages = reference ? stagesMs(all, 5) : undefined;
  for (let i = 0; i < all.length; i += 1_000) exp.consumeMetrics({ points: all.slice(i, i + 1_000) });
  let exports = 0;
  let running = true;
  const report = async (): Promise<void> =>
    send({
      type: 'report',
      exposition,
      stages,
      exports,
      seriesInStore: exp.store.seriesCount(),
      sent: await selfCounter(s, 'kmesh_otel_exporter_sent_metric_points'),
      failed: await selfCounter(s, 'kmesh_otel_exporter_send_failed_metric_points'),
    });
  process.on('message', (m: Msg) => {
    if (m.type === 'stop') running = false;
    else if (m.type === 'exit') process.exit(0);
  });
  send({ type: 'ready' });
  if (once) {
    await exp.forceFlush();
    exports++;
    await report();
    return;
  }
  while (running) {
    await exp.forceFlush();
    exports++;
  }
  await report();
}

/**
 * The direct path's CPU ceiling for the 50k store: collect + encode + gzip
 * per export, no gRPC, measured in the exporter child before its exports.
 */
function ceilingFigure(st: StageMs, expoMs: number[]): Figure {
  const runs = st.collect.map((c, i) => Math.round(LARGE_SERIES / ((c + st.encode[i]! + st.gzip[i]!) / 1000)));
  const m = (xs: number[]): string => median(xs).toFixed(1);
  const budget = median(expoMs) * 2;
  return figure({
    id: 'otlp.store_50k_cpu_ceiling_points_per_sec',
    title: 'Metric data points/s the direct path could export from a 50,000-series store on one core before any gRPC work (collect + encode + gzip)',
    unit: 'points/s',
    runs,
    notes:
      `Measured in the exporter child of otlp.store_50k_points_per_sec (same CPU, before its exports), ${runs.length} exports ` +
      `after one that fills the caches. Median ms per export of 50,000 points: collect and split into requests of ` +
      `${MAX_POINTS_PER_REQUEST.toLocaleString('en-US')} points ${m(st.collect)}, MetricsEncoder ${m(st.encode)}, gzip at zlib's default ` +
      `level (grpc-js has no level option) ${m(st.gzip)}; ${(st.requestBytes / 1e6).toFixed(1)} MB of requests, ` +
      `${(st.gzipBytes / 1e6).toFixed(2)} MB gzipped. The target (0.5 x the exposition) allows ${budget.toFixed(1)} ms per export ` +
      `in this run; gzip alone takes ${((median(st.gzip) / budget) * 100).toFixed(0)}% of it, because every point carries its 23 ` +
      `attributes in full (OTLP metrics have no shared-attribute form) where the exposition writes the same label text once per ` +
      `series and is not compressed.`,
  });
}

// ---------------------------------------------------------------------------
// Orchestration

type Ctx = Pick<BenchContext, 'quick' | 'command' | 'onCleanup' | 'log'>;

function pinning(): { exporter?: number; receiver?: number; how: string } {
  if (cpus().length >= 2 && existsSync('/usr/bin/taskset')) return { exporter: 0, receiver: 1, how: 'exporter pinned to CPU 0, receiver to CPU 1 (taskset)' };
  return { how: `not pinned (${cpus().length} CPU(s))` };
}

function spawnChild(args: string[], cpu: number | undefined, ctx: Ctx): ChildProcess {
  const node = [process.execPath, '--import', 'tsx', SELF, ...args];
  const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc'];
  const child = cpu !== undefined ? spawn('taskset', ['-c', String(cpu), ...node], { stdio }) : spawn(node[0]!, node.slice(1), { stdio });
  ctx.onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

function next<T>(child: ChildProcess, type: string, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      child.off('message', onMsg);
      child.off('exit', onExit);
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`child: no '${type}' within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMsg = (m: Msg): void => {
      if (m.type !== type) return;
      done();
      resolve(m as T);
    };
    const onExit = (code: number | null): void => {
      done();
      reject(new Error(`child exited (${code}) before '${type}'`));
    };
    child.on('message', onMsg);
    child.on('exit', onExit);
  });
}

async function ask<T>(child: ChildProcess, type: string, reply = type): Promise<T> {
  const p = next<T>(child, reply);
  child.send({ type });
  return p;
}

async function end(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  try {
    child.send({ type: 'exit' });
  } catch {
    // channel already closed
  }
  const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(t);
}

/** utime + stime of a process, seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

interface Count {
  points: number;
  requests: number;
  at: number;
}
interface Report {
  /** ms per Prometheus exposition of the same store (the 50k-store run of the direct path only). */
  exposition: number[];
  /** The direct path's own work per export of the same store, by stage (same run only). */
  stages?: StageMs;
  exports: number;
  seriesInStore: number;
  sent: number;
  failed: number;
}

async function throughput(
  compression: 'gzip' | 'none',
  runs: number,
  ctx: Ctx,
  protocol: Protocol = 'grpc',
  /** The 50k-store figure: LARGE_SERIES series, counting receiver, and the path to measure. */
  large?: { encoding: MetricsEncoding },
): Promise<{ rates: number[]; exporterCpu: number[]; rxCpu: number[]; report: Report; perExport: number }> {
  const pin = pinning();
  let rx: ChildProcess | undefined;
  let exp: ChildProcess | undefined;
  try {
    rx = spawnChild(large ? ['--child', 'counting-receiver'] : ['--child', 'receiver', protocol], pin.receiver, ctx);
    const { endpoint } = await next<{ endpoint: string }>(rx, 'ready');
    const series = large ? LARGE_SERIES : SERIES;
    exp = spawnChild(['--child', 'exporter', protocol, endpoint, compression, String(series), 'loop', large?.encoding ?? 'direct'], pin.exporter, ctx);
    await next(exp, 'ready', 120_000);
    await sleep(WARMUP_MS);
    let c0 = await ask<Count>(rx, 'count');
    let e0 = cpuSeconds(exp.pid!);
    let r0 = cpuSeconds(rx.pid!);
    const rates: number[] = [];
    const exporterCpu: number[] = [];
    const rxCpu: number[] = [];
    for (let i = 0; i < runs; i++) {
      await sleep(WINDOW_MS);
      const c1 = await ask<Count>(rx, 'count');
      const e1 = cpuSeconds(exp.pid!);
      const r1 = cpuSeconds(rx.pid!);
      const secs = (c1.at - c0.at) / 1000;
      rates.push(Math.round((c1.points - c0.points) / secs));
      exporterCpu.push((e1 - e0) / secs);
      rxCpu.push((r1 - r0) / secs);
      [c0, e0, r0] = [c1, e1, r1];
    }
    const report = await ask<Report>(exp, 'stop', 'report');
    return { rates, exporterCpu, rxCpu, report, perExport: c0.requests > 0 ? c0.points / c0.requests : 0 };
  } finally {
    await end(exp);
    await end(rx);
  }
}

async function largeExport(ctx: Ctx): Promise<{ received: number; report: Report }> {
  let rx: ChildProcess | undefined;
  let exp: ChildProcess | undefined;
  try {
    rx = spawnChild(['--child', 'receiver', 'grpc'], undefined, ctx);
    const { endpoint } = await next<{ endpoint: string }>(rx, 'ready');
    exp = spawnChild(['--child', 'exporter', 'grpc', endpoint, 'gzip', String(LARGE_SERIES), 'once'], undefined, ctx);
    const report = await next<Report>(exp, 'report', 60_000);
    const { points: received } = await ask<Count>(rx, 'count');
    return { received, report };
  } finally {
    await end(exp);
    await end(rx);
  }
}

export async function run(ctx: Ctx): Promise<Figure[]> {
  const load = loadavg()[0]!;
  const runs = ctx.quick ? 2 : 3;
  ctx.log('metric points/s, gzip then none');
  const gzip = await throughput('gzip', runs, ctx);
  const none = await throughput('none', runs, ctx);
  ctx.log('metric points/s over OTLP/HTTP, gzip');
  const http = await throughput('gzip', runs, ctx, 'http');
  if (gzip.report.failed > 0 || none.report.failed > 0 || http.report.failed > 0) {
    throw new Error(
      `otlp: exports failed during the throughput runs (gzip ${gzip.report.failed}, none ${none.report.failed}, http ${http.report.failed} points)`,
    );
  }
  ctx.log('one export of 50,000 series');
  const large = await largeExport(ctx);
  ctx.log('50,000-series store exported back to back: direct encoder, then the SDK serializer');
  const store50k = await throughput('gzip', runs, ctx, 'grpc', { encoding: 'direct' });
  const store50kSdk = await throughput('gzip', runs, ctx, 'grpc', { encoding: 'sdk' });
  const store50kNone = await throughput('none', runs, ctx, 'grpc', { encoding: 'direct' });
  const expoMs = store50k.report.exposition;
  const expoRate = LARGE_SERIES / (median(expoMs) / 1000);
  const pct = (xs: number[]): string => `${Math.round(median(xs) * 100)}%`;
  // Points per CPU-second of the exporter: what one fully available core would export.
  const perCpu = (t: { rates: number[]; exporterCpu: number[] }): string =>
    Math.round(median(t.rates.map((r, i) => r / Math.max(0.01, t.exporterCpu[i]!)))).toLocaleString('en-US');
  const stages = store50k.report.stages;
  if (stages === undefined) throw new Error('otlp: the 50k-store exporter child reported no stage costs');
  const pin = pinning();
  return [
    figure({
      id: 'otlp.metric_points_per_sec',
      title: `Metric data points/s exported over OTLP/gRPC (otlp exporter, gzip, ${SERIES.toLocaleString('en-US')} series per export), received by the in-repo receiver`,
      unit: 'points/s',
      runs: gzip.rates,
      comparison: { title: 'same, compression: none', runs: none.rates },
      notes:
        `Exporter child: OtlpMetricsExporter (default config but export_interval 10m and timeout 30s) holding ` +
        `${gzip.report.seriesInStore.toLocaleString('en-US')} series (500 label sets with the full kmesh workload and service labels x 8 ` +
        `counter families), forceFlush() back to back: each export collects the store and sends every series (cumulative), ` +
        `~${Math.round(gzip.perExport).toLocaleString('en-US')} points per request (self-metrics included). Receiver child: ` +
        `test/helpers/otlpReceiver.ts (full decode), points counted per ${WINDOW_MS / 1000} s window after a ${WARMUP_MS / 1000} s ` +
        `warm-up; ${pin.how}. Exports: gzip ${gzip.report.exports}, none ${none.report.exports}; failed points 0. CPU (median, 100% = one ` +
        `core): gzip exporter ${pct(gzip.exporterCpu)}, receiver ${pct(gzip.rxCpu)}; none exporter ${pct(none.exporterCpu)}, receiver ` +
        `${pct(none.rxCpu)}. Log records/s over OTLP: see logs.otlp_records_per_sec. 1-min load average at start: ${load.toFixed(2)} on ${cpus().length} cores.`,
    }),
    figure({
      id: 'otlp.metric_points_per_sec_http',
      title: `Metric data points/s exported over OTLP/HTTP (otlp_http exporter, protobuf, gzip, ${SERIES.toLocaleString('en-US')} series per export), received by the in-repo HTTP receiver`,
      unit: 'points/s',
      runs: http.rates,
      comparison: { title: 'OTLP/gRPC, same store and compression (otlp.metric_points_per_sec)', runs: gzip.rates },
      notes:
        `As otlp.metric_points_per_sec, with the otlp_http exporter (@opentelemetry/exporter-metrics-otlp-proto, keep-alive agent) ` +
        `posting to /v1/metrics of OtlpHttpReceiver (test/helpers/otlpReceiver.ts: node:http, gunzip, full decode with the pinned ` +
        `.proto files). Exports: ${http.report.exports}; failed points 0. CPU (median): exporter ${pct(http.exporterCpu)}, receiver ` +
        `${pct(http.rxCpu)}.`,
    }),
    figure({
      id: 'otlp.store_50k_points_per_sec',
      title: 'Metric data points/s exported over OTLP/gRPC (gzip) from a 50,000-series store, direct encoder, counted from the wire',
      unit: 'points/s',
      runs: store50k.rates,
      comparison: { title: 'the SDK serializer path (@opentelemetry/exporter-metrics-otlp-grpc), same store and config', runs: store50kSdk.rates },
      target: `>= 0.5 x the Prometheus exposition's series/s over the same store (same run: ${Math.round(expoRate).toLocaleString('en-US')} series/s, so >= ${Math.round(expoRate / 2).toLocaleString('en-US')})`,
      check: (f) => f.median >= expoRate / 2,
      notes:
        `Exporter child: OtlpMetricsExporter (default config but export_interval 10m and timeout 30s: gzip, 1,000 points per ` +
        `request, 10 requests in flight) holding ${store50k.report.seriesInStore.toLocaleString('en-US')} series (6,250 label sets ` +
        `with the full kmesh workload and service labels x 8 counter families), forceFlush() back to back; each export is ` +
        `~${Math.round(LARGE_SERIES / 1000)} requests. Receiver child: bench/lib/countingLogsReceiver.ts (grpc-js with the ` +
        `Collector's 16 MiB HTTP/2 flow-control window, gunzip, data points counted from the protobuf wire format; the ` +
        `full-decode receiver of otlp.metric_points_per_sec would be the limit). ` +
        `${pin.how}. Direct path: the store's collect as SDK MetricData (exporters/common/sdkMetrics.ts), each request encoded by ` +
        `MetricsEncoder (each label set's 23 attributes spliced from bytes cached per attributes object), sent by the SDK's gRPC ` +
        `export delegate. Prometheus reference, same exporter child and CPU, before the exports: writeExposition of a store with ` +
        `the same 50,000 series into a discarding stream, ${expoMs.length} renderings after a first that builds the label texts: ` +
        `median ${median(expoMs).toFixed(1)} ms (runs ${expoMs.map((x) => x.toFixed(1)).join(', ')}) = ` +
        `${Math.round(expoRate).toLocaleString('en-US')} series/s. Same run, direct path with compression: none: ` +
        `${Math.round(median(store50kNone.rates)).toLocaleString('en-US')} points/s (runs ${store50kNone.rates.join(', ')}; exporter CPU ` +
        `${pct(store50kNone.exporterCpu)}). CPU (median, 100% = one core): direct exporter ${pct(store50k.exporterCpu)}, receiver ` +
        `${pct(store50k.rxCpu)}; SDK exporter ${pct(store50kSdk.exporterCpu)}, receiver ${pct(store50kSdk.rxCpu)}. Exports: direct ` +
        `${store50k.report.exports}, SDK ${store50kSdk.report.exports}; failed points: direct ${store50k.report.failed}, SDK ` +
        `${store50kSdk.report.failed}. Points per exporter CPU-second: direct ${perCpu(store50k)}, SDK ${perCpu(store50kSdk)}, ` +
        `direct without compression ${perCpu(store50kNone)}. Where the exporter's CPU goes: otlp.store_50k_cpu_ceiling_points_per_sec. ` +
        `1-min load average at start: ${load.toFixed(2)} on ${cpus().length} cores.`,
    }),
    ceilingFigure(stages, expoMs),
    figure({
      id: 'otlp.export_50k_series',
      title: 'Points delivered by one OTLP export of a 50,000-series store (gzip, in-repo receiver with gRPC defaults)',
      unit: 'points',
      runs: [large.received],
      target: `all ${LARGE_SERIES.toLocaleString('en-US')} series delivered`,
      check: (f) => f.max >= LARGE_SERIES,
      notes:
        `One forceFlush() of an OtlpMetricsExporter holding ${large.report.seriesInStore.toLocaleString('en-US')} series; exporter self-metrics: ` +
        `sent ${large.report.sent.toLocaleString('en-US')}, send_failed ${large.report.failed.toLocaleString('en-US')} points. The exporter sends ` +
        `a whole collection in one ExportMetricsServiceRequest; a gRPC server with default settings (grpc-js here; the ` +
        `OpenTelemetry Collector's otlp receiver defaults to the same 4 MiB) refuses a request that decompresses to more than ` +
        `4 MiB (RESOURCE_EXHAUSTED), which at ~1 KB per point with the full label set happens between 4,000 and 8,000 points. ` +
        `Below that size see otlp.metric_points_per_sec.`,
    }),
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  if (args[0] === '--child' && args[1] === 'receiver') await receiverChild(args[2] as Protocol);
  else if (args[0] === '--child' && args[1] === 'counting-receiver') await countingReceiverChild();
  else if (args[0] === '--child' && args[1] === 'exporter') {
    await exporterChild(args[2] as Protocol, args[3]!, args[4] as 'gzip' | 'none', Number(args[5]), args[6] === 'once', (args[7] ?? 'direct') as MetricsEncoding);
  }
  else {
    const cleanups: Array<() => void | Promise<void>> = [];
    try {
      const figs = await run({
        quick: args.includes('--quick'),
        command: 'node --import tsx bench/otlp.ts',
        log: (m) => void process.stderr.write(m + '\n'),
        onCleanup: (fn) => void cleanups.push(fn),
      });
      process.stdout.write(JSON.stringify(figs, null, 2) + '\n');
    } finally {
      for (const fn of cleanups.reverse()) await fn();
    }
  }
}
