import { z } from 'zod';

/**
 * The connection events that reach access logs: closes, failed connects and
 * periodic reports of long-lived connections (opens only feed metrics).
 */
export const ACCESS_LOG_EVENTS = ['close', 'fail', 'report'] as const;

const port = z.number().int().min(1).max(65535);

/**
 * Config of the `accesslog_filter` processor (logs pipelines only). The
 * schema is the single source of truth for keys and defaults; unknown keys
 * are rejected with their path.
 *
 * The defaults keep everything, so adding the processor changes nothing
 * until a key is set.
 */
export const accessLogFilterConfigSchema = z.strictObject({
  /** Keep only failed connects (`event=fail`); everything else is filtered. Default `false`. */
  failures_only: z.boolean().default(false),
  /**
   * Event kinds to keep, of `close`, `fail`, `report`. Default: all three.
   * (To stop periodic reports at the source, set the ebpf receiver's
   * `log_periodic_reports: false` instead.)
   */
  events: z
    .array(z.enum(ACCESS_LOG_EVENTS))
    .min(1, { message: 'must list at least one event kind (an empty list would drop every record)' })
    .default([...ACCESS_LOG_EVENTS]),
  exclude: z
    .strictObject({
      /**
       * Drop entries whose source or destination namespace (as resolved by
       * `k8s_attributes`, which must run first) is listed. Default `[]`.
       */
      namespaces: z.array(z.string().min(1)).default([]),
      /** Drop entries whose destination port (or original destination port) is listed, e.g. health probes. Default `[]`. */
      ports: z.array(port).default([]),
    })
    .prefault({}),
  /**
   * Keep 1 in N successful connections (N >= 1; 1 keeps all). Failed
   * connects are always kept. The choice is made per socket, so a sampled
   * connection keeps all of its events (periodic reports and its close).
   * Default `1`.
   */
  sample_successful: z.number().int().min(1).default(1),
});

export type AccessLogFilterConfig = z.output<typeof accessLogFilterConfigSchema>;

export function createDefaultConfig(): AccessLogFilterConfig {
  return accessLogFilterConfigSchema.parse({});
}
