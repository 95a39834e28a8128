/**
 * The two ways an OTLP exporter of this package sends a batch, whatever the
 * signal: through an SDK exporter ({@link RetryingCountingExporter}, the
 * reference path) or as bytes from a direct encoder ({@link EncodingExporter}).
 * Both retry a failed batch (`retry_on_failure`, {@link Retrier}), report
 * each batch's completion (count, outcome, error) so the exporter can count
 * sent / failed items and its queue can account for items in flight, and
 * stop retrying at shutdown (a dead backend then costs one attempt, bounded
 * by `timeout`). One implementation for logs and traces, so the counting and
 * loss rules cannot drift apart between signals.
 */
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { BatchExporter } from './ConcurrentBatcher.js';
import type { Retrier } from './retry.js';
import type { EncodedExporter, EncodedRequest } from './transport.js';

/** Completion of one batch: its item count, whether it was delivered, and why not. */
export type BatchDone = (count: number, ok: boolean, error?: Error) => void;

/** The shape the SDK's LogRecordExporter and SpanExporter share. */
export interface SdkExporter<T> {
  export(items: T[], resultCallback: (result: ExportResult) => void): void;
  forceFlush?(): Promise<void>;
  shutdown(): Promise<void>;
}

/** An SDK exporter with retries and completion reports (the SDK path). */
export class RetryingCountingExporter<T> implements SdkExporter<T> {
  constructor(
    private readonly inner: SdkExporter<T>,
    private readonly retrier: Retrier,
    private readonly onDone: BatchDone,
  ) {}

  export(items: T[], resultCallback: (result: ExportResult) => void): void {
    this.retrier.run(
      (cb) => this.inner.export(items, cb),
      (result) => {
        this.onDone(items.length, result.code === ExportResultCode.SUCCESS, result.error);
        resultCallback(result);
      },
    );
  }

  /** Stops retrying: pending retries fail now, later failures are final. */
  stop(): void {
    this.retrier.stop();
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
 * The direct path: encodes a batch once, then sends those bytes with
 * retries (a retry resends the same bytes). A batch that cannot be encoded
 * (a bug, not bad input: the encoders take any attribute value) fails and is
 * counted through `onDone`, never thrown.
 */
export class EncodingExporter<T> implements BatchExporter<T> {
  constructor(
    private readonly encoder: { encode(items: T[]): EncodedRequest },
    private readonly inner: EncodedExporter,
    private readonly retrier: Retrier,
    private readonly resource: Resource,
    private readonly onDone: BatchDone,
    private readonly onEncodeError: (err: unknown) => void,
  ) {}

  export(items: T[], resultCallback: (result: ExportResult) => void): void {
    const send = (): void => {
      let request: EncodedRequest;
      try {
        request = this.encoder.encode(items);
      } catch (err) {
        this.onEncodeError(err);
        this.onDone(items.length, false, err as Error);
        resultCallback({ code: ExportResultCode.FAILED, error: err as Error });
        return;
      }
      this.retrier.run(
        (cb) => this.inner.export(request, cb),
        (result) => {
          // The last attempt is over; over gRPC nothing reads the bytes any more.
          if (this.inner.bytesFreeAfterExport === true) request.release?.();
          this.onDone(items.length, result.code === ExportResultCode.SUCCESS, result.error);
          resultCallback(result);
        },
      );
    };
    // Resource detectors may still be resolving attributes; the encoder must
    // see the final ones (as the SDK's batch processors wait for them).
    if (this.resource.asyncAttributesPending && this.resource.waitForAsyncAttributes !== undefined) {
      this.resource.waitForAsyncAttributes().then(send, send);
    } else {
      send();
    }
  }

  /** Stops retrying: pending retries fail now, later failures are final. */
  stop(): void {
    this.retrier.stop();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  shutdown(): Promise<void> {
    this.stop();
    return this.inner.shutdown();
  }
}
