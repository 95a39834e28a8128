import type { Attributes, Counter } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
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
import type { SeriesStore } from '../../metrics/SeriesStore.js';
import { StoreMetricProducer } from '../common/sdkMetrics.js';
import { exporterSeriesStore } from '../common/seriesStore.js';
import { LossLog } from '../../telemetry/LossLog.js';
import type { OtlpCommonConfig } from './config.js';
import { MetricsEncoder } from './encoding/MetricsEncoder.js';
import { Retrier } from './retry.js';
import { QUEUE_CAPACITY_GAUGE, QUEUE_SIZE_GAUGE } from './selfMetrics.js';
import { OtlpTransport, type EncodedExporter, type EncodedRequest, type OtlpProtocol } from './transport.js';

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

/** Counters and attributes a {@link MetricsSendingQueue} reports into. */
export interface MetricsQueueTelemetry {
  sent: Counter;
  failed: Counter;
  dropped: Counter;
  /** Points whose retry was given up because a newer cumulative collection was delivered. */
  superseded: Counter;
  attrs: { exporter: string };
  /** Failed and dropped points are also logged here (rate-limited), when given. */
  losses?: LossLog;
}

/** Settings of a {@link MetricsSendingQueue} (from `sending_queue`). */
export interface MetricsQueueOptions {
  /** false: export() sends at once and reports when every request finished. */
  enabled: boolean;
  /** Data points queued, in flight or waiting to be retried, at most. */
  queueSize: number;
  /** Requests in flight at most. */
  numConsumers: number;
  /** Data points per request at most. */
  maxPointsPerRequest: number;
  /**
   * Cumulative temporality: a newer collection carries every total, so it
   * replaces the requests still waiting in the queue (they are not lost,
   * only superseded), and a dead backend costs one collection (plus the
   * requests in flight) of memory; `queueSize` then does not apply.
   */
  supersede: boolean;
}

/**
 * A push exporter that may keep something per request (the direct path: the
 * request's encoding, for retries); `release` says the request is done for
 * good (delivered, failed after its retries, or superseded).
 */
export interface RequestHoldingExporter extends PushMetricExporter {
  release?(metrics: ResourceMetrics): void;
}

interface QueuedRequest {
  metrics: ResourceMetrics;
  points: number;
  /** Which collection it belongs to (export() call number). */
  generation: number;
}

/**
 * The metrics side of the Collector's exporterhelper: splits each export
 * into requests of at most `maxPointsPerRequest` points (see
 * {@link MAX_POINTS_PER_REQUEST}), queues them (bounded in data points;
 * beyond, new requests are dropped and counted), and sends them with up to
 * `numConsumers` in flight, each retried with backoff and jitter
 * ({@link Retrier}). Every point is counted once: sent, send_failed,
 * dropped or superseded.
 */
export class MetricsSendingQueue implements PushMetricExporter {
  private readonly queue: QueuedRequest[] = [];
  /** Points queued, in flight or in retry backoff. */
  private held = 0;
  private inFlight = 0;
  private stopped = false;
  private idleWaiters: Array<() => void> = [];
  private generation = 0;
  /** Newest collection of which a request was delivered. */
  private deliveredGeneration = 0;

  constructor(
    private readonly inner: RequestHoldingExporter,
    private readonly opts: MetricsQueueOptions,
    private readonly retrier: Retrier,
    private readonly telemetry: MetricsQueueTelemetry,
  ) {}

  /** Points queued, in flight or waiting to be retried. */
  get queuedPoints(): number {
    return this.held;
  }

