import type { Attributes, Counter } from '@opentelemetry/api';
import type { Writable } from 'node:stream';
import type { CreateSettings, Host, LogsExporter, MetricsExporter } from '../../component/component.js';
import type { LogsBatch } from '../../model/logs.js';
import type { MetricsBatch } from '../../model/metrics.js';
import type { SeriesStore } from '../../metrics/SeriesStore.js';
import { formatJsonLine, formatKmeshLine } from '../common/accessLogLine.js';
import { StoreMetricProducer } from '../common/sdkMetrics.js';
import { exporterSeriesStore } from '../common/seriesStore.js';
import { LossLog } from '../../telemetry/LossLog.js';
import type { DebugConfig } from './config.js';
import { formatMetricsDump } from './metricsDump.js';

/**
 * Writes to a stream (stdout by default — the agent's own pino log goes to
 * stderr) without letting a slow reader grow memory: a batch is written as one
 * string, and when more than `max_buffered_bytes` are already waiting in the
 * stream's buffer the batch is dropped and counted instead.
 */
export class BoundedWriter {
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

/** A debug exporter's sent and dropped counters: names spelled out, descriptions as the OTLP exporter of the signal words them. */
export interface LineCounters {
  sent: { name: string; description: string };
  dropped: { name: string; description: string };
}

/**
 * The items of one signal as lines on the debug output, for the logs and
 * traces debug exporters alike: a batch's lines are counted as sent when
 * written, as dropped (counted and logged through LossLog) when the output
 * is `max_buffered_bytes` behind or the exporter has shut down.
 */
export class CountedLineOutput {
  private readonly writer: BoundedWriter;
  private readonly sent: Counter;
  private readonly dropped: Counter;
  private readonly attrs: { exporter: string };
  /** Drops, logged rate-limited with their counts. */
  private readonly losses: LossLog;
  private stopped = false;

  constructor(
    settings: CreateSettings,
    private readonly maxBufferedBytes: number,
    output: DebugOutput,
    signal: 'logs' | 'traces',
    counters: LineCounters,
  ) {
    this.writer = new BoundedWriter(output.stream ?? process.stdout, maxBufferedBytes);
    this.attrs = { exporter: settings.id.toString() };
    this.sent = settings.telemetry.counter(counters.sent.name, counters.sent.description);
    this.dropped = settings.telemetry.counter(counters.dropped.name, counters.dropped.description);
    // The loss series exists from start-up at 0 ("no loss" is a value to alert on).
    this.dropped.add(0, this.attrs);
    this.losses = new LossLog(settings.logger, settings.telemetry, { ...this.attrs, signal }, ['output_buffer_full', 'shut_down']);
  }

  /** Writes the `n` items of `items` as the lines `line` makes of them. */
  write<T>(items: readonly T[], line: (item: T) => string): void {
    const n = items.length;
    if (n === 0) return;
    if (this.stopped) {
      this.dropped.add(n, this.attrs);
      this.losses.record('shut_down', n);
      return;
    }
    let text = '';
    for (const item of items) text += line(item) + '\n';
    if (this.writer.write(text)) this.sent.add(n, this.attrs);
    else {
      this.dropped.add(n, this.attrs);
      this.losses.record('output_buffer_full', n, { max_buffered_bytes: this.maxBufferedBytes });
    }
  }

  close(): void {
    this.stopped = true;
    this.losses.close();
  }
}

/** Access logs to stdout: the Kmesh line or JSON, one line per entry. */
export class DebugLogsExporter implements LogsExporter {
  private readonly lines: CountedLineOutput;

  constructor(
    settings: CreateSettings,
    private readonly config: DebugConfig,
    output: DebugOutput = {},
  ) {
    this.lines = new CountedLineOutput(settings, config.max_buffered_bytes, output, 'logs', {
      sent: { name: 'exporter_sent_log_records', description: 'Log records the exporter delivered' },
      dropped: { name: 'exporter_dropped_log_records', description: 'Log records the exporter dropped (queue or buffer full, or shut down)' },
    });
  }

  async start(_host: Host): Promise<void> {}

  consumeLogs(batch: LogsBatch): void {
    const extraFields = this.config.extra_fields;
    const json = this.config.format === 'json';
    this.lines.write(batch.entries, (entry) => (json ? formatJsonLine(entry) : formatKmeshLine(entry, { extraFields })));
  }

  async shutdown(): Promise<void> {
    this.lines.close();
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
