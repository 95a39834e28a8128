import type { Counter } from '@opentelemetry/api';
import {
  LoggerProvider,
  type ReadableLogRecord,
} from '@opentelemetry/sdk-logs';
import type { Logger } from '@opentelemetry/api';
import type { CreateSettings, Host, LogsExporter } from '../../component/component.js';
import type { AccessLogEntry, LogsBatch } from '../../model/logs.js';
import { LossLog } from '../../telemetry/LossLog.js';
import type { OtlpCommonConfig } from './config.js';
import { ConcurrentBatchLogRecordProcessor } from './ConcurrentBatchLogRecordProcessor.js';
import { ConcurrentBatcher, type ConcurrentBatchOptions } from './ConcurrentBatcher.js';
import { AccessLogEncoder } from './encoding/LogsEncoder.js';
import { EncodingExporter, RetryingCountingExporter } from './exportWrappers.js';
import { Retrier } from './retry.js';
import { QUEUE_CAPACITY_GAUGE, QUEUE_SIZE_GAUGE } from './selfMetrics.js';
import { OtlpTransport, type OtlpProtocol } from './transport.js';
import { toLogRecord } from './logRecord.js';
import type { MetricSchema } from '../../metrics/schema.js';
import { schemaByName } from '../../metrics/schemas/registry.js';

/**
 * How access-log entries become OTLP requests:
 * - `direct` (the agent's): {@link AccessLogEncoder} encodes each batch of
 *   entries straight to protobuf, splicing cached bytes for what repeats;
 * - `sdk`: toLogRecord, the sdk-logs LoggerProvider and the SDK exporter's
 *   own serializer — the reference the direct path is checked against
 *   (test/exporters/otlp/encodingEquivalence.test.ts) and measured against
 *   (bench/logs.ts).
 */
export type LogsEncoding = 'direct' | 'sdk';

/**
 * Access logs as OpenTelemetry LogRecords over OTLP (gRPC or HTTP): one record per
 * AccessLogEntry (the content {@link toLogRecord} describes), batched with up to
 * `sending_queue.num_consumers` exports in flight
 * ({@link ConcurrentBatchLogRecordProcessor}) behind a bounded queue. The
 * queue counts records accepted and not yet finished (buffered, in flight or
 * waiting to be retried); when it holds
 * `sending_queue.queue_size` records, new ones are dropped and counted in
 * `kmesh_otel_exporter_dropped_log_records` — a dead backend costs bounded
 * memory, never a crash, and delivery resumes when it returns.
 */
export class OtlpLogsExporter implements LogsExporter {
  private provider: LoggerProvider | undefined;
  private logger: Logger | undefined;
  private wrapper: RetryingCountingExporter<ReadableLogRecord> | EncodingExporter<AccessLogEntry> | undefined;
  /** The direct path's batcher (encoding `direct`). */
  private batcher: ConcurrentBatcher<AccessLogEntry> | undefined;
  private started = false;
  private inFlight = 0;
  private stopped = false;
  private shutdownPromise: Promise<void> | undefined;
  private readonly attrs: { exporter: string };
  private readonly sent: Counter;
  private readonly failed: Counter;
  private readonly dropped: Counter;
  /** Failed exports and drops, logged rate-limited with their counts. */
  private readonly losses: LossLog;

