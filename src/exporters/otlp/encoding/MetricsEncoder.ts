import { ValueType, type Attributes, type HrTime } from '@opentelemetry/api';
import { ProtobufMetricsSerializer } from '@opentelemetry/otlp-transformer';
import {
  AggregationTemporality,
  DataPointType,
  type DataPoint,
  type Histogram,
  type MetricData,
  type ResourceMetrics,
  type ScopeMetrics,
} from '@opentelemetry/sdk-metrics';
import type { EncodedRequest } from '../transport.js';
import { encodedResource, encodeScope, FragmentCache, writeAttributes } from './common.js';
import { encodeFragment, REQUEST_BUFFERS_POOLED, RequestBuffers, WireType, type Bits64, type ProtoWriter } from './ProtoWriter.js';

/**
 * Direct OTLP encoding of metrics: one ExportMetricsServiceRequest
 * (opentelemetry.proto.collector.metrics.v1) per ResourceMetrics, with the
 * same content as @opentelemetry/otlp-transformer's ProtobufMetricsSerializer
 * (test/exporters/otlp/encodingEquivalence.test.ts decodes both and compares
 * them field by field).
 *
 * What repeats is encoded once and spliced: the resource, each scope, and
 * each label set's attributes. The series store hands every point of a label
 * set the same attributes object, collect after collect (it keeps it in the
 * set's wire slot: exporters/common/sdkMetrics.ts), so the encoded KeyValue
 * fields are cached per attributes object (weakly: they go when the label set
 * goes). A Kmesh point's 23 attributes are most of its bytes; per point only
 * the times and the value are encoded. Attributes objects are immutable once
 * handed to an exporter, as everywhere in the pipeline.
 */

const LD = WireType.LengthDelimited;
const F64 = WireType.Fixed64;

/** Attributes field number of each point message (NumberDataPoint 7, HistogramDataPoint 9). */
const NUMBER_ATTRIBUTES = 7;
const HISTOGRAM_ATTRIBUTES = 9;

/** Distinct scopes kept (one per instrumentation library; the agent has two). */
const SCOPE_CACHE_SIZE = 256;

const TWO_32 = 4_294_967_296;

/**
 * An HrTime ([s, ns]) as fixed64 halves of its ns since the epoch, exactly:
 * s x 10^9 passes 2^53 in 1970 + 104 days, so the product is split at 2^16
 * seconds into parts that stay exact.
 */
export function hrTimeBits(t: HrTime): Bits64 {
  const sec = t[0];
  const secLow = sec % 65_536;
  const secHigh = (sec - secLow) / 65_536;
  const a = secLow * 1e9 + t[1]; // < 2^46: exact
  const b = secHigh * 1e9; // x 2^16 in the total; exact for times before year 10,000
  const aLow = a % TWO_32;
  let low = aLow + (b % 65_536) * 65_536;
  let carry = 0;
  if (low >= TWO_32) {
    low -= TWO_32;
    carry = 1;
  }
  return { low, high: Math.floor(b / 65_536) + (a - aLow) / TWO_32 + carry };
}

/**
 * {@link hrTimeBits} of the last HrTime seen: the points of a collection
 * share their start and end times (one per series start, one per
 * collection), so most points convert no time. HrTime arrays are not frozen,
 * so the values are compared, not the array's identity.
 */
class HrTimeBitsCache {
  private sec = -1;
  private ns = -1;
  private bits: Bits64 = { low: 0, high: 0 };

  of(t: HrTime): Bits64 {
    if (t[0] !== this.sec || t[1] !== this.ns) {
      this.bits = hrTimeBits(t);
      this.sec = t[0];
      this.ns = t[1];
    }
    return this.bits;
  }
}

/** A fixed64 field: a one-byte tag (fields 2-15) and 8 bytes. */
const FIXED64_FIELD = 9;
const NO_BYTES = new Uint8Array(0);

/** OTLP AggregationTemporality (DELTA 1, CUMULATIVE 2) of the SDK's enum; 0 (unspecified) is not written. */
function protoTemporality(t: AggregationTemporality): number {
  return t === AggregationTemporality.DELTA ? 1 : t === AggregationTemporality.CUMULATIVE ? 2 : 0;
}

export class MetricsEncoder {
  /** Per attributes object: its KeyValue fields under field 7 and under field 9. */
  private readonly attributeBytes = new WeakMap<Attributes, [Uint8Array | undefined, Uint8Array | undefined]>();
  /**
   * ~0.9 KB per point with the full kmesh label set (bench/otlp.ts), learnt
   * from each request; the memory of requests the sending queue has
   * released is reused (as in the logs encoder).
   */
  private readonly buffers = new RequestBuffers(900, REQUEST_BUFFERS_POOLED);
  private readonly startTimes = new HrTimeBitsCache();
  private readonly endTimes = new HrTimeBitsCache();
  private readonly scopes = new FragmentCache<{ scope: Uint8Array; schemaUrl: Uint8Array }>(SCOPE_CACHE_SIZE);

  /** One ExportMetricsServiceRequest holding `rm`, and its number of data points. */
  encode(rm: ResourceMetrics): EncodedRequest {
    let items = 0;
    for (const sm of rm.scopeMetrics) {
      for (const m of sm.metrics) {
        items += m.dataPoints.length;
        // Not emitted by this agent; the SDK's serializer keeps such a request correct.
        if (m.dataPointType === DataPointType.EXPONENTIAL_HISTOGRAM) return { bytes: ProtobufMetricsSerializer.serializeRequest(rm)!, items };
      }
    }
    const w = this.buffers.writer(items);
    const res = encodedResource(rm.resource);
    // ExportMetricsServiceRequest.resource_metrics(1) { resource(1), scope_metrics(2)*, schema_url(3) }
    w.tag(1, LD).fork().raw(res.resource);
    for (const sm of rm.scopeMetrics) {
      w.tag(2, LD).fork();
      this.writeScopeMetrics(w, sm);
      w.ldelim();
    }
    w.raw(res.schemaUrl).ldelim();
    const bytes = w.finish();
    this.buffers.learn(bytes.length, items);
    return { bytes, items, release: () => this.buffers.give(bytes) };
  }

