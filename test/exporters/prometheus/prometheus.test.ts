import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { request } from 'node:http';
import { PassThrough, Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import type { Host } from '../../../src/component/component.js';
import { writeExposition } from '../../../src/exporters/prometheus/exposition.js';
import { prometheusExporterFactory } from '../../../src/exporters/prometheus/factory.js';
import { acceptsGzip, type PrometheusMetricsExporter } from '../../../src/exporters/prometheus/PrometheusMetricsExporter.js';
import type { MetricSchema } from '../../../src/metrics/schema.js';
import { SeriesStore } from '../../../src/metrics/SeriesStore.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../../helpers/flowPoints.js';
import { freePort } from '../../helpers/freePort.js';
import { testSettings } from '../../helpers/settings.js';

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

  it('defaults: endpoint 127.0.0.1:15020 (loopback), kmesh schema; typos rejected', () => {
    const d = prometheusExporterFactory.createDefaultConfig();
    assert.equal(d.endpoint, '127.0.0.1:15020');
    assert.deepEqual([d.max_connections, d.read_header_timeout, d.idle_timeout, d.tls, d.allowed_clients], [64, 10_000, 60_000, undefined, undefined]);
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

/** A one-group schema with one counter and one histogram over two labels, for exact exposition text. */
const TINY: MetricSchema = {
  name: 'kmesh',
  unknown: '-',
  families: [
    { name: 'tiny_total', help: 'Tiny counter\nwith a \\ in help', unit: '', type: 'counter', labels: ['a', 'b'] },
    { name: 'tiny_seconds', help: 'Tiny histogram', unit: 's', type: 'histogram', labels: ['a', 'b'], buckets: [0.5, 1] },
  ],
  groups: [],
};
(TINY as { groups: MetricSchema['groups'] }).groups = [
  {
    labels: ['a', 'b'],
    bindings: [{ family: TINY.families[0]! }, { family: TINY.families[1]!, observations: (p) => p.durationsSec }],
    read(p, out) {
      out[0] = p.opened;
      out[1] = p.durationsSec.length;
    },
  },
];

async function writeToString(store: SeriesStore<string>, head = '', tail = '', sink?: PassThrough): Promise<string> {
  const out = sink ?? new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  await writeExposition(out, store.snapshot(), head, tail);
  out.end();
  await new Promise((r) => out.once('end', r));
  return Buffer.concat(chunks).toString('utf8');
}

describe('prometheus exposition writer', () => {
  it('writes HELP/UNIT/TYPE, escaped labels, cumulative buckets, sum, count and the overflow series exactly', async () => {
    const store = new SeriesStore<string>({ schema: TINY, maxSeriesPerFamily: 1 });
    const pt = (a: string, opened: number, durationsSec: number[]) => ({ ...flowPoint({ a, b: 'x"y\\z\nw' }), opened, durationsSec });
    store.consume({ points: [pt('one', 3, [0.25, 0.75, 9])] });
    store.consume({ points: [pt('two', 1_000_000_000_000, [0.1])] });
    const text = await writeToString(store, '# head\n', '# tail\n');
    const labels = 'a="one",b="x\\"y\\\\z\\nw"';
    assert.equal(
      text,
      [
        '# head',
        '# HELP tiny_total Tiny counter\\nwith a \\\\ in help',
        '# TYPE tiny_total counter',
        `tiny_total{${labels}} 3`,
        'tiny_total{otel_metric_overflow="true"} 1000000000000',
        '# HELP tiny_seconds Tiny histogram',
        '# UNIT tiny_seconds s',
        '# TYPE tiny_seconds histogram',
        `tiny_seconds_bucket{${labels},le="0.5"} 1`,
        `tiny_seconds_bucket{${labels},le="1"} 2`,
        `tiny_seconds_bucket{${labels},le="+Inf"} 3`,
        `tiny_seconds_sum{${labels}} 10`,
        `tiny_seconds_count{${labels}} 3`,
        'tiny_seconds_bucket{otel_metric_overflow="true",le="0.5"} 1',
        'tiny_seconds_bucket{otel_metric_overflow="true",le="1"} 1',
        'tiny_seconds_bucket{otel_metric_overflow="true",le="+Inf"} 1',
        'tiny_seconds_sum{otel_metric_overflow="true"} 0.1',
        'tiny_seconds_count{otel_metric_overflow="true"} 1',
        '# tail',
        '',
      ].join('\n'),
    );
    if (existsSync(PROMTOOL)) {
      const r = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8' });
      assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
    }
  });

  it('formats non-integer and large values as Go parses them', async () => {
    const store = new SeriesStore<string>({ schema: TINY });
    const values = [0.5, 2 ** 53 + 2, 1e21, 123456789012345];
    values.forEach((v, i) => store.consume({ points: [{ ...flowPoint({ a: String(i) }), opened: v }] }));
    const lines = (await writeToString(store)).split('\n').filter((l) => l.startsWith('tiny_total{'));
    assert.deepEqual(
      lines.map((l) => l.slice(l.lastIndexOf(' ') + 1)),
      ['0.5', '9007199254740994', '1e+21', '123456789012345'],
    );
  });

  it('streams a large exposition in chunks with backpressure, byte-exact', async () => {
    const store = new SeriesStore<string>({ schema: TINY, maxSeriesPerFamily: 100_000 });
    const long = 'v'.repeat(400_000); // one label value larger than a chunk
    store.consume({ points: [{ ...flowPoint({ a: long }), opened: 1 }] });
    for (let i = 0; i < 5_000; i++) store.consume({ points: [{ ...flowPoint({ a: `series-${i}`, b: 'é' }), opened: i + 1 }] });
    const sink = new PassThrough({ highWaterMark: 1024 });
    let writes = 0;
    const counting = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _enc, cb) {
        writes++;
        sink.write(chunk);
        setImmediate(cb); // a slow reader: write() returns false and the writer must wait for 'drain'
      },
      final(cb) {
        sink.end();
        cb();
      },
    });
    const chunks: Buffer[] = [];
    sink.on('data', (c: Buffer) => chunks.push(c));
    await writeExposition(counting, store.snapshot(), '', '');
    counting.end();
    await new Promise((r) => sink.once('end', r));
    const text = Buffer.concat(chunks).toString('utf8');
    const lines = text.split('\n').filter((l) => l.startsWith('tiny_total{'));
    assert.equal(lines.length, 5_001);
    assert.equal(lines[0], `tiny_total{a="${long}",b="-"} 1`);
    for (let i = 0; i < 5_000; i++) assert.equal(lines[i + 1], `tiny_total{a="series-${i}",b="é"} ${i + 1}`, `line ${i + 1}`);
    assert.ok(writes > 3, `written in several chunks (${writes})`);
  });

  it('parses Accept-Encoding for gzip', () => {
    assert.equal(acceptsGzip(undefined), false);
    assert.equal(acceptsGzip('gzip'), true);
    assert.equal(acceptsGzip('deflate, GZIP;q=0.5'), true);
    assert.equal(acceptsGzip('gzip;q=0'), false);
    assert.equal(acceptsGzip('identity'), false);
    assert.equal(acceptsGzip('*'), true);
    assert.equal(acceptsGzip('gzip;q=0, *'), false);
    assert.equal(acceptsGzip(['br', 'x-gzip']), true);
  });
});

