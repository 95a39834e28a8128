/**
 * The one way an exporter builds its series store: its own store (each
 * exporter caches its wire form of the label sets in the sets themselves),
 * from the metrics keys every metrics exporter shares (metricsConfig.ts),
 * reporting its overflow and series count under the exporter's id.
 */
import type { CreateSettings } from '../../component/component.js';
import { schemaByName } from '../../metrics/schemas/registry.js';
import { SeriesStore } from '../../metrics/SeriesStore.js';
import type { MetricsStoreConfig } from './metricsConfig.js';

/**
 * A store for exporter `settings.id` with its config's schema, series budget
 * and TTL. `temporality`: `cumulative` (Prometheus; the default) or `delta`
 * (an OTLP exporter configured so).
 */
export function exporterSeriesStore<W>(
  settings: CreateSettings,
  config: MetricsStoreConfig,
  temporality: 'cumulative' | 'delta' = 'cumulative',
): SeriesStore<W> {
  return new SeriesStore<W>({
    schema: schemaByName(config.schema),
    temporality,
    maxSeriesPerFamily: config.max_series_per_family,
    seriesTtlMs: config.series_ttl,
    telemetry: settings.telemetry,
    telemetryAttributes: { exporter: settings.id.toString() },
  });
}
