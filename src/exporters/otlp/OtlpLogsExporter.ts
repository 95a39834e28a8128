import type { Counter } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-grpc';
import {
  LoggerProvider,
  type LogRecordExporter,
  type ReadableLogRecord,
} from '@opentelemetry/sdk-logs';
import type { Logger } from '@opentelemetry/api';
import type { CreateSettings, Host, LogsExporter } from '../../component/component.js';
import type { LogsBatch } from '../../model/logs.js';
import type { OtlpConfig } from './config.js';
import { ConcurrentBatchLogRecordProcessor } from './ConcurrentBatchLogRecordProcessor.js';
import { grpcExporterOptions } from './grpcOptions.js';
import { toLogRecord } from './logRecord.js';

/** A partial batch waits this long for more records before it is exported (the SDK BatchLogRecordProcessor's default delay). */
const PARTIAL_BATCH_DELAY_MS = 1000;

/** Backoff growth between retries, as the collector's exporterhelper. */
const BACKOFF_MULTIPLIER = 1.5;

/**
 * Wraps the OTLP log exporter: retries a failed batch with exponential
 * backoff for up to `max_elapsed_time` (collector `retry_on_failure`), counts
 * sent / failed records, and reports completion so the queue can account for
 * records in flight. Stopping cancels pending retries (a shutdown with a dead
 * backend takes one attempt, bounded by `timeout`).
 */
class RetryingCountingLogExporter implements LogRecordExporter {
  private stopping = false;
  private readonly pending = new Set<{ timer: NodeJS.Timeout; fail: () => void }>();

  constructor(
    private readonly inner: LogRecordExporter,
    private readonly retry: OtlpConfig['retry_on_failure'],
    private readonly onDone: (count: number, ok: boolean) => void,
  ) {}

  export(records: ReadableLogRecord[], resultCallback: (result: ExportResult) => void): void {
    const started = Date.now();
    let backoff = Math.max(1, this.retry.initial_interval);
    const attempt = (): void => {
      let settled = false;
      const onResult = (result: ExportResult): void => {
        if (settled) return;
        settled = true;
        if (result.code === ExportResultCode.SUCCESS) return finish(result);
        const wait = Math.min(backoff, this.retry.max_interval);
        backoff *= BACKOFF_MULTIPLIER;
        if (!this.retry.enabled || this.stopping || Date.now() - started + wait > this.retry.max_elapsed_time) {
          return finish(result);
        }
        const entry = {
          timer: setTimeout(() => {
            this.pending.delete(entry);
            attempt();
          }, wait),
          fail: () => finish(result),
        };
        this.pending.add(entry);
      };
      try {
        this.inner.export(records, onResult);
      } catch (err) {
        onResult({ code: ExportResultCode.FAILED, error: err as Error });
      }
    };
    let finished = false;
    const finish = (result: ExportResult): void => {
      if (finished) return;
      finished = true;
      this.onDone(records.length, result.code === ExportResultCode.SUCCESS);
      resultCallback(result);
    };
    attempt();
  }

  /** Stops retrying: pending retries fail now, later failures are final. */
  stop(): void {
    this.stopping = true;
    for (const p of this.pending) {
      clearTimeout(p.timer);
      p.fail();
    }
    this.pending.clear();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }

  shutdown(): Promise<void> {
    this.stop();
    return this.inner.shutdown();
  }
}

/**
 * Access logs as OpenTelemetry LogRecords over OTLP/gRPC: one record per
 * AccessLogEntry (see {@link toLogRecord}), batched with up to
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
  private wrapper: RetryingCountingLogExporter | undefined;
  private inFlight = 0;
  private stopped = false;
  private shutdownPromise: Promise<void> | undefined;
  private readonly attrs: { exporter: string };
  private readonly sent: Counter;
  private readonly failed: Counter;
  private readonly dropped: Counter;

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: OtlpConfig,
  ) {
    this.attrs = { exporter: settings.id.toString() };
    const t = settings.telemetry;
    this.sent = t.counter('exporter_sent_log_records', 'Log records the exporter delivered');
    this.failed = t.counter('exporter_send_failed_log_records', 'Log records in export requests that failed after retries');
    this.dropped = t.counter('exporter_dropped_log_records', 'Log records the exporter dropped (queue or buffer full, or shut down)');
    t.gauge('exporter_queue_size', 'Log records queued or in flight in the exporter', () =>
      this.stopped ? [] : [[this.inFlight, { ...this.attrs, signal: 'logs' }]],
    );
    t.gauge('exporter_queue_capacity', 'Capacity of the exporter queue (log records)', () =>
      this.stopped ? [] : [[this.config.sending_queue.queue_size, { ...this.attrs, signal: 'logs' }]],
    );
    grpcExporterOptions(config);
  }

  async start(_host: Host): Promise<void> {
    if (this.stopped || this.provider !== undefined) return;
    const c = this.config;
    const consumers = c.sending_queue.num_consumers;
    // The SDK exporter refuses requests beyond its concurrency limit (default
    // 30, which the schema caps num_consumers at); the processor never has
    // more than num_consumers attempts in flight, and retries wait out their
    // backoff outside it.
    const inner = new OTLPLogExporter({ ...grpcExporterOptions(c) });
    this.wrapper = new RetryingCountingLogExporter(inner, c.retry_on_failure, (n, ok) => {
      this.inFlight -= n;
      if (ok) this.sent.add(n, this.attrs);
      else this.failed.add(n, this.attrs);
    });
    const processor = new ConcurrentBatchLogRecordProcessor(this.wrapper, {
      batchSize: Math.min(c.sending_queue.batch_size, c.sending_queue.queue_size),
      maxConcurrentExports: consumers,
      flushDelayMillis: PARTIAL_BATCH_DELAY_MS,
    });
    this.provider = new LoggerProvider({ resource: this.settings.resource, processors: [processor] });
    this.logger = this.provider.getLogger('kmesh-otel');
  }

  consumeLogs(batch: LogsBatch): void {
    const logger = this.logger;
    if (this.stopped || logger === undefined) {
      if (batch.entries.length > 0) this.dropped.add(batch.entries.length, this.attrs);
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
      logger.emit(toLogRecord(entry));
    }
    if (dropped > 0) this.dropped.add(dropped, this.attrs);
  }

  /** Exports everything queued now. */
  async forceFlush(): Promise<void> {
    await this.provider?.forceFlush();
  }

  /** Records accepted and not yet delivered or failed. */
  get queued(): number {
    return this.inFlight;
  }

  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      this.stopped = true;
      // Pending retries fail now; what is queued gets one attempt bounded by `timeout`.
      this.wrapper?.stop();
      await this.provider?.shutdown().catch((err: unknown) => {
        this.settings.logger.warn({ err }, 'otlp logs exporter shutdown');
      });
    })();
    return this.shutdownPromise;
  }
}
