import { SpanKind, SpanStatusCode, TraceFlags, type Counter, type HrTime, type SpanContext } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace';
import type { CreateSettings, Host, TracesExporter } from '../../component/component.js';
import { connectionSpanAttributes, ERROR_TYPE, spanName, type ConnectionSpan, type TracesBatch } from '../../model/traces.js';
import type { OtlpCommonConfig } from './config.js';
import { hrTimeOfUnixNano } from './logRecord.js';
import { Retrier } from './retry.js';
import { QUEUE_CAPACITY_GAUGE, QUEUE_SIZE_GAUGE } from './selfMetrics.js';
import { OtlpTransport, type OtlpProtocol } from './transport.js';

const SCOPE = { name: 'kmesh-otel' };

/**
 * The SDK's ReadableSpan of one connection span, ready for the SDK's OTLP
 * exporters: ids, kind, parent, times, status and attributes as the model
 * gives them (the spans were never live SDK spans, so nothing is generated
 * here). A failed connect has status ERROR with its errno name as message.
 */
export function toReadableSpan(span: ConnectionSpan, resource: Resource): ReadableSpan {
  const { traceId, spanId, parentSpanId } = span.context;
  const context: SpanContext = { traceId, spanId, traceFlags: TraceFlags.SAMPLED };
  // The parent is the client's span, reported by the other socket (maybe another agent): remote.
  const parent: SpanContext | undefined = parentSpanId === undefined ? undefined : { traceId, spanId: parentSpanId, traceFlags: TraceFlags.SAMPLED, isRemote: true };
  const failure = span.event.failure;
  const durationNs = span.endUnixNano - span.startUnixNano;
  const duration: HrTime = [Number(durationNs / 1_000_000_000n), Number(durationNs % 1_000_000_000n)];
  return {
    name: spanName(span),
    kind: span.kind === 'CLIENT' ? SpanKind.CLIENT : SpanKind.SERVER,
    spanContext: () => context,
    parentSpanContext: parent,
    startTime: hrTimeOfUnixNano(span.startUnixNano),
    endTime: hrTimeOfUnixNano(span.endUnixNano),
    status: failure === undefined ? { code: SpanStatusCode.UNSET } : { code: SpanStatusCode.ERROR, message: ERROR_TYPE[failure] },
    attributes: connectionSpanAttributes(span),
    links: [],
    events: [],
    duration,
    ended: true,
    resource,
    instrumentationScope: SCOPE,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

/** Retries a failed batch and reports completion, as the logs exporter's wrapper does. */
class RetryingCountingSpanExporter implements SpanExporter {
  constructor(
    private readonly inner: SpanExporter,
    private readonly retrier: Retrier,
    private readonly onDone: (count: number, ok: boolean) => void,
  ) {}

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.retrier.run(
      (cb) => this.inner.export(spans, cb),
      (result) => {
        this.onDone(spans.length, result.code === ExportResultCode.SUCCESS);
        resultCallback(result);
      },
    );
  }

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
 * Connection spans over OTLP (gRPC or HTTP/protobuf), batched by the SDK's
 * BatchSpanProcessor behind the same bounded queue as the logs exporter:
 * spans accepted and not yet finished (buffered, in flight or waiting for a
 * retry) never exceed `sending_queue.queue_size`; beyond it new spans are
 * dropped and counted in `kmesh_otel_exporter_dropped_spans` (the SDK's own
 * queue, of that size, therefore never drops silently).
 */
export class OtlpTracesExporter implements TracesExporter {
  private processor: BatchSpanProcessor | undefined;
  private wrapper: RetryingCountingSpanExporter | undefined;
  private inFlight = 0;
  private stopped = false;
  private shutdownPromise: Promise<void> | undefined;
  private readonly attrs: { exporter: string };
  private readonly sent: Counter;
  private readonly failed: Counter;
  private readonly dropped: Counter;
  private readonly transport: OtlpTransport;

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: OtlpCommonConfig,
    protocol: OtlpProtocol = 'grpc',
    private readonly random: () => number = Math.random,
  ) {
    this.attrs = { exporter: settings.id.toString() };
    const t = settings.telemetry;
    this.sent = t.counter('exporter_sent_spans', 'Spans the exporter delivered');
    this.failed = t.counter('exporter_send_failed_spans', 'Spans in export requests that failed after retries');
    this.dropped = t.counter('exporter_dropped_spans', 'Spans the exporter dropped (queue full, or shut down)');
    t.gauge(QUEUE_SIZE_GAUGE.name, QUEUE_SIZE_GAUGE.description, () => (this.stopped ? [] : [[this.inFlight, { ...this.attrs, signal: 'traces' }]]));
    t.gauge(QUEUE_CAPACITY_GAUGE.name, QUEUE_CAPACITY_GAUGE.description, () =>
      this.stopped ? [] : [[this.config.sending_queue.queue_size, { ...this.attrs, signal: 'traces' }]],
    );
    this.transport = new OtlpTransport(protocol, config, settings.id.toString());
  }

  async start(_host: Host): Promise<void> {
    if (this.stopped || this.processor !== undefined) return;
    const c = this.config;
    const q = c.sending_queue;
    this.wrapper = new RetryingCountingSpanExporter(this.transport.traceExporter(), new Retrier(c.retry_on_failure, this.random), (n, ok) => {
      this.inFlight -= n;
      if (ok) this.sent.add(n, this.attrs);
      else this.failed.add(n, this.attrs);
    });
    const batchSize = q.batch.min_size > 0 ? q.batch.min_size : q.batch.max_size > 0 ? q.batch.max_size : 1;
    this.processor = new BatchSpanProcessor({
      exporter: this.wrapper,
      maxQueueSize: q.queue_size,
      maxExportBatchSize: Math.min(batchSize, q.queue_size),
      scheduledDelayMillis: Math.max(1, q.batch.flush_timeout),
      // The wrapper's retries are bounded by retry_on_failure; each attempt by `timeout`.
      exportTimeoutMillis: Math.max(1, c.timeout) * 2 + (c.retry_on_failure.enabled ? c.retry_on_failure.max_elapsed_time : 0),
    });
  }

  consumeTraces(batch: TracesBatch): void {
    const processor = this.processor;
    if (this.stopped || processor === undefined) {
      if (batch.spans.length > 0) this.dropped.add(batch.spans.length, this.attrs);
      return;
    }
    const cap = this.config.sending_queue.queue_size;
    let dropped = 0;
    for (const span of batch.spans) {
      if (this.inFlight >= cap) {
        dropped++;
        continue;
      }
      this.inFlight++;
      processor.onEnd(toReadableSpan(span, this.settings.resource));
    }
    if (dropped > 0) this.dropped.add(dropped, this.attrs);
  }

  /** Exports everything queued now. */
  async forceFlush(): Promise<void> {
    await this.processor?.forceFlush();
  }

  /** Spans accepted and not yet delivered or failed. */
  get queued(): number {
    return this.inFlight;
  }

  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      this.stopped = true;
      this.wrapper?.stop();
      await this.processor?.shutdown().catch((err: unknown) => {
        this.settings.logger.warn({ err }, 'otlp traces exporter shutdown');
      });
    })();
    return this.shutdownPromise;
  }
}
