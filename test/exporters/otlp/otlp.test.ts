import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { LogRecordExporter, ReadableLogRecord, ReadWriteLogRecord } from '@opentelemetry/sdk-logs';
import type { Host } from '../../../src/component/component.js';
import { ConcurrentBatchLogRecordProcessor } from '../../../src/exporters/otlp/ConcurrentBatchLogRecordProcessor.js';
import { otlpExporterFactory } from '../../../src/exporters/otlp/factory.js';
import type { OtlpLogsExporter } from '../../../src/exporters/otlp/OtlpLogsExporter.js';
import type { OtlpMetricsExporter } from '../../../src/exporters/otlp/OtlpMetricsExporter.js';
import type { AccessLogEntry } from '../../../src/model/logs.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../../helpers/flowPoints.js';
import { OtlpReceiver, waitFor } from '../../helpers/otlpReceiver.js';
import { selfCounter, testSettings } from '../../helpers/settings.js';

const host: Host = { reportFatalError: () => undefined };

function logEntry(i: number, kind: 'close' | 'fail' = 'close'): AccessLogEntry {
  return {
    event: {
      kind, direction: 'INBOUND', family: 4, srcAddr: '10.244.0.17', srcPort: 40000 + i, dstAddr: '10.244.0.13', dstPort: 9080,
      socketCookie: i, netnsCookie: 1, timeUnixNano: 1726301966552709932n + BigInt(i), durationNs: 2733902,
      sentBytes: 5, receivedBytes: 292, srttUs: 250, minRttUs: 100, retransmits: 1, lostPackets: 0, segsIn: 1, segsOut: 1,
      state: 'CLOSE', ...(kind === 'fail' ? { failure: 'refused' as const } : {}),
    },
    attributes: { 'src.workload': 'prometheus-5fb7f6f8d8-h9cts', 'k8s.pod.name': 'productpage-v1-8499c849b9-bz9t9' },
    observedUnixNano: 1726301966600000000n,
  };
}

/** A LogRecordExporter whose exports stay open until the test settles them. */
class HeldExporter implements LogRecordExporter {
  readonly calls: Array<{ records: ReadableLogRecord[]; settled: boolean; done: (r: ExportResult) => void }> = [];
  maxOpen = 0;
  open = 0;
  shutdowns = 0;
  export(records: ReadableLogRecord[], done: (r: ExportResult) => void): void {
    this.open++;
    this.maxOpen = Math.max(this.maxOpen, this.open);
    const call = {
      records,
      settled: false,
      done: (r: ExportResult): void => {
        assert.equal(call.settled, false, 'an export is settled once');
        call.settled = true;
        this.open--;
        done(r);
      },
    };
    this.calls.push(call);
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    this.shutdowns++;
    return Promise.resolve();
  }
  /** Settles every open export (and those that start meanwhile) as delivered. */
  async settleAll(): Promise<void> {
    while (this.open > 0) {
      for (const c of this.calls) if (!c.settled) c.done({ code: ExportResultCode.SUCCESS });
      await new Promise((r) => setImmediate(r));
    }
  }
}

/** Stand-ins for SDK log records: the processor only groups them. */
const fakeRecords = (n: number, from = 0): ReadWriteLogRecord[] =>
  Array.from({ length: n }, (_, i) => ({ body: from + i }) as unknown as ReadWriteLogRecord);
