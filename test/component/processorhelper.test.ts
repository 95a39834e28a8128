import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Host } from '../../src/component/component.js';
import { newLogsProcessor, newMetricsProcessor } from '../../src/component/processorhelper.js';
import type { LogsBatch } from '../../src/model/logs.js';
import type { MetricsBatch } from '../../src/model/metrics.js';
import { flowPoint } from '../helpers/flowPoints.js';
import { selfCounter, testSettings } from '../helpers/settings.js';

const host: Host = { getExtension: () => undefined } as unknown as Host;
const points = (n: number): MetricsBatch => ({ points: Array.from({ length: n }, (_, i) => flowPoint({ i: String(i) }, { opened: 1 })) });
const entries = (n: number): LogsBatch => ({
  entries: Array.from({ length: n }, () => ({ event: {} as LogsBatch['entries'][number]['event'], attributes: {}, observedUnixNano: 0n })),
});

describe('processorhelper: one wrapper, one counting rule for every signal', () => {
  it('metrics: counts incoming and outgoing points, partial batches included, and hands on what the body returns', async () => {
    const settings = testSettings('p/m');
    const got: MetricsBatch[] = [];
    // Keeps the first two points of each batch (a merge or filter: fewer out than in).
    const p = newMetricsProcessor(settings, { consumeMetrics: (b) => got.push(b) }, (b) => ({ points: b.points.slice(0, 2) }));
    p.consumeMetrics(points(5));
    p.consumeMetrics(points(1));
    assert.deepEqual(got.map((b) => b.points.length), [2, 1]);
    assert.equal(await selfCounter(settings, 'kmesh_otel_processor_accepted_points'), 6);
    assert.equal(await selfCounter(settings, 'kmesh_otel_processor_outgoing_points'), 3);
    assert.equal(await selfCounter(settings, 'kmesh_otel_processor_refused_points'), 0);
    await settings.telemetry.shutdown();
  });

  it('logs: the same rule; an empty or undefined result hands nothing on', async () => {
    const settings = testSettings('p/l');
    const got: LogsBatch[] = [];
    let call = 0;
    const p = newLogsProcessor(settings, { consumeLogs: (b) => got.push(b) }, (b) => {
      call++;
      if (call === 1) return { entries: b.entries.slice(1) };
      if (call === 2) return { entries: [] };
      return undefined;
    });
    p.consumeLogs(entries(3));
    p.consumeLogs(entries(4));
    p.consumeLogs(entries(2));
    assert.deepEqual(got.map((b) => b.entries.length), [2]);
    assert.equal(await selfCounter(settings, 'kmesh_otel_processor_accepted_log_records'), 9);
    assert.equal(await selfCounter(settings, 'kmesh_otel_processor_outgoing_log_records'), 2);
    await settings.telemetry.shutdown();
  });

  it('refuses a batch whose body throws, counted, and keeps working', async () => {
    const settings = testSettings('p/t');
    const got: MetricsBatch[] = [];
    let fail = true;
    const p = newMetricsProcessor(settings, { consumeMetrics: (b) => got.push(b) }, (b) => {
      if (fail) throw new Error('bug');
      return b;
    });
    p.consumeMetrics(points(4));
    fail = false;
    p.consumeMetrics(points(2));
    assert.deepEqual(got.map((b) => b.points.length), [2]);
    assert.equal(await selfCounter(settings, 'kmesh_otel_processor_refused_points'), 4);
    assert.equal(await selfCounter(settings, 'kmesh_otel_processor_accepted_points'), 2);
    await settings.telemetry.shutdown();
  });

  it('delegates the lifecycle and declares mutatesData as asked', async () => {
    const calls: string[] = [];
    const lifecycle = { start: async () => void calls.push('start'), shutdown: async () => void calls.push('shutdown') };
    const settings = testSettings('p/c');
    const p = newLogsProcessor(settings, { consumeLogs: () => {} }, (b) => b, lifecycle, { mutatesData: true });
    assert.equal(p.mutatesData, true);
    assert.equal(newLogsProcessor(settings, { consumeLogs: () => {} }, (b) => b).mutatesData, false);
    await p.start(host);
    await p.shutdown();
    assert.deepEqual(calls, ['start', 'shutdown']);
    await settings.telemetry.shutdown();
  });
});
