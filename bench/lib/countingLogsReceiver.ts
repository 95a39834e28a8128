/**
 * A lean OTLP/gRPC logs receiver for throughput benchmarks: serves
 * opentelemetry.proto.collector.logs.v1.LogsService/Export with @grpc/grpc-js
 * (gzip or plain requests, as a collector accepts them) and counts the
 * LogRecords of each ExportLogsServiceRequest by walking the protobuf wire
 * format — without building objects for the ~30 attributes of every record.
 *
 * Why not test/helpers/otlpReceiver.ts: that one decodes every request fully
 * through @grpc/proto-loader (protobufjs reflection), which costs more CPU per
 * record than the agent spends producing it; on a two-core machine it, not
 * the exporter, would be the limit being measured. The tests keep checking
 * record content with the full decoder; this one only counts, but it counts
 * from the real bytes, so a malformed request fails the call.
 */
import * as grpc from '@grpc/grpc-js';
import { createRequire } from 'node:module';
import type * as Http2 from 'node:http2';

/**
 * The HTTP/2 flow-control window this receiver opens, per stream and per
 * connection: what the OpenTelemetry Collector's gRPC server (grpc-go) grows
 * its windows to by bandwidth-delay estimation (grpc-go internal/transport
 * bdp_estimator.go, bdpLimit = 16 MiB). grpc-js's server keeps HTTP/2's
 * 64 KiB default and has no option for it; with that window, a 1 MB request
 * (1,000 uncompressed points) waited on window updates and the receiver, not
 * the exporter, set the rate (bench/otlp.ts with compression none: ~80k
 * points/s, exporter CPU 60%; with this window: ~165k points/s, exporter
 * CPU 90%).
 */
const COLLECTOR_LIKE_WINDOW = 16 * 1024 * 1024;

/**
 * Makes the HTTP/2 servers grpc-js creates in this process open
 * {@link COLLECTOR_LIKE_WINDOW}. Bench receiver children only (grpc-js calls
 * `http2.createServer` when it binds); the tests' receivers keep the default.
 */
function collectorLikeFlowControl(): void {
  const http2 = createRequire(import.meta.url)('node:http2') as typeof Http2 & { [PATCHED]?: true };
  if (http2[PATCHED]) return;
  const create = http2.createServer.bind(http2) as (opts: Http2.ServerOptions, ...rest: unknown[]) => Http2.Http2Server;
  Object.assign(http2, {
    [PATCHED]: true,
    createServer: (opts: Http2.ServerOptions = {}, ...rest: unknown[]) => {
      const server = create({ ...opts, settings: { ...opts.settings, initialWindowSize: COLLECTOR_LIKE_WINDOW } }, ...rest);
      server.on('session', (session) => session.setLocalWindowSize(COLLECTOR_LIKE_WINDOW));
      return server;
    },
  });
}
const PATCHED = Symbol.for('kmesh-otel.bench.collectorLikeFlowControl');

const EXPORT_PATH = '/opentelemetry.proto.collector.logs.v1.LogsService/Export';
const TRACES_EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

/** Reads a base-128 varint at `pos`; returns [value, next position]. Values above 2^53 are not needed here. */
function varint(buf: Buffer, pos: number): [number, number] {
  let value = 0;
  let shift = 1;
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const b = buf[pos++]!;
    value += (b & 0x7f) * shift;
    if (b < 0x80) return [value, pos];
    shift *= 128;
    if (shift > 2 ** 56) throw new Error('varint too long');
  }
}

/**
 * Calls `onField(fieldNumber, start, end)` for every length-delimited field of
 * the message in buf[start, end); skips the other wire types.
 */
function forEachLengthDelimited(buf: Buffer, start: number, end: number, onField: (field: number, s: number, e: number) => void): void {
  let pos = start;
  while (pos < end) {
    let key: number;
    [key, pos] = varint(buf, pos);
    const field = Math.floor(key / 8);
    switch (key & 7) {
      case 0:
        [, pos] = varint(buf, pos);
        break;
      case 1:
        pos += 8;
        break;
      case 5:
        pos += 4;
        break;
      case 2: {
        let len: number;
        [len, pos] = varint(buf, pos);
        if (pos + len > end) throw new Error('truncated field');
        onField(field, pos, pos + len);
        pos += len;
        break;
      }
      default:
        throw new Error(`unsupported wire type ${key & 7}`);
    }
  }
  if (pos !== end) throw new Error('message overruns its length');
}

