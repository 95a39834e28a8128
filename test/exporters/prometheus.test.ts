import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, describe, it } from 'node:test';
import type { Host } from '../../src/component/component.js';
import { prometheusExporterFactory } from '../../src/exporters/prometheus/factory.js';
import type { PrometheusMetricsExporter } from '../../src/exporters/prometheus/PrometheusMetricsExporter.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../helpers/flowPoints.js';
import { freePort } from '../helpers/freePort.js';
import { testSettings } from '../helpers/settings.js';

const host: Host = { reportFatalError: () => undefined };
const PROMTOOL = '/usr/bin/promtool';

const KMESH_EXAMPLE =
  'kmesh_tcp_workload_received_bytes_total{connection_security_policy="mutual_tls",destination_app="httpbin",destination_canonical_revision="v1",destination_canonical_service="httpbin",destination_cluster="Kubernetes",destination_pod_address="10.244.0.11",destination_pod_name="httpbin-5c5944c58c-v9mlk",destination_pod_namespace="default",destination_principal="-",destination_version="v1",destination_workload="httpbin",destination_workload_namespace="default",reporter="destination",request_protocol="tcp",response_flags="-",source_app="sleep",source_canonical_revision="latest",source_canonical_service="sleep",source_cluster="Kubernetes",source_principal="-",source_version="latest",source_workload="sleep",source_workload_namespace="default"} 231';

async function newExporter(extra: Record<string, unknown> = {}): Promise<{ exp: PrometheusMetricsExporter; url: string }> {
  const port = await freePort();
  const cfg = prometheusExporterFactory.configSchema.parse({ endpoint: `127.0.0.1:${port}`, ...extra });
  const exp = prometheusExporterFactory.createMetrics!(testSettings('prometheus'), cfg) as PrometheusMetricsExporter;
  return { exp, url: `http://127.0.0.1:${port}/metrics` };
}

async function scrape(url: string): Promise<string> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 200);
  return r.text();
}

describe('prometheus exporter', () => {
  const toStop: PrometheusMetricsExporter[] = [];
  after(async () => {
    for (const e of toStop) await e.shutdown();
  });

  it('defaults: endpoint 0.0.0.0:15020, kmesh schema; typos rejected', () => {
    const d = prometheusExporterFactory.createDefaultConfig();
    assert.equal(d.endpoint, '0.0.0.0:15020');
    assert.equal(d.schema, 'kmesh');
    assert.equal(d.max_series_per_family, 10000);
    assert.equal(d.series_ttl, 300000);
    const bad = prometheusExporterFactory.configSchema.safeParse({ endpointt: 'x:1' });
    assert.equal(bad.success, false);
  });

  it('serves the exact Kmesh line for a consumed point on the next scrape, promtool-clean', async () => {
    const { exp, url } = await newExporter();
    toStop.push(exp);
    await exp.start(host);
    exp.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1, receivedBytes: 231, sentBytes: 5, durationsSec: [0.2] })] });
    const text = await scrape(url);
    const lines = text.split('\n');
    assert.ok(lines.includes(KMESH_EXAMPLE), text);
    assert.ok(lines.includes('# TYPE kmesh_tcp_workload_received_bytes_total counter'));
    assert.ok(lines.some((l) => l.startsWith('kmesh_tcp_received_bytes_total{') && l.includes('destination_service="httpbin.default.svc.cluster.local"') && l.endsWith(' 231')));
    assert.ok(lines.some((l) => l.startsWith('kmesh_tcp_connection_duration_seconds_bucket{') && l.includes('le="0.25"') && l.endsWith(' 1')));
    assert.ok(lines.includes('target_info{service_name="kmesh-otel-test"} 1'));
    assert.ok(!text.includes('otel_scope_name'), 'no scope labels on Kmesh series');
    assert.ok(!/_total_total/.test(text), 'no doubled _total');
    // Self-metrics ride along.
    assert.ok(lines.some((l) => l.startsWith('kmesh_otel_exporter_metric_series{')));
    // Freshness: a second point is visible on the very next scrape.
    exp.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { receivedBytes: 9 })] });
    assert.ok((await scrape(url)).split('\n').includes(KMESH_EXAMPLE.replace(/ 231$/, ' 240')));
    if (existsSync(PROMTOOL)) {
      const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
      assert.equal((r.stdout + r.stderr).trim(), '', 'promtool has no lint findings');
    } else {
      assert.fail(`${PROMTOOL} missing (Debian package prometheus)`);
    }
  });

  it('serves concurrent scrapes consistently', async () => {
    const { exp, url } = await newExporter({ schema: 'istio' });
    toStop.push(exp);
    await exp.start(host);
    const pts = [];
    for (let i = 0; i < 200; i++) pts.push(flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: `w${i}` }, { opened: 1, sentBytes: 10 }));
    exp.consumeMetrics({ points: pts });
    const bodies = await Promise.all(Array.from({ length: 20 }, () => scrape(url)));
    for (const b of bodies) {
      const n = b.split('\n').filter((l) => l.startsWith('istio_tcp_sent_bytes_total{')).length;
      assert.equal(n, 200, 'every scrape sees all series');
      assert.equal(b, bodies[0], 'identical bodies');
    }
    assert.ok(bodies[0]!.includes('destination_principal="unknown"'));
  });

  it('fails start clearly when the port is in use', async () => {
    const port = await freePort();
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    try {
      const cfg = prometheusExporterFactory.configSchema.parse({ endpoint: `127.0.0.1:${port}` });
      const exp = prometheusExporterFactory.createMetrics!(testSettings('prometheus/x'), cfg);
      await assert.rejects(exp.start(host), /cannot listen on 127\.0\.0\.1:\d+: address already in use/);
      await exp.shutdown();
    } finally {
      await new Promise((r) => blocker.close(r));
    }
  });

  it('shutdown is safe before start and twice, and closes the port', async () => {
    const a = await newExporter();
    await a.exp.shutdown();
    await a.exp.shutdown();
    const b = await newExporter();
    await b.exp.start(host);
    await scrape(b.url);
    await b.exp.shutdown();
    await b.exp.shutdown();
    await assert.rejects(fetch(b.url, { signal: AbortSignal.timeout(2000) }));
  });
});
