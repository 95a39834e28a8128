import { z } from 'zod';
import { httpServerKeys } from '../../config/httpServer.js';
import { duration } from '../../config/types.js';
import { schemaByName } from '../../metrics/schemas/registry.js';
import { DEFAULT_SERIES_TTL_MS } from '../../metrics/SeriesStore.js';
import { metricsStoreKeys } from '../common/metricsConfig.js';

/** A Prometheus label name (data model: `[a-zA-Z_][a-zA-Z0-9_]*`; `__` is reserved). */
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** A metric name prefix (`[a-zA-Z_:][a-zA-Z0-9_:]*`). */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/**
 * `exporters.prometheus`: a pull endpoint serving `/metrics` in the
 * Prometheus text format, with the keys of the Collector's prometheus
 * exporter that users reach for (`namespace`, `const_labels`,
 * `resource_to_telemetry_conversion`, `metric_expiration`).
 */
export const prometheusConfigSchema = z
  .strictObject({
    /**
     * The HTTP server: `endpoint` (default `127.0.0.1:15020`, Kmesh's port on
     * loopback: set the node's address, e.g. `${env:NODE_IP}:15020`, to be
     * scraped from elsewhere), `max_connections` (default 64),
     * `read_header_timeout` (10s), `idle_timeout` (60s), `tls`,
     * `allowed_clients` (see src/config/httpServer.ts).
     */
    ...httpServerKeys('127.0.0.1:15020', 64),
    /**
     * Prefix of every metric name, joined with `_` (`namespace: node` gives
     * `node_kmesh_tcp_...` and `node_kmesh_otel_...`). Default none: Kmesh's
     * names exactly.
     */
    namespace: z.string().regex(METRIC_NAME, 'must be a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)').optional(),
    /** Labels added to every series, e.g. `{ cluster: prod-eu }`. Default none. */
    const_labels: z.record(z.string(), z.string()).default({}),
    /**
     * `enabled: true` puts every resource attribute on every series as a
     * label (`service.instance.id` becomes `service_instance_id`), as the
     * Collector does; `target_info` carries them either way. Default false.
     */
    resource_to_telemetry_conversion: z.strictObject({ enabled: z.boolean().default(false) }).default({ enabled: false }),
    ...metricsStoreKeys,
    /** A series not updated for this long is removed once its last value was exported. Default 5m. */
    series_ttl: duration.optional(),
    /** The Collector's name for `series_ttl`; give one of the two. */
    metric_expiration: duration.optional(),
  })
  .superRefine((c, ctx) => {
    if (c.series_ttl !== undefined && c.metric_expiration !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['metric_expiration'], message: 'an alias of series_ttl: give one of the two' });
    }
    const schemaLabels = new Set(schemaByName(c.schema).families.flatMap((f) => f.labels));
    for (const k of Object.keys(c.const_labels)) {
      const path = ['const_labels', k];
      if (!LABEL_NAME.test(k)) ctx.addIssue({ code: 'custom', path, message: 'must be a label name ([a-zA-Z_][a-zA-Z0-9_]*)' });
      else if (k.startsWith('__')) ctx.addIssue({ code: 'custom', path, message: 'names starting with __ are reserved' });
      else if (k === 'le') ctx.addIssue({ code: 'custom', path: ['const_labels', k], message: 'le is the histogram bucket label' });
      else if (schemaLabels.has(k)) ctx.addIssue({ code: 'custom', path: ['const_labels', k], message: `the ${c.schema} schema already has a label "${k}"` });
    }
  })
  .transform(({ metric_expiration, series_ttl, ...rest }) => ({ ...rest, series_ttl: series_ttl ?? metric_expiration ?? DEFAULT_SERIES_TTL_MS }));

export type PrometheusConfig = z.output<typeof prometheusConfigSchema>;
