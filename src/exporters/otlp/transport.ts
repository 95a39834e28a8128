import { credentials as grpcCredentials, Metadata, type ChannelCredentials, type VerifyOptions } from '@grpc/grpc-js';
import { OTLPLogExporter as GrpcLogExporter } from '@opentelemetry/exporter-logs-otlp-grpc';
import { OTLPLogExporter as HttpLogExporter } from '@opentelemetry/exporter-logs-otlp-proto';
import { OTLPMetricExporter as GrpcMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPMetricExporter as HttpMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import type { ExportResult } from '@opentelemetry/core';
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { convertLegacyOtlpGrpcOptions, createOtlpGrpcExportDelegate } from '@opentelemetry/otlp-grpc-exporter-base';
import { ProtobufLogsSerializer, ProtobufMetricsSerializer, ProtobufTraceSerializer, type IExporterMetricsHelper, type ISerializer } from '@opentelemetry/otlp-transformer';
import type { LogRecordExporter } from '@opentelemetry/sdk-logs';
import type { PushMetricExporter } from '@opentelemetry/sdk-metrics';
import { OTLPTraceExporter as GrpcTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as HttpTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import { readFileSync } from 'node:fs';
import type { AgentOptions } from 'node:https';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import type { OtlpCommonConfig, OtlpGrpcConfig, OtlpHttpConfig, TlsConfig } from './config.js';
import { parseGrpcTarget, signalUrl, type GrpcTarget } from './endpoint.js';

/** An export request already encoded as protobuf, and the number of items it carries. */
export interface EncodedRequest {
  bytes: Uint8Array;
  /** Log records / data points / spans in the request (the SDK exporter's own self-observation counts them). */
  items: number;
  /** Hands the request's memory back to its encoder once the request is done for good (export and retries over). */
  release?: () => void;
}

/** Sends pre-encoded requests: the OpenTelemetry JS exporter machinery with a pass-through serializer. */
export interface EncodedExporter {
  export(request: EncodedRequest, resultCallback: (result: ExportResult) => void): void;
  /**
   * True when nothing reads a request's bytes once its callback has run, so
   * they may be reused. gRPC: the SDK's transport copies them as it sends
   * (and grpc-js frames or compresses its message before a call can
   * complete). HTTP: the SDK's transport streams the body from them, and a
   * server that answers early would leave the stream still reading.
   */
  readonly bytesFreeAfterExport?: boolean;
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

/** The signals the direct encoders serve. */
export type EncodedSignal = 'metrics' | 'logs' | 'traces';

/** What differs per signal between the SDK's OTLP exporters, as they set it in their constructors. */
const SIGNALS = {
  metrics: {
    env: 'METRICS',
    httpPath: 'v1/metrics',
    grpcName: 'MetricsExportService',
    grpcPath: '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export',
    componentType: { grpc: 'otlp_grpc_metric_exporter', http: 'otlp_http_metric_exporter' },
    itemName: 'metric_data_point',
    deserializeResponse: (data: Uint8Array): unknown => ProtobufMetricsSerializer.deserializeResponse(data),
  },
  logs: {
    env: 'LOGS',
    httpPath: 'v1/logs',
    grpcName: 'LogsExportService',
    grpcPath: '/opentelemetry.proto.collector.logs.v1.LogsService/Export',
    componentType: { grpc: 'otlp_grpc_log_exporter', http: 'otlp_http_log_exporter' },
    itemName: 'log',
    deserializeResponse: (data: Uint8Array): unknown => ProtobufLogsSerializer.deserializeResponse(data),
  },
  traces: {
    env: 'TRACES',
    httpPath: 'v1/traces',
    grpcName: 'TraceExportService',
    grpcPath: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
    componentType: { grpc: 'otlp_grpc_span_exporter', http: 'otlp_http_span_exporter' },
    itemName: 'span',
    deserializeResponse: (data: Uint8Array): unknown => ProtobufTraceSerializer.deserializeResponse(data),
  },
} as const;

/** The wire protocol of an OTLP exporter. */
export type OtlpProtocol = 'grpc' | 'http';

/** The SDK's compression enum (`'gzip' | 'none'`), named through a direct dependency. */
type CompressionAlgorithm = NonNullable<NonNullable<ConstructorParameters<typeof GrpcLogExporter>[0]>['compression']>;

interface TlsMaterial {
  ca: Buffer | null;
  cert: Buffer | null;
  key: Buffer | null;
}

/**
 * Reads the PEM files named in `tls`. Called when the exporter is created,
 * so a missing file fails start-up instead of every export.
 */
function readTls(tls: TlsConfig, exporter: string): TlsMaterial {
  const read = (path: string | undefined, what: string): Buffer | null => {
    if (path === undefined) return null;
    try {
      return readFileSync(path);
    } catch (err) {
      throw new Error(`${exporter} exporter: cannot read tls.${what} ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  return { ca: read(tls.ca_file, 'ca_file'), cert: read(tls.cert_file, 'cert_file'), key: read(tls.key_file, 'key_file') };
}

/** Certificate name check: against `server_name_override` when set, none with `insecure_skip_verify`. */
function serverIdentityCheck(tls: TlsConfig): ((host: string, cert: PeerCertificate) => Error | undefined) | undefined {
  if (tls.insecure_skip_verify) return () => undefined;
  const name = tls.server_name_override;
  if (name !== undefined) return (_host, cert) => checkServerIdentity(name, cert);
  return undefined;
}

const common = (config: OtlpCommonConfig) => ({
  compression: config.compression as unknown as CompressionAlgorithm,
  timeoutMillis: Math.max(1, config.timeout),
  // The sending queue bounds what is in flight; the SDK's own limit (default
  // 30) would refuse requests beyond it.
  concurrencyLimit: config.sending_queue.num_consumers,
});

/** OTLP/gRPC options for the SDK exporters. */
function grpcOptions(config: OtlpGrpcConfig, tlsMaterial: TlsMaterial) {
  const target = parseGrpcTarget(config.endpoint) as GrpcTarget;
  const tls = config.tls;
  // configgrpc: an https:// endpoint is TLS whatever `insecure` says.
  const useTls = target.httpsScheme || !tls.insecure;
  let credentials: ChannelCredentials;
  if (useTls) {
    const verify: VerifyOptions = {};
    const check = serverIdentityCheck(tls);
    if (check !== undefined) verify.checkServerIdentity = check;
    if (tls.insecure_skip_verify) verify.rejectUnauthorized = false;
    credentials = grpcCredentials.createSsl(tlsMaterial.ca, tlsMaterial.key, tlsMaterial.cert, verify);
  } else {
    credentials = grpcCredentials.createInsecure();
  }
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(config.headers)) metadata.set(k.toLowerCase(), v);
  return { ...common(config), url: `${useTls ? 'https' : 'http'}://${target.hostPort}`, credentials, metadata };
}

/** OTLP/HTTP options for the SDK exporters, for one signal's URL. */
function httpOptions(config: OtlpHttpConfig, url: string, tlsMaterial: TlsMaterial) {
  const tls = config.tls;
  // Keep-alive: one connection carries the exports of an interval.
  const agent: AgentOptions = { keepAlive: true };
  if (new URL(url).protocol === 'https:') {
    if (tlsMaterial.ca !== null) agent.ca = tlsMaterial.ca;
    if (tlsMaterial.cert !== null) agent.cert = tlsMaterial.cert;
    if (tlsMaterial.key !== null) agent.key = tlsMaterial.key;
    if (tls.insecure_skip_verify) agent.rejectUnauthorized = false;
    if (tls.server_name_override !== undefined) agent.servername = tls.server_name_override;
    const check = serverIdentityCheck(tls);
    if (check !== undefined) agent.checkServerIdentity = check;
  }
  return { ...common(config), url, headers: { ...config.headers }, httpAgentOptions: agent };
}

/** The per-signal URLs of an otlp_http config. */
export function httpUrls(config: OtlpHttpConfig): { metrics: string; logs: string; traces: string } {
  return {
    metrics: config.metrics_endpoint ?? signalUrl(config.endpoint, 'v1/metrics'),
    logs: config.logs_endpoint ?? signalUrl(config.endpoint, 'v1/logs'),
    traces: config.traces_endpoint ?? signalUrl(config.endpoint, 'v1/traces'),
  };
}

/**
 * Builds the SDK's OTLP exporters for one protocol. TLS files are read when
 * this is created (fail fast at start-up).
 */
export class OtlpTransport {
  private readonly tls: TlsMaterial;

  constructor(
    readonly protocol: OtlpProtocol,
    private readonly config: OtlpCommonConfig,
    exporterName: string,
  ) {
    this.tls = readTls(config.tls, exporterName);
  }

  metricExporter(): PushMetricExporter {
    if (this.protocol === 'grpc') return new GrpcMetricExporter(grpcOptions(this.config as OtlpGrpcConfig, this.tls));
    const c = this.config as OtlpHttpConfig;
    return new HttpMetricExporter(httpOptions(c, httpUrls(c).metrics, this.tls));
  }

  /**
   * An exporter of pre-encoded requests for `signal`, built the way the
   * SDK's OTLPLogExporter / OTLPMetricExporter / OTLPTraceExporter (0.301) build themselves —
   * the same option conversion (OTEL_EXPORTER_OTLP_* environment merged
   * under the config), gRPC or HTTP transport, compression, timeout,
   * concurrency limit and partial-success handling — with a serializer
   * that passes the direct encoder's bytes through.
   */
  encodedExporter(signal: EncodedSignal): EncodedExporter {
    const spec = SIGNALS[signal];
    const serializer: ISerializer<EncodedRequest, unknown> = {
      serializeRequest: (r) => r.bytes,
      deserializeResponse: spec.deserializeResponse,
    };
    const helper: IExporterMetricsHelper<EncodedRequest> = { name: spec.itemName, countItems: (r) => r.items };
    if (this.protocol === 'grpc') {
      const options = convertLegacyOtlpGrpcOptions(grpcOptions(this.config as OtlpGrpcConfig, this.tls), spec.env);
      const base = new OTLPExporterBase(
        createOtlpGrpcExportDelegate(options, serializer, spec.componentType.grpc, helper, undefined, spec.grpcName, spec.grpcPath),
      );
      return Object.assign(base, { bytesFreeAfterExport: true });
    }
    const c = this.config as OtlpHttpConfig;
    const options = convertLegacyHttpOptions(httpOptions(c, httpUrls(c)[signal], this.tls), spec.env, spec.httpPath, {
      'Content-Type': 'application/x-protobuf',
    });
    return new OTLPExporterBase(createOtlpHttpExportDelegate(options, serializer, spec.componentType.http, helper, undefined));
  }

  logExporter(): LogRecordExporter {
    if (this.protocol === 'grpc') return new GrpcLogExporter(grpcOptions(this.config as OtlpGrpcConfig, this.tls));
    const c = this.config as OtlpHttpConfig;
    return new HttpLogExporter(httpOptions(c, httpUrls(c).logs, this.tls));
  }

  traceExporter(): SpanExporter {
    if (this.protocol === 'grpc') return new GrpcTraceExporter(grpcOptions(this.config as OtlpGrpcConfig, this.tls));
    const c = this.config as OtlpHttpConfig;
    return new HttpTraceExporter(httpOptions(c, httpUrls(c).traces, this.tls));
  }
}
