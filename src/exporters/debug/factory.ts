import type { ExporterFactory } from '../../component/component.js';
import { debugConfigSchema, type DebugConfig } from './config.js';
import { DebugLogsExporter, DebugMetricsExporter } from './DebugExporter.js';
import { DebugTracesExporter } from './DebugTracesExporter.js';

/** `debug`: access logs (Kmesh line or JSON), a periodic metrics dump and one line per span on stdout. */
export const debugExporterFactory: ExporterFactory<DebugConfig> = {
  kind: 'exporter',
  type: 'debug',
  stability: { metrics: 'development', logs: 'alpha', traces: 'development' },
  configSchema: debugConfigSchema,
  createDefaultConfig: () => debugConfigSchema.parse({}),
  createMetrics: (settings, config) => new DebugMetricsExporter(settings, config),
  createLogs: (settings, config) => new DebugLogsExporter(settings, config),
  createTraces: (settings, config) => new DebugTracesExporter(settings, config),
};
