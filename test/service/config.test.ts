import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { Factory } from '../../src/component/component.js';
import { formatProblems } from '../../src/config/errors.js';
import { duration, parseDurationMs, splitHostPort } from '../../src/config/types.js';
import { loadConfigFile, loadConfigText } from '../../src/service/config.js';
import { expandEnv } from '../../src/service/envExpand.js';
import { builtinFactories } from '../../src/components.js';
import { fakeFactories } from '../helpers/fakeComponents.js';

const factories = fakeFactories as unknown as Factory[];
const testdata = join(import.meta.dirname, 'testdata');

describe('config loading', () => {
  it('accepts the valid fixture with env expansion, defaults and type/name ids', () => {
    const r = loadConfigFile(join(testdata, 'valid.yaml'), factories, { TAG_VALUE: 'v2', HOST: 'collector' });
    assert.deepEqual(r.problems, []);
    const c = r.config!;
    assert.deepEqual(c.components.get('receiver:fake')!.config, { interval: 250 });
    assert.deepEqual(c.components.get('processor:tag')!.config, { key: 'tagged', value: 'yes' });
    assert.deepEqual(c.components.get('processor:tag/second')!.config, { key: 'second', value: 'v2' });
    assert.deepEqual(c.components.get('exporter:collect/other')!.config, { endpoint: 'collector:4317' });
    assert.deepEqual(
      c.pipelines.map((p) => [p.name, p.signal]),
      [
        ['metrics', 'metrics'],
        ['logs/access', 'logs'],
      ],
    );
    assert.equal(c.logLevel, 'info');
  });

  it('warns about unset variables without a default and expands them to empty', () => {
    const r = loadConfigFile(join(testdata, 'valid.yaml'), factories, {});
    assert.deepEqual(r.warnings, ['environment variable TAG_VALUE is not set; expanded to an empty string']);
    assert.deepEqual(r.config!.components.get('processor:tag/second')!.config, { key: 'second', value: '' });
  });

  it('names every unknown key by its path (typo fixture)', () => {
    const r = loadConfigFile(join(testdata, 'typo.yaml'), factories, {});
    assert.equal(r.config, undefined);
    assert.equal(
      formatProblems(r.problems),
      ['receivers.fake.intervall: unknown key', 'exporters.collect.endpointt: unknown key'].join('\n'),
    );
  });

  it('reports every problem of the invalid fixture at once, each with its path', () => {
    const r = loadConfigFile(join(testdata, 'invalid.yaml'), factories, {});
    assert.equal(r.config, undefined);
    assert.deepEqual(formatProblems(r.problems).split('\n'), [
      'servic: unknown key',
      'receivers.nosuch: unknown receiver type "nosuch" (known: fake)',
      'processors.tag.key: Invalid input: expected string, received number',
      'exporters.Bad Id: invalid component id (use type or type/name)',
      'service.extensions[0]: no extension "health_check" is defined',
      'service.pipelines.metrics.processors[0]: no processor "tag/missing" is defined',
      'service.pipelines.metrics.exporters[1]: no exporter "otlp/x" is defined',
      'service.pipelines.logs.exporters[0]: exporter "metricsonly" does not support logs',
      'service.pipelines.spans: pipeline name must be metrics, logs or traces (optionally /name)',
    ]);
  });

  it('rejects YAML syntax errors with a message and no crash', () => {
    const r = loadConfigText('receivers: [unclosed', factories, {});
    assert.equal(r.config, undefined);
    assert.match(r.problems[0]!.message, /^YAML: /);
  });

  it('rejects a missing service section and an empty pipeline list', () => {
    assert.deepEqual(
      formatProblems(loadConfigText('receivers: {fake: }', factories, {}).problems),
      'service: Invalid input: expected object, received undefined',
    );
    assert.equal(
      formatProblems(loadConfigText('service: {pipelines: {}}', factories, {}).problems),
      'service.pipelines: at least one pipeline is required',
    );
  });

  it('rejects a traces pipeline whose components do not support traces', () => {
    const r = loadConfigText(
      'receivers: {fake: }\nexporters: {collect: }\nservice: {pipelines: {traces: {receivers: [fake], exporters: [collect]}}}',
      factories,
      {},
    );
    assert.deepEqual(formatProblems(r.problems).split('\n'), [
      'service.pipelines.traces.receivers[0]: receiver "fake" does not support traces',
      'service.pipelines.traces.exporters[0]: exporter "collect" does not support traces',
    ]);
  });
});

