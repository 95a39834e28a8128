import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Attributes } from '@opentelemetry/api';
import { hrTimeToMilliseconds } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType, type CollectionResult, type MetricData } from '@opentelemetry/sdk-metrics';
import { kmeshSchema } from '../../src/metrics/schemas/kmesh.js';
import { bucketIndex, hashValues, SeriesStore } from '../../src/metrics/SeriesStore.js';
import type { MetricSchema } from '../../src/metrics/schema.js';
import { toCollectionResult } from '../../src/exporters/common/sdkMetrics.js';
import type { FlowPoint } from '../../src/model/metrics.js';
import { SelfTelemetry } from '../../src/telemetry/SelfTelemetry.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../helpers/flowPoints.js';

const resource = resourceFromAttributes({ 'service.name': 't' });

function metric(r: CollectionResult, name: string): MetricData | undefined {
  return r.resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
}
function sumValues(r: CollectionResult, name: string): number[] {
  const m = metric(r, name);
  if (m === undefined) return [];
  assert.equal(m.dataPointType, DataPointType.SUM);
  return m.dataPoints.map((d) => d.value as number);
}

function add<W>(store: SeriesStore<W>, p: FlowPoint): void {
  store.consume({ points: [p] });
}
/** A collect through the SDK conversion (src/exporters/common/sdkMetrics.ts). */
function collect(store: SeriesStore<Attributes>): CollectionResult {
  return toCollectionResult(store.snapshot(), resource);
}

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('SeriesStore', () => {
  it('accumulates cumulative monotonic sums with start/end times', async () => {
    const c = clock();
    const store = new SeriesStore<Attributes>({ schema: kmeshSchema, now: c.now });
    add(store, flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 5 }));
    c.advance(1000);
    add(store, flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 7 }));
    c.advance(1000);
    const r1 = collect(store);
    const m = metric(r1, 'kmesh_tcp_workload_sent_bytes_total')!;
    assert.equal(m.aggregationTemporality, AggregationTemporality.CUMULATIVE);
    assert.ok(m.dataPointType === DataPointType.SUM && m.isMonotonic);
    assert.equal(m.dataPoints.length, 1);
    assert.equal(m.dataPoints[0]!.value, 12);
    assert.equal(hrTimeToMilliseconds(m.dataPoints[0]!.startTime), 1_000_000);
    assert.equal(hrTimeToMilliseconds(m.dataPoints[0]!.endTime), 1_002_000);
    add(store, flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 1 }));
    assert.deepEqual(sumValues(collect(store), 'kmesh_tcp_workload_sent_bytes_total'), [13]);
    assert.equal(metric(r1, 'kmesh_tcp_workload_received_bytes_total'), undefined, 'no empty series');
  });

  it('reports deltas since the previous collect in delta mode', async () => {
    const c = clock();
    const store = new SeriesStore<Attributes>({ schema: kmeshSchema, now: c.now, temporality: 'delta' });
    add(store, flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 5 }));
    c.advance(500);
    const r1 = collect(store);
    assert.equal(metric(r1, 'kmesh_tcp_workload_sent_bytes_total')!.aggregationTemporality, AggregationTemporality.DELTA);
    assert.deepEqual(sumValues(r1, 'kmesh_tcp_workload_sent_bytes_total'), [5]);
    assert.deepEqual(sumValues(collect(store), 'kmesh_tcp_workload_sent_bytes_total'), [], 'no point without new data');
    c.advance(500);
    add(store, flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 3 }));
    c.advance(500);
    const r3 = collect(store);
    const dp = metric(r3, 'kmesh_tcp_workload_sent_bytes_total')!.dataPoints[0]!;
    assert.equal(dp.value, 3);
    assert.equal(hrTimeToMilliseconds(dp.startTime), 1_000_500, 'delta starts at the previous collect');
  });

  it('routes label sets beyond the budget to one overflow series and counts them', async () => {
    const telemetry = new SelfTelemetry(resource);
    const store = new SeriesStore<Attributes>({ schema: kmeshSchema, maxSeriesPerFamily: 2, telemetry, telemetryAttributes: { exporter: 'x' } });
    for (let i = 0; i < 5; i++) add(store, flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: `w${i}` }, { sentBytes: 10 }));
    const m = metric(collect(store), 'kmesh_tcp_workload_sent_bytes_total')!;
    assert.equal(m.dataPoints.length, 3);
    const overflow = m.dataPoints.find((d) => d.attributes['otel_metric_overflow'] === 'true')!;
    assert.deepEqual(overflow.attributes, { otel_metric_overflow: 'true' });
    assert.equal(overflow.value, 30, 'three label sets overflowed, none dropped');
    const total = m.dataPoints.reduce((a, d) => a + (d.value as number), 0);
    assert.equal(total, 50);
    const self = await telemetry.producer.collect();
    const ov = self.resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((x) => x.descriptor.name === 'kmesh_otel_exporter_metric_overflow_points')!;
    const wl = ov.dataPoints.find((d) => d.attributes['metric'] === 'kmesh_tcp_workload_sent_bytes_total')!;
    assert.equal(wl.value, 3);
    await telemetry.shutdown();
  });

  it('removes a stale series only after its final value was collected, freeing its budget slot', async () => {
    const c = clock();
    const store = new SeriesStore<Attributes>({ schema: kmeshSchema, now: c.now, seriesTtlMs: 60_000, maxSeriesPerFamily: 1 });
    add(store, flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: 'gone' }, { sentBytes: 1 }));
    c.advance(120_000);
    // Idle past the TTL but never collected: its value must still be exported once.
    assert.deepEqual(sumValues(collect(store), 'kmesh_tcp_workload_sent_bytes_total'), [1]);
    assert.deepEqual(sumValues(collect(store), 'kmesh_tcp_workload_sent_bytes_total'), []);
    assert.equal(store.seriesCount(), 0);
    add(store, flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: 'new' }, { sentBytes: 2 }));
    const m = metric(collect(store), 'kmesh_tcp_workload_sent_bytes_total')!;
    assert.equal(m.dataPoints[0]!.attributes['source_workload'], 'new', 'slot reused, not overflowed');
  });

  it('fills histogram buckets; keeps active series while idle ones expire', async () => {
    const c = clock();
    const store = new SeriesStore<Attributes>({ schema: kmeshSchema, now: c.now, seriesTtlMs: 60_000 });
    add(store, flowPoint(SLEEP_TO_HTTPBIN, { rttsSec: [0.00005, 0.0002, 5] }));
    const m = metric(collect(store), 'kmesh_tcp_rtt_seconds');
    assert.ok(m !== undefined && m.dataPointType === DataPointType.HISTOGRAM);
    const h = m.dataPoints[0]!.value;
    assert.equal(h.count, 3);
    assert.equal(h.sum, 5.00025);
    assert.equal(h.min, 0.00005);
    assert.equal(h.max, 5);
    assert.equal(h.buckets.counts[0], 1);
    assert.equal(h.buckets.counts[2], 1);
    assert.equal(h.buckets.counts[h.buckets.counts.length - 1], 1);
    for (let i = 0; i < 3; i++) {
      c.advance(30_000);
      add(store, flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 1 }));
      collect(store);
    }
    const r = collect(store);
    assert.deepEqual(sumValues(r, 'kmesh_tcp_workload_sent_bytes_total'), [3], 'active series kept');
    assert.equal(metric(r, 'kmesh_tcp_rtt_seconds'), undefined, 'idle series expired');
    assert.equal(bucketIndex([1, 2], 1), 0);
    assert.equal(bucketIndex([1, 2], 1.5), 1);
    assert.equal(bucketIndex([1, 2], 3), 2);
  });
});

