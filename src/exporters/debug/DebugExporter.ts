import type { Attributes, Counter } from '@opentelemetry/api';
import type { Writable } from 'node:stream';
import type { CreateSettings, Host, LogsExporter, MetricsExporter } from '../../component/component.js';
import type { LogsBatch } from '../../model/logs.js';
import type { MetricsBatch } from '../../model/metrics.js';
import type { SeriesStore } from '../../metrics/SeriesStore.js';
import { formatJsonLine, formatKmeshLine } from '../common/accessLogLine.js';
import { StoreMetricProducer } from '../common/sdkMetrics.js';
import { exporterSeriesStore } from '../common/seriesStore.js';
import type { DebugConfig } from './config.js';
import { formatMetricsDump } from './metricsDump.js';

/**
 * Writes to a stream (stdout by default — the agent's own pino log goes to
 * stderr) without letting a slow reader grow memory: a batch is written as one
 * string, and when more than `max_buffered_bytes` are already waiting in the
 * stream's buffer the batch is dropped and counted instead.
 */
class BoundedWriter {
  constructor(
    private readonly out: Writable,
    private readonly maxBuffered: number,
  ) {}
  /** Returns false when the text was dropped. */
  write(text: string): boolean {
    if (this.out.writableLength > this.maxBuffered || this.out.destroyed) return false;
    try {
      this.out.write(text);
    } catch {
      return false;
    }
    return true;
  }
}

/** Where the debug exporter writes (tests inject a stream). */
export interface DebugOutput {
  stream?: Writable;
}

/** Access logs to stdout: the Kmesh line or JSON, one line per entry. */
export class DebugLogsExporter implements LogsExporter {
  private readonly writer: BoundedWriter;
  private readonly sent: Counter;
  private readonly dropped: Counter;
  private readonly attrs: { exporter: string };
  private stopped = false;

  constructor(
    settings: CreateSettings,
    private readonly config: DebugConfig,
    output: DebugOutput = {},
  ) {
    this.writer = new BoundedWriter(output.stream ?? process.stdout, config.max_buffered_bytes);
    this.attrs = { exporter: settings.id.toString() };
    this.sent = settings.telemetry.counter('exporter_sent_log_records', 'Log records the exporter delivered');
    this.dropped = settings.telemetry.counter('exporter_dropped_log_records', 'Log records the exporter dropped (queue or buffer full, or shut down)');
  }

  async start(_host: Host): Promise<void> {}

  consumeLogs(batch: LogsBatch): void {
    const n = batch.entries.length;
    if (n === 0) return;
    if (this.stopped) {
      this.dropped.add(n, this.attrs);
      return;
    }
    let text = '';
    const extraFields = this.config.extra_fields;
    for (const entry of batch.entries) {
      text += (this.config.format === 'json' ? formatJsonLine(entry) : formatKmeshLine(entry, { extraFields })) + '\n';
    }
    if (this.writer.write(text)) this.sent.add(n, this.attrs);
    else this.dropped.add(n, this.attrs);
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
  }
}

/** Metrics as a readable dump every `interval` (TCP families only; self-metrics are on the other exporters). */
export class DebugMetricsExporter implements MetricsExporter {
  /** Its label sets' wire form: their OpenTelemetry attributes (sdkMetrics.ts). */
  readonly store: SeriesStore<Attributes>;
  private readonly producer: StoreMetricProducer;
  private readonly writer: BoundedWriter;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    settings: CreateSettings,
    private readonly config: DebugConfig,
    output: DebugOutput = {},
  ) {
    this.writer = new BoundedWriter(output.stream ?? process.stdout, config.max_buffered_bytes);
    this.store = exporterSeriesStore<Attributes>(settings, config);
    this.producer = new StoreMetricProducer(this.store, settings.resource);
  }

  async start(_host: Host): Promise<void> {
    if (this.stopped || this.timer !== undefined) return;
    this.timer = setInterval(() => this.dump(), Math.max(1, this.config.interval));
    this.timer.unref();
  }

  consumeMetrics(batch: MetricsBatch): void {
    if (!this.stopped) this.store.consume(batch);
  }

  /** Writes one dump now (also called by the timer). */
  dump(): void {
    const text = formatMetricsDump(this.producer.collectSync(), this.config.verbosity);
    if (text !== '') this.writer.write(text);
  }

  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.store.close();
  }
}
