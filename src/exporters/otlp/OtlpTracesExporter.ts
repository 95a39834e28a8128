import { SpanKind, SpanStatusCode, TraceFlags, type HrTime, type SpanContext } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace';
import type { CreateSettings, TracesExporter } from '../../component/component.js';
import { connectionSpanAttributes, ERROR_TYPE, spanName, type ConnectionSpan, type TracesBatch } from '../../model/traces.js';
import { BatchingOtlpExporter, type BatchingSignal, type SdkPath } from './BatchingOtlpExporter.js';
import type { OtlpCommonConfig } from './config.js';
import type { ConcurrentBatchOptions } from './ConcurrentBatcher.js';
import { ConnectionSpanEncoder, SPAN_SCOPE } from './encoding/SpansEncoder.js';
import { RetryingCountingExporter, type BatchDone } from './exportWrappers.js';
import { hrTimeOfUnixNano } from './logRecord.js';
import type { Retrier } from './retry.js';
import type { OtlpProtocol } from './transport.js';

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

/** The traces exporter's self-telemetry names. */
const TRACES: BatchingSignal = {
  signal: 'traces',
  items: 'spans',
  counters: {
    sent: { name: 'exporter_sent_spans', description: 'Spans the exporter delivered' },
    failed: { name: 'exporter_send_failed_spans', description: 'Spans in export requests that failed after retries' },
    dropped: { name: 'exporter_dropped_spans', description: 'Spans the exporter dropped (queue full, or shut down)' },
  },
};

/**
 * Connection spans over OTLP (gRPC or HTTP/protobuf), batched behind the same
 * bounded queue as the logs exporter ({@link BatchingOtlpExporter}): spans
 * beyond `sending_queue.queue_size` are dropped and counted in
 * `kmesh_otel_exporter_dropped_spans` (the SDK path's own queue, of that
 * size, therefore never drops silently).
 */
export class OtlpTracesExporter extends BatchingOtlpExporter<ConnectionSpan> implements TracesExporter {
  constructor(
    settings: CreateSettings,
    config: OtlpCommonConfig,
    protocol: OtlpProtocol = 'grpc',
    /** Jitter source of the retries (tests). */
    random: () => number = Math.random,
    /** `sdk`: the reference path (benchmarks, tests); not a config key. */
    encoding: TracesEncoding = 'direct',
  ) {
    super(settings, config, TRACES, protocol, random, encoding === 'sdk');
  }

  protected encoder(): ConnectionSpanEncoder {
    return new ConnectionSpanEncoder(this.settings.resource);
  }

  /** toReadableSpan, the SDK's BatchSpanProcessor (one export in flight) and the SDK exporter with its serializer. */
  protected sdkPath(retrier: Retrier, onDone: BatchDone, options: ConcurrentBatchOptions): SdkPath<ConnectionSpan> {
    const c = this.config;
    const wrapper = new RetryingCountingExporter<ReadableSpan>(this.transport.traceExporter(), retrier, onDone);
    const processor = new BatchSpanProcessor({
      exporter: wrapper,
      maxQueueSize: c.sending_queue.queue_size,
      maxExportBatchSize: options.batchSize,
      scheduledDelayMillis: options.flushDelayMillis,
      // The wrapper's retries are bounded by retry_on_failure; each attempt by `timeout`.
      exportTimeoutMillis: Math.max(1, c.timeout) * 2 + (c.retry_on_failure.enabled ? c.retry_on_failure.max_elapsed_time : 0),
    });
    return {
      add: (span) => processor.onEnd(toReadableSpan(span, this.settings.resource)),
      stop: () => wrapper.stop(),
      forceFlush: () => processor.forceFlush(),
      shutdown: () => processor.shutdown(),
    };
  }

  consumeTraces(batch: TracesBatch): void {
    this.accept(batch.spans);
  }
}
