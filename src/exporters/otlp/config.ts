import { z } from 'zod';
import { duration, hostPort } from '../../config/types.js';
import { metricsStoreKeys } from '../common/metricsConfig.js';

/** `exporters.otlp`: OTLP/gRPC push of metrics and logs, with the collector's key names. */
export const otlpConfigSchema = z.strictObject({
  /** host:port of the OTLP/gRPC receiver (a `http://`/`https://` prefix is not needed). Default `localhost:4317`. */
  endpoint: hostPort.default('localhost:4317'),
  /** Transport security. Default `{ insecure: false }` (TLS with the system CAs), as in the collector. */
  tls: z
    .strictObject({
      /** Plaintext gRPC (no TLS). Default false. */
      insecure: z.boolean().default(false),
      /** PEM CA bundle to verify the server with. Default: the system roots. */
      ca_file: z.string().optional(),
      /** PEM client certificate (mutual TLS; needs key_file). */
      cert_file: z.string().optional(),
      /** PEM client key (mutual TLS; needs cert_file). */
      key_file: z.string().optional(),
    })
    .refine((t) => (t.cert_file === undefined) === (t.key_file === undefined), {
      message: 'cert_file and key_file must be given together',
    })
    .default({ insecure: false }),
  /** gRPC metadata sent with every export (e.g. `authorization`). Default none. */
  headers: z.record(z.string(), z.string()).default({}),
  /** `gzip` or `none`. Default `gzip`, as in the collector. */
  compression: z.enum(['gzip', 'none']).default('gzip'),
  /** Deadline of one export attempt (the SDK's own short retries included). Default 5s. */
  timeout: duration.default(5_000),
  /**
   * Retries of a failed log export, exponential backoff (x1.5). Metrics are not
   * retried beyond `timeout`: the next cumulative export supersedes a failed one.
   */
  retry_on_failure: z
    .strictObject({
      /** Default true. */
      enabled: z.boolean().default(true),
      /** First backoff. Default 5s. */
      initial_interval: duration.default(5_000),
      /** Backoff cap. Default 30s. */
      max_interval: duration.default(30_000),
      /** Give up on a batch (counted in send_failed) after this long. Default 5m. */
      max_elapsed_time: duration.default(300_000),
    })
    .default({ enabled: true, initial_interval: 5_000, max_interval: 30_000, max_elapsed_time: 300_000 }),
  /** Bounded queue of log records waiting for export; when full, new records are dropped and counted. */
  sending_queue: z
    .strictObject({
      /** Log records held at most (queued + in flight). Default 10000. */
      queue_size: z.number().int().positive().default(10_000),
      /** Log records per export request. Default 512. */
      batch_size: z.number().int().positive().default(512),
      /**
       * Log export requests in flight at most (the collector's name and
       * default). More than one lets the next batch be built and serialized
       * while earlier ones travel; 1 is the SDK BatchLogRecordProcessor's
       * behaviour. Default 10; at most 30 (the SDK exporter's own limit).
       */
      num_consumers: z.number().int().positive().max(30).default(10),
    })
    .default({ queue_size: 10_000, batch_size: 512, num_consumers: 10 }),
  /** Metrics push interval. Default 60s (the SDK's default). */
  export_interval: duration.default(60_000),
  /** Aggregation temporality of the TCP families: `cumulative` or `delta`. Default `cumulative`. */
  temporality: z.enum(['cumulative', 'delta']).default('cumulative'),
  ...metricsStoreKeys,
});

export type OtlpConfig = z.output<typeof otlpConfigSchema>;
