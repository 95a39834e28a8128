import { ServerCredentials } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Host } from '../../../src/component/component.js';
import { otlpGrpcConfigSchema, otlpHttpConfigSchema } from '../../../src/exporters/otlp/config.js';
import { otlpGrpcExporterFactory, otlpHttpExporterFactory } from '../../../src/exporters/otlp/factory.js';
import { OtlpLogsExporter } from '../../../src/exporters/otlp/OtlpLogsExporter.js';
import type { OtlpMetricsExporter } from '../../../src/exporters/otlp/OtlpMetricsExporter.js';
import type { AccessLogEntry } from '../../../src/model/logs.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../../helpers/flowPoints.js';
import { OtlpHttpReceiver, OtlpReceiver, waitFor } from '../../helpers/otlpReceiver.js';
import { selfCounter, testSettings } from '../../helpers/settings.js';
import { makeTestCa, type TestCa } from '../../helpers/testCa.js';

const host: Host = { reportFatalError: () => undefined };

function logEntry(i: number): AccessLogEntry {
  return {
    event: {
      kind: 'close', direction: 'OUTBOUND', family: 4, srcAddr: '10.244.0.17', srcPort: 40000 + i, dstAddr: '10.244.0.13', dstPort: 9080,
      socketCookie: i, netnsCookie: 1, timeUnixNano: 1726301966552709932n + BigInt(i), durationNs: 1_000_000,
      sentBytes: 1000, receivedBytes: 300, srttUs: 250, minRttUs: 100, retransmits: 0, lostPackets: 0, segsIn: 1, segsOut: 1, state: 'CLOSE',
    },
    attributes: { 'src.workload': 'sleep-7656cf8794-9v2gv' },
    observedUnixNano: 1726301966600000000n,
  };
}

const cfg = (extra: Record<string, unknown>) =>
  otlpHttpConfigSchema.parse({ export_interval: '1h', timeout: '2s', ...extra });

/** Sends one metric point and two log records, flushes both, shuts both down. */
async function sendOnce(id: string, config: ReturnType<typeof cfg>): Promise<{ settings: ReturnType<typeof testSettings> }> {
  const settings = testSettings(id);
  const m = otlpHttpExporterFactory.createMetrics!(settings, config) as OtlpMetricsExporter;
  const l = otlpHttpExporterFactory.createLogs!(settings, config) as OtlpLogsExporter;
  await m.start(host);
  await l.start(host);
  m.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1, sentBytes: 1000, receivedBytes: 300 })] });
  l.consumeLogs({ entries: [logEntry(1), logEntry(2)] });
  await m.forceFlush();
  await l.forceFlush();
  await m.shutdown();
  await l.shutdown();
  return { settings };
}

