import { context } from '@opentelemetry/api';
import { ExportResultCode, globalErrorHandler, suppressTracing, type ExportResult } from '@opentelemetry/core';

/** What a {@link ConcurrentBatcher} hands its batches to (an SDK LogRecordExporter is one). */
export interface BatchExporter<T> {
  export(items: T[], resultCallback: (result: ExportResult) => void): void;
  shutdown(): Promise<void>;
}

/** Options of {@link ConcurrentBatcher}. */
export interface ConcurrentBatchOptions {
  /** Items (log records) per export request (a full batch is exported at once). */
  batchSize: number;
  /** Export requests in flight at most; further full batches wait in order. */
  maxConcurrentExports: number;
  /** A partial batch is exported this long after its first record. */
  flushDelayMillis: number;
}

/** A batch handed to the exporter, numbered in the order it was closed. */
interface Batch<T> {
  seq: number;
  records: T[];
}

/**
 * Batches items (access-log entries, SDK LogRecords) and exports them with up to `maxConcurrentExports`
 * requests in flight — the collector's `sending_queue.num_consumers`.
 *
 * Why not the SDK's BatchLogRecordProcessor: it keeps exactly one export in
 * flight, so the agent's core idles for the whole gRPC round trip (request
 * transfer, the backend's decode, the answer) of every batch; with a backend
 * that retries or answers slowly, that round trip, not the agent, caps the
 * record rate. Here the next batch is serialized while earlier ones travel.
 *
 * It holds no bound of its own: the caller ({@link OtlpLogsExporter}) admits
 * a record only while its count of records queued or in flight is below
 * `sending_queue.queue_size`, and the exporter it is given reports when each
 * batch is finished (delivered or failed), which is what frees that count.
 * A batch in retry backoff keeps its slot, as in the collector. Each export
 * in flight also holds its serialized request (~0.6 MB for 512 access-log
 * records before gzip) and compression state: measured with the backend
 * down, 10 in flight cost ~30 MB more RSS than 1, flat.
 */
export class ConcurrentBatcher<T> {
  private current: T[] = [];
  /** Closed batches waiting for a free export slot, oldest first. */
  private readonly waiting: Array<Batch<T>> = [];
  /** Sequence numbers of the batches being exported. */
  private readonly exporting = new Set<number>();
  private nextSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushWaiters: Array<{ upTo: number; resolve: () => void }> = [];
  private shutdownPromise: Promise<void> | undefined;

  constructor(
    private readonly exporter: BatchExporter<T>,
    private readonly options: ConcurrentBatchOptions,
  ) {}

  /** Batches currently being exported (for tests and self-observation). */
  get exportsInFlight(): number {
    return this.exporting.size;
  }

  add(record: T): void {
    // Records that arrive after shutdown are the caller's to count (it stops admitting first).
    if (this.shutdownPromise !== undefined) return;
    this.current.push(record);
    if (this.current.length >= this.options.batchSize) {
      this.closeCurrent();
      this.pump();
    } else if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.closeCurrent();
        this.pump();
      }, this.options.flushDelayMillis);
      // A pending partial batch must not keep the process alive on its own.
      this.timer.unref();
    }
  }

  /** Exports everything emitted so far; resolves when those batches are finished (delivered or failed). */
  forceFlush(): Promise<void> {
    this.closeCurrent();
    this.pump();
    const upTo = this.nextSeq - 1;
    if (this.finishedUpTo(upTo)) return Promise.resolve();
    return new Promise((resolve) => this.flushWaiters.push({ upTo, resolve }));
  }

  /** Flushes, then shuts the exporter down. Safe to call twice. */
  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      await this.forceFlush();
      await this.exporter.shutdown();
    })();
    return this.shutdownPromise;
  }

  private closeCurrent(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.current.length === 0) return;
    this.waiting.push({ seq: this.nextSeq++, records: this.current });
    this.current = [];
  }

  /** Starts exports while slots are free. */
  private pump(): void {
    while (this.exporting.size < this.options.maxConcurrentExports && this.waiting.length > 0) {
      this.startExport(this.waiting.shift()!);
    }
  }

  private startExport(batch: Batch<T>): void {
    this.exporting.add(batch.seq);
    let done = false;
    const onResult = (_result: ExportResult): void => {
      if (done) return;
      done = true;
      this.exporting.delete(batch.seq);
      this.wakeFlushWaiters();
      // Not synchronously: the SDK exporter still counts the finished request
      // against its concurrency limit until a later microtask, and an export
      // started before then would be refused ("Concurrent export limit
      // reached") and cost a retry backoff.
      if (this.waiting.length > 0) setImmediate(() => this.pump());
    };
    this.exportBatch(batch.records, onResult);
  }

  /** Hands one batch to the exporter; `onResult` must be called once it is finished. */
  protected exportBatch(records: T[], onResult: (result: ExportResult) => void): void {
    try {
      // As the SDK's processors do: an export must not itself be traced.
      context.with(suppressTracing(context.active()), () => this.exporter.export(records, onResult));
    } catch (err) {
      globalErrorHandler(err as Error);
      onResult({ code: ExportResultCode.FAILED, error: err as Error });
    }
  }

  /** True when no batch numbered <= upTo is waiting or being exported. */
  private finishedUpTo(upTo: number): boolean {
    if (this.waiting.length > 0 && this.waiting[0]!.seq <= upTo) return false;
    for (const seq of this.exporting) if (seq <= upTo) return false;
    return true;
  }

  private wakeFlushWaiters(): void {
    if (this.flushWaiters.length === 0) return;
    const still: typeof this.flushWaiters = [];
    for (const w of this.flushWaiters) {
      if (this.finishedUpTo(w.upTo)) w.resolve();
      else still.push(w);
    }
    this.flushWaiters = still;
  }
}
