/**
 * Real OTLP receivers for tests, decoding the real OTLP protobufs (the pinned
 * opentelemetry-proto copy in ./proto, see its README):
 * - {@link OtlpReceiver}: OTLP/gRPC, @grpc/grpc-js serving
 *   opentelemetry.proto.collector.{metrics,logs,trace}.v1 Export;
 * - {@link OtlpHttpReceiver}: OTLP/HTTP (protobuf bodies, gzip), node:http or
 *   node:https, decoding with the same definitions.
 * Both record what they receive, can be stopped and restarted on the same
 * port, and can be told to refuse exports.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { once } from 'node:events';
import { createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type ServerOptions as HttpsServerOptions } from 'node:https';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

const PROTO_ROOT = join(import.meta.dirname, 'proto');

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

interface OtlpServices {
  metrics: grpc.ServiceDefinition;
  logs: grpc.ServiceDefinition;
  traces: grpc.ServiceDefinition;
}
let loaded: OtlpServices | undefined;
function services(): OtlpServices {
  if (loaded !== undefined) return loaded;
  const def = protoLoader.loadSync(
    [
      'opentelemetry/proto/collector/metrics/v1/metrics_service.proto',
      'opentelemetry/proto/collector/logs/v1/logs_service.proto',
      'opentelemetry/proto/collector/trace/v1/trace_service.proto',
    ],
    { includeDirs: [PROTO_ROOT], keepCase: false, longs: String, enums: String, defaults: true, oneofs: true, bytes: String },
  );
  const pkg = grpc.loadPackageDefinition(def) as Json;
  loaded = {
    metrics: pkg.opentelemetry.proto.collector.metrics.v1.MetricsService.service,
    logs: pkg.opentelemetry.proto.collector.logs.v1.LogsService.service,
    traces: pkg.opentelemetry.proto.collector.trace.v1.TraceService.service,
  };
  return loaded;
}

/** An AnyValue as a JS value (intValue strings become numbers). */
export function anyValue(v: Json): unknown {
  if (v === null || v === undefined) return undefined;
  switch (v.value) {
    case 'stringValue':
      return v.stringValue;
    case 'intValue':
      return Number(v.intValue);
    case 'doubleValue':
      return v.doubleValue;
    case 'boolValue':
      return v.boolValue;
    case 'arrayValue':
      return (v.arrayValue?.values ?? []).map(anyValue);
    default:
      return undefined;
  }
}

/** KeyValue list -> plain object. */
export function attrs(kvs: Json[] | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of kvs ?? []) out[kv.key] = anyValue(kv.value);
  return out;
}

/** One received data point, flattened. */
export interface ReceivedPoint {
  metric: string;
  unit: string;
  kind: 'sum' | 'gauge' | 'histogram';
  temporality?: string;
  monotonic?: boolean;
  attributes: Record<string, unknown>;
  startTimeUnixNano: string;
  timeUnixNano: string;
  /** Sum/gauge value; histogram count. */
  value: number;
  sum?: number;
  bucketCounts?: number[];
  explicitBounds?: number[];
  resource: Record<string, unknown>;
  scope: string;
}

/** One received log record, flattened. */
export interface ReceivedLog {
  timeUnixNano: string;
  observedTimeUnixNano: string;
  severityNumber: string;
  severityText: string;
  body: unknown;
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
  scope: string;
}

/** One received span, flattened; ids as lowercase hex ('' for no parent). */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  /** SPAN_KIND_CLIENT, SPAN_KIND_SERVER, ... */
  kind: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  /** STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR. */
  statusCode: string;
  statusMessage: string;
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
  scope: string;
}

/** bytes decoded by proto-loader with `bytes: String` are base64. */
const hexOfBase64 = (b: string | undefined): string => Buffer.from(b ?? '', 'base64').toString('hex');

/** What both receivers keep: decoded requests, and their flattened contents. */
abstract class OtlpSink {
  /** Raw decoded ExportMetricsServiceRequest / ExportLogsServiceRequest messages, in arrival order. */
  readonly metricsRequests: Json[] = [];
  readonly logsRequests: Json[] = [];
  readonly tracesRequests: Json[] = [];

  /** Every received span, flattened, in arrival order. */
  spans(): ReceivedSpan[] {
    const out: ReceivedSpan[] = [];
    for (const req of this.tracesRequests) {
      for (const rs of req.resourceSpans ?? []) {
        const resource = attrs(rs.resource?.attributes);
        for (const ss of rs.scopeSpans ?? []) {
          for (const sp of ss.spans ?? []) {
            out.push({
              traceId: hexOfBase64(sp.traceId),
              spanId: hexOfBase64(sp.spanId),
              parentSpanId: hexOfBase64(sp.parentSpanId),
              name: sp.name,
              kind: sp.kind,
              startTimeUnixNano: sp.startTimeUnixNano,
              endTimeUnixNano: sp.endTimeUnixNano,
              statusCode: sp.status?.code ?? 'STATUS_CODE_UNSET',
              statusMessage: sp.status?.message ?? '',
              attributes: attrs(sp.attributes),
              resource,
              scope: ss.scope?.name ?? '',
            });
          }
        }
      }
    }
    return out;
  }