/**
 * LogRecords in one serialized ExportLogsServiceRequest:
 * resource_logs (1) -> scope_logs (2) -> log_records (2), per
 * opentelemetry/proto/logs/v1/logs.proto.
 */
export function countLogRecords(req: Buffer): number {
  let n = 0;
  forEachLengthDelimited(req, 0, req.length, (f, s, e) => {
    if (f !== 1) return;
    forEachLengthDelimited(req, s, e, (f2, s2, e2) => {
      if (f2 !== 2) return;
      forEachLengthDelimited(req, s2, e2, (f3) => {
        if (f3 === 2) n++;
      });
    });
  });
  return n;
}

/**
 * Data points in one serialized ExportMetricsServiceRequest:
 * resource_metrics (1) -> scope_metrics (2) -> metrics (2) -> gauge (5) |
 * sum (7) | histogram (9) -> data_points (1), per
 * opentelemetry/proto/metrics/v1/metrics.proto.
 */
export function countDataPoints(req: Buffer): number {
  let n = 0;
  forEachLengthDelimited(req, 0, req.length, (f, s, e) => {
    if (f !== 1) return;
    forEachLengthDelimited(req, s, e, (f2, s2, e2) => {
      if (f2 !== 2) return;
      forEachLengthDelimited(req, s2, e2, (f3, s3, e3) => {
        if (f3 !== 2) return;
        forEachLengthDelimited(req, s3, e3, (f4, s4, e4) => {
          if (f4 !== 5 && f4 !== 7 && f4 !== 9) return;
          forEachLengthDelimited(req, s4, e4, (f5) => {
            if (f5 === 1) n++;
          });
        });
      });
    });
  });
  return n;
}

/** What a counting receiver serves: the Export path and how items are counted. */
const SIGNALS = {
  logs: { path: EXPORT_PATH, count: countLogRecords },
  metrics: { path: '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export', count: countDataPoints },
} as const;

/**
 * Counts log records (or, for `metrics`, data points: {@link CountingLogsReceiver.startMetrics})
 * received, and spans: an ExportTraceServiceRequest nests resource_spans (1)
 * -> scope_spans (2) -> spans (2), the same field numbers, so
 * {@link countLogRecords} counts its spans (a logs receiver also serves
 * TraceService/Export); can be stopped (port closed) to play a dead backend.
 */
export class CountingLogsReceiver {
  records = 0;
  /** Spans received through TraceService/Export. */
  spans = 0;
  requests = 0;
  /** Requests that could not be parsed (answered INVALID_ARGUMENT). */
  malformed = 0;
  private server: grpc.Server | undefined;
  private boundPort = 0;

  private constructor(private readonly signal: keyof typeof SIGNALS) {}

  static async start(port = 0): Promise<CountingLogsReceiver> {
    const r = new CountingLogsReceiver('logs');
    await r.listen(port);
    return r;
  }

  /** The same for metrics: `records` counts data points. */
  static async startMetrics(port = 0): Promise<CountingLogsReceiver> {
    const r = new CountingLogsReceiver('metrics');
    await r.listen(port);
    return r;
  }

  /** `127.0.0.1:port`, the exporter's `endpoint`. */
  get endpoint(): string {
    return `127.0.0.1:${this.boundPort}`;
  }

  private async listen(port: number): Promise<void> {
    collectorLikeFlowControl();
    const server = new grpc.Server();
    const identity = (b: Buffer): Buffer => b;
    const method = (path: string): grpc.MethodDefinition<Buffer, Buffer> => ({
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    });
    const service: grpc.ServiceDefinition = { Export: method(SIGNALS[this.signal].path) };
    // An empty Export*ServiceResponse is zero bytes.
    const empty = Buffer.alloc(0);
    server.addService(service, {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>): void => {
        let n: number;
        try {
          n = SIGNALS[this.signal].count(call.request);
        } catch (err) {
          this.malformed++;
          cb({ code: grpc.status.INVALID_ARGUMENT, details: (err as Error).message });
          return;
        }
        this.records += n;
        this.requests++;
        cb(null, empty);
      },
    });
    if (this.signal === 'logs') server.addService({ Export: method(TRACES_EXPORT_PATH) }, {
      Export: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>): void => {
        let n: number;
        try {
          n = countLogRecords(call.request);
        } catch (err) {
          this.malformed++;
          cb({ code: grpc.status.INVALID_ARGUMENT, details: (err as Error).message });
          return;
        }
        this.spans += n;
        this.requests++;
        cb(null, empty);
      },
    });
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.server = server;
  }

  /** Stops listening; open calls are cut (the agent sees the backend as down). */
  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
  }
}
