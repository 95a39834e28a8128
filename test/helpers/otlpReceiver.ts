/**
 * A real OTLP/gRPC receiver for tests: @grpc/grpc-js serving
 * opentelemetry.proto.collector.{metrics,logs}.v1 Export, decoding the real
 * OTLP protobufs (the pinned opentelemetry-proto copy in ./proto, see its
 * README).
 * It records what it receives, can be stopped and restarted on the same port,
 * and can be told to answer UNAVAILABLE.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { join } from 'node:path';

const PROTO_ROOT = join(import.meta.dirname, 'proto');

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

let loaded: { metrics: grpc.ServiceDefinition; logs: grpc.ServiceDefinition } | undefined;
function services(): { metrics: grpc.ServiceDefinition; logs: grpc.ServiceDefinition } {
  if (loaded !== undefined) return loaded;
  const def = protoLoader.loadSync(
    ['opentelemetry/proto/collector/metrics/v1/metrics_service.proto', 'opentelemetry/proto/collector/logs/v1/logs_service.proto'],
    { includeDirs: [PROTO_ROOT], keepCase: false, longs: String, enums: String, defaults: true, oneofs: true, bytes: String },
  );
  const pkg = grpc.loadPackageDefinition(def) as Json;
  loaded = {
    metrics: pkg.opentelemetry.proto.collector.metrics.v1.MetricsService.service,
    logs: pkg.opentelemetry.proto.collector.logs.v1.LogsService.service,
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

export class OtlpReceiver {
  /** Raw decoded ExportMetricsServiceRequest / ExportLogsServiceRequest messages, in arrival order. */
  readonly metricsRequests: Json[] = [];
  readonly logsRequests: Json[] = [];
  /** Export calls answered UNAVAILABLE. */
  rejectedCalls = 0;
  /** When true, every Export is answered with gRPC status UNAVAILABLE (and not recorded). */
  unavailable = false;
  private server: grpc.Server | undefined;
  private boundPort = 0;

  /** Starts on 127.0.0.1 (random port unless given). */
  static async start(port = 0): Promise<OtlpReceiver> {
    const r = new OtlpReceiver();
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
    this.boundPort = await new Promise<number>((resolve, reject) => {
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
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

/** Polls `cond` every 20 ms until true, or throws after `timeoutMs` with `what`. */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
