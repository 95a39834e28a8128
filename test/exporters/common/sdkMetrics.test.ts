import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Attributes } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType } from '@opentelemetry/sdk-metrics';
import { metricsStoreKeys } from '../../../src/exporters/common/metricsConfig.js';
import { StoreMetricProducer } from '../../../src/exporters/common/sdkMetrics.js';
import { exporterSeriesStore } from '../../../src/exporters/common/seriesStore.js';
import { z } from 'zod';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../../helpers/flowPoints.js';
import { selfCounter, testSettings } from '../../helpers/settings.js';

const config = (over: Record<string, unknown> = {}) => z.strictObject(metricsStoreKeys).parse(over);

describe('exporterSeriesStore + StoreMetricProducer', () => {
  it('builds the store from the shared metrics keys and collects SDK sums whose attributes are cached per label set', async () => {
    const settings = testSettings('otlp/x');
    const store = exporterSeriesStore<Attributes>(settings, config({ schema: 'istio' }), 'delta');
    const producer = new StoreMetricProducer(store, resourceFromAttributes({ 'service.name': 's' }));
    store.consume({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 2 })] });
    const first = (await producer.collect()).resourceMetrics;
    assert.equal(first.resource.attributes['service.name'], 's');
    const m = first.scopeMetrics[0]!.metrics.find((x) => x.descriptor.name === 'istio_tcp_connections_opened_total')!;
    assert.equal(first.scopeMetrics[0]!.scope.name, 'kmesh-otel');
    assert.ok(m.dataPointType === DataPointType.SUM && m.isMonotonic);
    assert.equal(m.aggregationTemporality, AggregationTemporality.DELTA);
    assert.equal(m.dataPoints[0]!.value, 2);
    assert.equal(m.dataPoints[0]!.attributes['destination_principal'], 'unknown', 'the istio schema');
    store.consume({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1 })] });
    const second = producer.collectSync().resourceMetrics.scopeMetrics[0]!.metrics.find((x) => x.descriptor.name === 'istio_tcp_connections_opened_total')!;
    assert.equal(second.dataPoints[0]!.value, 1, 'delta');
    assert.equal(second.dataPoints[0]!.attributes, m.dataPoints[0]!.attributes, 'one attributes object per label set, collect after collect');
    await settings.telemetry.shutdown();
  });

  it('applies the series budget and reports overflow under the exporter id', async () => {
    const settings = testSettings('prometheus/p');
    const store = exporterSeriesStore<string>(settings, config({ max_series_per_family: 1 }));
    store.consume({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1 }), flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: 'x' }, { opened: 1 })] });
    const f = store.snapshot().families.find((x) => x.def.name === 'kmesh_tcp_workload_connections_opened_total')!;
    assert.equal(f.length, 2, 'one series and the overflow series');
    assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_metric_overflow_points'), 2, 'workload and service family');
    assert.equal(store.snapshot().temporality, 'cumulative', 'the default');
    await settings.telemetry.shutdown();
  });
});