  /** Every received data point, flattened, in arrival order. */
  points(): ReceivedPoint[] {
    const out: ReceivedPoint[] = [];
    for (const req of this.metricsRequests) {
      for (const rm of req.resourceMetrics ?? []) {
        const resource = attrs(rm.resource?.attributes);
        for (const sm of rm.scopeMetrics ?? []) {
          for (const m of sm.metrics ?? []) {
            const base = { metric: m.name, unit: m.unit, resource, scope: sm.scope?.name ?? '' };
            if (m.data === 'sum') {
              for (const dp of m.sum.dataPoints) {
                out.push({
                  ...base,
                  kind: 'sum',
                  temporality: m.sum.aggregationTemporality,
                  monotonic: m.sum.isMonotonic,
                  attributes: attrs(dp.attributes),
                  startTimeUnixNano: dp.startTimeUnixNano,
                  timeUnixNano: dp.timeUnixNano,
                  value: dp.value === 'asInt' ? Number(dp.asInt) : dp.asDouble,
                });
              }
            } else if (m.data === 'gauge') {
              for (const dp of m.gauge.dataPoints) {
                out.push({
                  ...base,
                  kind: 'gauge',
                  attributes: attrs(dp.attributes),
                  startTimeUnixNano: dp.startTimeUnixNano,
                  timeUnixNano: dp.timeUnixNano,
                  value: dp.value === 'asInt' ? Number(dp.asInt) : dp.asDouble,
                });
              }
            } else if (m.data === 'histogram') {
              for (const dp of m.histogram.dataPoints) {
                out.push({
                  ...base,
                  kind: 'histogram',
                  temporality: m.histogram.aggregationTemporality,
                  attributes: attrs(dp.attributes),
                  startTimeUnixNano: dp.startTimeUnixNano,
                  timeUnixNano: dp.timeUnixNano,
                  value: Number(dp.count),
                  sum: dp.sum,
                  bucketCounts: (dp.bucketCounts ?? []).map(Number),
                  explicitBounds: dp.explicitBounds ?? [],
                });
              }
            }
          }
        }
      }
    }
    return out;
  }

  /** Every received log record, flattened, in arrival order. */
  logs(): ReceivedLog[] {
    const out: ReceivedLog[] = [];
    for (const req of this.logsRequests) {
      for (const rl of req.resourceLogs ?? []) {
        const resource = attrs(rl.resource?.attributes);
        for (const sl of rl.scopeLogs ?? []) {
          for (const lr of sl.logRecords ?? []) {
            out.push({
              timeUnixNano: lr.timeUnixNano,
              observedTimeUnixNano: lr.observedTimeUnixNano,
              severityNumber: lr.severityNumber,
              severityText: lr.severityText,
              body: anyValue(lr.body),
              attributes: attrs(lr.attributes),
              resource,
              scope: sl.scope?.name ?? '',
            });
          }
        }
      }
    }
    return out;
  }
}

export class OtlpReceiver extends OtlpSink {
  /** Export calls answered UNAVAILABLE. */
  rejectedCalls = 0;
  /** When true, every Export is answered with gRPC status UNAVAILABLE (and not recorded). */
  unavailable = false;
  private server: grpc.Server | undefined;
  private boundPort = 0;
  private credentials = grpc.ServerCredentials.createInsecure();

  /** Starts on 127.0.0.1 (random port unless given), plaintext unless given TLS credentials. */
  static async start(port = 0, credentials?: grpc.ServerCredentials): Promise<OtlpReceiver> {
    const r = new OtlpReceiver();
    if (credentials !== undefined) r.credentials = credentials;
    await r.listen(port);
    return r;
  }

  get port(): number {
    return this.boundPort;
  }

  /** `127.0.0.1:port`, the exporter's `endpoint`. */
  get endpoint(): string {
    return `127.0.0.1:${this.boundPort}`;
  }

  private async listen(port: number): Promise<void> {
    const s = services();
    const server = new grpc.Server();
    const handler =
      (sink: Json[]) =>
      (call: grpc.ServerUnaryCall<Json, Json>, cb: grpc.sendUnaryData<Json>): void => {
        if (this.unavailable) {
          this.rejectedCalls++;
          cb({ code: grpc.status.UNAVAILABLE, details: 'test receiver says unavailable' });
          return;
        }
        sink.push(call.request);
        cb(null, {});
      };
    server.addService(s.metrics, { Export: handler(this.metricsRequests) });
    server.addService(s.logs, { Export: handler(this.logsRequests) });
    server.addService(s.traces, { Export: handler(this.tracesRequests) });
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`127.0.0.1:${port}`, this.credentials, (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.server = server;
  }

  /** Stops listening (open calls are cut: the peer sees the backend as down). */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s === undefined) return;
    s.forceShutdown();
  }

  /** Listens again on the same port. */
  async restart(): Promise<void> {
    await this.stop();
    await this.listen(this.boundPort);
  }
}

