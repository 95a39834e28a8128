import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { DataPointType, type CollectionResult, type MetricData } from '@opentelemetry/sdk-metrics';
import { SelfTelemetry } from '../../src/telemetry/SelfTelemetry.js';

function metric(r: CollectionResult, name: string): MetricData | undefined {
  return r.resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
}

describe('SelfTelemetry', () => {
  it('prefixes names, reuses one counter per name, and reads gauges at collection time', async () => {
    const t = new SelfTelemetry(resourceFromAttributes({ 'service.name': 'self' }));
    const a = t.counter('things', 'Things');
    assert.equal(t.counter('things', 'Things again'), a, 'one counter per name');
    a.add(2, { exporter: 'x' });
    t.counter('things', 'Things').add(3, { exporter: 'x' });
    const q = t.upDownCounter('queued', 'Queued');
    q.add(5);
    q.add(-2);
    let level = 7;
    t.gauge('level', 'Level', () => [[level, { which: 'one' }]]);
    t.histogram('latency', 'Latency', 's', [0.1, 1]).record(0.5);
    const r1 = await t.producer.collect();
    assert.equal(r1.resourceMetrics.resource.attributes['service.name'], 'self');
    const things = metric(r1, 'kmesh_otel_things')!;
    assert.ok(things.dataPointType === DataPointType.SUM && things.isMonotonic);
    assert.deepEqual(things.dataPoints.map((d) => [d.value, d.attributes]), [[5, { exporter: 'x' }]]);
    assert.equal(metric(r1, 'kmesh_otel_queued')!.dataPoints[0]!.value, 3);
    assert.equal(metric(r1, 'kmesh_otel_level')!.dataPoints[0]!.value, 7);
    const h = metric(r1, 'kmesh_otel_latency')!;
    assert.ok(h.dataPointType === DataPointType.HISTOGRAM);
    assert.deepEqual(h.dataPoints[0]!.value.buckets, { boundaries: [0.1, 1], counts: [0, 1, 0] });
    level = 9;
    assert.equal(metric(await t.producer.collect(), 'kmesh_otel_level')!.dataPoints[0]!.value, 9, 'read again at the next collection');
    await t.shutdown();
    await t.shutdown();
  });
});