describe('traces pipelines with the built-in components', () => {
  it('accepts ebpf -> k8s_attributes -> otlp, otlp_http, debug; rejects components without traces', () => {
    const ok = loadConfigText(
      'receivers: {ebpf: {traces: {sampling_ratio: 0.5}}}\nprocessors: {k8s_attributes: }\nexporters: {otlp: {endpoint: "localhost:4317"}, otlp_http: {endpoint: "http://tempo:4318"}, debug: }\n' +
        'service: {pipelines: {traces: {receivers: [ebpf], processors: [k8s_attributes], exporters: [otlp, otlp_http, debug]}}}',
      builtinFactories,
      {},
    );
    assert.deepEqual(ok.problems, []);
    const bad = loadConfigText(
      'receivers: {ebpf: }\nprocessors: {accesslog_filter: }\nexporters: {prometheus: }\nservice: {pipelines: {traces: {receivers: [ebpf], processors: [accesslog_filter], exporters: [prometheus]}}}',
      builtinFactories,
      {},
    );
    assert.deepEqual(formatProblems(bad.problems).split('\n'), [
      'service.pipelines.traces.processors[0]: processor "accesslog_filter" does not support traces',
      'service.pipelines.traces.exporters[0]: exporter "prometheus" does not support traces',
    ]);
  });
});

describe('env expansion', () => {
  it('types whole-value references as YAML scalars and splices partial ones as text', () => {
    const r = expandEnv({ a: '${env:N}', b: 'x-${env:N}-y', c: '${env:B}', d: '${env:NOPE:-dflt}', e: '$${env:N}' }, {
      N: '42',
      B: 'true',
    });
    assert.deepEqual(r.value, { a: 42, b: 'x-42-y', c: true, d: 'dflt', e: '${env:N}' });
    assert.deepEqual(r.missing, []);
  });

  it('expands inside lists and reports missing names once', () => {
    const r = expandEnv({ l: ['${env:M}', '${env:M}x'] }, {});
    assert.deepEqual(r.value, { l: ['', 'x'] });
    assert.deepEqual(r.missing, ['M']);
  });
});

describe('config value types', () => {
  it('parses Go-style durations', () => {
    assert.equal(parseDurationMs('5s'), 5000);
    assert.equal(parseDurationMs('250ms'), 250);
    assert.equal(parseDurationMs('1m30s'), 90_000);
    assert.equal(parseDurationMs('1.5h'), 5_400_000);
    assert.equal(parseDurationMs('5'), undefined);
    assert.equal(parseDurationMs('5sx'), undefined);
    assert.equal(parseDurationMs(''), undefined);
  });

  it('names a malformed duration with a hint', () => {
    const r = duration.safeParse('soon');
    assert.equal(r.success, false);
    assert.equal(r.error!.issues[0]!.message, 'invalid duration "soon" (use e.g. 500ms, 5s, 1m)');
    assert.equal(duration.parse('1m'), 60_000);
    assert.equal(duration.parse(250), 250);
    assert.equal(duration.safeParse(true).error!.issues[0]!.message, 'expected a duration such as 500ms, 5s or 1m');
  });

  it('splits host:port including bracketed IPv6', () => {
    assert.deepEqual(splitHostPort('0.0.0.0:15020'), { host: '0.0.0.0', port: 15020 });
    assert.deepEqual(splitHostPort('[::1]:4317'), { host: '::1', port: 4317 });
    assert.deepEqual(splitHostPort(':8080'), { host: '', port: 8080 });
    assert.equal(splitHostPort('localhost'), undefined);
    assert.equal(splitHostPort('h:70000'), undefined);
  });
});