describe('prometheus endpoint', () => {
  const toStop: PrometheusMetricsExporter[] = [];
  after(async () => {
    for (const e of toStop) await e.shutdown();
  });

  function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = request(url, { method, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('gzips for scrapers that accept it, with the same content as the plain body', async () => {
    const { exp, url } = await newExporter();
    toStop.push(exp);
    await exp.start(host);
    exp.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { opened: 1, receivedBytes: 231 })] });
    const plain = await get(url);
    const zipped = await get(url, { 'Accept-Encoding': 'gzip' });
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.equal(zipped.headers['content-encoding'], 'gzip');
    assert.equal(gunzipSync(zipped.body).toString('utf8'), plain.body.toString('utf8'));
    assert.ok(plain.body.toString('utf8').split('\n').includes(KMESH_EXAMPLE));
  });

  it('answers 404 off /metrics, HEAD without a body, 405 for other methods', async () => {
    const { exp, url } = await newExporter();
    toStop.push(exp);
    await exp.start(host);
    assert.equal((await get(url.replace('/metrics', '/other'))).status, 404);
    const head = await get(url, {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assert.equal((await get(url, {}, 'POST')).status, 405);
    assert.equal((await get(url + '?x=1')).status, 200, 'query strings are ignored');
  });

  it('survives a scraper that goes away mid-response', async () => {
    const { exp, url } = await newExporter({ max_series_per_family: 100_000 });
    toStop.push(exp);
    await exp.start(host);
    const pts = [];
    for (let i = 0; i < 3_000; i++) pts.push(flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: `w${i}` }, { opened: 1, sentBytes: 10 }));
    exp.consumeMetrics({ points: pts });
    await new Promise<void>((resolve) => {
      const req = request(url, { agent: false }, (res) => {
        res.once('data', () => {
          res.destroy();
          resolve();
        });
      });
      req.end();
    });
    // Several MB through recycled chunk buffers, plain and gzipped: every line intact.
    const plain = await scrape(url);
    const zipped = gunzipSync((await get(url, { 'Accept-Encoding': 'gzip' })).body).toString('utf8');
    for (const text of [plain, zipped]) {
      const lines = text.split('\n').filter((l) => l.startsWith('kmesh_tcp_workload_sent_bytes_total{'));
      assert.equal(lines.length, 3_000);
      const workloads = new Set(lines.map((l) => /source_workload="(w\d+)"/.exec(l)?.[1]));
      assert.equal(workloads.size, 3_000, 'each label set once');
      for (const l of lines) assert.ok(l.endsWith('",source_workload_namespace="default"} 10'), l.slice(-80));
    }
    assert.equal(zipped, plain);
  });
});
