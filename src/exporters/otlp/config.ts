import { z } from 'zod';
import { duration } from '../../config/types.js';
import { metricsStoreKeys } from '../common/metricsConfig.js';
import { grpcTarget, httpBaseUrl, httpSignalUrl } from './endpoint.js';

/*
 * Config of the `otlp_grpc` (alias `otlp`) and `otlp_http` exporters, with
 * the OpenTelemetry Collector's key names and defaults (exporterhelper,
 * configgrpc, confighttp, configtls), so a block copied from the
 * Collector's documentation validates — or fails naming the one key this
 * agent does not have. These schemas are the one source of truth for keys,
 * types and defaults.
 */

/** `tls`: configtls.ClientConfig (the keys this agent implements). */
export const tlsSchema = z
  .strictObject({
    /**
     * gRPC: plaintext, no TLS (an `https://` endpoint still uses TLS). For
     * `otlp_http` the endpoint's scheme decides, as in the Collector.
     * Default false.
     */
    insecure: z.boolean().default(false),
    /** TLS without verifying the server's certificate chain and name. Default false. */
    insecure_skip_verify: z.boolean().default(false),
    /** PEM CA bundle to verify the server with. Default: the system roots. */
    ca_file: z.string().min(1).optional(),
    /** PEM client certificate (mutual TLS; needs key_file). */
    cert_file: z.string().min(1).optional(),
    /** PEM client key (mutual TLS; needs cert_file). */
    key_file: z.string().min(1).optional(),
    /**
     * Verify the server certificate against this name instead of the
     * endpoint's host (e.g. an endpoint given as an IP address); also the SNI
     * name over HTTP. Default: the endpoint's host.
     */
    server_name_override: z.string().min(1).optional(),
  })
  .refine((t) => (t.cert_file === undefined) === (t.key_file === undefined), {
    message: 'cert_file and key_file must be given together',
  });

export type TlsConfig = z.output<typeof tlsSchema>;

const RETRY_DEFAULTS = {
  enabled: true,
  initial_interval: 5_000,
  max_interval: 30_000,
  max_elapsed_time: 300_000,
  multiplier: 1.5,
  randomization_factor: 0.5,
};

/** `retry_on_failure`: exporterhelper's BackOffConfig, same defaults. */
export const retrySchema = z
  .strictObject({
    /** Retry a failed export (not a permanent error such as HTTP 400 or gRPC INVALID_ARGUMENT). Default true. */
    enabled: z.boolean().default(RETRY_DEFAULTS.enabled),
    /** Wait before the first retry. Default 5s. */
    initial_interval: duration.default(RETRY_DEFAULTS.initial_interval),
    /** Cap of the wait between retries. Default 30s. */
    max_interval: duration.default(RETRY_DEFAULTS.max_interval),
    /** Give up (and count the data as failed) after this long; 0 retries without end. Default 5m. */
    max_elapsed_time: duration.default(RETRY_DEFAULTS.max_elapsed_time),
    /** Growth of the wait per retry. Default 1.5. */
    multiplier: z.number().min(1).default(RETRY_DEFAULTS.multiplier),
    /**
     * Jitter: each wait is drawn uniformly from `interval * (1 ± factor)`, so
     * a fleet that lost its backend at one moment does not retry in lockstep.
     * Default 0.5.
     */
    randomization_factor: z.number().min(0).max(1).default(RETRY_DEFAULTS.randomization_factor),
  })
  .default(RETRY_DEFAULTS);

export type RetryConfig = z.output<typeof retrySchema>;

const BATCH_DEFAULTS = { flush_timeout: 200, min_size: 512, max_size: 0, sizer: 'items' as const };

/** `sending_queue.batch`: exporterhelper's batching, measured in items. */
const batchSchema = z
  .strictObject({
    /**
     * Logs: a partial batch is sent this long after its first record.
     * Metrics are one batch per `export_interval` collection. Default 200ms.
     */
    flush_timeout: duration.default(BATCH_DEFAULTS.flush_timeout),
    /** Logs: a batch is sent once it holds this many records. Default 512. */
    min_size: z.number().int().nonnegative().default(BATCH_DEFAULTS.min_size),
    /**
     * Items per request at most (log records; metric data points), 0 = no
     * limit beyond min_size. Metric requests are cut at 1000 points when 0:
     * gRPC servers refuse messages over 4 MiB by default. Default 0.
     */
    max_size: z.number().int().nonnegative().default(BATCH_DEFAULTS.max_size),
    /** Unit of min_size/max_size: only `items` (records, data points). */
    sizer: z.literal('items', { message: 'only "items" is supported (log records, metric data points)' }).default('items'),
  })
  .refine((b) => b.max_size === 0 || b.max_size >= b.min_size, { message: 'max_size must be 0 or at least min_size' });