  export(metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    const generation = ++this.generation;
    const parts = splitResourceMetrics(metrics, this.opts.maxPointsPerRequest)
      .map((m) => ({ metrics: m, points: countDataPoints(m), generation }))
      .filter((r) => r.points > 0);
    const { dropped, attrs } = this.telemetry;
    if (this.stopped) {
      const n = parts.reduce((a, r) => a + r.points, 0);
      if (n > 0) dropped.add(n, attrs);
      this.telemetry.losses?.record('shut_down', n);
      resultCallback({ code: ExportResultCode.FAILED, error: new Error('exporter is shut down') });
      return;
    }
    if (!this.opts.enabled) {
      this.sendNow(parts, resultCallback);
      return;
    }
    if (this.opts.supersede && this.queue.length > 0) {
      let replaced = 0;
      for (const r of this.queue) replaced += r.points;
      this.held -= replaced;
      this.queue.length = 0;
      this.telemetry.superseded.add(replaced, attrs);
    }
    let droppedPoints = 0;
    for (const r of parts) {
      // Superseding: the queue holds one collection, already bounded by the
      // series budget; a store larger than queue_size must not lose its export.
      if (!this.opts.supersede && this.held + r.points > this.opts.queueSize) {
        droppedPoints += r.points;
        continue;
      }
      this.held += r.points;
      this.queue.push(r);
    }
    if (droppedPoints > 0) {
      dropped.add(droppedPoints, attrs);
      this.telemetry.losses?.record('queue_full', droppedPoints, { queue_size: this.opts.queueSize });
    }
    this.pump();
    // Like the Collector's queue: the reader is answered once the data is
    // queued; delivery is accounted in the self-metrics.
    resultCallback(
      droppedPoints > 0 && droppedPoints === parts.reduce((a, r) => a + r.points, 0)
        ? { code: ExportResultCode.FAILED, error: new Error('sending queue is full') }
        : { code: ExportResultCode.SUCCESS },
    );
  }

  /** Queue disabled: every request now (numConsumers at a time), one answer when all finished. */
  private sendNow(parts: QueuedRequest[], resultCallback: (result: ExportResult) => void): void {
    let next = 0;
    let pending = parts.length;
    let firstError: ExportResult | undefined;
    if (pending === 0) return resultCallback({ code: ExportResultCode.SUCCESS });
    const sendNext = (): void => {
      const part = parts[next++];
      if (part === undefined) return;
      this.held += part.points;
      this.send(part, (result) => {
        this.held -= part.points;
        if (result.code !== ExportResultCode.SUCCESS) firstError ??= result;
        if (--pending === 0) resultCallback(firstError ?? { code: ExportResultCode.SUCCESS });
        // Not synchronously: see pump().
        else setImmediate(sendNext);
      });
    };
    for (let i = 0; i < Math.min(this.opts.numConsumers, parts.length); i++) sendNext();
  }

  private pump(): void {
    while (this.inFlight < this.opts.numConsumers && this.queue.length > 0) {
      const r = this.queue.shift()!;
      this.inFlight++;
      this.send(r, () => {
        this.inFlight--;
        this.held -= r.points;
        // Not synchronously: the SDK's export delegate still counts the finished
        // request against its concurrency limit (num_consumers) until a later
        // microtask, and a request started before then would be refused
        // ("Concurrent export limit reached") and wait out a retry backoff
        // (5 s by default) — measured: a 50,000-series export stalling for
        // seconds with the CPUs idle. As ConcurrentBatcher does.
        setImmediate(() => this.pump());
        if (this.inFlight === 0 && this.queue.length === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const w of waiters) w();
        }
      });
    }
  }

  /**
   * One request with retries; counts its points as sent or failed. With
   * cumulative temporality a retry is abandoned once a newer collection got
   * through: delivering the older totals after the newer ones would look
   * like a counter reset to the backend (Prometheus would count a rate
   * spike). Such points are counted as superseded.
   */
  private send(r: QueuedRequest, done: (result: ExportResult) => void): void {
    const { sent, failed, superseded, attrs } = this.telemetry;
    let wasSuperseded = false;
    this.retrier.run(
      (cb) => {
        if (this.opts.supersede && r.generation < this.deliveredGeneration) {
          wasSuperseded = true;
          return cb({ code: ExportResultCode.SUCCESS });
        }
        this.inner.export(r.metrics, cb);
      },
      (result) => {
        if (wasSuperseded) superseded.add(r.points, attrs);
        else if (result.code === ExportResultCode.SUCCESS) {
          sent.add(r.points, attrs);
          this.deliveredGeneration = Math.max(this.deliveredGeneration, r.generation);
        } else {
          failed.add(r.points, attrs);
          this.telemetry.losses?.record('export_failed', r.points, { err: result.error?.message });
        }
        this.inner.release?.(r.metrics);
        done(result);
      },
    );
  }

  /** Resolves when every request queued so far has finished (delivered or failed for good). */
  private idle(): Promise<void> {
    if (this.inFlight === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async forceFlush(): Promise<void> {
    await this.idle();
    await this.inner.forceFlush();
  }

  /**
   * Ends retrying: retries waiting now fail, later failures are final. Called
   * before the reader's final collection, whose forceFlush would otherwise
   * wait out `max_elapsed_time` with a dead backend.
   */
  stopRetrying(): void {
    this.retrier.stop();
  }

  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Retries waiting now fail; what is queued gets one attempt each, bounded by `timeout`.
    this.retrier.stop();
    await this.idle();
    await this.inner.shutdown();
  }

  selectAggregationTemporality(instrumentType: InstrumentType): AggregationTemporality {
    return this.inner.selectAggregationTemporality?.(instrumentType) ?? AggregationTemporality.CUMULATIVE;
  }
}

