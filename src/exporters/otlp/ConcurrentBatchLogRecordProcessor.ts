import { globalErrorHandler, type ExportResult } from '@opentelemetry/core';
import type { LogRecordExporter, LogRecordProcessor, ReadableLogRecord, ReadWriteLogRecord } from '@opentelemetry/sdk-logs';
import { ConcurrentBatcher, type ConcurrentBatchOptions } from './ConcurrentBatcher.js';

/**
 * {@link ConcurrentBatcher} as an sdk-logs LogRecordProcessor: the SDK path
 * of the logs exporter (LoggerProvider -> this -> the SDK's OTLP exporter),
 * kept as the reference the direct encoder is measured and checked against.
 */
export class ConcurrentBatchLogRecordProcessor extends ConcurrentBatcher<ReadableLogRecord> implements LogRecordProcessor {
  constructor(exporter: LogRecordExporter, options: ConcurrentBatchOptions) {
    super(exporter, options);
  }

  onEmit(record: ReadWriteLogRecord): void {
    // After shutdown the LoggerProvider stops calling onEmit.
    this.add(record);
  }

  protected override exportBatch(records: ReadableLogRecord[], onResult: (result: ExportResult) => void): void {
    const resource = records[0]?.resource;
    // Resource detectors may still be resolving attributes; the serializer
    // must see the final ones (as BatchLogRecordProcessor waits for them).
    if (resource?.asyncAttributesPending && resource.waitForAsyncAttributes !== undefined) {
      resource.waitForAsyncAttributes().then(
        () => super.exportBatch(records, onResult),
        (err: unknown) => {
          globalErrorHandler(err as Error);
          super.exportBatch(records, onResult);
        },
      );
    } else {
      super.exportBatch(records, onResult);
    }
  }
}
