import { SpanKind, SpanStatusCode, TraceFlags, type Counter, type HrTime, type SpanContext } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import type { CreateSettings, Host, TracesExporter } from '../../component/component.js';
import { connectionSpanAttributes, ERROR_TYPE, spanName, type ConnectionSpan, type TracesBatch } from '../../model/traces.js';
import type { OtlpCommonConfig } from './config.js';
import { ConcurrentBatcher } from './ConcurrentBatcher.js';
import { ConnectionSpanEncoder, SPAN_SCOPE } from './encoding/SpansEncoder.js';
import { hrTimeOfUnixNano } from './logRecord.js';
import { LossLog } from '../../telemetry/LossLog.js';
import { EncodingExporter, RetryingCountingExporter } from './exportWrappers.js';
import { Retrier } from './retry.js';
import { QUEUE_CAPACITY_GAUGE, QUEUE_SIZE_GAUGE } from './selfMetrics.js';
import { OtlpTransport, type OtlpProtocol } from './transport.js';

const SCOPE = SPAN_SCOPE;

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

/**
 * How connection spans become OTLP requests:
 * - `direct` (the agent's): {@link ConnectionSpanEncoder} encodes each batch
 *   straight to protobuf, splicing cached bytes for what repeats, batched
 *   with up to `sending_queue.num_consumers` exports in flight
 *   ({@link ConcurrentBatcher}, as the logs exporter);
 * - `sdk`: {@link toReadableSpan}, the SDK's BatchSpanProcessor (one export
 *   in flight) and the SDK exporter's own serializer — the reference the
 *   direct path is checked against
 *   (test/exporters/otlp/spansEncodingEquivalence.test.ts) and measured
 *   against (bench/traces.ts).
 */
export type TracesEncoding = 'direct' | 'sdk';

/**
 * Connection spans over OTLP (gRPC or HTTP/protobuf), batched behind the same
 * bounded queue as the logs exporter: spans accepted and not yet finished
 * (buffered, in flight or waiting for a retry) never exceed
 * `sending_queue.queue_size`; beyond it new spans are dropped and counted in
 * `kmesh_otel_exporter_dropped_spans` (the SDK path's own queue, of that
 * size, therefore never drops silently).
 */
export class OtlpTracesExporter implements TracesExporter {
  private processor: BatchSpanProcessor | undefined;
  private wrapper: RetryingCountingExporter<ReadableSpan> | EncodingExporter<ConnectionSpan> | undefined;
  /** The direct path's batcher (encoding `direct`). */
  private batcher: ConcurrentBatcher<ConnectionSpan> | undefined;
  private started = false;
  private inFlight = 0;
  private stopped = false;
  private shutdownPromise: Promise<void> | undefined;
  private readonly attrs: { exporter: string };
  private readonly sent: Counter;
  private readonly failed: Counter;
  private readonly dropped: Counter;
  /** Failures and drops, logged rate-limited with their counts (as for the other signals). */
  private readonly losses: LossLog;
  private readonly transport: OtlpTransport;

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: OtlpCommonConfig,
    protocol: OtlpProtocol = 'grpc',
    /** Jitter source of the retries (tests). */
    private readonly random: () => number = Math.random,
    /** `sdk`: the reference path (benchmarks, tests); not a config key. */
    private readonly encoding: TracesEncoding = 'direct',
  ) {
    this.attrs = { exporter: settings.id.toString() };
    const t = settings.telemetry;
    this.sent = t.counter('exporter_sent_spans', 'Spans the exporter delivered');
    this.failed = t.counter('exporter_send_failed_spans', 'Spans in export requests that failed after retries');
    this.dropped = t.counter('exporter_dropped_spans', 'Spans the exporter dropped (queue full, or shut down)');
    // Loss series exist from start-up at 0 ("no loss" is a value to alert on).
    this.failed.add(0, this.attrs);
    this.dropped.add(0, this.attrs);
    this.losses = new LossLog(settings.logger, t, { ...this.attrs, signal: 'traces' }, ['export_failed', 'queue_full', 'shut_down']);
    t.gauge(QUEUE_SIZE_GAUGE.name, QUEUE_SIZE_GAUGE.description, () => (this.stopped ? [] : [[this.inFlight, { ...this.attrs, signal: 'traces' }]]));
    t.gauge(QUEUE_CAPACITY_GAUGE.name, QUEUE_CAPACITY_GAUGE.description, () =>
      this.stopped ? [] : [[this.config.sending_queue.queue_size, { ...this.attrs, signal: 'traces' }]],
    );
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
    const retrier = new Retrier(c.retry_on_failure, this.random);
    // A batch closes at min_size spans (max_size when only that is set), or
    // flush_timeout after its first span; never above queue_size.
    const batchSize = q.batch.min_size > 0 ? q.batch.min_size : q.batch.max_size > 0 ? q.batch.max_size : 1;
    if (this.encoding === 'direct') {
      const wrapper = new EncodingExporter<ConnectionSpan>(
        new ConnectionSpanEncoder(this.settings.resource),
        this.transport.encodedExporter('traces'),
        retrier,
        this.settings.resource,
        onDone,
        (err) => this.settings.logger.warn({ err }, 'otlp traces exporter: cannot encode a batch; its spans count as send_failed'),
      );
      this.wrapper = wrapper;
      this.batcher = new ConcurrentBatcher(wrapper, {
        batchSize: Math.min(batchSize, q.queue_size),
        // Queue disabled: one export at a time, as the SDK's BatchSpanProcessor.
        maxConcurrentExports: q.enabled ? q.num_consumers : 1,
        flushDelayMillis: Math.max(1, q.batch.flush_timeout),
      });
      return;
    }
    this.wrapper = new RetryingCountingExporter<ReadableSpan>(this.transport.traceExporter(), retrier, onDone);
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
    const { batcher, processor } = this;
    if (this.stopped || (batcher === undefined && processor === undefined)) {
      if (batch.spans.length > 0) {
        this.dropped.add(batch.spans.length, this.attrs);
        this.losses.record('shut_down', batch.spans.length);
      }
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
      if (batcher !== undefined) batcher.add(span);
      else processor!.onEnd(toReadableSpan(span, this.settings.resource));
    }
    if (dropped > 0) {
      this.dropped.add(dropped, this.attrs);
      this.losses.record('queue_full', dropped, { queue_size: cap });
    }
  }

  /** Exports everything queued now. */
  async forceFlush(): Promise<void> {
    await this.batcher?.forceFlush();
    await this.processor?.forceFlush();
  }

  /** Spans accepted and not yet delivered or failed. */
  get queued(): number {
    return this.inFlight;
  }

  /** What a shutdown cut short by the grace period loses: the spans not yet delivered or failed. */
  unflushed(): Record<string, number> {
    return { spans: this.inFlight };
  }

  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      this.stopped = true;
      // Pending retries fail now; what is queued gets one attempt bounded by `timeout`.
      this.wrapper?.stop();
      const warn = (err: unknown): void => this.settings.logger.warn({ err }, 'otlp traces exporter shutdown');
      await this.batcher?.shutdown().catch(warn);
      await this.processor?.shutdown().catch(warn);
      this.losses.close();
    })();
    return this.shutdownPromise;
  }
}
