import type { Counter } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import {
  AggregationTemporality,
  MeterProvider,
  PeriodicExportingMetricReader,
  type InstrumentType,
  type PushMetricExporter,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import type { CreateSettings, Host, MetricsExporter } from '../../component/component.js';
import type { MetricsBatch } from '../../model/metrics.js';
import { schemaByName } from '../../metrics/schema.js';
import { SeriesStore } from '../../metrics/SeriesStore.js';
import type { OtlpConfig } from './config.js';
import { grpcExporterOptions } from './grpcOptions.js';

/** Number of data points in an export request. */
export function countDataPoints(rm: ResourceMetrics): number {
  let n = 0;
  for (const sm of rm.scopeMetrics) {
    for (const m of sm.metrics) n += m.dataPoints.length;
  }
  return n;
}

/** Counts what an inner PushMetricExporter delivers and fails, in self-metrics. */
class CountingMetricExporter implements PushMetricExporter {
  constructor(
    private readonly inner: PushMetricExporter,
    private readonly sent: Counter,
    private readonly failed: Counter,
    private readonly attrs: { exporter: string },
  ) {}
  export(metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    const n = countDataPoints(metrics);
    let done = false;
    const finish = (result: ExportResult): void => {
      if (done) return;
      done = true;
      if (result.code === ExportResultCode.SUCCESS) this.sent.add(n, this.attrs);
      else this.failed.add(n, this.attrs);
      resultCallback(result);
    };
    try {
      this.inner.export(metrics, finish);
    } catch (err) {
      finish({ code: ExportResultCode.FAILED, error: err as Error });
    }
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  selectAggregationTemporality(instrumentType: InstrumentType): AggregationTemporality {
    return this.inner.selectAggregationTemporality?.(instrumentType) ?? AggregationTemporality.CUMULATIVE;
  }
}

/**
 * Pushes the TCP families (from a {@link SeriesStore} with the configured
 * temporality) and the agent's self-metrics (always cumulative) over
 * OTLP/gRPC every `export_interval`. A failed export is counted in
 * `kmesh_otel_exporter_send_failed_metric_points`; with cumulative temporality
 * the next export carries the full totals, so figures add up once the backend
 * returns. Memory is bounded by the series budget, not by the outage length.
 */
export class OtlpMetricsExporter implements MetricsExporter {
  readonly store: SeriesStore;
  private provider: MeterProvider | undefined;
  private reader: PeriodicExportingMetricReader | undefined;
  private stopped = false;
  private shutdownPromise: Promise<void> | undefined;

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: OtlpConfig,
  ) {
    this.store = new SeriesStore({
      schema: schemaByName(config.schema),
      resource: settings.resource,
      temporality: config.temporality,
      maxSeriesPerFamily: config.max_series_per_family,
      seriesTtlMs: config.series_ttl,
      telemetry: settings.telemetry,
      telemetryAttributes: { exporter: settings.id.toString() },
    });
    // Validates TLS files now (fail fast at creation).
    grpcExporterOptions(config);
  }

  async start(_host: Host): Promise<void> {
    if (this.stopped || this.provider !== undefined) return;
    const t = this.settings.telemetry;
    const attrs = { exporter: this.settings.id.toString() };
    const inner = new OTLPMetricExporter({ ...grpcExporterOptions(this.config) });
    const exporter = new CountingMetricExporter(
      inner,
      t.counter('exporter_sent_metric_points', 'Metric data points the exporter delivered'),
      t.counter('exporter_send_failed_metric_points', 'Metric data points in failed export requests'),
      attrs,
    );
    const interval = Math.max(1, this.config.export_interval);
    this.reader = new PeriodicExportingMetricReader({
      exporter,
      exportIntervalMillis: interval,
      // The SDK requires timeout <= interval.
      exportTimeoutMillis: Math.min(Math.max(1, this.config.timeout), interval),
      metricProducers: [this.store, t.producer],
    });
    // The provider only binds the reader and carries the resource; it has no instruments.
    this.provider = new MeterProvider({ resource: this.settings.resource, readers: [this.reader] });
  }

  consumeMetrics(batch: MetricsBatch): void {
    if (!this.stopped) this.store.consume(batch);
  }

  /** Exports now (tests, and the final export at shutdown). */
  async forceFlush(): Promise<void> {
    await this.reader?.forceFlush();
  }

  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      this.stopped = true;
      // A final export (bounded by `timeout`), then the gRPC channel closes.
      await this.provider?.shutdown().catch((err: unknown) => {
        this.settings.logger.warn({ err }, 'otlp metrics exporter shutdown');
      });
      this.store.close();
    })();
    return this.shutdownPromise;
  }
}
