import type { ExporterFactory } from '../../component/component.js';
import { debugConfigSchema, type DebugConfig } from './config.js';
import { DebugLogsExporter, DebugMetricsExporter } from './DebugExporter.js';

/** `debug`: access logs (Kmesh line or JSON) and a periodic metrics dump on stdout. */
export const debugExporterFactory: ExporterFactory<DebugConfig> = {
  kind: 'exporter',
  type: 'debug',
  stability: { metrics: 'development', logs: 'alpha' },
  configSchema: debugConfigSchema,
  createDefaultConfig: () => debugConfigSchema.parse({}),
  createMetrics: (settings, config) => new DebugMetricsExporter(settings, config),
  createLogs: (settings, config) => new DebugLogsExporter(settings, config),
};