/** One HTTP request the {@link OtlpHttpReceiver} saw. */
export interface HttpExportCall {
  path: string;
  headers: IncomingHttpHeaders;
  /** Body bytes on the wire (compressed when gzip). */
  wireBytes: number;
  /** ms since the receiver started. */
  at: number;
  /** The status answered. */
  status: number;
}

/** Options of an {@link OtlpHttpReceiver}. */
export interface OtlpHttpReceiverOptions {
  /** Serve HTTPS with this key/cert (and, with `ca` and `requestCert`, ask for a client certificate). */
  tls?: HttpsServerOptions;
  /** Path prefix before /v1/metrics and /v1/logs (e.g. `/otlp`). Default none. */
  pathPrefix?: string;
  port?: number;
}

/**
 * A real OTLP/HTTP receiver: POST `<prefix>/v1/metrics` and `<prefix>/v1/logs`
 * with `application/x-protobuf` bodies (gunzipped when `Content-Encoding:
 * gzip`), decoded with the pinned .proto definitions into the same shapes as
 * the gRPC receiver. Answers 200 with an empty Export*ServiceResponse, or the
 * statuses queued in {@link refuseNext} (not recorded as received).
 */
export class OtlpHttpReceiver extends OtlpSink {
  /** Every request, in arrival order (refused ones included). */
  readonly calls: HttpExportCall[] = [];
  /** Statuses to answer the next requests with, one each (e.g. [503]). */
  readonly refuseNext: number[] = [];
  /** When set, every request is answered with this status (a backend that is down but listening). */
  refuseAll: number | undefined;
  private server: HttpServer | undefined;
  private boundPort = 0;
  private readonly started = Date.now();

  private constructor(private readonly opts: OtlpHttpReceiverOptions) {
    super();
  }

  static async start(opts: OtlpHttpReceiverOptions = {}): Promise<OtlpHttpReceiver> {
    const r = new OtlpHttpReceiver(opts);
    await r.listen(opts.port ?? 0);
    return r;
  }

  get port(): number {
    return this.boundPort;
  }

  /** The exporter's `endpoint`: `http(s)://127.0.0.1:port[prefix]`. */
  get endpoint(): string {
    return `${this.opts.tls ? 'https' : 'http'}://127.0.0.1:${this.boundPort}${this.opts.pathPrefix ?? ''}`;
  }

  private async listen(port: number): Promise<void> {
    const s = services();
    const decoders: Record<string, { decode: (b: Buffer) => Json; sink: Json[] }> = {
      [`${this.opts.pathPrefix ?? ''}/v1/metrics`]: { decode: (b) => s.metrics.Export!.requestDeserialize(b), sink: this.metricsRequests },
      [`${this.opts.pathPrefix ?? ''}/v1/logs`]: { decode: (b) => s.logs.Export!.requestDeserialize(b), sink: this.logsRequests },
      [`${this.opts.pathPrefix ?? ''}/v1/traces`]: { decode: (b) => s.traces.Export!.requestDeserialize(b), sink: this.tracesRequests },
    };
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const call: HttpExportCall = { path: req.url ?? '', headers: req.headers, wireBytes: body.length, at: Date.now() - this.started, status: 200 };
        this.calls.push(call);
        const answer = (status: number): void => {
          call.status = status;
          res.writeHead(status, { 'content-type': 'application/x-protobuf' }).end();
        };
        const target = decoders[req.url ?? ''];
        if (req.method !== 'POST' || target === undefined) return answer(404);
        if (req.headers['content-type'] !== 'application/x-protobuf') return answer(415);
        const refused = this.refuseNext.shift() ?? this.refuseAll;
        if (refused !== undefined) return answer(refused);
        try {
          const raw = req.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body;
          target.sink.push(target.decode(raw));
        } catch {
          return answer(400);
        }
        answer(200);
      });
    };
    const server = this.opts.tls ? createHttpsServer(this.opts.tls, handler) : createHttpServer(handler);
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    this.boundPort = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and cuts open connections (the backend is down). */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s === undefined) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Listens again on the same port. */
  async restart(): Promise<void> {
    await this.stop();
    await this.listen(this.boundPort);
  }
}

/**
 * Decodes an ExportMetricsServiceRequest / ExportLogsServiceRequest / ExportTraceServiceRequest body with
 * the receivers' own definitions and options (longs as strings, defaults,
 * oneof names): what a receiver would record for it.
 */
export function decodeExportRequest(signal: 'metrics' | 'logs' | 'traces', body: Uint8Array): Json {
  return services()[signal].Export!.requestDeserialize(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
}

/** Polls `cond` every 20 ms until true, or throws after `timeoutMs` with `what`. */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A backend that hangs: accepts TCP connections on 127.0.0.1 and never
 * writes a byte (no HTTP/2 settings, no answer), so every export to it
 * waits until its own timeout. close() destroys the held connections (the
 * exporter then sees the backend as gone) and stops listening.
 */
export async function startHungBackend(): Promise<{ endpoint: string; port: number; connections: () => number; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let accepted = 0;
  const server = createNetServer((s) => {
    accepted++;
    sockets.add(s);
    s.on('data', () => undefined); // read and ignore
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `127.0.0.1:${port}`,
    port,
    connections: () => accepted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