describe('SeriesStore label sets', () => {
  it('shares one series between equal label values carried by different attribute objects', async () => {
    const store = new SeriesStore<Attributes>({ schema: kmeshSchema });
    add(store, flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 5 }));
    add(store, flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 7 }));
    const shared = { ...SLEEP_TO_HTTPBIN };
    add(store, { ...flowPoint({}), attributes: shared, sentBytes: 1 });
    add(store, { ...flowPoint({}), attributes: shared, sentBytes: 2 });
    assert.deepEqual(sumValues(collect(store), 'kmesh_tcp_workload_sent_bytes_total'), [15]);
    // Workload and service families of one point: 2 series.
    assert.equal(store.seriesCount(), 2);
  });

  it('restarts a removed series from 0 when the same attributes object comes back', async () => {
    const c = clock();
    const store = new SeriesStore<Attributes>({ schema: kmeshSchema, now: c.now, seriesTtlMs: 60_000 });
    const attrs = { ...SLEEP_TO_HTTPBIN };
    add(store, { ...flowPoint({}), attributes: attrs, sentBytes: 4 });
    collect(store);
    c.advance(60_000);
    assert.deepEqual(sumValues(collect(store), 'kmesh_tcp_workload_sent_bytes_total'), [], 'expired');
    assert.equal(store.seriesCount(), 0);
    // Another label set takes the freed block first; the old object must not see its numbers.
    add(store, flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: 'other' }, { sentBytes: 100 }));
    add(store, { ...flowPoint({}), attributes: attrs, sentBytes: 3 });
    const m = metric(collect(store), 'kmesh_tcp_workload_sent_bytes_total')!;
    const byWorkload = new Map(m.dataPoints.map((d) => [d.attributes['source_workload'], d]));
    assert.equal(byWorkload.get('sleep')!.value, 3, 'restarted from 0');
    assert.equal(hrTimeToMilliseconds(byWorkload.get('sleep')!.startTime), 1_060_000, 'new start time');
    assert.equal(byWorkload.get('other')!.value, 100);
  });

  it('exports the exact attributes of a label set, special characters included', async () => {
    const store = new SeriesStore<Attributes>({ schema: kmeshSchema });
    add(store, flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: 'we"ird\\name\nx' }, { opened: 1 }));
    const m = metric(collect(store), 'kmesh_tcp_workload_connections_opened_total')!;
    const a = m.dataPoints[0]!.attributes;
    assert.equal(Object.keys(a).length, 23);
    assert.equal(a['source_workload'], 'we"ird\\name\nx');
    assert.equal(a['source_principal'], '-');
    assert.equal(a['response_flags'], '-');
  });

  it('snapshots histogram points as per-bucket counts, sum, count, min, max', () => {
    const store = new SeriesStore<Attributes>({ schema: kmeshSchema });
    add(store, flowPoint(SLEEP_TO_HTTPBIN, { durationsSec: [0.004, 0.2, 7200, Number.NaN] }));
    const snap = store.snapshot();
    const f = snap.families.find((x) => x.def.name === 'kmesh_tcp_connection_duration_seconds')!;
    assert.equal(f.length, 1);
    assert.equal(f.stride, 17 + 4);
    const counts = Array.from(f.values.subarray(0, 17));
    assert.deepEqual(counts, [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert.deepEqual(Array.from(f.values.subarray(17)), [7200.204, 3, 0.004, 7200]);
    assert.equal(f.labels[0]!.names[0], 'connection_security_policy');
    assert.equal(f.labels[0]!.values[0], 'mutual_tls');
  });

  it('keeps label sets as value lists, with ids reused after release and a wire slot that dies with the set', () => {
    const c = clock();
    const store = new SeriesStore<string>({ schema: kmeshSchema, now: c.now, seriesTtlMs: 60_000 });
    add(store, flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: 'a' }, { opened: 1 }));
    add(store, flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: 'b' }, { opened: 1 }));
    const sets = store.snapshot().families.find((f) => f.def.name === 'kmesh_tcp_workload_connections_opened_total')!.labels;
    // Workload set of a, service set of a, workload set of b, service set of b: ids 0..3, one per registered set.
    assert.deepEqual(sets.map((ls) => ls.id).sort(), [0, 2]);
    const a = sets.find((ls) => ls.values[ls.names.indexOf('source_workload')] === 'a')!;
    assert.equal(a.values.length, 23);
    assert.equal(a.hash, hashValues(a.values));
    assert.equal(a.wire, undefined, 'the store never fills the wire slot');
    a.wire = 'cached by the exporter';
    c.advance(60_000);
    store.snapshot(); // both expire: their ids are free
    assert.equal(store.seriesCount(), 0);
    assert.equal(a.id, -1);
    add(store, flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: 'c' }, { opened: 1 }));
    const c1 = store.snapshot().families[0]!.labels[0]!;
    assert.ok(c1.id >= 0 && c1.id <= 3, `a released id is reused (${c1.id})`);
    assert.equal(c1.wire, undefined, 'a new set starts without a wire form');
  });

  it('tells apart value lists whose hashes collide', () => {
    // Found by brute force: FNV-1a of these two one-value lists is equal (2711808811).
    assert.equal(hashValues(['w673879']), hashValues(['w1180600']));
    const fam = { name: 'one_total', help: 'h', unit: '', type: 'counter' as const, labels: ['a'] };
    const schema: MetricSchema = {
      name: 'one',
      unknown: '-',
      families: [fam],
      groups: [{ labels: ['a'], bindings: [{ family: fam }], read: (p, out) => void (out[0] = p.opened) }],
    };
    const store = new SeriesStore({ schema });
    for (const [a, n] of [['w673879', 1], ['w1180600', 2], ['w673879', 4]] as const) add(store, flowPoint({ a }, { opened: n }));
    const f = store.snapshot().families[0]!;
    const byValue = new Map(f.labels.map((ls, i) => [ls.values[0], f.values[i]]));
    assert.deepEqual([...byValue.entries()].sort(), [['w1180600', 2], ['w673879', 5]]);
  });

});
