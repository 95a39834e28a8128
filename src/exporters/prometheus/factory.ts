import type { ExporterFactory } from '../../component/component.js';
import { prometheusConfigSchema, type PrometheusConfig } from './config.js';
import { PrometheusMetricsExporter } from './PrometheusMetricsExporter.js';

/** `prometheus`: Kmesh-compatible TCP metrics (and self-metrics) on a pull endpoint. */
export const prometheusExporterFactory: ExporterFactory<PrometheusConfig> = {
  kind: 'exporter',
  type: 'prometheus',
  stability: { metrics: 'alpha' },
  configSchema: prometheusConfigSchema,
  createDefaultConfig: () => prometheusConfigSchema.parse({}),
  createMetrics: (settings, config) => new PrometheusMetricsExporter(settings, config),
};
