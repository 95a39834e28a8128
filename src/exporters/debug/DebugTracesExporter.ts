import type { Counter } from '@opentelemetry/api';
import type { CreateSettings, Host, TracesExporter } from '../../component/component.js';
import { ERROR_TYPE, spanName, type ConnectionSpan, type TracesBatch } from '../../model/traces.js';
import { LossLog } from '../../telemetry/LossLog.js';
import { formatAddr, formatKmeshTime, nsToMsString } from '../common/accessLogLine.js';
import type { DebugConfig } from './config.js';
import { BoundedWriter, type DebugOutput } from './DebugExporter.js';

/**
 * One line per span, in the access-log line's style (start time first,
 * `key=value` fields):
 * `span: 2026-12-05 17:39:57.123456789 +0000 UTC trace_id=… span_id=… parent_span_id=… kind=CLIENT name="tcp connect …:80" src.addr=… dst.addr=… duration=2.5ms sent_bytes=… received_bytes=… status=OK`
 * (`status=ERROR error.type=ECONNREFUSED` for a failed connect; `parent_span_id=-` on a root span).
 */
export function formatSpanLine(span: ConnectionSpan): string {
  const e = span.event;
  const c = span.context;
  const status = e.failure === undefined ? 'status=OK' : `status=ERROR error.type=${ERROR_TYPE[e.failure]}`;
  return (
    `span: ${formatKmeshTime(span.startUnixNano)} trace_id=${c.traceId} span_id=${c.spanId} parent_span_id=${c.parentSpanId ?? '-'} ` +
    `kind=${span.kind} name=${JSON.stringify(spanName(span))} src.addr=${formatAddr(e.srcAddr, e.srcPort)}, dst.addr=${formatAddr(e.dstAddr, e.dstPort)}, ` +
    `duration=${nsToMsString(Number(span.endUnixNano - span.startUnixNano))}ms sent_bytes=${e.sentBytes} received_bytes=${e.receivedBytes} ${status}`
  );
}

/** Connection spans to stdout, one line each ({@link formatSpanLine}); bounded like the logs exporter. */
export class DebugTracesExporter implements TracesExporter {
  private readonly writer: BoundedWriter;
  private readonly sent: Counter;
  private readonly dropped: Counter;
  private readonly attrs: { exporter: string };
  /** Drops, logged rate-limited with their counts. */
  private readonly losses: LossLog;
  private stopped = false;
  private readonly maxBufferedBytes: number;

  constructor(settings: CreateSettings, config: DebugConfig, output: DebugOutput = {}) {
    this.writer = new BoundedWriter(output.stream ?? process.stdout, config.max_buffered_bytes);
    this.attrs = { exporter: settings.id.toString() };
    this.sent = settings.telemetry.counter('exporter_sent_spans', 'Spans the exporter delivered');
    this.dropped = settings.telemetry.counter('exporter_dropped_spans', 'Spans the exporter dropped (queue full, or shut down)');
    // The loss series exists from start-up at 0.
    this.dropped.add(0, this.attrs);
    this.losses = new LossLog(settings.logger, settings.telemetry, { ...this.attrs, signal: 'traces' }, ['output_buffer_full', 'shut_down']);
    this.maxBufferedBytes = config.max_buffered_bytes;
  }

  async start(_host: Host): Promise<void> {}

  consumeTraces(batch: TracesBatch): void {
    const n = batch.spans.length;
    if (n === 0) return;
    if (this.stopped) {
      this.dropped.add(n, this.attrs);
      this.losses.record('shut_down', n);
      return;
    }
    let text = '';
    for (const span of batch.spans) text += formatSpanLine(span) + '\n';
    if (this.writer.write(text)) this.sent.add(n, this.attrs);
    else {
      this.dropped.add(n, this.attrs);
      this.losses.record('output_buffer_full', n, { max_buffered_bytes: this.maxBufferedBytes });
    }
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    this.losses.close();
  }
}
