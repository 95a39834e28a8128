import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { parse } from 'yaml';
import type { Host } from '../../../src/component/component.js';
import { formatProblems, zodProblems } from '../../../src/config/errors.js';
import { prometheusConfigSchema } from '../../../src/exporters/prometheus/config.js';
import { prometheusExporterFactory } from '../../../src/exporters/prometheus/factory.js';
import type { PrometheusMetricsExporter } from '../../../src/exporters/prometheus/PrometheusMetricsExporter.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../../helpers/flowPoints.js';
import { freePort } from '../../helpers/freePort.js';
import { testSettings } from '../../helpers/settings.js';

const host: Host = { reportFatalError: () => undefined };
const testdata = (f: string): unknown => parse(readFileSync(new URL(`../../../src/exporters/prometheus/testdata/${f}`, import.meta.url), 'utf8'));
const problems = (body: unknown): string => {
  const r = prometheusConfigSchema.safeParse(body);
  assert.equal(r.success, false, `expected ${JSON.stringify(body)} to be rejected`);
  return formatProblems(zodProblems(['exporters', 'prometheus'], r.error!));
};

describe('prometheus exporter: the Collector\'s keys', () => {
  const toStop: PrometheusMetricsExporter[] = [];
  after(async () => {
    for (const e of toStop) await e.shutdown();
  });

  it('testdata/collector.yaml validates; metric_expiration is series_ttl', () => {
    const c = prometheusConfigSchema.parse(testdata('collector.yaml'));
    assert.equal(c.namespace, 'node');
    assert.deepEqual(c.const_labels, { cluster: 'prod-eu', team: 'net' });
    assert.deepEqual(c.resource_to_telemetry_conversion, { enabled: true });
    assert.equal(c.series_ttl, 600_000);
    assert.equal('metric_expiration' in c, false);
    assert.equal(prometheusConfigSchema.parse({ series_ttl: '1m' }).series_ttl, 60_000);
    assert.equal(prometheusConfigSchema.parse({}).series_ttl, 300_000);
  });

  it('testdata/typo.yaml: each misspelt key named by its path', () => {
    assert.deepEqual(problems(testdata('typo.yaml')).split('\n').sort(), [
      'exporters.prometheus.const_label: unknown key',
      'exporters.prometheus.resource_to_telemetry_conversion.enable: unknown key',
    ]);
  });

  it('rejects what would make a broken exposition, naming the key', () => {
    assert.equal(problems({ series_ttl: '1m', metric_expiration: '2m' }), 'exporters.prometheus.metric_expiration: an alias of series_ttl: give one of the two');
    assert.equal(problems({ const_labels: { reporter: 'x' } }), 'exporters.prometheus.const_labels.reporter: the kmesh schema already has a label "reporter"');
    assert.equal(problems({ const_labels: { le: 'x' } }), 'exporters.prometheus.const_labels.le: le is the histogram bucket label');
    assert.match(problems({ const_labels: { 'bad-name': 'x' } }), /^exporters\.prometheus\.const_labels\.bad-name: must be a label name/);
    assert.match(problems({ const_labels: { __name__: 'x' } }), /^exporters\.prometheus\.const_labels\.__name__: names starting with __ are reserved/);
    assert.match(problems({ namespace: 'my-ns' }), /^exporters\.prometheus\.namespace: must be a metric name prefix/);
  });

  it('namespace, const_labels and resource attributes on every series, promtool-clean', async () => {
    const port = await freePort();
    const settings = testSettings('prometheus/keys', { 'service.name': 'kmesh-otel', 'service.instance.id': 'pod-uid-1', 'k8s.node.name': 'node-a' });
    const cfg = prometheusConfigSchema.parse({
      endpoint: `127.0.0.1:${port}`,
      namespace: 'node',
      const_labels: { cluster: 'prod "eu"' },
      resource_to_telemetry_conversion: { enabled: true },
    });
    const exp = prometheusExporterFactory.createMetrics!(settings, cfg) as PrometheusMetricsExporter;
    toStop.push(exp);
    await exp.start(host);
    exp.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1, sentBytes: 5, durationsSec: [0.2] })] });
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const lines = text.split('\n');
    const extra = 'cluster="prod \\"eu\\"",k8s_node_name="node-a",service_instance_id="pod-uid-1",service_name="kmesh-otel"';
    const sent = lines.find((l) => l.startsWith('node_kmesh_tcp_workload_sent_bytes_total{'));
    assert.ok(sent !== undefined, text);
    assert.ok(sent.endsWith(`,source_workload_namespace="default",${extra}} 5`), sent);
    assert.ok(lines.includes('# TYPE node_kmesh_tcp_workload_sent_bytes_total counter'));
    assert.ok(lines.some((l) => l.startsWith('node_kmesh_tcp_connection_duration_seconds_bucket{') && l.includes(`${extra},le="0.25"} 1`)), 'histogram buckets carry them before le');
    assert.ok(lines.some((l) => l.startsWith('node_kmesh_tcp_connection_duration_seconds_count{') && l.endsWith(`${extra}} 1`)));
    const self = lines.find((l) => l.startsWith('node_kmesh_otel_exporter_metric_series{'));
    assert.ok(self !== undefined && self.includes('cluster="prod \\"eu\\""') && self.includes('service_instance_id="pod-uid-1"'), `self-metrics too: ${self}`);
    assert.ok(!lines.some((l) => /^kmesh_/.test(l)), 'no series without the namespace');
    assert.ok(lines.includes('target_info{service_name="kmesh-otel",service_instance_id="pod-uid-1",k8s_node_name="node-a"} 1'), 'target_info unchanged');
    const r = spawnSync('/usr/bin/promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
  });
});
