import type { ExporterFactory } from '../../component/component.js';
import { otlpConfigSchema, type OtlpConfig } from './config.js';
import { OtlpLogsExporter } from './OtlpLogsExporter.js';
import { OtlpMetricsExporter } from './OtlpMetricsExporter.js';

/** `otlp`: OTLP/gRPC push of metrics and access logs (traces later: one more create* line). */
export const otlpExporterFactory: ExporterFactory<OtlpConfig> = {
  kind: 'exporter',
  type: 'otlp',
  stability: { metrics: 'alpha', logs: 'alpha' },
  configSchema: otlpConfigSchema,
  createDefaultConfig: () => otlpConfigSchema.parse({}),
  createMetrics: (settings, config) => new OtlpMetricsExporter(settings, config),
  createLogs: (settings, config) => new OtlpLogsExporter(settings, config),
};
