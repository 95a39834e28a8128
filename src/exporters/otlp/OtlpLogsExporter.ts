import { LoggerProvider, type ReadableLogRecord } from '@opentelemetry/sdk-logs';
import type { CreateSettings, LogsExporter } from '../../component/component.js';
import type { AccessLogEntry, LogsBatch } from '../../model/logs.js';
import type { MetricSchema } from '../../metrics/schema.js';
import { schemaByName } from '../../metrics/schemas/registry.js';
import { BatchingOtlpExporter, type BatchingSignal, type SdkPath } from './BatchingOtlpExporter.js';
import type { OtlpCommonConfig } from './config.js';
import { ConcurrentBatchLogRecordProcessor } from './ConcurrentBatchLogRecordProcessor.js';
import type { ConcurrentBatchOptions } from './ConcurrentBatcher.js';
import { AccessLogEncoder } from './encoding/LogsEncoder.js';
import { RetryingCountingExporter, type BatchDone } from './exportWrappers.js';
import { toLogRecord } from './logRecord.js';
import type { Retrier } from './retry.js';
import type { OtlpProtocol } from './transport.js';

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

/** The logs exporter's self-telemetry names. */
const LOGS: BatchingSignal = {
  signal: 'logs',
  items: 'log_records',
  counters: {
    sent: { name: 'exporter_sent_log_records', description: 'Log records the exporter delivered' },
    failed: { name: 'exporter_send_failed_log_records', description: 'Log records in export requests that failed after retries' },
    dropped: { name: 'exporter_dropped_log_records', description: 'Log records the exporter dropped (queue or buffer full, or shut down)' },
  },
};

/**
 * Access logs as OpenTelemetry LogRecords over OTLP (gRPC or HTTP): one record per
 * AccessLogEntry (the content {@link toLogRecord} describes), batched with up to
 * `sending_queue.num_consumers` exports in flight behind a bounded queue
 * ({@link BatchingOtlpExporter}: records beyond `sending_queue.queue_size`
 * are dropped and counted in `kmesh_otel_exporter_dropped_log_records`).
 */
export class OtlpLogsExporter extends BatchingOtlpExporter<AccessLogEntry> implements LogsExporter {
  /** The schema's record form (semconv), else undefined: the Kmesh line and attributes. */
  private readonly accessLog: MetricSchema['accessLog'];

  constructor(
    settings: CreateSettings,
    config: OtlpCommonConfig,
    protocol: OtlpProtocol = 'grpc',
    /** Jitter source of the retries (tests). */
    random: () => number = Math.random,
    /** `sdk`: the reference path (benchmarks, tests); not a config key. */
    encoding: LogsEncoding = 'direct',
  ) {
    super(settings, config, LOGS, protocol, random, encoding === 'sdk');
    this.accessLog = schemaByName(config.schema).accessLog;
  }

  protected encoder(): AccessLogEncoder {
    return new AccessLogEncoder(this.settings.resource, undefined, this.accessLog);
  }

  /** toLogRecord, logger.emit through sdk-logs, and the SDK exporter with its serializer. */
  protected sdkPath(retrier: Retrier, onDone: BatchDone, options: ConcurrentBatchOptions): SdkPath<AccessLogEntry> {
    const wrapper = new RetryingCountingExporter<ReadableLogRecord>(this.transport.logExporter(), retrier, onDone);
    const provider = new LoggerProvider({ resource: this.settings.resource, processors: [new ConcurrentBatchLogRecordProcessor(wrapper, options)] });
    const logger = provider.getLogger('kmesh-otel');
    return {
      add: (entry) => logger.emit(toLogRecord(entry, this.accessLog)),
      stop: () => wrapper.stop(),
      forceFlush: () => provider.forceFlush(),
      shutdown: () => provider.shutdown(),
    };
  }

  consumeLogs(batch: LogsBatch): void {
    this.accept(batch.entries);
  }
}