const QUEUE_DEFAULTS = { enabled: true, queue_size: 10_000, num_consumers: 10, sizer: 'items' as const, batch: BATCH_DEFAULTS };

/** `sending_queue`: exporterhelper's queue, in memory, for metrics and logs. */
export const sendingQueueSchema = z
  .strictObject({
    /**
     * Default true: exports are queued and sent by `num_consumers` senders
     * with retries in the background. false: metrics are sent at once and
     * the reader waits for them (retries included); logs keep one export in
     * flight at a time (the SDK BatchLogRecordProcessor's behaviour), still
     * bounded by `queue_size`.
     */
    enabled: z.boolean().default(QUEUE_DEFAULTS.enabled),
    /**
     * Items held at most per signal, queued, in flight or waiting to be
     * retried (log records; metric data points); beyond, new data is dropped
     * and counted. Metrics with cumulative temporality keep only the newest
     * collection waiting, whatever its size (it supersedes older ones, and the
     * series budget bounds it), so queue_size bounds delta metrics and logs.
     * Default 10000.
     */
    queue_size: z.number().int().positive().default(QUEUE_DEFAULTS.queue_size),
    /** Export requests in flight at most per signal. Default 10. */
    num_consumers: z.number().int().positive().default(QUEUE_DEFAULTS.num_consumers),
    /** Unit of queue_size: only `items`. */
    sizer: z.literal('items', { message: 'only "items" is supported (log records, metric data points)' }).default('items'),
    batch: batchSchema.default(BATCH_DEFAULTS),
  })
  .default(QUEUE_DEFAULTS);

export type SendingQueueConfig = z.output<typeof sendingQueueSchema>;

/** Keys both protocols share. */
const commonKeys = {
  tls: tlsSchema.default({ insecure: false, insecure_skip_verify: false }),
  /** Headers (gRPC metadata) sent with every export, e.g. `authorization`. Default none. */
  headers: z.record(z.string(), z.string()).default({}),
  /** `gzip` or `none`. Default `gzip`, as in the Collector. */
  compression: z.enum(['gzip', 'none']).default('gzip'),
  /** Deadline of one export attempt (the SDK exporter's own short retries included). Default 5s (Collector: 5s gRPC, 30s HTTP). */
  timeout: duration.default(5_000),
  retry_on_failure: retrySchema,
  sending_queue: sendingQueueSchema,
  /** Metrics push interval. Default 60s (the SDK's default). */
  export_interval: duration.default(60_000),
  /** Aggregation temporality of the TCP families: `cumulative` or `delta`. Default `cumulative`. */
  temporality: z.enum(['cumulative', 'delta']).default('cumulative'),
  ...metricsStoreKeys,
};

/** `exporters.otlp_grpc` (and its alias `otlp`): OTLP/gRPC push of metrics and logs. */
export const otlpGrpcConfigSchema = z.strictObject({
  /**
   * The OTLP/gRPC receiver: `host:port`, `http://host:port` (plaintext when
   * `tls.insecure`), `https://host:port` (always TLS) or
   * `dns:///host:port`. Default `localhost:4317`.
   */
  endpoint: grpcTarget.default('localhost:4317'),
  ...commonKeys,
});

/** `exporters.otlp_http`: OTLP over HTTP, protobuf bodies. */
export const otlpHttpConfigSchema = z.strictObject({
  /**
   * Base URL: `/v1/metrics` and `/v1/logs` are appended (after any path, e.g.
   * `http://loki:3100/otlp`). `https://` means TLS. Default
   * `http://localhost:4318`.
   */
  endpoint: httpBaseUrl.default('http://localhost:4318'),
  /** Full URL for metrics, used as is (no `/v1/metrics` appended). Default: from `endpoint`. */
  metrics_endpoint: httpSignalUrl.optional(),
  /** Full URL for logs, used as is (no `/v1/logs` appended). Default: from `endpoint`. */
  logs_endpoint: httpSignalUrl.optional(),
  /** Full URL for traces, used as is (no `/v1/traces` appended). Default: from `endpoint`. */
  traces_endpoint: httpSignalUrl.optional(),
  /** Body encoding: `proto` only (the Collector's default; `json` is not implemented). */
  encoding: z.literal('proto', { message: 'only "proto" is supported' }).default('proto'),
  ...commonKeys,
  /** Deadline of one export attempt. Default 30s, as the Collector's otlphttp. */
  timeout: duration.default(30_000),
});

export type OtlpGrpcConfig = z.output<typeof otlpGrpcConfigSchema>;
export type OtlpHttpConfig = z.output<typeof otlpHttpConfigSchema>;
/** What the exporters need of either config. */
export type OtlpCommonConfig = OtlpGrpcConfig | OtlpHttpConfig;
