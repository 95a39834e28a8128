/**
 * A {@link SeriesStore}'s snapshots as OpenTelemetry SDK `MetricData`, for
 * the exporters that hand metrics to the SDK (the OTLP exporters' periodic
 * reader, the debug exporter's dump). The store itself knows no wire format;
 * this is one of them.
 */
import { ValueType, type Attributes } from '@opentelemetry/api';
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
import type { FamilyDef } from '../../metrics/schema.js';
import type { FamilySnapshot, LabelSet, SeriesStore, StoreSnapshot } from '../../metrics/SeriesStore.js';

/** Instrumentation scope of the TCP families. */
export const TCP_SCOPE_NAME = 'kmesh-otel';

/**
 * The label set as OpenTelemetry attributes, built on first use and kept in
 * the set's wire slot: every point of the set, collect after collect, shares
 * one object.
 */
export function attributesOf(ls: LabelSet<Attributes>): Attributes {
  let a = ls.wire;
  if (a === undefined) {
    a = {};
    for (let i = 0; i < ls.names.length; i++) a[ls.names[i]!] = ls.values[i];
    ls.wire = a;
  }
  return a;
}

/** One snapshot as SDK ResourceMetrics (one scope, {@link TCP_SCOPE_NAME}; none when the snapshot is empty). */
export function toCollectionResult(snap: StoreSnapshot<Attributes>, resource: Resource): CollectionResult {
  const end = millisToHrTime(snap.endMs);
  const temporality = snap.temporality === 'delta' ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE;
  const metrics: MetricData[] = [];
  for (const f of snap.families) {
    const def = f.def;
    const descriptor = { name: def.name, description: def.help, unit: def.unit, valueType: ValueType.DOUBLE };
    if (def.type === 'counter') {
      const points: DataPoint<number>[] = [];
      for (let i = 0; i < f.length; i++) {
        points.push({ startTime: millisToHrTime(f.startMs[i]!), endTime: end, attributes: attributesOf(f.labels[i]!), value: f.values[i]! });
      }
      metrics.push({ descriptor, aggregationTemporality: temporality, dataPointType: DataPointType.SUM, isMonotonic: true, dataPoints: points });
    } else {
      const points: DataPoint<Histogram>[] = [];
      for (let i = 0; i < f.length; i++) {
        points.push({ startTime: millisToHrTime(f.startMs[i]!), endTime: end, attributes: attributesOf(f.labels[i]!), value: histogramValue(def, f, i) });
      }
      metrics.push({ descriptor, aggregationTemporality: temporality, dataPointType: DataPointType.HISTOGRAM, dataPoints: points });
    }
  }
  return {
    resourceMetrics: { resource, scopeMetrics: metrics.length > 0 ? [{ scope: { name: TCP_SCOPE_NAME }, metrics }] : [] },
    errors: [],
  };
}

/** Point `i` of a histogram family snapshot as an SDK Histogram (per-bucket counts, the last for +Inf). */
function histogramValue(def: FamilyDef, f: FamilySnapshot, i: number): Histogram {
  const o = i * f.stride;
  const nCounts = f.stride - 4;
  const count = f.values[o + nCounts + 1]!;
  const h: Histogram = {
    buckets: { boundaries: [...(def.buckets ?? [])], counts: Array.from(f.values.subarray(o, o + nCounts)) },
    sum: f.values[o + nCounts]!,
    count,
  };
  if (count > 0) {
    h.min = f.values[o + nCounts + 2]!;
    h.max = f.values[o + nCounts + 3]!;
  }
  return h;
}

/**
 * A store as an SDK {@link MetricProducer}, so it plugs into a
 * PeriodicExportingMetricReader through `metricProducers`. Each collect is a
 * store snapshot (series marked collected, stale ones removed).
 */
export class StoreMetricProducer implements MetricProducer {
  constructor(
    readonly store: SeriesStore<Attributes>,
    /** Resource put on the collected ResourceMetrics (a reader keeps its own MeterProvider's). */
    private readonly resource: Resource,
  ) {}

  collect(): Promise<CollectionResult> {
    return Promise.resolve(this.collectSync());
  }

  /** The synchronous body of {@link collect}. */
  collectSync(): CollectionResult {
    return toCollectionResult(this.store.snapshot(), this.resource);
  }
}