  private readonly transport: OtlpTransport;
  /** The schema's record form (semconv), else undefined: the Kmesh line and attributes. */
  private readonly accessLog: MetricSchema['accessLog'];

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: OtlpCommonConfig,
    protocol: OtlpProtocol = 'grpc',
    /** Jitter source of the retries (tests). */
    private readonly random: () => number = Math.random,
    /** `sdk`: the reference path (benchmarks, tests); not a config key. */
    private readonly encoding: LogsEncoding = 'direct',
  ) {
    this.attrs = { exporter: settings.id.toString() };
    this.accessLog = schemaByName(config.schema).accessLog;
    const t = settings.telemetry;
    this.sent = t.counter('exporter_sent_log_records', 'Log records the exporter delivered');
    this.failed = t.counter('exporter_send_failed_log_records', 'Log records in export requests that failed after retries');
    this.dropped = t.counter('exporter_dropped_log_records', 'Log records the exporter dropped (queue or buffer full, or shut down)');
    // The loss series exist from start-up at 0 ("no loss" is a value to alert on).
    this.failed.add(0, this.attrs);
    this.dropped.add(0, this.attrs);
    this.losses = new LossLog(settings.logger, t, { ...this.attrs, signal: 'logs' }, ['export_failed', 'queue_full', 'shut_down']);
    t.gauge(QUEUE_SIZE_GAUGE.name, QUEUE_SIZE_GAUGE.description, () =>
      this.stopped ? [] : [[this.inFlight, { ...this.attrs, signal: 'logs' }]],
    );
    t.gauge(QUEUE_CAPACITY_GAUGE.name, QUEUE_CAPACITY_GAUGE.description, () =>
      this.stopped ? [] : [[this.config.sending_queue.queue_size, { ...this.attrs, signal: 'logs' }]],
    );
    // Reads the TLS files now (fail fast at creation).
    this.transport = new OtlpTransport(protocol, config, settings.id.toString());
  }

  async start(_host: Host): Promise<void> {
    if (this.stopped || this.started) return;
    this.started = true;
    const c = this.config;
    const q = c.sending_queue;
    const onDone = (n: number, ok: boolean, error?: Error): void => {
      this.inFlight -= n;
      if (ok) this.sent.add(n, this.attrs);
      else {
        this.failed.add(n, this.attrs);
        this.losses.record('export_failed', n, { endpoint: this.config.endpoint, err: error?.message });
      }
    };
    // A batch closes at min_size records (max_size when only that is set),
    // or flush_timeout after its first record; never above queue_size.
    const batchSize = q.batch.min_size > 0 ? q.batch.min_size : q.batch.max_size > 0 ? q.batch.max_size : 1;
    const options: ConcurrentBatchOptions = {
      batchSize: Math.min(batchSize, q.queue_size),
      // Queue disabled: one export at a time, as the SDK's BatchLogRecordProcessor.
      maxConcurrentExports: q.enabled ? q.num_consumers : 1,
      flushDelayMillis: Math.max(1, q.batch.flush_timeout),
    };
    const retrier = new Retrier(c.retry_on_failure, this.random);
    if (this.encoding === 'direct') {
      const wrapper = new EncodingExporter<AccessLogEntry>(
        new AccessLogEncoder(this.settings.resource, undefined, this.accessLog),
        this.transport.encodedExporter('logs'),
        retrier,
        this.settings.resource,
        onDone,
        (err) => this.settings.logger.warn({ err }, 'otlp logs exporter: cannot encode a batch; its records count as send_failed'),
      );
      this.wrapper = wrapper;
      this.batcher = new ConcurrentBatcher(wrapper, options);
      return;
    }
    this.wrapper = new RetryingCountingExporter<ReadableLogRecord>(this.transport.logExporter(), retrier, onDone);
    const processor = new ConcurrentBatchLogRecordProcessor(this.wrapper, options);
    this.provider = new LoggerProvider({ resource: this.settings.resource, processors: [processor] });
    this.logger = this.provider.getLogger('kmesh-otel');
  }

  consumeLogs(batch: LogsBatch): void {
    const { batcher, logger } = this;
    if (this.stopped || (batcher === undefined && logger === undefined)) {
      if (batch.entries.length > 0) {
        this.dropped.add(batch.entries.length, this.attrs);
        this.losses.record('shut_down', batch.entries.length);
      }
      return;
    }
    const cap = this.config.sending_queue.queue_size;
    let dropped = 0;
    for (const entry of batch.entries) {
      if (this.inFlight >= cap) {
        dropped++;
        continue;
      }
      this.inFlight++;
      if (batcher !== undefined) batcher.add(entry);
      else logger!.emit(toLogRecord(entry, this.accessLog));
    }
    if (dropped > 0) {
      this.dropped.add(dropped, this.attrs);
      this.losses.record('queue_full', dropped, { queue_size: cap });
    }
  }

  /** Exports everything queued now. */
  async forceFlush(): Promise<void> {
    await this.batcher?.forceFlush();
    await this.provider?.forceFlush();
  }

  /** Records accepted and not yet delivered or failed. */
  get queued(): number {
    return this.inFlight;
  }

  /** What a shutdown cut short by the grace period loses: the records not yet delivered or failed. */
  unflushed(): Record<string, number> {
    return { log_records: this.inFlight };
  }

  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      this.stopped = true;
      // Pending retries fail now; what is queued gets one attempt bounded by `timeout`.
      this.wrapper?.stop();
      const warn = (err: unknown): void => this.settings.logger.warn({ err }, 'otlp logs exporter shutdown');
      await this.batcher?.shutdown().catch(warn);
      await this.provider?.shutdown().catch(warn);
      this.losses.close();
    })();
    return this.shutdownPromise;
  }
}
