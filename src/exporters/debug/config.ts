import { z } from 'zod';
import { duration } from '../../config/types.js';
import { metricsStoreKeys } from '../common/metricsConfig.js';

/** `exporters.debug`: access logs and a metrics dump on stdout. */
export const debugConfigSchema = z.strictObject({
  /** Access-log format: `kmesh` (Kmesh's `accesslog: …` line) or `json` (one object per line). Default `kmesh`. */
  format: z.enum(['kmesh', 'json']).default('kmesh'),
  /** In `kmesh` format, append state, retransmissions, srtt, min_rtt and failure_reason after `duration`. Default true. */
  extra_fields: z.boolean().default(true),
  /** Metrics dump: `basic` (one line per family: series count and total) or `detailed` (every series). Default `basic`. */
  verbosity: z.enum(['basic', 'detailed']).default('basic'),
  /** How often the metrics dump is written. Default 10s. */
  interval: duration.default(10_000),
  /** Output bytes allowed to wait in stdout's buffer; further batches are dropped and counted. Default 1048576 (1 MiB). */
  max_buffered_bytes: z.number().int().positive().default(1 << 20),
  ...metricsStoreKeys,
});

export type DebugConfig = z.output<typeof debugConfigSchema>;
