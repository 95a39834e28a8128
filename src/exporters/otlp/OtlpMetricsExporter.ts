import type { Counter } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import {
  AggregationTemporality,
  MeterProvider,
  PeriodicExportingMetricReader,
  type InstrumentType,
  type MetricData,
  type PushMetricExporter,
  type ResourceMetrics,
  type ScopeMetrics,
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

/**
 * Data points per export request. gRPC servers refuse messages over 4 MiB by
 * default (grpc-go, so the Collector's OTLP receiver, and grpc-js alike),
 * and a Kmesh point carries 23 attributes (~1 KiB encoded; histograms more),
 * so one request for a whole store of 50,000 series would be refused with
 * RESOURCE_EXHAUSTED and nothing delivered. 1,000 points stay near 1–2 MiB.
 */
export const MAX_POINTS_PER_REQUEST = 1000;
/** Requests of one export in flight at once (one HTTP/2 channel multiplexes them). */
const REQUESTS_IN_FLIGHT = 4;

/**
 * Splits an export into requests of at most `max` data points, keeping the
 * resource, scopes and metric descriptors; a metric's points may span
 * requests (each request is a valid ExportMetricsServiceRequest).
 */
export function splitResourceMetrics(rm: ResourceMetrics, max: number): ResourceMetrics[] {
  if (countDataPoints(rm) <= max) return [rm];
  const out: ResourceMetrics[] = [];
  let current: ResourceMetrics = { resource: rm.resource, scopeMetrics: [] };
  let room = max;
  for (const sm of rm.scopeMetrics) {
    let scope: ScopeMetrics | undefined;
    for (const m of sm.metrics) {
      let from = 0;
      while (from < m.dataPoints.length) {
        if (room === 0) {
          out.push(current);
          current = { resource: rm.resource, scopeMetrics: [] };
          scope = undefined;
          room = max;
        }
        if (scope === undefined) {
          scope = { scope: sm.scope, metrics: [] };
          current.scopeMetrics.push(scope);
        }
        const take = Math.min(room, m.dataPoints.length - from);
        scope.metrics.push({ ...m, dataPoints: m.dataPoints.slice(from, from + take) } as MetricData);
        from += take;
        room -= take;
      }
    }
  }
  if (current.scopeMetrics.length > 0) out.push(current);
  return out;
}

/**
 * Counts what an inner PushMetricExporter delivers and fails, in
 * self-metrics, and splits large exports into bounded requests (see
 * {@link MAX_POINTS_PER_REQUEST}). The export succeeds when every request
 * did; points are counted per request, so a partial failure is counted
 * exactly.
 */
class CountingMetricExporter implements PushMetricExporter {
  constructor(
    private readonly inner: PushMetricExporter,
    private readonly sent: Counter,
    private readonly failed: Counter,
    private readonly attrs: { exporter: string },
    private readonly maxPointsPerRequest = MAX_POINTS_PER_REQUEST,
  ) {}

  export(metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    const parts = splitResourceMetrics(metrics, this.maxPointsPerRequest);
    let next = 0;
    let pending = parts.length;
    let firstError: ExportResult | undefined;
    const sendNext = (): void => {
      const part = parts[next++];
      if (part === undefined) return;
      this.exportOne(part, (result) => {
        if (result.code !== ExportResultCode.SUCCESS) firstError ??= result;
        if (--pending === 0) resultCallback(firstError ?? { code: ExportResultCode.SUCCESS });
        else sendNext();
      });
    };
    for (let i = 0; i < Math.min(REQUESTS_IN_FLIGHT, parts.length); i++) sendNext();
  }

  private exportOne(metrics: ResourceMetrics, done: (result: ExportResult) => void): void {
    const n = countDataPoints(metrics);
    let finished = false;
    const finish = (result: ExportResult): void => {
      if (finished) return;
      finished = true;
      if (result.code === ExportResultCode.SUCCESS) this.sent.add(n, this.attrs);
      else this.failed.add(n, this.attrs);
      done(result);
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