describe('otlp_http exporter against a real OTLP/HTTP receiver', () => {
  let rx: OtlpHttpReceiver;
  before(async () => {
    rx = await OtlpHttpReceiver.start({ pathPrefix: '/otlp' });
  });
  after(async () => {
    await rx.stop();
  });

  it('posts gzip protobuf to <endpoint>/v1/metrics and /v1/logs with the headers; the receiver decodes exact values', async () => {
    rx.calls.length = 0;
    rx.metricsRequests.length = 0;
    rx.logsRequests.length = 0;
    const { settings } = await sendOnce('otlp_http', cfg({ endpoint: rx.endpoint, headers: { authorization: 'Bearer t0ken', 'X-Scope-OrgID': 'tenant-1' } }));
    const paths = new Set(rx.calls.map((c) => c.path));
    assert.deepEqual([...paths].sort(), ['/otlp/v1/logs', '/otlp/v1/metrics']);
    for (const c of rx.calls) {
      assert.equal(c.headers['content-encoding'], 'gzip', `${c.path} gzip`);
      assert.equal(c.headers['content-type'], 'application/x-protobuf');
      assert.equal(c.headers.authorization, 'Bearer t0ken');
      assert.equal(c.headers['x-scope-orgid'], 'tenant-1');
    }
    // forceFlush and the final export at shutdown: the same cumulative total each time.
    const sent = rx.points().filter((p) => p.metric === 'kmesh_tcp_workload_sent_bytes_total');
    assert.ok(sent.length >= 1, 'sent-bytes series received');
    assert.deepEqual(new Set(sent.map((p) => p.value)), new Set([1000]));
    assert.equal(sent[0]!.temporality, 'AGGREGATION_TEMPORALITY_CUMULATIVE');
    assert.equal(sent[0]!.attributes['destination_workload'], 'httpbin');
    assert.equal(sent[0]!.resource['service.name'], 'kmesh-otel-test');
    const logs = rx.logs();
    assert.deepEqual(logs.map((l) => l.attributes['source.port']), [40001, 40002]);
    assert.equal(logs[0]!.attributes.sent_bytes, 1000);
    assert.equal(logs[0]!.attributes['src.workload'], 'sleep-7656cf8794-9v2gv');
    assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_sent_log_records'), 2);
    assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_send_failed_log_records'), 0);
  });

  it('compression none sends plain protobuf; metrics_endpoint / logs_endpoint are used as given', async () => {
    rx.calls.length = 0;
    rx.logsRequests.length = 0;
    const base = rx.endpoint;
    await sendOnce('otlp_http/plain', cfg({
      endpoint: 'http://127.0.0.1:1', // unused: both signals have their own URL
      metrics_endpoint: `${base}/v1/metrics`,
      logs_endpoint: `${base}/v1/logs`,
      compression: 'none',
    }));
    assert.deepEqual([...new Set(rx.calls.map((c) => c.path))].sort(), ['/otlp/v1/logs', '/otlp/v1/metrics']);
    assert.ok(rx.calls.every((c) => c.headers['content-encoding'] === undefined), 'no content-encoding');
    assert.equal(rx.logs().length, 2);
  });

  it('gzip makes the access-log request smaller on the wire', async () => {
    const wire = async (compression: 'gzip' | 'none'): Promise<number> => {
      rx.calls.length = 0;
      const settings = testSettings('otlp_http/size');
      const l = otlpHttpExporterFactory.createLogs!(settings, cfg({ endpoint: rx.endpoint, compression })) as OtlpLogsExporter;
      await l.start(host);
      l.consumeLogs({ entries: Array.from({ length: 200 }, (_, i) => logEntry(i)) });
      await l.forceFlush();
      await l.shutdown();
      return rx.calls.filter((c) => c.path.endsWith('/v1/logs')).reduce((a, c) => a + c.wireBytes, 0);
    };
    const plain = await wire('none');
    const gz = await wire('gzip');
    assert.ok(gz * 4 < plain, `gzip ${gz} B vs plain ${plain} B`);
  });

  it('a permanent error (400) is not retried and counts the records as failed', async () => {
    rx.calls.length = 0;
    rx.refuseNext.push(400);
    const settings = testSettings('otlp_http/400');
    const l = otlpHttpExporterFactory.createLogs!(settings, cfg({ endpoint: rx.endpoint, retry_on_failure: { initial_interval: '10ms' } })) as OtlpLogsExporter;
    await l.start(host);
    l.consumeLogs({ entries: [logEntry(1)] });
    await l.forceFlush();
    await l.shutdown();
    assert.deepEqual(rx.calls.map((c) => c.status), [400]);
    assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_send_failed_log_records'), 1);
  });
});

describe('otlp_http retry with jitter', () => {
  let rx: OtlpHttpReceiver;
  before(async () => {
    rx = await OtlpHttpReceiver.start();
  });
  after(async () => {
    await rx.stop();
  });

  // The SDK exporter retries 503 itself, after >= 800 ms and only within
  // `timeout`: with timeout 300ms every retry seen here is retry_on_failure's.
  const retryCfg = () =>
    cfg({
      endpoint: rx.endpoint,
      timeout: '300ms',
      retry_on_failure: { initial_interval: '200ms', multiplier: 2, randomization_factor: 0.5, max_interval: '1s', max_elapsed_time: '10s' },
      sending_queue: { batch: { flush_timeout: '1ms' } },
    });

  for (const [draw, expectedWaits] of [[0, [100, 200]], [1, [300, 600]]] as const) {
    it(`503, 503, then 200: delivered, waits ${expectedWaits.join(' and ')} ms with random() = ${draw} (interval * (1 ± 0.5))`, async () => {
      rx.calls.length = 0;
      rx.logsRequests.length = 0;
      rx.refuseNext.push(503, 503);
      const settings = testSettings('otlp_http/retry');
      const l = new OtlpLogsExporter(settings, retryCfg(), 'http', () => draw);
      await l.start(host);
      l.consumeLogs({ entries: [logEntry(7)] });
      await waitFor(() => rx.logs().length === 1, 10_000, 'delivery after two 503s');
      await l.shutdown();
      assert.deepEqual(rx.calls.map((c) => c.status), [503, 503, 200]);
      const gaps = [rx.calls[1]!.at - rx.calls[0]!.at, rx.calls[2]!.at - rx.calls[1]!.at];
      // A timer fires no earlier than asked, so each gap is at least its
      // drawn wait (the exact formula is checked in the Backoff unit tests).
      gaps.forEach((g, i) => assert.ok(g >= expectedWaits[i]! - 5, `wait ${i + 1}: ${g} ms, drawn ${expectedWaits[i]} ms`));
      // Without jitter the waits would be 200 and 400 ms: random() = 1 is
      // longer (the lower bounds above), random() = 0 shorter in sum (300 ms of
      // slack for request latency on a loaded 2-core machine).
      if (draw === 0) assert.ok(gaps[0]! + gaps[1]! < 600, `waits ${gaps.join(', ')} ms: shorter than the un-jittered 200 + 400`);
      assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_sent_log_records'), 1);
      assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_send_failed_log_records'), 0);
    });
  }

  it('metrics: a 503 is retried and the point delivered once', async () => {
    rx.calls.length = 0;
    rx.metricsRequests.length = 0;
    rx.refuseNext.push(503);
    const settings = testSettings('otlp_http/mretry');
    const m = otlpHttpExporterFactory.createMetrics!(settings, retryCfg()) as OtlpMetricsExporter;
    await m.start(host);
    m.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 3 })] });
    await m.forceFlush();
    assert.deepEqual(rx.calls.map((c) => c.status), [503, 200]);
    assert.equal(rx.points().find((p) => p.metric === 'kmesh_tcp_workload_connections_opened_total')?.value, 3);
    await m.shutdown();
  });
});

