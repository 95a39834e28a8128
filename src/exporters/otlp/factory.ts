import type { ExporterFactory } from '../../component/component.js';
import { otlpGrpcConfigSchema, otlpHttpConfigSchema, type OtlpGrpcConfig, type OtlpHttpConfig } from './config.js';
import { OtlpLogsExporter } from './OtlpLogsExporter.js';
import { OtlpMetricsExporter } from './OtlpMetricsExporter.js';
import { OtlpTracesExporter } from './OtlpTracesExporter.js';

/** `otlp_grpc`: OTLP/gRPC push of metrics, access logs and connection spans. */
export const otlpGrpcExporterFactory: ExporterFactory<OtlpGrpcConfig> = {
  kind: 'exporter',
  type: 'otlp_grpc',
  stability: { metrics: 'alpha', logs: 'alpha', traces: 'development' },
  configSchema: otlpGrpcConfigSchema,
  createDefaultConfig: () => otlpGrpcConfigSchema.parse({}),
  createMetrics: (settings, config) => new OtlpMetricsExporter(settings, config, 'grpc'),
  createLogs: (settings, config) => new OtlpLogsExporter(settings, config, 'grpc'),
  createTraces: (settings, config) => new OtlpTracesExporter(settings, config, 'grpc'),
};

/**
 * `otlp`: the same exporter as `otlp_grpc`, under the name the Collector
 * used for it before `otlp_grpc`, so existing configs keep working.
 */
export const otlpExporterFactory: ExporterFactory<OtlpGrpcConfig> = { ...otlpGrpcExporterFactory, type: 'otlp' };

/** `otlp_http`: OTLP over HTTP with protobuf bodies (`/v1/metrics`, `/v1/logs`, `/v1/traces`). */
export const otlpHttpExporterFactory: ExporterFactory<OtlpHttpConfig> = {
  kind: 'exporter',
  type: 'otlp_http',
  stability: { metrics: 'alpha', logs: 'alpha', traces: 'development' },
  configSchema: otlpHttpConfigSchema,
  createDefaultConfig: () => otlpHttpConfigSchema.parse({}),
  createMetrics: (settings, config) => new OtlpMetricsExporter(settings, config, 'http'),
  createLogs: (settings, config) => new OtlpLogsExporter(settings, config, 'http'),
  createTraces: (settings, config) => new OtlpTracesExporter(settings, config, 'http'),
};
