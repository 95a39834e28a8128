import type { CreateSettings, Host, TracesExporter } from '../../component/component.js';
import { ERROR_TYPE, spanName, type ConnectionSpan, type TracesBatch } from '../../model/traces.js';
import { formatAddr, formatKmeshTime, nsToMsString } from '../common/accessLogLine.js';
import type { DebugConfig } from './config.js';
import { CountedLineOutput, type DebugOutput } from './DebugExporter.js';

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
  private readonly lines: CountedLineOutput;

  constructor(settings: CreateSettings, config: DebugConfig, output: DebugOutput = {}) {
    this.lines = new CountedLineOutput(settings, config.max_buffered_bytes, output, 'traces', {
      sent: { name: 'exporter_sent_spans', description: 'Spans the exporter delivered' },
      dropped: { name: 'exporter_dropped_spans', description: 'Spans the exporter dropped (queue full, or shut down)' },
    });
  }

  async start(_host: Host): Promise<void> {}

  consumeTraces(batch: TracesBatch): void {
    this.lines.write(batch.spans, formatSpanLine);
  }

  async shutdown(): Promise<void> {
    this.lines.close();
  }
}
