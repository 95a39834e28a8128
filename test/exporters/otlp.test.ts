import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Host } from '../../src/component/component.js';
import { otlpExporterFactory } from '../../src/exporters/otlp/factory.js';
import type { OtlpLogsExporter } from '../../src/exporters/otlp/OtlpLogsExporter.js';
import type { OtlpMetricsExporter } from '../../src/exporters/otlp/OtlpMetricsExporter.js';
import type { AccessLogEntry } from '../../src/model/logs.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../helpers/flowPoints.js';
import { OtlpReceiver, waitFor } from '../helpers/otlpReceiver.js';
import { testSettings } from '../helpers/settings.js';

const host: Host = { reportFatalError: () => undefined };

function logEntry(i: number, kind: 'close' | 'fail' = 'close'): AccessLogEntry {
  return {
    event: {
      kind, direction: 'INBOUND', family: 4, srcAddr: '10.244.0.17', srcPort: 40000 + i, dstAddr: '10.244.0.13', dstPort: 9080,
      socketCookie: BigInt(i), netnsCookie: 1n, timeUnixNano: 1726301966552709932n + BigInt(i), durationNs: 2733902,
      sentBytes: 5, receivedBytes: 292, srttUs: 250, minRttUs: 100, retransmits: 1, lostPackets: 0, segsIn: 1, segsOut: 1,
      state: 'CLOSE', ...(kind === 'fail' ? { failure: 'refused' as const } : {}),
    },
    attributes: { 'src.workload': 'prometheus-5fb7f6f8d8-h9cts', 'k8s.pod.name': 'productpage-v1-8499c849b9-bz9t9' },
    observedUnixNano: 1726301966600000000n,
  };
}

function selfValue(r: OtlpReceiver, metric: string): number {
  const pts = r.points().filter((p) => p.metric === metric);
  return pts.length === 0 ? 0 : pts[pts.length - 1]!.value;
}