const ids = (records: ReadableLogRecord[]): unknown[] => records.map((r) => r.body);
const macrotask = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('ConcurrentBatchLogRecordProcessor', () => {
  it('exports full batches at once, at most maxConcurrentExports in flight, the rest in order', async () => {
    const exp = new HeldExporter();
    const p = new ConcurrentBatchLogRecordProcessor(exp, { batchSize: 3, maxConcurrentExports: 2, flushDelayMillis: 60_000 });
    for (const r of fakeRecords(10)) p.onEmit(r);
    // 3 full batches closed, 2 exporting, 1 waiting; 1 record in the open batch.
    assert.equal(exp.calls.length, 2);
    assert.deepEqual(ids(exp.calls[0]!.records), [0, 1, 2]);
    assert.deepEqual(ids(exp.calls[1]!.records), [3, 4, 5]);
    exp.calls[1]!.done({ code: ExportResultCode.SUCCESS });
    await macrotask();
    assert.equal(exp.calls.length, 3, 'a freed slot takes the waiting batch');
    assert.deepEqual(ids(exp.calls[2]!.records), [6, 7, 8]);
    assert.equal(exp.maxOpen, 2);
    assert.equal(p.exportsInFlight, 2);
    const down = p.shutdown();
    await exp.settleAll();
    await down;
    assert.equal(exp.calls.length, 4, 'shutdown exported the open batch too');
    assert.deepEqual(ids(exp.calls[3]!.records), [9]);
    assert.equal(exp.maxOpen, 2, 'never more than 2 in flight');
  });

  it('forceFlush exports the partial batch and resolves once everything emitted before it is finished', async () => {
    const exp = new HeldExporter();
    const p = new ConcurrentBatchLogRecordProcessor(exp, { batchSize: 4, maxConcurrentExports: 1, flushDelayMillis: 60_000 });
    for (const r of fakeRecords(6)) p.onEmit(r);
    let flushed = false;
    const flush = p.forceFlush().then(() => (flushed = true));
    assert.equal(exp.calls.length, 1);
    exp.calls[0]!.done({ code: ExportResultCode.FAILED, error: new Error('down') });
    await macrotask();
    assert.equal(flushed, false, 'the second batch is not finished yet');
    assert.deepEqual(ids(exp.calls[1]!.records), [4, 5]);
    // Records emitted after the flush started do not hold it up.
    for (const r of fakeRecords(4, 6)) p.onEmit(r);
    exp.calls[1]!.done({ code: ExportResultCode.SUCCESS });
    await flush;
    assert.equal(flushed, true);
    await macrotask();
    assert.equal(exp.calls.length, 3, 'the later full batch goes out after');
    assert.deepEqual(ids(exp.calls[2]!.records), [6, 7, 8, 9]);
    exp.calls[2]!.done({ code: ExportResultCode.SUCCESS });
    await p.forceFlush();
  });

  it('exports a partial batch after flushDelayMillis; shutdown flushes, shuts the exporter down once', async () => {
    const exp = new HeldExporter();
    const p = new ConcurrentBatchLogRecordProcessor(exp, { batchSize: 100, maxConcurrentExports: 2, flushDelayMillis: 30 });
    for (const r of fakeRecords(2)) p.onEmit(r);
    assert.equal(exp.calls.length, 0);
    await waitFor(() => exp.calls.length === 1, 2000, 'the delayed partial batch');
    assert.deepEqual(ids(exp.calls[0]!.records), [0, 1]);
    p.onEmit(fakeRecords(1, 2)[0]!);
    const down = Promise.all([p.shutdown(), p.shutdown()]);
    assert.equal(exp.calls.length, 2, 'shutdown exports what is open at once');
    for (const c of exp.calls) c.done({ code: ExportResultCode.SUCCESS });
    await down;
    assert.equal(exp.shutdowns, 1);
    p.onEmit(fakeRecords(1, 3)[0]!);
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(exp.calls.length, 2, 'nothing is exported after shutdown');
  });
});

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

  for (const consumers of [1, 40]) {
    it(`delivers every record with num_consumers ${consumers}, counted exactly, no export refused`, async () => {
      rx.logsRequests.length = 0;
      const settings = testSettings('otlp/many');
      // Retries off: an export the SDK refused (its own concurrency limit) would be counted as failed, not retried later.
      const c = cfg({ timeout: '5s', sending_queue: { queue_size: 5_000, batch: { min_size: 50 }, num_consumers: consumers }, retry_on_failure: { enabled: false } });
      const exp = otlpExporterFactory.createLogs!(settings, c) as OtlpLogsExporter;
      await exp.start(host);
      const total = 3_000;
      for (let i = 0; i < total; i += 250) exp.consumeLogs({ entries: Array.from({ length: 250 }, (_, k) => logEntry(i + k)) });
      await exp.forceFlush();
      assert.equal(exp.queued, 0, 'nothing queued after forceFlush');
      assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_send_failed_log_records'), 0);
      assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_dropped_log_records'), 0);
      assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_sent_log_records'), total);
      await waitFor(() => rx.logs().length === total, 5000, `${total} log records`);
      assert.equal(rx.logsRequests.length, total / 50, 'batches of batch.min_size');
      const ports = new Set(rx.logs().map((l) => l.attributes['source.port']));
      assert.equal(ports.size, total, 'each record exactly once');
      await exp.shutdown();
    });
  }

  it('num_consumers: collector default 10, positive', () => {
    assert.equal(otlpExporterFactory.createDefaultConfig().sending_queue.num_consumers, 10);
    assert.equal(otlpExporterFactory.configSchema.safeParse({ sending_queue: { num_consumers: 64 } }).success, true);
    assert.equal(otlpExporterFactory.configSchema.safeParse({ sending_queue: { num_consumers: 0 } }).success, false);
  });

  it('survives a dead backend: bounded queue, counted drops and failures, resumes on restart', async () => {
    rx.logsRequests.length = 0;
    rx.metricsRequests.length = 0;
    const settings = testSettings('otlp/outage');
    const c = cfg({ sending_queue: { queue_size: 50, batch: { min_size: 10 } }, retry_on_failure: { initial_interval: '50ms', max_interval: '100ms', max_elapsed_time: '1s' } });
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
    // Metric requests are retried for max_elapsed_time (1 s) before they count as failed.
    const failDeadline = Date.now() + 10_000;
    while ((await selfCounter(settings, 'kmesh_otel_exporter_send_failed_metric_points')) === 0) {
      assert.ok(Date.now() < failDeadline, 'metric requests fail once their retries are used up');
      await new Promise((r) => setTimeout(r, 50));
    }
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

describe('otlp exporter self-metrics beside a prometheus exporter', () => {
  // The timeout also bounds shutdown with a dead backend: it gives what is
  // queued one attempt instead of waiting out max_elapsed_time (5 min).
  it('logs and metrics sides share one queue gauge per name (no duplicate family), promtool-clean; shutdown with a dead backend is quick', { timeout: 20_000 }, async () => {
    const { prometheusExporterFactory } = await import('../../../src/exporters/prometheus/factory.js');
    const { freePort } = await import('../../helpers/freePort.js');
    const { spawnSync } = await import('node:child_process');
    const settings = testSettings('otlp');
    const cfg = otlpExporterFactory.configSchema.parse({ endpoint: '127.0.0.1:9', tls: { insecure: true }, export_interval: '1h' });
    const logs = otlpExporterFactory.createLogs!(settings, cfg);
    const metrics = otlpExporterFactory.createMetrics!(settings, cfg);
    const port = await freePort();
    const prom = prometheusExporterFactory.createMetrics!(settings, prometheusExporterFactory.configSchema.parse({ endpoint: `127.0.0.1:${port}` }));
    await logs.start(host);
    await metrics.start(host);
    await prom.start(host);
    try {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
      const types = text.split('\n').filter((l) => l.startsWith('# TYPE kmesh_otel_exporter_queue_'));
      assert.deepEqual(types.sort(), ['# TYPE kmesh_otel_exporter_queue_capacity gauge', '# TYPE kmesh_otel_exporter_queue_size gauge']);
      assert.ok(text.includes('kmesh_otel_exporter_queue_capacity{exporter="otlp",signal="logs"} 10000'), text);
      assert.ok(text.includes('kmesh_otel_exporter_queue_capacity{exporter="otlp",signal="metrics"} 10000'), text);
      const r = spawnSync('/usr/bin/promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
      assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
    } finally {
      await logs.shutdown();
      await metrics.shutdown();
      await prom.shutdown();
    }
  });
});