/**
 * The direct path's push exporter: each request the sending queue hands it
 * (a ResourceMetrics of at most `maxPointsPerRequest` points) is encoded by
 * {@link MetricsEncoder} — label sets' attributes spliced from cached bytes
 * — and sent by the SDK's own export delegate ({@link EncodedExporter}).
 * A retry resends the bytes of its first attempt. Temporality: the store's
 * snapshots carry their own, and the self-metrics are cumulative, as the
 * SDK exporter's default selector answers for the reader.
 */
class EncodingMetricExporter implements RequestHoldingExporter {
  private readonly encoder = new MetricsEncoder();
  /** The encoding of each request being sent (retries reuse it), until the queue releases it. */
  private readonly encoded = new WeakMap<ResourceMetrics, EncodedRequest>();

  constructor(private readonly inner: EncodedExporter) {}

  export(metrics: ResourceMetrics, resultCallback: (result: ExportResult) => void): void {
    let request = this.encoded.get(metrics);
    if (request === undefined) {
      try {
        request = this.encoder.encode(metrics);
      } catch (err) {
        // Not bad input (the encoder takes any attribute value): a bug, reported as a failed request, never thrown.
        resultCallback({ code: ExportResultCode.FAILED, error: err as Error });
        return;
      }
      this.encoded.set(metrics, request);
    }
    this.inner.export(request, resultCallback);
  }

  /** The request is done for good: its bytes go back to the encoder when nothing reads them any more. */
  release(metrics: ResourceMetrics): void {
    const request = this.encoded.get(metrics);
    if (request === undefined) return;
    this.encoded.delete(metrics);
    if (this.inner.bytesFreeAfterExport === true) request.release?.();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  selectAggregationTemporality(): AggregationTemporality {
    return AggregationTemporality.CUMULATIVE;
  }
}

/**
 * How metrics become OTLP requests: `direct` (the agent's,
 * {@link EncodingMetricExporter}) or `sdk` (the SDK exporter's own
 * serializer: the reference the benchmarks measure against).
 */
export type MetricsEncoding = 'direct' | 'sdk';

/**
 * Pushes the TCP families (from a {@link SeriesStore} with the configured
 * temporality) and the agent's self-metrics (always cumulative) over OTLP
 * (gRPC or HTTP) every `export_interval`, through a {@link MetricsSendingQueue}.
 * A failed request is retried (`retry_on_failure`) and then counted in
 * `kmesh_otel_exporter_send_failed_metric_points`; with cumulative
 * temporality the next export carries the full totals, so figures add up
 * once the backend returns, and memory stays bounded by the series budget
 * and `queue_size`, not by the outage length.
 */
export class OtlpMetricsExporter implements MetricsExporter {
  /** Its label sets' wire form: their OpenTelemetry attributes (sdkMetrics.ts). */
  readonly store: SeriesStore<Attributes>;
  private readonly producer: StoreMetricProducer;
  private provider: MeterProvider | undefined;
  private reader: PeriodicExportingMetricReader | undefined;
  private queue: MetricsSendingQueue | undefined;
  private readonly transport: OtlpTransport;
  private stopped = false;
  private shutdownPromise: Promise<void> | undefined;
  /** Failed exports and drops, logged rate-limited with their counts. */
  private readonly losses: LossLog;

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: OtlpCommonConfig,
    protocol: OtlpProtocol = 'grpc',
    /** Jitter source of the retries (tests). */
    private readonly random: () => number = Math.random,
    /** `sdk`: the reference path (benchmarks); not a config key. */
    private readonly encoding: MetricsEncoding = 'direct',
  ) {
    this.store = exporterSeriesStore<Attributes>(settings, config, config.temporality);
    this.producer = new StoreMetricProducer(this.store, settings.resource);
    // Reads the TLS files now (fail fast at creation).
    this.transport = new OtlpTransport(protocol, config, settings.id.toString());
    const attrs = { exporter: settings.id.toString() };
    this.losses = new LossLog(settings.logger, settings.telemetry, { ...attrs, signal: 'metrics' }, ['export_failed', 'queue_full', 'shut_down']);
    settings.telemetry.gauge(QUEUE_SIZE_GAUGE.name, QUEUE_SIZE_GAUGE.description, () =>
      this.queue === undefined || this.stopped ? [] : [[this.queue.queuedPoints, { ...attrs, signal: 'metrics' }]],
    );
    settings.telemetry.gauge(QUEUE_CAPACITY_GAUGE.name, QUEUE_CAPACITY_GAUGE.description, () =>
      this.stopped ? [] : [[config.sending_queue.queue_size, { ...attrs, signal: 'metrics' }]],
    );
  }

