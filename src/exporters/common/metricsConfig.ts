import { z } from 'zod';
import { duration } from '../../config/types.js';
import { SCHEMA_NAMES } from '../../metrics/schemas/registry.js';
import { DEFAULT_MAX_SERIES_PER_FAMILY, DEFAULT_SERIES_TTL_MS } from '../../metrics/SeriesStore.js';

/**
 * Config keys every metrics exporter shares (spread into its `z.strictObject`).
 * The schema is an exporter setting, not a processor one, so one pipeline can
 * feed a Kmesh-named Prometheus endpoint and an Istio-named OTLP backend.
 */
export const metricsStoreKeys = {
  /** Metric names and label set: `kmesh` (Kmesh's families, unknown `-`) or `istio` (istio_tcp_*, unknown `unknown`). Default `kmesh`. */
  schema: z.enum(SCHEMA_NAMES).default('kmesh'),
  /** Series budget per metric family; further label sets go to one `otel_metric_overflow="true"` series. Default 10000. */
  max_series_per_family: z.number().int().positive().default(DEFAULT_MAX_SERIES_PER_FAMILY),
  /** A series not updated for this long is removed once its last value was exported. Default 5m. */
  series_ttl: duration.default(DEFAULT_SERIES_TTL_MS),
};

/** What {@link metricsStoreKeys} parse into. */
export interface MetricsStoreConfig {
  schema: (typeof SCHEMA_NAMES)[number];
  max_series_per_family: number;
  series_ttl: number;
}
