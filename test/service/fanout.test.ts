import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LogsConsumer, MetricsConsumer } from '../../src/component/component.js';
import type { LogsBatch } from '../../src/model/logs.js';
import { emptyFlowValues, type MetricsBatch } from '../../src/model/metrics.js';
import { fanoutLogs, fanoutMetrics } from '../../src/service/fanout.js';

function metricsSink(mutatesData: boolean): MetricsConsumer & { got: MetricsBatch[] } {
  const got: MetricsBatch[] = [];
  return {
    mutatesData,
    got,
    consumeMetrics(b) {
      if (mutatesData) for (const p of b.points) p.attributes.changed = 'yes';
      got.push(b);
    },
  };
}

describe('fanout', () => {
  it('copies the batch only for consumers that mutate data, so readers never see their changes', () => {
    const reader1 = metricsSink(false);
    const writer = metricsSink(true);
    const reader2 = metricsSink(false);
    const errors: unknown[] = [];
    const f = fanoutMetrics([reader1, writer, reader2], (e) => errors.push(e));
    const batch: MetricsBatch = { points: [{ attributes: Object.freeze({ a: '1' }) as Record<string, string>, ...emptyFlowValues(), opened: 1 }] };
    f.consumeMetrics(batch);
    assert.deepEqual(errors, []);
    assert.equal(reader1.got[0], batch);
    assert.equal(reader2.got[0], batch);
    assert.notEqual(writer.got[0], batch);
    assert.deepEqual(writer.got[0]!.points[0]!.attributes, { a: '1', changed: 'yes' });
    assert.deepEqual(batch.points[0]!.attributes, { a: '1' });
  });

  it('a consumer that throws does not keep the batch from the others', () => {
    const seen: string[] = [];
    const boom: LogsConsumer = {
      consumeLogs() {
        throw new Error('boom');
      },
    };
    const ok: LogsConsumer = { consumeLogs: () => void seen.push('ok') };
    const errors: string[] = [];
    fanoutLogs([boom, ok], (e) => errors.push((e as Error).message)).consumeLogs({ entries: [] } as LogsBatch);
    assert.deepEqual(seen, ['ok']);
    assert.deepEqual(errors, ['boom']);
  });
});
