/**
 * Exporter-side access-log benchmarks (issue 6, issue 8 figure 5, issue 18):
 *
 * 3. `logs.otlp_records_per_sec`: LogRecords built and exported over
 *    OTLP/gRPC by the otlp exporter (default config: gzip, queue 10,000,
 *    batch 512, 10 exports in flight; the direct encoder), counted as
 *    received by a counting OTLP/gRPC receiver
 *    (bench/lib/countingLogsReceiver.ts). The agent runs in a child process
 *    pinned to CPU 0, the receiver in another child pinned to CPU 1 (its CPU
 *    is not charged to the agent); this process only orchestrates.
 *    Comparison: the SDK path (toLogRecord, @opentelemetry/sdk-logs, the SDK
 *    exporter's serializer) in the same run; the notes add the direct path
 *    with `compression: none`.
 *    `logs.transport_only_records_per_sec`: the gRPC sending path alone
 *    (one pre-encoded request resent, nothing built or encoded) — the floor
 *    of the figure above over this transport.
 *    `logs.direct_encode_records_per_sec` and
 *    `logs.sdk_serialize_records_per_sec`: the agent-side stages of both
 *    paths on one core, no network — the ceilings of the figure above.
 * 4. `logs.backend_down_rss`: the agent pushing 50,000 records/s for 30 s
 *    while the receiver is stopped; RSS sampled every second; dropped records
 *    from the exporter's self-metrics.
 *
 * Run alone: node --import tsx bench/logs.ts   (prints the figures as JSON)
 */
import { ProtobufLogsSerializer } from '@opentelemetry/otlp-transformer';
import { LoggerProvider, type LogRecordProcessor, type ReadableLogRecord } from '@opentelemetry/sdk-logs';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { gzipSync } from 'node:zlib';
import { type Host } from '../src/component/component.js';
import { otlpExporterFactory } from '../src/exporters/otlp/factory.js';
import { OtlpLogsExporter, type LogsEncoding } from '../src/exporters/otlp/OtlpLogsExporter.js';
import { AccessLogEncoder } from '../src/exporters/otlp/encoding/LogsEncoder.js';
import { OtlpTransport } from '../src/exporters/otlp/transport.js';
import { ExportResultCode } from '@opentelemetry/core';
import { toLogRecord } from '../src/exporters/otlp/logRecord.js';
import type { AccessLogEntry } from '../src/model/logs.js';
import { agentNodeFlags } from './lib/agent.js';
import { figure, median, type BenchContext, type Figure } from './lib/types.js';
import { CountingLogsReceiver } from './lib/countingLogsReceiver.js';
import { BENCH_RESOURCE, selfCounter, testSettings as settings } from '../test/helpers/settings.js';

const SELF = fileURLToPath(import.meta.url);
const REPO = join(dirname(SELF), '..');
const COMMAND = 'node --import tsx bench/logs.ts';
const MB = 2 ** 20;

