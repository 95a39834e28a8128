import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Factory } from '../../../src/component/component.js';
import { builtinFactories } from '../../../src/components.js';
import { formatProblems } from '../../../src/config/errors.js';
import { otlpGrpcConfigSchema, otlpHttpConfigSchema } from '../../../src/exporters/otlp/config.js';
import { parseGrpcTarget, signalUrl } from '../../../src/exporters/otlp/endpoint.js';
import { Backoff, isPermanent } from '../../../src/exporters/otlp/retry.js';
import { httpUrls } from '../../../src/exporters/otlp/transport.js';
import { loadConfigFile } from '../../../src/service/config.js';

const testdata = (f: string): string => fileURLToPath(new URL(`../../../src/exporters/otlp/testdata/${f}`, import.meta.url));
const factories = builtinFactories as readonly Factory[];

describe('otlp_grpc / otlp / otlp_http config (Collector keys)', () => {
  it('testdata/collector.yaml: every key validates, with the values given', () => {
    const r = loadConfigFile(testdata('collector.yaml'), factories, {});
    assert.deepEqual(r.problems, []);
    const grpc = r.config!.components.get('exporter:otlp_grpc')!.config as ReturnType<typeof otlpGrpcConfigSchema.parse>;
    assert.equal(grpc.endpoint, 'dns:///otel-collector.observability.svc.cluster.local:4317');
    assert.deepEqual(grpc.tls, {
      insecure: false, insecure_skip_verify: false, ca_file: '/etc/ssl/otel/ca.pem', cert_file: '/etc/ssl/otel/client.pem',
      key_file: '/etc/ssl/otel/client.key', server_name_override: 'otel-collector.example.com',
    });
    assert.deepEqual(grpc.headers, { authorization: 'Bearer t0ken' });
    assert.equal(grpc.timeout, 10_000);
    assert.deepEqual(grpc.retry_on_failure, {
      enabled: true, initial_interval: 5_000, max_interval: 30_000, max_elapsed_time: 300_000, multiplier: 1.5, randomization_factor: 0.5,
    });
    assert.deepEqual(grpc.sending_queue, {
      enabled: true, queue_size: 5000, num_consumers: 4, sizer: 'items', batch: { flush_timeout: 200, min_size: 256, max_size: 1024, sizer: 'items' },
    });
    assert.equal(r.config!.components.get('exporter:otlp/legacy')!.factory.type, 'otlp', 'otlp is kept as an alias');
    const http = r.config!.components.get('exporter:otlp_http')!.config as ReturnType<typeof otlpHttpConfigSchema.parse>;
    assert.deepEqual(httpUrls(http), {
      metrics: 'https://otlp-gateway-prod-eu-west-2.grafana.net/otlp/v1/metrics',
      logs: 'https://otlp-gateway-prod-eu-west-2.grafana.net/otlp/v1/logs',
    });
    assert.equal(http.timeout, 30_000, 'otlphttp default timeout');
    assert.equal(http.encoding, 'proto');
    assert.equal(http.retry_on_failure.initial_interval, 1_000);
    assert.equal(http.retry_on_failure.randomization_factor, 0.3);
    assert.equal(http.retry_on_failure.multiplier, 1.5, 'default');
    const loki = r.config!.components.get('exporter:otlp_http/loki')!.config as ReturnType<typeof otlpHttpConfigSchema.parse>;
    assert.deepEqual(httpUrls(loki), { metrics: 'http://mimir:9009/otlp/v1/metrics', logs: 'http://loki:3100/otlp/v1/logs' });
    assert.equal(loki.sending_queue.enabled, false);
    assert.equal(loki.compression, 'none');
  });

  it('testdata/typo.yaml: each misspelt key named by its path', () => {
    const r = loadConfigFile(testdata('typo.yaml'), factories, {});
    assert.equal(
      formatProblems(r.problems),
      [
        'exporters.otlp_grpc.tls.insecure_skip_verfy: unknown key',
        'exporters.otlp_grpc.retry_on_failure.randomisation_factor: unknown key',
        'exporters.otlp_http.sending_queue.batch.min_sise: unknown key',
      ].join('\n'),
    );
  });

  it('testdata/unsupported.yaml: a Collector key this agent lacks fails naming that one key', () => {
    const r = loadConfigFile(testdata('unsupported.yaml'), factories, {});
    assert.equal(formatProblems(r.problems), 'exporters.otlp_http.auth: unknown key');
  });

  it('defaults are the Collector\'s', () => {
    const g = otlpGrpcConfigSchema.parse({});
    assert.equal(g.endpoint, 'localhost:4317');
    assert.equal(g.compression, 'gzip');
    assert.deepEqual(g.retry_on_failure, { enabled: true, initial_interval: 5000, max_interval: 30000, max_elapsed_time: 300000, multiplier: 1.5, randomization_factor: 0.5 });
    assert.deepEqual(g.sending_queue, { enabled: true, queue_size: 10000, num_consumers: 10, sizer: 'items', batch: { flush_timeout: 200, min_size: 512, max_size: 0, sizer: 'items' } });
    assert.deepEqual(g.tls, { insecure: false, insecure_skip_verify: false });
    const h = otlpHttpConfigSchema.parse({});
    assert.equal(h.endpoint, 'http://localhost:4318');
    assert.equal(h.timeout, 30_000);
  });

  const problem = (schema: typeof otlpGrpcConfigSchema | typeof otlpHttpConfigSchema, body: unknown): string => {
    const r = schema.safeParse(body);
    assert.equal(r.success, false, `expected ${JSON.stringify(body)} to be rejected`);
    return r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  };

  it('rejects values the Collector would, with the key path', () => {
    assert.match(problem(otlpGrpcConfigSchema, { endpoint: 'dns://8.8.8.8/collector:4317' }), /^endpoint: a DNS server authority/);
    assert.match(problem(otlpGrpcConfigSchema, { endpoint: 'collector' }), /^endpoint: must be host:port/);
    assert.match(problem(otlpGrpcConfigSchema, { endpoint: 'https://collector:4317/v1' }), /^endpoint: a gRPC endpoint has no path/);
    assert.match(problem(otlpHttpConfigSchema, { endpoint: 'collector:4318' }), /^endpoint: must be an http/);
    assert.match(problem(otlpHttpConfigSchema, { logs_endpoint: 'not a url' }), /^logs_endpoint: invalid URL/);
    assert.match(problem(otlpGrpcConfigSchema, { compression: 'zstd' }), /^compression: /);
    assert.match(problem(otlpGrpcConfigSchema, { tls: { cert_file: '/c.pem' } }), /^tls: cert_file and key_file must be given together/);
    assert.match(problem(otlpGrpcConfigSchema, { retry_on_failure: { randomization_factor: 1.5 } }), /^retry_on_failure\.randomization_factor: /);
    assert.match(problem(otlpGrpcConfigSchema, { retry_on_failure: { multiplier: 0.5 } }), /^retry_on_failure\.multiplier: /);
    assert.match(problem(otlpGrpcConfigSchema, { sending_queue: { sizer: 'bytes' } }), /^sending_queue\.sizer: only "items" is supported/);
    assert.match(problem(otlpGrpcConfigSchema, { sending_queue: { batch: { min_size: 100, max_size: 10 } } }), /^sending_queue\.batch: max_size must be 0 or at least min_size/);
    assert.match(problem(otlpGrpcConfigSchema, { timeout: 'soon' }), /^timeout: invalid duration "soon"/);
    assert.match(problem(otlpHttpConfigSchema, { encoding: 'json' }), /^encoding: only "proto" is supported/);
    assert.equal(problem(otlpGrpcConfigSchema, { encoding: 'proto' }), ': Unrecognized key: "encoding"', 'encoding is an otlp_http key');
  });

  it('gRPC endpoints: host:port, http(s)://, dns:///', () => {
    assert.deepEqual(parseGrpcTarget('collector:4317'), { hostPort: 'collector:4317', httpsScheme: false });
    assert.deepEqual(parseGrpcTarget('[::1]:4317'), { hostPort: '[::1]:4317', httpsScheme: false });
    assert.deepEqual(parseGrpcTarget('http://collector:4317'), { hostPort: 'collector:4317', httpsScheme: false });
    assert.deepEqual(parseGrpcTarget('https://collector:4317/'), { hostPort: 'collector:4317', httpsScheme: true });
    assert.deepEqual(parseGrpcTarget('dns:///collector.ns.svc:4317'), { hostPort: 'collector.ns.svc:4317', httpsScheme: false });
    assert.deepEqual(parseGrpcTarget('dns:collector:4317'), { hostPort: 'collector:4317', httpsScheme: false });
  });

  it('HTTP signal URLs: appended to the base path, a trailing slash not doubled', () => {
    assert.equal(signalUrl('http://localhost:4318', 'v1/metrics'), 'http://localhost:4318/v1/metrics');
    assert.equal(signalUrl('http://loki:3100/otlp/', 'v1/logs'), 'http://loki:3100/otlp/v1/logs');
    assert.equal(signalUrl('https://gw.example.com/otlp', 'v1/traces'), 'https://gw.example.com/otlp/v1/traces');
  });
});

