/**
 * Cardinality overflow is a loss (the labels of the overflowing series are
 * gone): counted per family from start-up at 0, and logged through a
 * LossLog with the same count (issue 19).
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { it } from 'node:test';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { pino } from 'pino';
import { kmeshSchema } from '../../src/metrics/schemas/kmesh.js';
import { SeriesStore } from '../../src/metrics/SeriesStore.js';
import { SelfTelemetry } from '../../src/telemetry/SelfTelemetry.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../helpers/flowPoints.js';

it('series overflow: counters exist at 0 per family, and every overflowed point is in the log lines', async () => {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const resource = resourceFromAttributes({ 'service.name': 't' });
  const telemetry = new SelfTelemetry(resource);
  const store = new SeriesStore({ schema: kmeshSchema, maxSeriesPerFamily: 2, telemetry, telemetryAttributes: { exporter: 'x' }, logger: pino({ level: 'info' }, sink) });
  const overflowPoints = async (): Promise<Map<string, number>> => {
    const self = await telemetry.producer.collect();
    const m = self.resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((x) => x.descriptor.name === 'kmesh_otel_exporter_metric_overflow_points')!;
    return new Map(m.dataPoints.map((d) => [String(d.attributes.metric), d.value as number]));
  };
  const before = await overflowPoints();
  assert.equal(before.size, kmeshSchema.families.length, 'one series per family from the start');
  assert.ok([...before.values()].every((v) => v === 0));
  assert.equal(lines.length, 0);

  for (let i = 0; i < 6; i++) store.consume({ points: [flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: `w${i}` }, { sentBytes: 10 })] });
  const counted = [...(await overflowPoints()).values()].reduce((a, b) => a + b, 0);
  assert.ok(counted >= 4, `overflow counted (${counted})`);
  assert.equal(lines.length, 1, 'the first overflow is logged at once, the rest summarised');
  assert.equal(lines[0]!.cause, 'series_overflow');
  assert.equal(lines[0]!.max_series_per_family, 2);
  store.close(); // flushes the pending summary
  const logged = lines.filter((l) => l.cause === 'series_overflow').reduce((a, l) => a + Number(l.lost), 0);
  assert.equal(logged, counted, 'every overflowed contribution is in the log lines');
  await telemetry.shutdown();
});
