/**
 * Connection spans (issue 17):
 *
 * 1. `traces.build`: the receiver's path (decode + connection table + flow
 *    aggregation) with spans built for every close (ids from the ISN pair,
 *    sampling at ratio 1) against the same path without a traces pipeline,
 *    on one core, synthetic ringbuf-sized batches of closes. Runs alternate.
 * 2. `traces.otlp_spans_per_sec`: connection spans built (ids from the ISN
 *    pair) and exported over OTLP/gRPC by the otlp exporter (default config:
 *    gzip, batch 512, queue 10,000) to a counting OTLP/gRPC receiver
 *    (bench/lib/countingLogsReceiver.ts) in the same process, by the direct
 *    span encoder (the default) against the SDK path (toReadableSpan,
 *    BatchSpanProcessor, the SDK serializer) of the same exporter, runs
 *    alternating; `traces.otlp_spans_vs_logs`: the same spans against the
 *    access-log records of the same connections through the same exporter.
 *    One process, so the receiver's CPU is charged too: a lower bound.
 * 3. `traces.agent_cpu`: the real agent (CLI, ebpf at the cgroup-v2 root,
 *    metrics pipeline) with a traces pipeline to the counting receiver
 *    against the same agent without it, at a fixed loopback connection rate
 *    (bench/lib/loadgen.c churn): the agent's CPU seconds per second of
 *    churn, runs alternating. Needs root.
 *
 * Run alone: node --import tsx bench/traces.ts
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import type { Host } from '../src/component/component.js';
import { otlpExporterFactory } from '../src/exporters/otlp/factory.js';
import type { OtlpLogsExporter } from '../src/exporters/otlp/OtlpLogsExporter.js';
import { OtlpTracesExporter } from '../src/exporters/otlp/OtlpTracesExporter.js';
import type { ConnectionEvent } from '../src/model/connection.js';
import type { AccessLogEntry } from '../src/model/logs.js';
import { ConnectionTraceIds } from '../src/model/traceIds.js';
import type { ConnectionSpan } from '../src/model/traces.js';
import { newDecodeContext } from '../src/receiver/ebpf/decode.js';
import { RECORD_SIZE, RecordLayout as L } from '../src/receiver/ebpf/layout.js';
import { RecordProcessor } from '../src/receiver/ebpf/RecordProcessor.js';
import { testSettings } from '../test/helpers/settings.js';
import { startAgent } from './lib/agent.js';
import { CountingLogsReceiver } from './lib/countingLogsReceiver.js';
import { runChurn } from './lib/loadgen.js';
import { figure, type BenchContext, type Figure } from './lib/types.js';

export const title = 'Traces: connection spans built, exported, and what they cost the agent';
export const budgetSeconds = 200;

const PER_BATCH = 7700;
const BATCHES = 16;

/** Batches of closes, alternating client and server sockets, each with an ISN pair. */
function closeBatches(): Buffer[] {
  const out: Buffer[] = [];
  let cookie = 1n;
  for (let b = 0; b < BATCHES; b++) {
    const buf = Buffer.alloc(PER_BATCH * RECORD_SIZE);
    for (let i = 0; i < PER_BATCH; i++) {
      const off = i * RECORD_SIZE;
      const conn = b * PER_BATCH + i;
      buf.writeBigUInt64LE(cookie++, off + L.socket_cookie.offset);
      buf.writeBigUInt64LE(4026531840n, off + L.netns_cookie.offset);
      buf.writeBigUInt64LE(1_000_000_000n, off + L.start_ns.offset);
      buf.writeBigUInt64LE(1_003_000_000n + BigInt(i), off + L.event_ns.offset);
      buf.writeBigUInt64LE(4096n, off + L.sent_bytes.offset);
      buf.writeBigUInt64LE(512n, off + L.received_bytes.offset);
      buf.set([10, 244, 1, i % 256], off + L.src_addr.offset);
      buf.set([10, 244, 2, i % 64], off + L.dst_addr.offset);
      buf.writeUInt32LE(120, off + L.srtt_us.offset);
      buf.writeUInt32LE((conn * 2654435761) >>> 0, off + L.isn_client.offset);
      buf.writeUInt32LE((conn * 40503 + 7) >>> 0, off + L.isn_server.offset);
      buf.writeUInt16LE(30000 + (i % 30000), off + L.src_port.offset);
      buf.writeUInt16LE(8080, off + L.dst_port.offset);
      buf.writeUInt16LE(2, off + L.family.offset);
      buf[off + L.kind.offset] = 2;
      buf[off + L.direction.offset] = 1 + (i % 2);
      buf[off + L.state.offset] = 7;
      buf[off + L.isn_known.offset] = 3;
    }
    out.push(buf);
  }
  return out;
}