describe('retry_on_failure backoff', () => {
  const cfg = { enabled: true, initial_interval: 100, max_interval: 1000, max_elapsed_time: 0, multiplier: 2, randomization_factor: 0.5 };

  it('grows by multiplier up to max_interval; each wait is interval * (1 ± factor) by the random draw', () => {
    const draws = [0, 0.5, 1, 0.25, 0.75, 0.5, 0.5];
    let i = 0;
    const b = new Backoff(cfg, () => draws[i++]!);
    // intervals 100, 200, 400, 800, 1000 (capped), 1000, 1000
    assert.deepEqual(Array.from({ length: 7 }, () => b.next()), [50, 200, 600, 600, 1250, 1000, 1000]);
  });

  it('without jitter (factor 0) the waits are the intervals', () => {
    const b = new Backoff({ ...cfg, randomization_factor: 0 }, Math.random);
    assert.deepEqual(Array.from({ length: 5 }, () => b.next()), [100, 200, 400, 800, 1000]);
  });

  it('a fleet does not retry in lockstep: 100 agents draw 100 different first waits within 50..150 ms', () => {
    const waits = Array.from({ length: 100 }, () => new Backoff(cfg).next()!);
    for (const w of waits) assert.ok(w >= 50 && w <= 150, `wait ${w}`);
    assert.ok(new Set(waits).size > 50, `${new Set(waits).size} distinct waits of 100`);
  });

  it('stops when the next wait would pass max_elapsed_time', () => {
    let now = 0;
    const b = new Backoff({ ...cfg, randomization_factor: 0, max_elapsed_time: 1000 }, Math.random, () => now);
    assert.equal(b.next(), 100);
    now = 100;
    assert.equal(b.next(), 200);
    now = 300;
    assert.equal(b.next(), 400);
    now = 700;
    assert.equal(b.next(), undefined, '700 + 800 > 1000');
  });

  it('permanent errors: HTTP 4xx but 429, gRPC codes the Collector does not retry', () => {
    const r = (code: unknown) => ({ code: 1, error: Object.assign(new Error('x'), { code }) });
    assert.equal(isPermanent(r(400)), true);
    assert.equal(isPermanent(r(401)), true);
    assert.equal(isPermanent(r(429)), false);
    assert.equal(isPermanent(r(503)), false);
    assert.equal(isPermanent(r(3 /* INVALID_ARGUMENT */)), true);
    assert.equal(isPermanent(r(16 /* UNAUTHENTICATED */)), true);
    assert.equal(isPermanent(r(14 /* UNAVAILABLE */)), false);
    assert.equal(isPermanent(r(4 /* DEADLINE_EXCEEDED */)), false);
    assert.equal(isPermanent(r('ECONNREFUSED')), false);
    assert.equal(isPermanent({ code: 1 }), false);
  });
});
