import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType, InstrumentType, type MetricData, type PushMetricExporter, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { MetricsSendingQueue, type MetricsQueueOptions } from '../../../src/exporters/otlp/OtlpMetricsExporter.js';
import { Retrier } from '../../../src/exporters/otlp/retry.js';
import { selfCounter, testSettings } from '../../helpers/settings.js';

/** One collection of `n` points of one counter, each point's value = `value`. */
function collection(n: number, value: number): ResourceMetrics {
  const metric = {
    descriptor: { name: 'c', description: '', unit: '1', type: InstrumentType.COUNTER, valueType: 1 },
    dataPointType: DataPointType.SUM,
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    isMonotonic: true,
    dataPoints: Array.from({ length: n }, (_, i) => ({ attributes: { i: String(i) }, startTime: [0, 0], endTime: [1, 0], value })),
  } as MetricData;
  return { resource: resourceFromAttributes({}), scopeMetrics: [{ scope: { name: 's' }, metrics: [metric] }] };
}

/** A PushMetricExporter whose exports stay open until the test answers them. */
class HeldMetricExporter implements PushMetricExporter {
  readonly calls: Array<{ metrics: ResourceMetrics; done: (r: ExportResult) => void }> = [];
  export(metrics: ResourceMetrics, done: (r: ExportResult) => void): void {
    this.calls.push({ metrics, done });
  }
  /** Requests released (done for good), in order. */
  readonly released: ResourceMetrics[] = [];
  release(metrics: ResourceMetrics): void {
    this.released.push(metrics);
  }
  async forceFlush(): Promise<void> {}
  async shutdown(): Promise<void> {}
  /** Value of the first point of call `i`. */
  valueOf(i: number): number {
    return this.calls[i]!.metrics.scopeMetrics[0]!.metrics[0]!.dataPoints[0]!.value as number;
  }
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const OK = { code: ExportResultCode.SUCCESS };
const FAIL = { code: ExportResultCode.FAILED, error: Object.assign(new Error('unavailable'), { code: 14 }) };

function queue(opts: Partial<MetricsQueueOptions>, retryEnabled = false) {
  const settings = testSettings('otlp/q');
  const t = settings.telemetry;
  const inner = new HeldMetricExporter();
  const q = new MetricsSendingQueue(
    inner,
    { enabled: true, queueSize: 100, numConsumers: 1, maxPointsPerRequest: 10, supersede: true, ...opts },
    new Retrier({ enabled: retryEnabled, initial_interval: 5, max_interval: 5, max_elapsed_time: 10_000, multiplier: 1, randomization_factor: 0 }),
    {
      sent: t.counter('exporter_sent_metric_points', ''),
      failed: t.counter('exporter_send_failed_metric_points', ''),
      dropped: t.counter('exporter_dropped_metric_points', ''),
      superseded: t.counter('exporter_superseded_metric_points', ''),
      attrs: { exporter: 'otlp/q' },
    },
  );
  const counts = async () => ({
    sent: await selfCounter(settings, 'kmesh_otel_exporter_sent_metric_points'),
    failed: await selfCounter(settings, 'kmesh_otel_exporter_send_failed_metric_points'),
    dropped: await selfCounter(settings, 'kmesh_otel_exporter_dropped_metric_points'),
    superseded: await selfCounter(settings, 'kmesh_otel_exporter_superseded_metric_points'),
  });
  return { q, inner, counts };
}

describe('MetricsSendingQueue', () => {
  it('releases each request once, when it is done for good: after its last retry, not between attempts', async () => {
    const { q, inner } = queue({ numConsumers: 1 }, true);
    q.export(collection(10, 1), () => undefined);
    assert.equal(inner.calls.length, 1);
    inner.calls[0]!.done(FAIL);
    await new Promise((r) => setTimeout(r, 30)); // the 5 ms backoff
    assert.equal(inner.calls.length, 2, 'retried');
    assert.equal(inner.calls[1]!.metrics, inner.calls[0]!.metrics, 'the same request (its encoding is reused)');
    assert.deepEqual(inner.released, [], 'not released while a retry may still send it');
    inner.calls[1]!.done(OK);
    assert.deepEqual(inner.released, [inner.calls[0]!.metrics]);
    q.stopRetrying();
    q.export(collection(10, 2), () => undefined);
    await tick();
    inner.calls[2]!.done(FAIL);
    assert.equal(inner.released.length, 2, 'a request that failed for good is released too');
    assert.equal(inner.released[1], inner.calls[2]!.metrics);
  });

  it('cumulative: a newer collection replaces the requests still waiting; every point counted once', async () => {
    const { q, inner, counts } = queue({ numConsumers: 1 });
    const answers: ExportResult[] = [];
    q.export(collection(30, 1), (r) => answers.push(r)); // 3 requests: 1 in flight, 2 waiting
    q.export(collection(30, 2), (r) => answers.push(r)); // replaces the 2 waiting
    assert.deepEqual(answers.map((a) => a.code), [ExportResultCode.SUCCESS, ExportResultCode.SUCCESS], 'answered once queued');
    assert.equal(inner.calls.length, 1);
    assert.equal(q.queuedPoints, 10 + 30);
    inner.calls[0]!.done(OK);
    for (let i = 1; i <= 3; i++) {
      await tick();
      assert.equal(inner.calls.length, i + 1, `request ${i + 1} sent after the previous one finished`);
      assert.equal(inner.valueOf(i), 2, 'the newer collection');
      inner.calls[i]!.done(OK);
    }
    await q.forceFlush();
    assert.equal(q.queuedPoints, 0);
    assert.deepEqual(await counts(), { sent: 40, failed: 0, dropped: 0, superseded: 20 });
  });

  it('cumulative: a retry is given up once a newer collection got through (no older totals after newer ones)', async () => {
    const { q, inner, counts } = queue({ numConsumers: 2 }, true);
    q.export(collection(10, 1), () => undefined);
    inner.calls[0]!.done(FAIL); // waits 5 ms to retry
    // All synchronous, so before the retry's timer: the newer collection is
    // sent on the second consumer and delivered.
    q.export(collection(10, 2), () => undefined);
    assert.equal(inner.calls.length, 2);
    inner.calls[1]!.done(OK);
    await new Promise((r) => setTimeout(r, 30));
    await q.forceFlush();
    assert.equal(inner.calls.length, 2, 'the older request was not sent again');
    assert.deepEqual(await counts(), { sent: 10, failed: 0, dropped: 0, superseded: 10 });
  });

  it('delta: requests are kept up to queueSize points; beyond, new ones are dropped and counted', async () => {
    const { q, inner, counts } = queue({ supersede: false, queueSize: 25, numConsumers: 1 });
    const answers: ExportResult[] = [];
    q.export(collection(20, 1), (r) => answers.push(r)); // 20 held
    q.export(collection(10, 2), (r) => answers.push(r)); // one request of 10 fits? 20 + 10 > 25: dropped
    q.export(collection(5, 3), (r) => answers.push(r)); // 25: fits
    assert.deepEqual(answers.map((a) => a.code), [ExportResultCode.SUCCESS, ExportResultCode.FAILED, ExportResultCode.SUCCESS]);
    assert.equal(q.queuedPoints, 25);
    for (let i = 0; i < 3; i++) {
      await tick();
      inner.calls[i]!.done(OK);
    }
    await q.forceFlush();
    assert.deepEqual(inner.calls.map((c, i) => [c.metrics.scopeMetrics[0]!.metrics[0]!.dataPoints.length, inner.valueOf(i)]), [[10, 1], [10, 1], [5, 3]]);
    assert.deepEqual(await counts(), { sent: 25, failed: 0, dropped: 10, superseded: 0 });
  });

  it('numConsumers requests in flight at most; queue disabled answers once every request finished', async () => {
    const { q, inner } = queue({ numConsumers: 3, maxPointsPerRequest: 1 });
    q.export(collection(7, 1), () => undefined);
    assert.equal(inner.calls.length, 3);
    const d = queue({ enabled: false, numConsumers: 2, maxPointsPerRequest: 1 });
    const answers: ExportResult[] = [];
    d.q.export(collection(3, 1), (r) => answers.push(r));
    assert.equal(d.inner.calls.length, 2);
    d.inner.calls[0]!.done(OK);
    d.inner.calls[1]!.done(FAIL);
    await tick();
    assert.equal(answers.length, 0, 'still one request to go');
    d.inner.calls[2]!.done(OK);
    assert.deepEqual(answers.map((a) => a.code), [ExportResultCode.FAILED], 'one answer: the first failure');
    for (const c of inner.calls) c.done(OK);
  });
});