/** Records/s through `p` for `seconds` over the batches (after one warm-up pass). */
function throughput(p: RecordProcessor, batches: Buffer[], seconds: number): number {
  let sink = 0;
  for (const b of batches) sink += p.process(b).traces?.spans.length ?? 0;
  let records = 0;
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  let now = start;
  for (let i = 0; now < deadline; i++) {
    const r = p.process(batches[i % batches.length]!);
    sink += (r.traces?.spans.length ?? 0) + (r.metrics?.points.length ?? 0);
    records += PER_BATCH;
    now = process.hrtime.bigint();
  }
  if (sink === -1) console.log(sink);
  return records / (Number(now - start) / 1e9);
}

function event(i: number): ConnectionEvent {
  return {
    kind: 'close', direction: i % 2 === 0 ? 'OUTBOUND' : 'INBOUND', family: 4, srcAddr: `10.244.1.${i % 256}`, srcPort: 30000 + (i % 30000),
    dstAddr: `10.244.2.${i % 64}`, dstPort: 8080, socketCookie: i, netnsCookie: 1, timeUnixNano: 1_780_000_000_000_000_000n + BigInt(i) * 1000n,
    durationNs: 3_000_000, sentBytes: 4096, receivedBytes: 512, srttUs: 120, minRttUs: 80, retransmits: 0, lostPackets: 0, segsIn: 6, segsOut: 6,
    state: 'CLOSE', isnClient: (i * 2654435761) >>> 0, isnServer: (i * 40503 + 7) >>> 0,
  };
}

const host: Host = { reportFatalError: () => undefined };
const ATTRS = { 'source.k8s.pod.name': 'sleep-7656cf8794-9v2gv', 'destination.k8s.pod.name': 'httpbin-5c5944c58c-v9mlk', 'destination.k8s.deployment.name': 'httpbin', 'source.k8s.namespace.name': 'default', 'destination.k8s.namespace.name': 'default' };

/**
 * Items/s from the first consumeX to the receiver counting all `total`:
 * pushed in batches of 1,000 while the exporter's queue has room.
 */
async function exportRate(kind: 'spans' | 'spans_sdk' | 'logs', rx: CountingLogsReceiver, total: number): Promise<number> {
  const ids = new ConnectionTraceIds();
  const cfg = otlpExporterFactory.configSchema.parse({ endpoint: rx.endpoint, tls: { insecure: true } });
  const settings = testSettings(`otlp/${kind}`);
  const exp =
    kind === 'logs'
      ? (otlpExporterFactory.createLogs!(settings, cfg) as OtlpLogsExporter)
      : kind === 'spans'
        ? (otlpExporterFactory.createTraces!(settings, cfg) as OtlpTracesExporter)
        : new OtlpTracesExporter(settings, cfg, 'grpc', Math.random, 'sdk');
  await exp.start(host);
  const count = (): number => (kind === 'logs' ? rx.records : rx.spans);
  const before = count();
  const start = process.hrtime.bigint();
  const deadline = Date.now() + 60_000;
  for (let i = 0; i < total; i += 1000) {
    while (exp.queued > 9000 && Date.now() < deadline) await sleep(1);
    const events = Array.from({ length: Math.min(1000, total - i) }, (_, k) => event(i + k));
    if (kind !== 'logs') {
      const spans: ConnectionSpan[] = events.map((e) => ({
        event: e, context: ids.forEvent(e)!, kind: e.direction === 'OUTBOUND' ? 'CLIENT' : 'SERVER', attributes: ATTRS,
        startUnixNano: e.timeUnixNano - 3_000_000n, endUnixNano: e.timeUnixNano, observedUnixNano: e.timeUnixNano,
      }));
      (exp as OtlpTracesExporter).consumeTraces({ spans });
    } else {
      const entries: AccessLogEntry[] = events.map((e) => ({ event: e, attributes: ATTRS, observedUnixNano: e.timeUnixNano }));
      (exp as OtlpLogsExporter).consumeLogs({ entries });
    }
  }
  await (exp as OtlpTracesExporter).forceFlush();
  while (count() - before < total && Date.now() < deadline) await sleep(2);
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  await exp.shutdown();
  if (count() - before < total) throw new Error(`${kind}: only ${count() - before} of ${total} arrived`);
  return total / secs;
}

