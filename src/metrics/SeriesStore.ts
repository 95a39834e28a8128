import { ValueType, type Attributes, type Counter, type HrTime } from '@opentelemetry/api';
import { millisToHrTime } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  DataPointType,
  type CollectionResult,
  type DataPoint,
  type Histogram,
  type MetricData,
  type MetricProducer,
} from '@opentelemetry/sdk-metrics';
import type { FlowPoint, MetricsBatch } from '../model/metrics.js';
import type { SelfTelemetry } from '../telemetry/SelfTelemetry.js';
import type { FamilyDef, MetricSchema } from './schema.js';

/** The OpenTelemetry SDK's cardinality-overflow attribute (spec: metrics SDK, "Overflow attribute"). */
export const OVERFLOW_ATTRIBUTE = 'otel_metric_overflow';
const OVERFLOW_KEY = '\u0000overflow';

/** Defaults of the store's knobs (also the exporters' config defaults). */
export const DEFAULT_MAX_SERIES_PER_FAMILY = 10_000;
export const DEFAULT_SERIES_TTL_MS = 5 * 60_000;

export interface SeriesStoreOptions {
  schema: MetricSchema;
  /** Resource put on the collected ResourceMetrics (a reader keeps its own MeterProvider's). */
  resource: Resource;
  /** `cumulative` (Prometheus, OTLP default) or `delta` (values since the previous collect). Default cumulative. */
  temporality?: 'cumulative' | 'delta';
  /** Series budget per family; further label sets go to one overflow series. Default 10000. */
  maxSeriesPerFamily?: number;
  /** A series idle this long is removed once its last value has been collected. Default 5 min. */
  seriesTtlMs?: number;
  /** Self-metrics (overflowed points, series gauge); optional for benches. */
  telemetry?: SelfTelemetry;
  /** Attributes on the store's self-metrics, e.g. `{ exporter: 'prometheus' }`. */
  telemetryAttributes?: Attributes;
  /** Instrumentation scope name of the TCP families. Default `kmesh-otel`. */
  scopeName?: string;
  /** Clock, ms since the epoch (tests inject one). */
  now?: () => number;
}

interface Series {
  readonly attributes: Attributes;
  /** Counter: cumulative value, or the value since the last collect in delta mode. */
  value: number;
  /** Histogram state (same temporality rule as `value`). */
  counts: number[] | undefined;
  sum: number;
  min: number;
  max: number;
  /** Start of the current accumulation (series creation, or the last delta collect). */
  startMs: number;
  lastUpdateMs: number;
  /** True once a collect has included the series' value as of its last update. */
  collectedSinceUpdate: boolean;
}

interface FamilyState {
  readonly def: FamilyDef;
  readonly series: Map<string, Series>;
}

/**
 * Cumulative (or delta) state of every series of a schema's families, updated
 * once per FlowPoint (per flush, not per connection record), and read by the
 * OpenTelemetry SDK as a {@link MetricProducer} — so it plugs into the
 * PrometheusExporter or a PeriodicExportingMetricReader via `metricProducers`.
 *
 * Why not SDK instruments: an instrument cannot forget a series (a deleted
 * pod's label set stays forever), and a per-record `counter.add` with 23
 * attributes is the slow path this avoids.
 *
 * Bounds:
 * - at most `maxSeriesPerFamily` series per family, plus one overflow series
 *   labelled only `otel_metric_overflow="true"` that takes every further label
 *   set's contributions (the SDK's cardinality-limit convention), counted in
 *   `kmesh_otel_exporter_metric_overflow_points`; nothing is dropped silently;
 * - stale series: a series not updated for `seriesTtlMs` is removed at the
 *   first collect after the TTL, provided an earlier collect already returned
 *   its final value (so its last increment is exported at least once). Keep
 *   the TTL above the scrape/export interval. The slot is then free for a new
 *   label set. A series that comes back later restarts from 0 with a new start
 *   time, which Prometheus `rate()` and OTLP consumers treat as a reset.
 *
 * collect() builds a snapshot synchronously, so concurrent scrapes are safe.
 */