describe('otlp exporter', () => {
  let rx: OtlpReceiver;
  before(async () => {
    rx = await OtlpReceiver.start();
  });
  after(async () => {
    await rx.stop();
  });

  const cfg = (extra: Record<string, unknown> = {}) =>
    otlpExporterFactory.configSchema.parse({ endpoint: rx.endpoint, tls: { insecure: true }, export_interval: '100ms', timeout: '100ms', ...extra });

  it('pushes kmesh families with names, attributes, temporality and exact values', async () => {
    rx.metricsRequests.length = 0;
    const exp = otlpExporterFactory.createMetrics!(testSettings('otlp'), cfg()) as OtlpMetricsExporter;
    await exp.start(host);
    exp.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1, receivedBytes: 231 })] });
    exp.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { receivedBytes: 9 })] });
    await waitFor(() => rx.points().some((p) => p.metric === 'kmesh_tcp_workload_received_bytes_total' && p.value === 240), 5000, 'cumulative 240');
    const p = rx.points().find((x) => x.metric === 'kmesh_tcp_workload_received_bytes_total')!;
    assert.equal(p.kind, 'sum');
    assert.equal(p.monotonic, true);
    assert.equal(p.temporality, 'AGGREGATION_TEMPORALITY_CUMULATIVE');
    assert.equal(p.unit, 'By');
    assert.equal(p.attributes['destination_pod_address'], '10.244.0.11');
    assert.equal(p.attributes['destination_principal'], '-');
    assert.equal(Object.keys(p.attributes).length, 23);
    assert.equal(p.resource['service.name'], 'kmesh-otel-test');
    assert.ok(rx.points().some((x) => x.metric.startsWith('kmesh_otel_')), 'self-metrics exported too');
    await exp.shutdown();
    await exp.shutdown();
  });

  it('pushes deltas with temporality delta (istio schema)', async () => {
    rx.metricsRequests.length = 0;
    const exp = otlpExporterFactory.createMetrics!(testSettings('otlp/d'), cfg({ temporality: 'delta', schema: 'istio' })) as OtlpMetricsExporter;
    await exp.start(host);
    exp.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 5 })] });
    await waitFor(() => rx.points().some((p) => p.metric === 'istio_tcp_sent_bytes_total'), 5000, 'first delta');
    exp.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 7 })] });
    await waitFor(() => rx.points().filter((p) => p.metric === 'istio_tcp_sent_bytes_total').length >= 2, 5000, 'second delta');
    const pts = rx.points().filter((p) => p.metric === 'istio_tcp_sent_bytes_total');
    assert.deepEqual(pts.map((x) => x.value), [5, 7]);
    assert.ok(pts.every((x) => x.temporality === 'AGGREGATION_TEMPORALITY_DELTA'));
    assert.equal(pts[0]!.attributes['destination_principal'], 'unknown');
    await exp.shutdown();
  });

  it('sends one LogRecord per entry with attributes, severity, timestamps, resource', async () => {
    rx.logsRequests.length = 0;
    const exp = otlpExporterFactory.createLogs!(testSettings('otlp'), cfg()) as OtlpLogsExporter;
    await exp.start(host);
    exp.consumeLogs({ entries: [logEntry(1), logEntry(2, 'fail')] });
    await exp.forceFlush();
    await waitFor(() => rx.logs().length === 2, 5000, '2 log records');
    const [a, b] = rx.logs();
    assert.equal(a!.timeUnixNano, '1726301966552709933');
    assert.equal(a!.observedTimeUnixNano, '1726301966600000000');
    assert.equal(a!.severityText, 'INFO');
    assert.equal(a!.severityNumber, 'SEVERITY_NUMBER_INFO');
    assert.equal(b!.severityText, 'WARN');
    assert.equal(b!.attributes['failure.reason'], 'refused');
    assert.equal(a!.resource['service.name'], 'kmesh-otel-test');
    assert.ok(String(a!.body).startsWith('accesslog: 2024-09-14 08:19:26.552709933 +0000 UTC src.addr=10.244.0.17:40001, src.workload=prometheus-5fb7f6f8d8-h9cts, src.namespace=-,'));
    assert.deepEqual(
      { ...a!.attributes },
      {
        'src.workload': 'prometheus-5fb7f6f8d8-h9cts', 'k8s.pod.name': 'productpage-v1-8499c849b9-bz9t9',
        'src.addr': '10.244.0.17:40001', 'dst.addr': '10.244.0.13:9080', direction: 'INBOUND', event: 'close',
        sent_bytes: 5, received_bytes: 292, duration: 2.733902, state: 'CLOSE', retransmissions: 1, lost_packets: 0,
        srtt: 0.25, min_rtt: 0.1, 'source.address': '10.244.0.17', 'source.port': 40001,
        'destination.address': '10.244.0.13', 'destination.port': 9080, 'network.transport': 'tcp', 'network.type': 'ipv4',
      },
    );
    await exp.shutdown();
    await exp.shutdown();
  });

  it('survives a dead backend: bounded queue, counted drops and failures, resumes on restart', async () => {
    rx.logsRequests.length = 0;
    rx.metricsRequests.length = 0;
    const settings = testSettings('otlp/outage');
    const c = cfg({ sending_queue: { queue_size: 50, batch_size: 10 }, retry_on_failure: { initial_interval: '50ms', max_interval: '100ms', max_elapsed_time: '1s' } });
    const logs = otlpExporterFactory.createLogs!(settings, c) as OtlpLogsExporter;
    const metrics = otlpExporterFactory.createMetrics!(settings, c) as OtlpMetricsExporter;
    await logs.start(host);
    await metrics.start(host);
    metrics.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1 })] });
    await waitFor(() => rx.points().some((p) => p.metric === 'kmesh_tcp_workload_connections_opened_total'), 5000, 'metrics before outage');
    await rx.stop();
    let next = 0;
    for (let i = 0; i < 10; i++) {
      logs.consumeLogs({ entries: Array.from({ length: 20 }, () => logEntry(next++)) });
      metrics.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1 })] });
      assert.ok(logs.queued <= 50, `queue bounded (${logs.queued})`);
    }
    await logs.forceFlush();
    await waitFor(() => logs.queued === 0, 10000, 'failed batches released');
    await rx.restart();
    // The channel reconnects with gRPC's backoff; metrics are pushed every 100 ms meanwhile.
    await waitFor(
      () => rx.points().some((p) => p.metric === 'kmesh_tcp_workload_connections_opened_total' && p.value === 11),
      15000,
      'cumulative figures add up after the outage',
    );
    // The logs channel has its own gRPC reconnect backoff (it grows to several
    // seconds during the outage and is longer than this test's 1 s retry
    // budget), so one record at a time is offered until one gets through.
    const resumeDeadline = Date.now() + 30_000;
    while (rx.logs().length === 0) {
      assert.ok(Date.now() < resumeDeadline, 'delivery resumes within 30 s of the backend restart');
      logs.consumeLogs({ entries: [logEntry(next++)] });
      await logs.forceFlush();
      await new Promise((r) => setTimeout(r, 200));
    }
    await waitFor(() => logs.queued === 0, 10000, 'queue empty after recovery');
    // Self-metrics: every accepted record is sent, failed or dropped, exactly once.
    const account = (): { sent: number; failed: number; dropped: number } => ({
      sent: selfValue(rx, 'kmesh_otel_exporter_sent_log_records'),
      failed: selfValue(rx, 'kmesh_otel_exporter_send_failed_log_records'),
      dropped: selfValue(rx, 'kmesh_otel_exporter_dropped_log_records'),
    });
    await waitFor(() => {
      const a = account();
      return a.sent === rx.logs().length && a.sent + a.failed + a.dropped === next;
    }, 5000, `sent + failed + dropped = ${next} accepted`);
    const { sent, dropped } = account();
    assert.ok(sent >= 1, `sent ${sent}`);
    assert.ok(dropped >= 150, `dropped ${dropped}`);
    assert.ok(selfValue(rx, 'kmesh_otel_exporter_send_failed_metric_points') > 0, 'metric export failures counted');
    await logs.shutdown();
    await metrics.shutdown();
  });

  it('answers UNAVAILABLE are retried until the backend accepts', async () => {
    rx.logsRequests.length = 0;
    rx.unavailable = true;
    const exp = otlpExporterFactory.createLogs!(testSettings('otlp/retry'), cfg({ timeout: '2s', export_interval: '5s', retry_on_failure: { initial_interval: '50ms', max_interval: '100ms' } })) as OtlpLogsExporter;
    await exp.start(host);
    exp.consumeLogs({ entries: [logEntry(1)] });
    await waitFor(() => rx.rejectedCalls > 0, 5000, 'a rejected call');
    rx.unavailable = false;
    await waitFor(() => rx.logs().length === 1, 8000, 'retried delivery');
    await exp.shutdown();
  });

  it('shutdown before start is safe', async () => {
    const m = otlpExporterFactory.createMetrics!(testSettings('otlp'), cfg());
    const l = otlpExporterFactory.createLogs!(testSettings('otlp'), cfg());
    await m.shutdown();
    await m.shutdown();
    await l.shutdown();
    await l.shutdown();
  });
});