/** utime + stime of a process (or, with `tid`, of one of its threads), seconds. */
function cpuSeconds(pid: number, tid?: number): number {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export async function run(ctx: BenchContext): Promise<Figure[]> {
  const runs = ctx.quick ? 2 : 5;
  const figures: Figure[] = [];

  // 1. Building spans on the receiver's path.
  const batches = closeBatches();
  const opts = { connectionTtlMs: 15_000, maxConnections: 262_144, logPeriodicReports: false, wantMetrics: true, wantLogs: false };
  const dctx = newDecodeContext();
  const on: number[] = [];
  const off: number[] = [];
  for (let i = 0; i < runs; i++) {
    off.push(throughput(new RecordProcessor({ ...opts }, dctx), batches, ctx.quick ? 0.5 : 1.5));
    on.push(throughput(new RecordProcessor({ ...opts, wantTraces: true }, dctx), batches, ctx.quick ? 0.5 : 1.5));
    ctx.log(`traces build run ${i + 1}/${runs}: ${(on[i]! / 1e3).toFixed(0)}k closes/s with spans, ${(off[i]! / 1e3).toFixed(0)}k without`);
  }
  figures.push(
    figure({
      id: 'traces.build',
      title: 'receiver path with a span per close (ids + sampling) vs without traces',
      unit: 'records/s',
      runs: on,
      comparison: { title: 'the same path without a traces pipeline (metrics only)', runs: off },
      notes:
        `Synthetic batches of ${PER_BATCH} close records (client and server sockets alternating, each with an ISN pair), ` +
        'decode + connection table + flow aggregation, one core; with traces every close also becomes a ConnectionEvent ' +
        'and a span (SHA-256 trace id, two span ids, sampling ratio 1). Runs alternate.',
    }),
  );

  // 2. OTLP export: the direct encoder vs the SDK path, and spans vs access-log records of the same connections.
  const rx = await CountingLogsReceiver.start();
  ctx.onCleanup(() => rx.stop());
  const total = ctx.quick ? 20_000 : 50_000;
  const spansRuns: number[] = [];
  const sdkRuns: number[] = [];
  const logsRuns: number[] = [];
  for (let i = 0; i < runs; i++) {
    spansRuns.push(await exportRate('spans', rx, total));
    sdkRuns.push(await exportRate('spans_sdk', rx, total));
    logsRuns.push(await exportRate('logs', rx, total));
    ctx.log(
      `traces otlp run ${i + 1}/${runs}: ${(spansRuns[i]! / 1e3).toFixed(1)}k spans/s direct, ${(sdkRuns[i]! / 1e3).toFixed(1)}k spans/s SDK, ` +
        `${(logsRuns[i]! / 1e3).toFixed(1)}k log records/s`,
    );
  }
  const exportNotes =
    `${total.toLocaleString('en-US')} per run, each span with five k8s identity attributes and ids derived from its ISN pair ` +
    'in the loop, from consumeTraces until a counting OTLP/gRPC receiver (protobuf wire walk, no decode) has them all; gzip, ' +
    'batch 512, queue 10,000, num_consumers 10 (the SDK path: its BatchSpanProcessor, one export in flight). Exporter and ' +
    'receiver share this process (on this 2-core machine the receiver is not pinned away): a lower bound. Runs alternate.';
  figures.push(
    figure({
      id: 'traces.otlp_spans_per_sec',
      title: 'connection spans built and exported over OTLP/gRPC: direct span encoder vs the SDK path',
      unit: 'spans/s',
      runs: spansRuns,
      comparison: { title: 'the SDK path (toReadableSpan, BatchSpanProcessor, ProtobufTraceSerializer), same exporter', runs: sdkRuns },
      notes: exportNotes,
    }),
    figure({
      id: 'traces.otlp_spans_vs_logs',
      title: 'connection spans vs access-log records of the same connections, both direct, over OTLP/gRPC',
      unit: 'spans/s',
      runs: spansRuns,
      comparison: { title: 'access-log records through the same exporter (records/s)', runs: logsRuns },
      notes: exportNotes,
    }),
  );

  // 3. The agent's CPU with traces on vs off at a fixed connection rate (root).
  if (process.getuid?.() !== 0) {
    ctx.log('traces.agent_cpu skipped: needs root');
    return figures;
  }
  const rate = 1000;
  const seconds = ctx.quick ? 3 : 6;
  const cpuOn: number[] = [];
  const cpuOff: number[] = [];
  // The main (JavaScript) thread's share: the rest is V8's GC helpers, libuv's workers (gzip) and the addon.
  const mainOn: number[] = [];
  const mainOff: number[] = [];
  const agentRuns = ctx.quick ? 1 : 3;
  let spansSeen = 0;
  for (let i = 0; i < agentRuns; i++) {
    for (const traces of [false, true]) {
      const agent = await startAgent(ctx, traces ? { tracesEndpoint: rx.endpoint } : {});
      try {
        await sleep(500);
        const before = cpuSeconds(agent.pid);
        const mainBefore = cpuSeconds(agent.pid, agent.pid);
        const spansBefore = rx.spans;
        const churn = await runChurn({ seconds, rate, clients: 4, servers: 4, ports: 4 });
        await sleep(1500); // the last drain and export
        const cpu = (cpuSeconds(agent.pid) - before) / churn.seconds;
        (traces ? cpuOn : cpuOff).push(cpu);
        (traces ? mainOn : mainOff).push((cpuSeconds(agent.pid, agent.pid) - mainBefore) / churn.seconds);
        if (traces) spansSeen = rx.spans - spansBefore;
        ctx.log(`traces agent run ${i + 1}/${agentRuns} traces=${traces}: ${churn.rate.toFixed(0)} conn/s, agent CPU ${(cpu * 100).toFixed(1)} %${traces ? `, ${spansSeen} spans` : ''}`);
      } finally {
        await agent.stop();
      }
    }
  }
  figures.push(
    figure({
      id: 'traces.agent_cpu',
      title: `agent CPU at ${rate} loopback connections/s, traces pipeline on vs off`,
      unit: 'CPU s/s',
      runs: cpuOn,
      comparison: { title: 'the same agent without the traces pipeline', runs: cpuOff },
      notes:
        `The real agent (CLI, ebpf at the cgroup-v2 root, metrics pipeline to prometheus) with a traces pipeline ` +
        `(ebpf -> k8s_attributes -> otlp, sampling 1) to the counting OTLP/gRPC receiver, against the same agent without it; ` +
        `loadgen churn at ${rate} connections/s for ${seconds} s (two sockets, so two spans, per connection; the last traces ` +
        `run delivered ${spansSeen} spans), agent utime+stime over the churn plus 1.5 s, divided by the churn's seconds. ` +
        `Main (JavaScript) thread alone: ${median(mainOn).toFixed(3)} CPU s/s with traces, ${median(mainOff).toFixed(3)} without ` +
        '(the rest: V8 GC helper threads, libuv workers doing gzip, the addon). ' +
        'Other processes on the machine (the whole node is traced) add their connections to both. Runs alternate.',
    }),
  );
  return figures;
}