export class SeriesStore implements MetricProducer {
  private readonly families: FamilyState[];
  private readonly byName = new Map<string, FamilyState>();
  private readonly schema: MetricSchema;
  private readonly resource: Resource;
  private readonly delta: boolean;
  private readonly maxSeries: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly scopeName: string;
  private readonly overflowCounter: Counter | undefined;
  private readonly telemetryAttributes: Attributes;
  private lastCollectMs: number;
  private closed = false;

  constructor(opts: SeriesStoreOptions) {
    this.schema = opts.schema;
    this.resource = opts.resource;
    this.delta = opts.temporality === 'delta';
    this.maxSeries = opts.maxSeriesPerFamily ?? DEFAULT_MAX_SERIES_PER_FAMILY;
    this.ttlMs = opts.seriesTtlMs ?? DEFAULT_SERIES_TTL_MS;
    this.now = opts.now ?? Date.now;
    this.scopeName = opts.scopeName ?? 'kmesh-otel';
    this.lastCollectMs = this.now();
    this.telemetryAttributes = opts.telemetryAttributes ?? {};
    this.families = opts.schema.families.map((def) => ({ def, series: new Map<string, Series>() }));
    for (const f of this.families) this.byName.set(f.def.name, f);
    const t = opts.telemetry;
    if (t !== undefined) {
      this.overflowCounter = t.counter(
        'exporter_metric_overflow_points',
        'Series contributions routed to the otel_metric_overflow series because a family reached its series budget',
      );
      t.gauge('exporter_metric_series', 'Series currently held per metric family', () => {
        if (this.closed) return [];
        return this.families.map((f) => [f.series.size, { ...this.telemetryAttributes, metric: f.def.name }]);
      });
    }
  }

  /** Adds every point of a batch. Never throws on odd values (non-finite or negative increments are ignored). */
  consume(batch: MetricsBatch): void {
    for (const p of batch.points) this.add(p);
  }

  /** Adds one point's contributions. */
  add(point: FlowPoint): void {
    const nowMs = this.now();
    for (const c of this.schema.render(point)) {
      if (!(c.value > 0) || !Number.isFinite(c.value)) continue;
      const fam = this.byName.get(c.family.name);
      if (fam === undefined) continue;
      let s = fam.series.get(c.key);
      if (s === undefined) {
        if (fam.series.size >= this.maxSeries + (fam.series.has(OVERFLOW_KEY) ? 1 : 0)) {
          this.overflowCounter?.add(1, { ...this.telemetryAttributes, metric: fam.def.name });
          s = fam.series.get(OVERFLOW_KEY);
          if (s === undefined) {
            s = newSeries({ [OVERFLOW_ATTRIBUTE]: 'true' }, fam.def, nowMs);
            fam.series.set(OVERFLOW_KEY, s);
          }
        } else {
          const attrs: Attributes = {};
          const names = fam.def.labels;
          for (let i = 0; i < names.length; i++) attrs[names[i]!] = c.labelValues[i];
          s = newSeries(attrs, fam.def, nowMs);
          fam.series.set(c.key, s);
        }
      }
      s.lastUpdateMs = nowMs;
      s.collectedSinceUpdate = false;
      if (s.counts === undefined) {
        s.value += c.value;
      } else if (c.observations !== undefined) {
        const bounds = fam.def.buckets ?? [];
        for (const o of c.observations) {
          if (!Number.isFinite(o)) continue;
          s.counts[bucketIndex(bounds, o)]! += 1;
          s.value += 1;
          s.sum += o;
          if (o < s.min) s.min = o;
          if (o > s.max) s.max = o;
        }
      }
    }
  }

  /** Number of series held in all families (overflow series included). */
  seriesCount(): number {
    let n = 0;
    for (const f of this.families) n += f.series.size;
    return n;
  }