describe('otlp_http with a dead backend', () => {
  it('holds at most queue_size records, drops and counts the rest, fails what it held, and recovers', { timeout: 60_000 }, async () => {
    const rx = await OtlpHttpReceiver.start();
    const settings = testSettings('otlp_http/dead');
    const config = cfg({
      endpoint: rx.endpoint,
      export_interval: '50ms',
      timeout: '50ms',
      retry_on_failure: { initial_interval: '50ms', max_interval: '100ms', max_elapsed_time: '500ms' },
      sending_queue: { queue_size: 100, num_consumers: 2, batch: { min_size: 20, flush_timeout: '10ms' } },
    });
    const l = otlpHttpExporterFactory.createLogs!(settings, config) as OtlpLogsExporter;
    const m = otlpHttpExporterFactory.createMetrics!(settings, config) as OtlpMetricsExporter;
    await l.start(host);
    await m.start(host);
    try {
      await rx.stop();
      let offered = 0;
      let maxQueued = 0;
      for (let round = 0; round < 20; round++) {
        l.consumeLogs({ entries: Array.from({ length: 50 }, () => logEntry(offered++)) });
        maxQueued = Math.max(maxQueued, l.queued);
        m.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1 })] });
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(offered, 1000);
      assert.ok(maxQueued <= 100, `records held at most queue_size (max ${maxQueued})`);
      await l.forceFlush();
      await waitFor(() => l.queued === 0, 10_000, 'held records released after their retries');
      const dropped = await selfCounter(settings, 'kmesh_otel_exporter_dropped_log_records');
      const failed = await selfCounter(settings, 'kmesh_otel_exporter_send_failed_log_records');
      assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_sent_log_records'), 0);
      assert.equal(dropped + failed, offered, `every record counted once (dropped ${dropped}, failed ${failed})`);
      assert.ok(dropped >= offered - 20 * 100, `dropped ${dropped}`);
      assert.ok(failed > 0, 'held records failed after retries');
      const failDeadline = Date.now() + 10_000;
      while ((await selfCounter(settings, 'kmesh_otel_exporter_send_failed_metric_points')) === 0) {
        assert.ok(Date.now() < failDeadline, 'metric requests fail after their retries (500 ms)');
        await new Promise((r) => setTimeout(r, 50));
      }

      await rx.restart();
      l.consumeLogs({ entries: [logEntry(5000)] });
      m.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1 })] });
      await l.forceFlush();
      await m.forceFlush();
      // The record after the outage arrives, and only it. It may arrive twice:
      // an attempt whose answer takes over the 50 ms timeout (a loaded
      // machine) is retried, and the receiver has both (at least once).
      await waitFor(() => rx.logs().length >= 1, 10_000, 'delivery after the backend returned');
      assert.deepEqual(new Set(rx.logs().map((r) => r.attributes['source.port'])), new Set([45000]));
      // A request of the outage (total 20) may still be retrying and land
      // after the flush's: the highest total received is the one to check.
      const opened = (): number[] => rx.points().filter((p) => p.metric === 'kmesh_tcp_workload_connections_opened_total').map((p) => Number(p.value));
      await waitFor(() => opened().includes(21), 10_000, 'the total after the outage');
      assert.equal(Math.max(...opened()), 21, 'cumulative total after the outage');
    } finally {
      await l.shutdown();
      await m.shutdown();
      await rx.stop();
    }
  });
});