  async start(_host: Host): Promise<void> {
    if (this.stopped || this.provider !== undefined) return;
    const t = this.settings.telemetry;
    const c = this.config;
    const q = c.sending_queue;
    const failed = t.counter('exporter_send_failed_metric_points', 'Metric data points in export requests that failed after retries');
    const dropped = t.counter('exporter_dropped_metric_points', 'Metric data points the exporter dropped (queue full, or shut down)');
    // The loss series exist from start-up at 0 ("no loss" is a value to alert on).
    for (const c of [failed, dropped]) c.add(0, { exporter: this.settings.id.toString() });
    this.queue = new MetricsSendingQueue(
      this.encoding === 'direct' ? new EncodingMetricExporter(this.transport.encodedExporter('metrics')) : this.transport.metricExporter(),
      {
        enabled: q.enabled,
        queueSize: q.queue_size,
        numConsumers: q.num_consumers,
        maxPointsPerRequest: q.batch.max_size > 0 ? q.batch.max_size : MAX_POINTS_PER_REQUEST,
        supersede: c.temporality === 'cumulative',
      },
      new Retrier(c.retry_on_failure, this.random),
      {
        sent: t.counter('exporter_sent_metric_points', 'Metric data points the exporter delivered'),
        failed,
        dropped,
        superseded: t.counter(
          'exporter_superseded_metric_points',
          'Metric data points not retried because a newer cumulative export was delivered (its totals include them)',
        ),
        attrs: { exporter: this.settings.id.toString() },
        losses: this.losses,
      },
    );
    const interval = Math.max(1, c.export_interval);
    this.reader = new PeriodicExportingMetricReader({
      exporter: this.queue,
      exportIntervalMillis: interval,
      // The SDK requires timeout <= interval.
      exportTimeoutMillis: Math.min(Math.max(1, c.timeout), interval),
      metricProducers: [this.producer, t.producer],
    });
    // The provider only binds the reader and carries the resource; it has no instruments.
    this.provider = new MeterProvider({ resource: this.settings.resource, readers: [this.reader] });
  }

  consumeMetrics(batch: MetricsBatch): void {
    if (!this.stopped) this.store.consume(batch);
  }

  /** Exports now and waits until every queued request finished (tests, and the final export at shutdown). */
  async forceFlush(): Promise<void> {
    await this.reader?.forceFlush();
  }

  /** What a shutdown cut short by the grace period loses: the points queued, in flight or waiting to be retried. */
  unflushed(): Record<string, number> {
    return { metric_points: this.queue?.queuedPoints ?? 0 };
  }

  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      this.stopped = true;
      // A final export (each request one attempt, bounded by `timeout`), then the channel closes.
      this.queue?.stopRetrying();
      await this.provider?.shutdown().catch((err: unknown) => {
        this.settings.logger.warn({ err }, 'otlp metrics exporter shutdown');
      });
      this.store.close();
      this.losses.close();
    })();
    return this.shutdownPromise;
  }
}