  private writeScopeMetrics(w: ProtoWriter, sm: ScopeMetrics): void {
    const s = sm.scope;
    const key = `${s.name}\u0000${s.version ?? ''}\u0000${s.schemaUrl ?? ''}`;
    let scope = this.scopes.get(key);
    if (scope === undefined) {
      scope = encodeScope(s);
      this.scopes.set(key, scope);
    }
    w.raw(scope.scope);
    for (const m of sm.metrics) {
      w.tag(2, LD).fork();
      this.writeMetric(w, m);
      w.ldelim();
    }
    w.raw(scope.schemaUrl);
  }

  /** Metric { name 1, description 2, unit 3, gauge 5 | sum 7 | histogram 9 }. */
  private writeMetric(w: ProtoWriter, m: MetricData): void {
    const d = m.descriptor;
    w.tag(1, LD).string(d.name);
    if (d.description) w.tag(2, LD).string(d.description);
    if (d.unit) w.tag(3, LD).string(d.unit);
    switch (m.dataPointType) {
      case DataPointType.GAUGE:
      case DataPointType.SUM: {
        // Gauge { data_points 1 }; Sum { data_points 1, aggregation_temporality 2, is_monotonic 3 }
        const isSum = m.dataPointType === DataPointType.SUM;
        w.tag(isSum ? 7 : 5, LD).fork();
        const asInt = d.valueType === ValueType.INT;
        for (const p of m.dataPoints) this.writeNumberPoint(w, p, asInt);
        if (isSum) {
          const t = protoTemporality(m.aggregationTemporality);
          if (t !== 0) w.tag(2, WireType.Varint).uint32(t);
          if (m.isMonotonic) w.tag(3, WireType.Varint).uint32(1);
        }
        w.ldelim();
        return;
      }
      case DataPointType.HISTOGRAM: {
        // Histogram { data_points 1, aggregation_temporality 2 }
        w.tag(9, LD).fork();
        for (const p of m.dataPoints) this.writeHistogramPoint(w, p);
        const t = protoTemporality(m.aggregationTemporality);
        if (t !== 0) w.tag(2, WireType.Varint).uint32(t);
        w.ldelim();
        return;
      }
    }
  }

  /** The attributes as KeyValue fields numbered `field`, cached per attributes object. */
  private attributes(attributes: Attributes, field: typeof NUMBER_ATTRIBUTES | typeof HISTOGRAM_ATTRIBUTES): Uint8Array {
    const slot = field === NUMBER_ATTRIBUTES ? 0 : 1;
    let cached = this.attributeBytes.get(attributes);
    if (cached === undefined) {
      cached = [undefined, undefined];
      this.attributeBytes.set(attributes, cached);
    }
    return (cached[slot] ??= encodeFragment((f) => writeAttributes(f, attributes, field)));
  }

  /**
   * NumberDataPoint { start_time 2, time 3, as_double 4 | as_int 6, attributes 7 }, as data_points field 1.
   * Its length is known before it is written (three fixed64 fields and the
   * cached attributes), so the point is not forked: a fork's one reserved
   * length byte would make the writer move every point of ~1 KB by a byte.
   */
  private writeNumberPoint(w: ProtoWriter, p: DataPoint<number>, asInt: boolean): void {
    const attributes = p.attributes ? this.attributes(p.attributes, NUMBER_ATTRIBUTES) : NO_BYTES;
    w.tag(1, LD).uint32(3 * FIXED64_FIELD + attributes.length);
    w.tag(2, F64).fixed64Bits(this.startTimes.of(p.startTime));
    w.tag(3, F64).fixed64Bits(this.endTimes.of(p.endTime));
    if (asInt) w.tag(6, F64).sfixed64(p.value);
    else w.tag(4, F64).double(p.value);
    w.raw(attributes);
  }

  /**
   * HistogramDataPoint { start_time 2, time 3, count 4, sum 5, bucket_counts 6
   * (packed fixed64), explicit_bounds 7 (packed double), attributes 9, min 11,
   * max 12 }, as data_points field 1.
   */
  private writeHistogramPoint(w: ProtoWriter, p: DataPoint<Histogram>): void {
    const h = p.value;
    w.tag(1, LD).fork();
    w.tag(2, F64).fixed64Bits(this.startTimes.of(p.startTime));
    w.tag(3, F64).fixed64Bits(this.endTimes.of(p.endTime));
    w.tag(4, F64).fixed64(h.count);
    if (h.sum !== undefined) w.tag(5, F64).double(h.sum);
    const counts = h.buckets.counts;
    if (counts.length > 0) {
      w.tag(6, LD).uint32(counts.length * 8);
      for (const c of counts) w.fixed64(c);
    }
    const bounds = h.buckets.boundaries;
    if (bounds.length > 0) {
      w.tag(7, LD).uint32(bounds.length * 8);
      for (const b of bounds) w.double(b);
    }
    if (p.attributes) w.raw(this.attributes(p.attributes, HISTOGRAM_ATTRIBUTES));
    if (h.min !== undefined) w.tag(11, F64).double(h.min);
    if (h.max !== undefined) w.tag(12, F64).double(h.max);
    w.ldelim();
  }
}
