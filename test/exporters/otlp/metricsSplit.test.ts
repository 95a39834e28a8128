import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType, InstrumentType, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { Host } from '../../../src/component/component.js';
import { otlpExporterFactory } from '../../../src/exporters/otlp/factory.js';
import { MAX_POINTS_PER_REQUEST, splitResourceMetrics, type OtlpMetricsExporter } from '../../../src/exporters/otlp/OtlpMetricsExporter.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../../helpers/flowPoints.js';
import { OtlpReceiver, waitFor } from '../../helpers/otlpReceiver.js';
import { testSettings } from '../../helpers/settings.js';

const host: Host = { reportFatalError: () => undefined };

function sum(name: string, values: number[]): MetricData {
  return {
    descriptor: { name, description: '', unit: '1', type: InstrumentType.COUNTER, valueType: 1 },
    dataPointType: DataPointType.SUM,
    aggregationTemporality: AggregationTemporality.CUMULATIVE,
    isMonotonic: true,
    dataPoints: values.map((value, i) => ({ attributes: { i: String(i) }, startTime: [0, 0], endTime: [1, 0], value })),
  } as MetricData;
}

describe('otlp metrics: bounded request size', () => {
  it('splits an export into requests of at most N points, in order, keeping resource, scopes and descriptors', () => {
    const resource = resourceFromAttributes({ 'service.name': 't' });
    const rm: ResourceMetrics = {
      resource,
      scopeMetrics: [
        { scope: { name: 'a' }, metrics: [sum('m1', [1, 2, 3]), sum('m2', [4, 5, 6, 7, 8])] },
        { scope: { name: 'b' }, metrics: [sum('m3', [9, 10])] },
      ],
    };
    const parts = splitResourceMetrics(rm, 4);
    const shape = parts.map((p) => {
      assert.equal(p.resource, resource);
      return p.scopeMetrics.map((sm) => `${sm.scope.name}:` + sm.metrics.map((m) => `${m.descriptor.name}=${m.dataPoints.map((d) => d.value).join(',')}`).join(' '));
    });
    assert.deepEqual(shape, [['a:m1=1,2,3 m2=4'], ['a:m2=5,6,7,8'], ['b:m3=9,10']]);
    assert.equal(splitResourceMetrics(rm, 10)[0], rm, 'small exports are not copied');
  });

  it(`delivers a store far over gRPC's 4 MiB message limit, every point exactly once`, async () => {
    const rx = await OtlpReceiver.start();
    const settings = testSettings('otlp/big');
    const exp = otlpExporterFactory.createMetrics!(
      settings,
      otlpExporterFactory.configSchema.parse({ endpoint: rx.endpoint, tls: { insecure: true }, export_interval: '1h', timeout: '10s', compression: 'none' }),
    ) as OtlpMetricsExporter;
    try {
      await exp.start(host);
      // 6,000 flows: 6,000 points per counter family, ~48,000 points with 23 attributes each (~30 MiB uncompressed).
      const flows = 6000;
      exp.consumeMetrics({
        points: Array.from({ length: flows }, (_, i) => flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: `sleep-${i}` }, { opened: 1, closed: 1, sentBytes: i + 1, receivedBytes: 2 * i + 1 })),
      });
      await exp.forceFlush();
      // forceFlush waits for the export's result: a refused request shows here at once.
      const { resourceMetrics } = await settings.telemetry.producer.collect();
      const failed = resourceMetrics.scopeMetrics.flatMap((sm) => sm.metrics).find((m) => m.descriptor.name === 'kmesh_otel_exporter_send_failed_metric_points');
      assert.equal(failed, undefined, 'no request refused');
      await waitFor(() => rx.points().filter((p) => p.metric === 'kmesh_tcp_workload_sent_bytes_total').length === flows, 20_000, 'every sent-bytes point');
      const sent = rx.points().filter((p) => p.metric === 'kmesh_tcp_workload_sent_bytes_total');
      assert.deepEqual(
        sent.map((p) => p.value).sort((a, b) => a - b),
        Array.from({ length: flows }, (_, i) => i + 1),
      );
      const total = rx.points().filter((p) => p.metric.startsWith('kmesh_tcp_')).length;
      assert.ok(rx.metricsRequests.length >= Math.ceil(total / MAX_POINTS_PER_REQUEST), `${rx.metricsRequests.length} requests for ${total} points`);
      for (const req of rx.metricsRequests) {
        let n = 0;
        for (const rm of req.resourceMetrics ?? []) for (const sm of rm.scopeMetrics ?? []) for (const m of sm.metrics ?? []) n += (m.sum?.dataPoints ?? m.histogram?.dataPoints ?? m.gauge?.dataPoints ?? []).length;
        assert.ok(n <= MAX_POINTS_PER_REQUEST, `request of ${n} points`);
      }
    } finally {
      await exp.shutdown();
      await settings.telemetry.shutdown();
      await rx.stop();
    }
  });
});