  /** Drops all state and stops reporting the series gauge. */
  close(): void {
    this.closed = true;
    for (const f of this.families) f.series.clear();
  }

  collect(): Promise<CollectionResult> {
    return Promise.resolve(this.collectSync());
  }

  /** The synchronous body of {@link collect}. */
  collectSync(): CollectionResult {
    const nowMs = this.now();
    const end = millisToHrTime(nowMs);
    const temporality = this.delta ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE;
    const metrics: MetricData[] = [];
    for (const fam of this.families) {
      const def = fam.def;
      const points: DataPoint<number>[] = [];
      const hpoints: DataPoint<Histogram>[] = [];
      for (const [key, s] of fam.series) {
        const idle = nowMs - s.lastUpdateMs;
        if (this.delta) {
          if (s.collectedSinceUpdate) {
            // Nothing new since the previous collect: no point (delta), and forget it once stale.
            if (idle >= this.ttlMs) fam.series.delete(key);
            continue;
          }
        } else if (s.collectedSinceUpdate && idle >= this.ttlMs) {
          fam.series.delete(key);
          continue;
        }
        const start = millisToHrTime(s.startMs);
        if (s.counts === undefined) {
          points.push({ startTime: start, endTime: end, attributes: s.attributes, value: s.value });
        } else {
          hpoints.push({ startTime: start, endTime: end, attributes: s.attributes, value: histogramValue(def, s) });
        }
        s.collectedSinceUpdate = true;
        if (this.delta) resetSeries(s, nowMs);
      }
      const descriptor = { name: def.name, description: def.help, unit: def.unit, valueType: ValueType.DOUBLE };
      if (def.type === 'counter') {
        if (points.length > 0) {
          metrics.push({ descriptor, aggregationTemporality: temporality, dataPointType: DataPointType.SUM, isMonotonic: true, dataPoints: points });
        }
      } else if (hpoints.length > 0) {
        metrics.push({ descriptor, aggregationTemporality: temporality, dataPointType: DataPointType.HISTOGRAM, dataPoints: hpoints });
      }
    }
    this.lastCollectMs = nowMs;
    return {
      resourceMetrics: {
        resource: this.resource,
        scopeMetrics: metrics.length > 0 ? [{ scope: { name: this.scopeName }, metrics }] : [],
      },
      errors: [],
    };
  }

  /** Time of the last collect, ms (for tests and diagnostics). */
  get lastCollectUnixMs(): number {
    return this.lastCollectMs;
  }
}

function newSeries(attributes: Attributes, def: FamilyDef, nowMs: number): Series {
  return {
    attributes,
    value: 0,
    counts: def.type === 'histogram' ? new Array<number>((def.buckets?.length ?? 0) + 1).fill(0) : undefined,
    sum: 0,
    min: Infinity,
    max: -Infinity,
    startMs: nowMs,
    lastUpdateMs: nowMs,
    collectedSinceUpdate: false,
  };
}

function resetSeries(s: Series, nowMs: number): void {
  s.value = 0;
  if (s.counts !== undefined) s.counts.fill(0);
  s.sum = 0;
  s.min = Infinity;
  s.max = -Infinity;
  s.startMs = nowMs;
}

/** Index of the bucket whose inclusive upper bound is the first >= v (last bucket = +Inf). */
export function bucketIndex(bounds: readonly number[], v: number): number {
  let lo = 0;
  let hi = bounds.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (v <= bounds[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function histogramValue(def: FamilyDef, s: Series): Histogram {
  const h: Histogram = {
    buckets: { boundaries: [...(def.buckets ?? [])], counts: [...(s.counts ?? [])] },
    sum: s.sum,
    count: s.value,
  };
  if (s.value > 0) {
    h.min = s.min;
    h.max = s.max;
  }
  return h;
}

/** HrTime of a ms timestamp (re-exported for tests). */
export function hrTimeOfMs(ms: number): HrTime {
  return millisToHrTime(ms);
}