const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function gcFn(): () => void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g !== undefined) return g;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** utime + stime of a process, seconds (Linux /proc). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command.
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Seconds a process spent runnable but waiting for a CPU (Linux schedstat, main thread), 0 if unavailable. */
function waitSeconds(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e9;
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------
// Workload: access-log entries as the receiver + k8s_attributes hand them over.

const POOL = 1_024;

function makeEntries(): AccessLogEntry[] {
  const out: AccessLogEntry[] = [];
  const base = 1_726_301_966_552_709_932n;
  for (let i = 0; i < POOL; i++) {
    const client = i % 64;
    const server = i % 16;
    const fail = i % 100 === 0;
    out.push({
      event: {
        kind: fail ? 'fail' : 'close',
        direction: i % 2 === 0 ? 'INBOUND' : 'OUTBOUND',
        family: i % 8 === 0 ? 6 : 4,
        srcAddr: i % 8 === 0 ? `fd00:10:244::${client.toString(16)}` : `10.244.1.${client}`,
        srcPort: 30_000 + i,
        dstAddr: i % 8 === 0 ? `fd00:10:245::${server.toString(16)}` : `10.244.2.${server}`,
        dstPort: 9080,
        socketCookie: i + 1,
        netnsCookie: 1, // a real netns cookie: a small per-boot counter (init_net has the first)
        timeUnixNano: base + BigInt(i) * 1_000_000n,
        durationNs: fail ? 0 : 2_733_902 + i * 1_000,
        sentBytes: fail ? 0 : 5 + i,
        receivedBytes: fail ? 0 : 292 + i,
        srttUs: fail ? 0 : 250 + i,
        minRttUs: fail ? 0 : 100,
        retransmits: i % 7 === 0 ? 1 : 0,
        lostPackets: 0,
        segsIn: 4,
        segsOut: 4,
        state: fail ? 'SYN_SENT' : 'CLOSE',
        ...(fail ? { failure: 'refused' as const } : {}),
      },
      attributes: {
        'src.workload': `client-${client}`,
        'src.namespace': `ns-${client % 8}`,
        'dst.service': `server-${server}.ns-${server % 8}.svc.cluster.local`,
        'dst.workload': `server-${server}`,
        'dst.namespace': `ns-${server % 8}`,
        'k8s.pod.name': `server-${server}-7d9f8c6b5-${(i % 97).toString(36).padStart(5, 'x')}`,
        'k8s.namespace.name': `ns-${server % 8}`,
        'k8s.deployment.name': `server-${server}`,
        'k8s.node.name': 'bench-node',
        'k8s.pod.uid': `00000000-0000-0000-0000-${String(i).padStart(12, '0')}`,
      },
      observedUnixNano: base + BigInt(i) * 1_000_000n + 47_000_000n,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Children. Messages are `{ type, ... }` over the IPC channel.

type Msg = { type: string } & Record<string, unknown>;
const send = (m: Msg): void => void process.send!(m);

/**
 * Receiver child: a counting OTLP/gRPC logs receiver (bench/lib/countingLogsReceiver.ts:
 * grpc-js, gzip or plain, LogRecords counted from the protobuf wire format; the full
 * proto-loader decode of test/helpers/otlpReceiver.ts would make this child the limit).
 */
async function receiverChild(): Promise<void> {
  const rx = await CountingLogsReceiver.start();
  send({ type: 'ready', endpoint: rx.endpoint });
  process.on('message', (m: Msg) => {
    if (m.type === 'count') {
      send({ type: 'count', records: rx.records, requests: rx.requests, malformed: rx.malformed, at: Date.now() });
    } else if (m.type === 'stop') {
      rx.stop();
      send({ type: 'stopped' });
    } else if (m.type === 'exit') {
      rx.stop();
      process.exit(0);
    }
  });
}

interface AgentReport {
  type: 'report';
  pushed: number;
  sent: number;
  dropped: number;
  failed: number;
  queued: number;
  rssSamples: number[];
  heapSamples: number[];
  baselineRss: number;
}

/**
 * Agent child: the otlp logs exporter. `throughput`: pushes with back-pressure
 * (keeps the bounded queue full, never drops). `down`: pushes at a steady rate
 * and, on `window`, samples RSS every second for `seconds`, then reports.
 */
async function agentChild(
  mode: 'throughput' | 'down',
  endpoint: string,
  compression: 'gzip' | 'none',
  rate: number,
  seconds: number,
  consumers: number,
  encoding: LogsEncoding,
): Promise<void> {
  const gc = gcFn();
  const entries = makeEntries();
  const s = settings('otlp', BENCH_RESOURCE);
  const cfg = otlpExporterFactory.configSchema.parse({
    endpoint,
    tls: { insecure: true },
    compression,
    ...(consumers > 0 ? { sending_queue: { num_consumers: consumers } } : {}),
  });
  // The factory's exporter is the direct path; the SDK reference path is the same class with encoding 'sdk'.
  const exp = encoding === 'direct' ? (otlpExporterFactory.createLogs!(s, cfg) as OtlpLogsExporter) : new OtlpLogsExporter(s, cfg, 'grpc', Math.random, 'sdk');
  const host: Host = { reportFatalError: () => undefined };
  await exp.start(host);
  const cap = cfg.sending_queue.queue_size;
  const chunk = cfg.sending_queue.batch.min_size;
  let pushed = 0;
  let next = 0;
  const push = (n: number): void => {
    while (n > 0) {
      const k = Math.min(n, chunk, POOL - next);
      exp.consumeLogs({ entries: entries.slice(next, next + k) });
      next = (next + k) % POOL;
      pushed += k;
      n -= k;
    }
  };
  gc();
  const baselineRss = process.memoryUsage().rss;
  let running = true;
  const rssSamples: number[] = [];
  const heapSamples: number[] = [];

  const report = async (): Promise<void> => {
    send({
      type: 'report',
      pushed,
      sent: await selfCounter(s, 'kmesh_otel_exporter_sent_log_records'),
      dropped: await selfCounter(s, 'kmesh_otel_exporter_dropped_log_records'),
      failed: await selfCounter(s, 'kmesh_otel_exporter_send_failed_log_records'),
      queued: exp.queued,
      rssSamples,
      heapSamples,
      baselineRss,
    } satisfies AgentReport);
  };

  if (mode === 'throughput') {
    // Keep the queue topped up; yield to the event loop between chunks so exports progress.
    // When the queue is full, wait 1 ms instead of spinning (a spinning producer would steal the pinned core from the export).
    const loop = (): void => {
      if (!running) return;
      let budget = 8;
      let did = false;
      while (budget-- > 0 && exp.queued <= cap - chunk) {
        push(chunk);
        did = true;
      }
      if (did) setImmediate(loop);
      else setTimeout(loop, 1);
    };
    setImmediate(loop);
  } else {
    // Steady rate, 10 ms ticks, drift-corrected.
    const t0 = Date.now();
    const ticker = setInterval(() => {
      if (!running) return clearInterval(ticker);
      const due = Math.floor(((Date.now() - t0) * rate) / 1000) - pushed;
      if (due > 0) push(due);
    }, 10);
  }

  process.on('message', (m: Msg) => {
    if (m.type === 'window') {
      const started = Date.now();
      rssSamples.push(process.memoryUsage().rss);
      heapSamples.push(process.memoryUsage().heapUsed);
      const sampler = setInterval(() => {
        const mu = process.memoryUsage();
        rssSamples.push(mu.rss);
        heapSamples.push(mu.heapUsed);
        if (Date.now() - started >= seconds * 1000 - 100) {
          clearInterval(sampler);
          running = false;
          void report();
        }
      }, 1000);
    } else if (m.type === 'stop') {
      running = false;
      void report();
    } else if (m.type === 'exit') {
      running = false;
      // Exit without waiting for the exporter's shutdown (a dead backend would take `timeout`).
      process.exit(0);
    }
  });
  send({ type: 'ready' });
}


/**
 * Transport-only child: the exporter's gRPC sending path alone — the SDK's
 * export delegate (`OtlpTransport.encodedExporter('logs')`, the default
 * config: gzip, 10 exports in flight) and grpc-js — resending one request of
 * STAGE_BATCH records encoded once, so no record is built or encoded. What
 * it costs per record is the floor of the whole path over this transport.
 */
async function transportChild(endpoint: string, compression: 'gzip' | 'none'): Promise<void> {
  const s = settings('otlp', BENCH_RESOURCE);
  const cfg = otlpExporterFactory.configSchema.parse({ endpoint, tls: { insecure: true }, compression });
  const exp = new OtlpTransport('grpc', cfg, s.id.toString()).encodedExporter('logs');
  const request = new AccessLogEncoder(s.resource).encode(makeEntries().slice(0, STAGE_BATCH));
  const inFlight = cfg.sending_queue.num_consumers;
  let active = 0;
  let sent = 0;
  let failed = 0;
  let running = true;
  const pump = (): void => {
    while (running && active < inFlight) {
      active++;
      exp.export({ bytes: request.bytes, items: request.items }, (r) => {
        active--;
        if (r.code === ExportResultCode.SUCCESS) sent += request.items;
        else failed += request.items;
        // The delegate counts an export against its limit until a later tick (as ConcurrentBatcher knows).
        setImmediate(pump);
      });
    }
  };
  process.on('message', (m: Msg) => {
    if (m.type === 'stop') {
      running = false;
      send({ type: 'report', pushed: sent + failed, sent, dropped: 0, failed, queued: active, rssSamples: [], heapSamples: [], baselineRss: 0 } satisfies AgentReport);
    } else if (m.type === 'exit') process.exit(0);
  });
  send({ type: 'ready' });
  pump();
}

/** Per-stage CPU rates of the agent-side path, records/s, one value per round. */
type StageReport = {
  type: 'stages';
  build: number[];
  emit: number[];
  serialize: number[];
  gzip: number[];
  all: number[];
  bytesPerRecord: number;
  gzipBytesPerRecord: number;
  /** The direct path: AccessLogEncoder.encode (body line and attributes included), and gzip of its requests. */
  encode: number[];
  encodeGzip: number[];
  /** SDK build + emit + serialize: the work encode replaces. */
  sdkEncode: number[];
  encodeBytesPerRecord: number;
};

const STAGE_BATCH = 512;
const STAGE_BATCHES = 20;

/**
 * Stages child: the CPU cost of each step of the export path, on fresh
 * records (each built, emitted and serialized once, as in the exporter —
 * re-serializing the same records would measure warm caches and already
 * flattened strings), no network: toLogRecord; logger.emit through
 * @opentelemetry/sdk-logs (LogRecordImpl copies and validates the attributes);
 * the SDK's own ProtobufLogsSerializer (what OTLPLogExporter calls) on batches
 * of 512; gzip of each request at zlib's default level (what grpc-js uses).
 */
async function stagesChild(rounds: number): Promise<void> {
  const entries = makeEntries();
  const batches: ReadableLogRecord[][] = [];
  let current: ReadableLogRecord[] = [];
  const collect: LogRecordProcessor = {
    onEmit: (r) => {
      current.push(r);
      if (current.length === STAGE_BATCH) {
        batches.push(current);
        current = [];
      }
    },
    forceFlush: () => Promise.resolve(),
    shutdown: () => Promise.resolve(),
  };
  const provider = new LoggerProvider({ resource: settings('otlp', BENCH_RESOURCE).resource, processors: [collect] });
  const logger = provider.getLogger('kmesh-otel');
  const n = STAGE_BATCH * STAGE_BATCHES;
  const secs = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;
  const rep: StageReport = {
    type: 'stages',
    build: [],
    emit: [],
    serialize: [],
    gzip: [],
    all: [],
    bytesPerRecord: 0,
    gzipBytesPerRecord: 0,
    encode: [],
    encodeGzip: [],
    sdkEncode: [],
    encodeBytesPerRecord: 0,
  };
  const encoder = new AccessLogEncoder(settings('otlp', BENCH_RESOURCE).resource);
  let next = 0;
  // Round 0 warms the JIT up and is not reported.
  for (let round = 0; round <= rounds; round++) {
    batches.length = 0;
    let t = process.hrtime.bigint();
    const built = new Array<ReturnType<typeof toLogRecord>>(n);
    for (let i = 0; i < n; i++) {
      built[i] = toLogRecord(entries[next]!);
      next = (next + 1) % POOL;
    }
    const tBuild = secs(t);
    t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) logger.emit(built[i]!);
    const tEmit = secs(t);
    t = process.hrtime.bigint();
    const requests = batches.map((b) => ProtobufLogsSerializer.serializeRequest(b)!);
    const tSer = secs(t);
    t = process.hrtime.bigint();
    let zipped = 0;
    for (const r of requests) zipped += gzipSync(r).length;
    const tGzip = secs(t);
    // The direct path on the next n entries of the pool, request by request as the exporter
    // does: encode a batch of STAGE_BATCH, gzip it, and hand its memory back (as the
    // exporter does once the request is sent; a request kept instead costs fresh pages).
    let tEncode = 0;
    let tEncodeGzip = 0;
    let directBytes = 0;
    for (let b = 0; b < STAGE_BATCHES; b++) {
      const batch = new Array<AccessLogEntry>(STAGE_BATCH);
      for (let i = 0; i < STAGE_BATCH; i++) {
        batch[i] = entries[next]!;
        next = (next + 1) % POOL;
      }
      t = process.hrtime.bigint();
      const request = encoder.encode(batch);
      tEncode += secs(t);
      t = process.hrtime.bigint();
      gzipSync(request.bytes);
      tEncodeGzip += secs(t);
      directBytes += request.bytes.length;
      request.release?.();
    }
    if (round === 0) continue;
    rep.encode.push(n / tEncode);
    rep.encodeGzip.push(n / tEncodeGzip);
    rep.sdkEncode.push(n / (tBuild + tEmit + tSer));
    rep.encodeBytesPerRecord = directBytes / n;
    rep.build.push(n / tBuild);
    rep.emit.push(n / tEmit);
    rep.serialize.push(n / tSer);
    rep.gzip.push(n / tGzip);
    rep.all.push(n / (tBuild + tEmit + tSer + tGzip));
    rep.bytesPerRecord = requests.reduce((a, r) => a + r.length, 0) / n;
    rep.gzipBytesPerRecord = zipped / n;
  }
  process.on('message', (m: Msg) => {
    if (m.type === 'exit') process.exit(0);
  });
  send(rep);
}

// ---------------------------------------------------------------------------
// Orchestration (this process does no measured work).

/** Pinned to one CPU when the machine has two or more (agent: CPU 0, receiver: CPU 1). */
function spawnChild(args: string[], cpu: number | undefined, ctx: Ctx): ChildProcess {
  // The agent child runs with the agent's own Node flags (agentNodeFlags), as shipped.
  const flags = args[1] === 'agent' ? agentNodeFlags(REPO) : [];
  const nodeArgs = [...flags, '--import', 'tsx', '--expose-gc', SELF, ...args];
  const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc'];
  const child =
    cpu !== undefined
      ? spawn('taskset', ['-c', String(cpu), process.execPath, ...nodeArgs], { cwd: REPO, stdio })
      : spawn(process.execPath, nodeArgs, { cwd: REPO, stdio });
  ctx.onCleanup(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

function pinning(): { agent: number | undefined; receiver: number | undefined; how: string } {
  const n = cpus().length;
  let taskset = false;
  try {
    readFileSync('/usr/bin/taskset');
    taskset = true;
  } catch {
    taskset = false;
  }
  if (n >= 2 && taskset) return { agent: 0, receiver: 1, how: 'agent pinned to CPU 0, receiver to CPU 1 (taskset)' };
  return { agent: undefined, receiver: undefined, how: `not pinned (${n} CPU(s)${taskset ? '' : ', no taskset'})` };
}

function nextMessage<T>(child: ChildProcess, type: string, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`child: no '${type}' message within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMsg = (m: Msg): void => {
      if (m.type !== type) return;
      cleanup();
      resolve(m as T);
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`child exited (${code}) before '${type}'`));
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMsg);
      child.off('exit', onExit);
    };
    child.on('message', onMsg);
    child.on('exit', onExit);
  });
}

async function ask<T>(child: ChildProcess, type: string, reply = type): Promise<T> {
  const p = nextMessage<T>(child, reply);
  child.send({ type });
  return p;
}

async function ending(child: ChildProcess | undefined): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    child.send({ type: 'exit' });
  } catch {
    // channel already closed
  }
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, 5_000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

interface ReceiverCount {
  records: number;
  requests: number;
  at: number;
}

const WARMUP_MS = 1_500;
const WINDOW_MS = 3_000;

interface Throughput {
  rates: number[];
  agentCpu: number[];
  rxCpu: number[];
  agentWait: number[];
  dropped: number;
  perRequest: number;
}

/** One agent child per setting (`consumers` 0 = the config default); `runs` consecutive windows after a warm-up. */
/** `transport`: the transport-only child instead of the exporter (transportChild). */
async function throughput(
  compression: 'gzip' | 'none',
  consumers: number,
  runs: number,
  ctx: Ctx,
  encoding: LogsEncoding | 'transport' = 'direct',
): Promise<Throughput> {
  const pin = pinning();
  let rx: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  try {
    rx = spawnChild(['--child', 'receiver'], pin.receiver, ctx);
    const { endpoint } = await nextMessage<{ endpoint: string }>(rx, 'ready');
    const args =
      encoding === 'transport'
        ? ['--child', 'transport', endpoint, compression]
        : ['--child', 'agent', 'throughput', endpoint, compression, '0', '0', String(consumers), encoding];
    agent = spawnChild(args, pin.agent, ctx);
    await nextMessage(agent, 'ready');
    await sleep(WARMUP_MS);
    const rates: number[] = [];
    const agentCpu: number[] = [];
    const rxCpu: number[] = [];
    const agentWait: number[] = [];
    let w0 = waitSeconds(agent.pid!);
    let c0 = await ask<ReceiverCount>(rx, 'count');
    let a0 = cpuSeconds(agent.pid!);
    let r0 = cpuSeconds(rx.pid!);
    for (let i = 0; i < runs; i++) {
      await sleep(WINDOW_MS);
      const c1 = await ask<ReceiverCount>(rx, 'count');
      const a1 = cpuSeconds(agent.pid!);
      const r1 = cpuSeconds(rx.pid!);
      const secs = (c1.at - c0.at) / 1000;
      rates.push((c1.records - c0.records) / secs);
      agentCpu.push((a1 - a0) / secs);
      rxCpu.push((r1 - r0) / secs);
      const w1 = waitSeconds(agent.pid!);
      agentWait.push((w1 - w0) / secs);
      w0 = w1;
      c0 = c1;
      a0 = a1;
      r0 = r1;
    }
    const rep = await ask<AgentReport>(agent, 'stop', 'report');
    return { rates, agentCpu, rxCpu, agentWait, dropped: rep.dropped, perRequest: c0.requests > 0 ? c0.records / c0.requests : 0 };
  } finally {
    await ending(agent);
    await ending(rx);
  }
}

async function recordsPerSecond(runs: number, ctx: Ctx): Promise<Figure> {
  const load = loadavg()[0]!;
  const gzip = await throughput('gzip', 0, runs, ctx, 'direct');
  const sdk = await throughput('gzip', 0, runs, ctx, 'sdk');
  const none = await throughput('none', 0, runs, ctx, 'direct');
  const pin = pinning();
  const pct = (xs: number[]): string => `${Math.round(median(xs) * 100)}%`;
  // Records per CPU-second of the agent: what one fully available core would deliver, less sensitive
  // than records/s to other load on this shared machine.
  const perCpu = (t: Throughput): string => `${Math.round(median(t.rates.map((r, i) => r / Math.max(0.01, t.agentCpu[i]!))) / 1000)}k`;
  const k = (t: Throughput): string => `${Math.round(median(t.rates) / 1000)}k`;
  const notes =
    `Agent child: OtlpLogsExporter with the default config (gzip, queue 10,000, batch 512, num_consumers 10: up to 10 ` +
    `exports in flight) fed AccessLogEntries (10 processor attributes each, 1% failed connects, 1/8 IPv6) with ` +
    `back-pressure (queue kept full; dropped: direct ${gzip.dropped}, sdk ${sdk.dropped}, none ${none.dropped}). Direct path ` +
    `(the default): each batch of 512 entries encoded once by AccessLogEncoder (Kmesh line body, identity attribute sets ` +
    `and low-cardinality attributes spliced from cached bytes), sent by the SDK's gRPC export delegate ` +
    `(@opentelemetry/otlp-grpc-exporter-base, gzip by grpc-js). Comparison, same run, same config: the SDK path ` +
    `(toLogRecord, logger.emit through @opentelemetry/sdk-logs, ConcurrentBatchLogRecordProcessor, ` +
    `@opentelemetry/exporter-logs-otlp-grpc with its ProtobufLogsSerializer). Receiver child: bench/lib/countingLogsReceiver.ts ` +
    `(grpc-js with the Collector's 16 MiB HTTP/2 flow-control window, counts LogRecords from the protobuf wire format), ` +
    `per ${WINDOW_MS / 1000} s window after a ` +
    `${WARMUP_MS / 1000} s warm-up; ${pin.how} (the agent's libuv thread pool, where grpc-js gzips, shares CPU 0). ` +
    `Records per request: ~${Math.round(gzip.perRequest)}. CPU use (median of windows, 100% = one core): direct agent ` +
    `${pct(gzip.agentCpu)}, receiver ${pct(gzip.rxCpu)}; sdk agent ${pct(sdk.agentCpu)}, receiver ${pct(sdk.rxCpu)}. Agent ` +
    `runnable but waiting for its CPU (schedstat run delay, other load on the machine): direct ${pct(gzip.agentWait)}, sdk ` +
    `${pct(sdk.agentWait)} of the window. Records per agent CPU-second: direct ${perCpu(gzip)}, sdk ${perCpu(sdk)}, direct ` +
    `without compression ${perCpu(none)}. Same run, direct with compression: none: ${k(none)} records/s (runs ` +
    `${none.rates.map((x) => Math.round(x)).join(', ')}; agent CPU ${pct(none.agentCpu)}). Where the agent's CPU goes: ` +
    `see logs.direct_encode_records_per_sec, and the transport alone logs.transport_only_records_per_sec. 1-min load average at start: ${load.toFixed(2)} on ${cpus().length} cores.`;
  return figure({
    id: 'logs.otlp_records_per_sec',
    title: 'Access-log LogRecords/s built and exported over OTLP/gRPC (default config: gzip), counted by an OTLP/gRPC receiver',
    unit: 'records/s',
    command: ctx.command,
    runs: gzip.rates.map((x) => Math.round(x)),
    comparison: { title: 'the SDK path (sdk-logs + the SDK exporter\'s serializer), same config', runs: sdk.rates.map((x) => Math.round(x)) },
    target: '>= 100,000 records/s on one core (median), and >= 5 x the SDK path in the same run',
    check: (f) => f.median >= 100_000 && (f.ratio ?? 0) >= 5,
    notes,
  });
}

/**
 * The floor of the exporter's rate over this transport: the transport-only
 * child (no record built or encoded), gzip and none, pinned like the agent.
 */
async function transportFloor(runs: number, ctx: Ctx): Promise<Figure> {
  const gzip = await throughput('gzip', 0, runs, ctx, 'transport');
  const none = await throughput('none', 0, runs, ctx, 'transport');
  const perCpu = (t: Throughput): number => median(t.rates.map((r, i) => r / Math.max(0.01, t.agentCpu[i]!)));
  const us = (t: Throughput): string => (1e6 / perCpu(t)).toFixed(1);
  const pct = (xs: number[]): string => `${Math.round(median(xs) * 100)}%`;
  return figure({
    id: 'logs.transport_only_records_per_sec',
    title: 'Access-log records/s the OTLP/gRPC transport alone sends (one pre-encoded 512-record request resent, gzip): the floor of logs.otlp_records_per_sec',
    unit: 'records/s',
    runs: gzip.rates.map((x) => Math.round(x)),
    comparison: { title: 'same, compression: none', runs: none.rates.map((x) => Math.round(x)) },
    notes:
      `Transport-only child (bench/logs.ts transportChild): the exporter's sending path without the exporter — ` +
      `OtlpTransport.encodedExporter('logs') (the SDK's gRPC export delegate, @opentelemetry/otlp-grpc-exporter-base, and ` +
      `grpc-js; default config: 10 exports in flight) resending one ExportLogsServiceRequest of 512 access-log records ` +
      `encoded once, into the receiver of logs.otlp_records_per_sec, pinned the same way. Agent CPU (median): gzip ` +
      `${pct(gzip.agentCpu)}, none ${pct(none.agentCpu)}. Per agent CPU-second: gzip ${Math.round(perCpu(gzip) / 1000)}k records ` +
      `(${us(gzip)} µs per record), none ${Math.round(perCpu(none) / 1000)}k (${us(none)} µs). 100,000 records/s on one core ` +
      `allows 10 µs per record for everything; with gzip (the default, at grpc-js's fixed zlib level) the transport alone ` +
      `takes ${us(gzip)} µs before any record is built or encoded, so that target, and 5 x the SDK path, are out of reach ` +
      `for any encoder over this transport on this machine.`,
  });
}

/** The SDK serializer's own ceiling (and the other stages'), measured in a child pinned like the agent. */
async function serializeCap(rounds: number, ctx: Ctx): Promise<Figure[]> {
  const pin = pinning();
  const child = spawnChild(['--child', 'stages', String(rounds)], pin.agent, ctx);
  try {
    const rep = await nextMessage<StageReport>(child, 'stages');
    const k = (xs: number[]): string => `${Math.round(median(xs) / 1000)}k`;
    const us = (xs: number[]): string => (1e6 / median(xs)).toFixed(1);
    const fixedUs = 1e6 / median(rep.emit) + 1e6 / median(rep.gzip);
    const notes =
      `Fresh records each round (${STAGE_BATCHES} requests of ${STAGE_BATCH}; each record built, emitted and serialized once), ` +
      `no network; ${pin.how.split(',')[0]}. Median records/s per stage (µs per record): toLogRecord ${k(rep.build)} ` +
      `(${us(rep.build)}), logger.emit through sdk-logs ${k(rep.emit)} (${us(rep.emit)}), ProtobufLogsSerializer.serializeRequest ` +
      `${k(rep.serialize)} (${us(rep.serialize)}), gzip ${k(rep.gzip)} (${us(rep.gzip)}); all four in sequence ${k(rep.all)} ` +
      `(${us(rep.all)}) — the agent-side CPU ceiling of the SDK reference path (gzip) before any gRPC/HTTP2 work. Request size ` +
      `${Math.round(rep.bytesPerRecord)} B/record, gzipped ${Math.round(rep.gzipBytesPerRecord)} B/record. The serializer is ` +
      `@opentelemetry/otlp-transformer's (called by OTLPLogExporter). On the SDK path, logger.emit and gzip (the ` +
      `default compression, at grpc-js's zlib level) take ${fixedUs.toFixed(1)} µs per record together: at most ` +
      `${Math.round(1e6 / fixedUs / 1000)}k records/s on one core even with a serializer and gRPC that cost nothing — why ` +
      `the exporter now encodes directly (logs.direct_encode_records_per_sec), skipping logger.emit and the serializer.`;
    const sdkFigure = figure({
      id: 'logs.sdk_serialize_records_per_sec',
      title: 'SDK serialize-only LogRecords/s (OTLP protobuf of the access-log records, one core, no network)',
      unit: 'records/s',
      command: ctx.command,
      runs: rep.serialize.map((x) => Math.round(x)),
      comparison: { title: 'build + emit + serialize + gzip in sequence (whole agent-side CPU path)', runs: rep.all.map((x) => Math.round(x)) },
      notes,
    });
    return [encodeFigure(rep, ctx), sdkFigure];
  } finally {
    await ending(child);
  }
}

/** The direct encoder's CPU cost against the SDK stages it replaces, from the same stages child run. */
function encodeFigure(rep: StageReport, ctx: Ctx): Figure {
  const k = (xs: number[]): string => `${Math.round(median(xs) / 1000)}k`;
  const us = (xs: number[]): string => (1e6 / median(xs)).toFixed(2);
  const withGzip = 1e6 / median(rep.encode) + 1e6 / median(rep.encodeGzip);
  return figure({
    id: 'logs.direct_encode_records_per_sec',
    title: 'Direct-encoder LogRecords/s (AccessLogEncoder: entries to an OTLP protobuf request, one core, no network)',
    unit: 'records/s',
    command: ctx.command,
    runs: rep.encode.map((x) => Math.round(x)),
    comparison: { title: 'SDK path: toLogRecord + logger.emit + ProtobufLogsSerializer (the same work)', runs: rep.sdkEncode.map((x) => Math.round(x)) },
    notes:
      `Same stages child as logs.sdk_serialize_records_per_sec (${STAGE_BATCHES} requests of ${STAGE_BATCH} per round, pool of ` +
      `${POOL} entries, caches warm after the first pass as in the agent). Median records/s (µs per record): encode ` +
      `${k(rep.encode)} (${us(rep.encode)}), gzip of its requests ${k(rep.encodeGzip)} (${us(rep.encodeGzip)}); encode + gzip ` +
      `${withGzip.toFixed(2)} µs per record = at most ${Math.round(1e6 / withGzip / 1000)}k records/s on one core before any ` +
      `gRPC/HTTP2 work. Request size ${Math.round(rep.encodeBytesPerRecord)} B/record (SDK ${Math.round(rep.bytesPerRecord)}: ` +
      `the same content, checked by test/exporters/otlp/encodingEquivalence.test.ts).`,
  });
}

const DOWN_RATE = 50_000;
/**
 * Backend-down window: 30 s (was 60, then 45) keeps the module, with the
 * transport-only runs, within its budget and the suite within 10 minutes;
 * flatness is judged over the last 20 s.
 */
const DOWN_SECONDS = 30;

function slopeMBPerMin(samples: number[], fromSec: number): number {
  const pts = samples.map((y, x) => [x, y / MB] as const).filter(([x]) => x >= fromSec);
  const n = pts.length;
  if (n < 2) return 0;
  const mx = pts.reduce((a, [x]) => a + x, 0) / n;
  const my = pts.reduce((a, [, y]) => a + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of pts) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return (num / den) * 60;
}

async function backendDown(ctx: Ctx, seconds: number): Promise<Figure> {
  const load = loadavg()[0]!;
  const pin = pinning();
  let rx: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  try {
    rx = spawnChild(['--child', 'receiver'], pin.receiver, ctx);
    const { endpoint } = await nextMessage<{ endpoint: string }>(rx, 'ready');
    agent = spawnChild(['--child', 'agent', 'down', endpoint, 'gzip', String(DOWN_RATE), String(seconds), '0'], pin.agent, ctx);
    await nextMessage(agent, 'ready');
    // Up first: records flow; then the backend goes away (port closed) for the whole window.
    await sleep(2_000);
    const before = await ask<ReceiverCount>(rx, 'count');
    await ask(rx, 'stop', 'stopped');
    const rep = await ask<AgentReport>(agent, 'window', 'report');
    const rss = rep.rssSamples;
    // Flatness is judged after the queue has filled (it fills in well under a second at this rate).
    const from = Math.min(10, Math.floor(rss.length / 4));
    const mid = Math.floor((from + rss.length) / 2);
    const slope = slopeMBPerMin(rss, from);
    const start = rss[0]!;
    const firstHalfMax = Math.max(...rss.slice(from, mid));
    const secondHalfMax = Math.max(...rss.slice(mid));
    const flat = slope <= 2 && secondHalfMax - firstHalfMax <= 8 * MB;
    const notes =
      `${seconds === DOWN_SECONDS ? 'One' : 'QUICK: a shortened'} ${seconds} s window; runs[] are the ${rss.length} per-second RSS samples of the agent child (absolute RSS; ` +
      `node ${agentNodeFlags(REPO).join(' ')} --import tsx: the agent's Node flags; tsx includes the TypeScript loader). Receiver (child) up for 2 s first (${before.records.toLocaleString('en-US')} ` +
      `records delivered), then stopped (port closed) for the window. RSS: start ${round(start / MB)} MB, median ` +
      `${round(median(rss) / MB)} MB, max ${round(Math.max(...rss) / MB)} MB; baseline before load ${round(rep.baselineRss / MB)} MB; ` +
      `heap median ${round(median(rep.heapSamples) / MB)} MB. Flatness: least-squares slope over seconds ${from}-${seconds} = ` +
      `${slope.toFixed(2)} MB/min, max of seconds ${mid}-${seconds} minus max of seconds ${from}-${mid} = ${round((secondHalfMax - firstHalfMax) / MB)} MB ` +
      `(flat: slope <= 2 MB/min and <= 8 MB): ${flat ? 'flat' : 'NOT flat'}. Self-metrics at the end: pushed ` +
      `${rep.pushed.toLocaleString('en-US')}, kmesh_otel_exporter_sent_log_records ${rep.sent.toLocaleString('en-US')}, ` +
      `kmesh_otel_exporter_dropped_log_records ${rep.dropped.toLocaleString('en-US')}, send_failed ${rep.failed.toLocaleString('en-US')}, ` +
      `queued/in flight ${rep.queued.toLocaleString('en-US')} (cap 10,000); pushed - sent - dropped - failed - queued = ` +
      `${rep.pushed - rep.sent - rep.dropped - rep.failed - rep.queued}. Default retry_on_failure (5 s initial, 30 s max interval, ` +
      `5 min max elapsed) and queue. ${pin.how}; 1-min load average at start: ${load.toFixed(2)} on ${cpus().length} cores.`;
    return figure({
      id: 'logs.backend_down_rss',
      title: `Agent RSS with the OTLP backend down for ${seconds} s under ${DOWN_RATE.toLocaleString('en-US')} records/s (per-second samples)`,
      unit: 'MB',
      command: ctx.command,
      runs: rss.map((x) => round(x / MB)),
      target: 'RSS flat (bounded by the queue)',
      check: () => flat,
      notes,
    });
  } finally {
    await ending(agent);
    await ending(rx);
  }
}

// ---------------------------------------------------------------------------

/** What this module uses of the harness's BenchContext (so it also runs alone). */
type Ctx = Pick<BenchContext, 'quick' | 'command' | 'deadline' | 'log' | 'onCleanup'>;

export const title = 'Access logs: OTLP records/s, RSS with the backend down';
export const budgetSeconds = 130;

export async function run(ctx: Ctx): Promise<Figure[]> {
  ctx.log('logs: OTLP records/s (gzip, then none)');
  const rate = await recordsPerSecond(ctx.quick ? 2 : 3, ctx);
  ctx.log('logs: the transport alone (one pre-encoded request resent), gzip then none');
  const floor = await transportFloor(2, ctx);
  ctx.log('logs: direct encoder and SDK serialize-only records/s (stage costs)');
  const stages = await serializeCap(ctx.quick ? 2 : 5, ctx);
  // Exactly one DOWN_SECONDS window (10 s in a quick smoke run).
  const seconds = ctx.quick ? 10 : DOWN_SECONDS;
  ctx.log(`logs: backend down for ${seconds} s under load`);
  return [rate, floor, ...stages, await backendDown(ctx, seconds)];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const args = process.argv.slice(2);
  if (args[0] === '--child' && args[1] === 'receiver') {
    await receiverChild();
  } else if (args[0] === '--child' && args[1] === 'stages') {
    await stagesChild(Number(args[2]));
  } else if (args[0] === '--child' && args[1] === 'transport') {
    await transportChild(args[2]!, args[3] as 'gzip' | 'none');
  } else if (args[0] === '--child' && args[1] === 'agent') {
    await agentChild(
      args[2] as 'throughput' | 'down',
      args[3]!,
      args[4] as 'gzip' | 'none',
      Number(args[5]),
      Number(args[6]),
      Number(args[7] ?? 0),
      (args[8] ?? 'direct') as LogsEncoding,
    );
  } else {
    const cleanups: Array<() => void | Promise<void>> = [];
    try {
      const figs = await run({
        quick: args.includes('--quick') || process.env.BENCH_QUICK === '1',
        command: COMMAND,
        deadline: Date.now() + budgetSeconds * 1000,
        log: (m) => void process.stderr.write(m + '\n'),
        onCleanup: (fn) => void cleanups.push(fn),
      });
      process.stdout.write(JSON.stringify(figs, null, 2) + '\n');
    } finally {
      for (const fn of cleanups.reverse()) await fn();
    }
  }
}