describe('otlp_http over TLS (a CA made by the test)', () => {
  let ca: TestCa;
  before(() => {
    ca = makeTestCa();
  });
  after(() => ca.remove());

  async function deliveredOver(serverTls: Parameters<typeof OtlpHttpReceiver.start>[0], tls: Record<string, unknown>): Promise<{ delivered: number; failed: number }> {
    const rx = await OtlpHttpReceiver.start(serverTls);
    try {
      const settings = testSettings('otlp_http/tls');
      const l = otlpHttpExporterFactory.createLogs!(settings, cfg({ endpoint: rx.endpoint, tls, retry_on_failure: { enabled: false } })) as OtlpLogsExporter;
      await l.start(host);
      l.consumeLogs({ entries: [logEntry(1)] });
      await l.forceFlush();
      await l.shutdown();
      return { delivered: rx.logs().length, failed: await selfCounter(settings, 'kmesh_otel_exporter_send_failed_log_records') };
    } finally {
      await rx.stop();
    }
  }

  const server = () => ({ tls: { key: ca.read(ca.serverKeyFile), cert: ca.read(ca.serverCertFile) } });

  it('ca_file + server_name_override: verified against the certificate name while dialling 127.0.0.1', async () => {
    assert.deepEqual(await deliveredOver(server(), { ca_file: ca.caFile, server_name_override: ca.serverName }), { delivered: 1, failed: 0 });
  });

  it('ca_file alone fails: the certificate does not name 127.0.0.1 (control)', async () => {
    assert.deepEqual(await deliveredOver(server(), { ca_file: ca.caFile }), { delivered: 0, failed: 1 });
  });

  it('without ca_file the test CA is not trusted; insecure_skip_verify connects anyway', async () => {
    assert.deepEqual(await deliveredOver(server(), { server_name_override: ca.serverName }), { delivered: 0, failed: 1 });
    assert.deepEqual(await deliveredOver(server(), { insecure_skip_verify: true }), { delivered: 1, failed: 0 });
  });

  it('mutual TLS: cert_file/key_file are presented to a server that requires a client certificate', async () => {
    const mtls = { tls: { ...server().tls, ca: ca.read(ca.caFile), requestCert: true, rejectUnauthorized: true } };
    const tls = { ca_file: ca.caFile, server_name_override: ca.serverName };
    assert.deepEqual(await deliveredOver(mtls, { ...tls, cert_file: ca.clientCertFile, key_file: ca.clientKeyFile }), { delivered: 1, failed: 0 });
    assert.deepEqual(await deliveredOver(mtls, tls), { delivered: 0, failed: 1 }, 'no client certificate: refused (control)');
  });

  it('otlp_grpc over TLS: https:// and dns:/// endpoints, ca_file + server_name_override, mutual TLS', async () => {
    const creds = ServerCredentials.createSsl(ca.read(ca.caFile), [{ private_key: ca.read(ca.serverKeyFile), cert_chain: ca.read(ca.serverCertFile) }], true);
    const rx = await OtlpReceiver.start(0, creds);
    try {
      const tls = { ca_file: ca.caFile, server_name_override: ca.serverName, cert_file: ca.clientCertFile, key_file: ca.clientKeyFile };
      for (const endpoint of [`https://127.0.0.1:${rx.port}`, `dns:///127.0.0.1:${rx.port}`]) {
        const settings = testSettings('otlp_grpc/tls');
        const l = otlpGrpcExporterFactory.createLogs!(settings, otlpGrpcConfigSchema.parse({ endpoint, tls, timeout: '5s' })) as OtlpLogsExporter;
        await l.start(host);
        l.consumeLogs({ entries: [logEntry(1)] });
        await l.forceFlush();
        await l.shutdown();
        assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_sent_log_records'), 1, `${endpoint}: delivered over mutual TLS`);
      }
      assert.equal(rx.logs().length, 2);
    } finally {
      await rx.stop();
    }
  });

  it('a missing ca_file fails at creation, naming the key', () => {
    assert.throws(
      () => otlpHttpExporterFactory.createLogs!(testSettings('otlp_http/x'), cfg({ endpoint: 'https://127.0.0.1:1', tls: { ca_file: '/nonexistent/ca.pem' } })),
      /tls\.ca_file \/nonexistent\/ca\.pem/,
    );
  });
});
