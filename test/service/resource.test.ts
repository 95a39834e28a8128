import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Factory } from '../../src/component/component.js';
import { builtinFactories } from '../../src/components.js';
import { formatProblems } from '../../src/config/errors.js';
import { loadConfigText } from '../../src/service/config.js';
import { agentResource, configuredClusterName } from '../../src/service/resource.js';

const host = async (): Promise<Record<string, string>> => ({ 'host.name': 'node-a', 'host.arch': 'amd64', 'host.id': '0123456789abcdef0123456789abcdef' });
const noOtelEnv = (): Record<string, string> => ({});

describe('agentResource', () => {
  it('on Kubernetes: service.instance.id is the pod UID, k8s.* from the downward API', async () => {
    const r = await agentResource({
      env: { POD_UID: 'f2b1c7e2-5d4e-4a53-9d0b-3c6a2c1e9a10', POD_NAME: 'kmesh-otel-x7k2p', POD_NAMESPACE: 'kmesh-otel', NODE_NAME: 'worker-1' },
      version: '1.2.3',
      clusterName: 'prod-eu',
      host,
      otelEnv: noOtelEnv,
    });
    assert.deepEqual(r.attributes, {
      'service.name': 'kmesh-otel',
      'service.version': '1.2.3',
      'service.instance.id': 'f2b1c7e2-5d4e-4a53-9d0b-3c6a2c1e9a10',
      'host.name': 'node-a',
      'host.arch': 'amd64',
      'host.id': '0123456789abcdef0123456789abcdef',
      'k8s.pod.name': 'kmesh-otel-x7k2p',
      'k8s.pod.uid': 'f2b1c7e2-5d4e-4a53-9d0b-3c6a2c1e9a10',
      'k8s.namespace.name': 'kmesh-otel',
      'k8s.node.name': 'worker-1',
      'k8s.cluster.name': 'prod-eu',
    });
  });

  it('elsewhere: service.instance.id is the machine id, no k8s.* attributes', async () => {
    const r = await agentResource({ env: {}, version: '1.2.3', host, otelEnv: noOtelEnv });
    assert.equal(r.attributes['service.instance.id'], '0123456789abcdef0123456789abcdef');
    assert.deepEqual(Object.keys(r.attributes).filter((k) => k.startsWith('k8s.')), []);
  });

  it('without a machine id: a random UUID, different per agent process', async () => {
    const a = await agentResource({ env: {}, version: '1', host: async () => ({ 'host.name': 'h' }), otelEnv: noOtelEnv });
    const b = await agentResource({ env: {}, version: '1', host: async () => ({ 'host.name': 'h' }), otelEnv: noOtelEnv });
    assert.match(String(a.attributes['service.instance.id']), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(a.attributes['service.instance.id'], b.attributes['service.instance.id']);
  });

  it('OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (real SDK detectors) override the detected values; the config overrides both', async () => {
    const saved = { a: process.env.OTEL_RESOURCE_ATTRIBUTES, s: process.env.OTEL_SERVICE_NAME };
    process.env.OTEL_RESOURCE_ATTRIBUTES = 'service.name=from-attrs,deployment.environment.name=prod,service.instance.id=node%2D7,team=net%2Cops';
    process.env.OTEL_SERVICE_NAME = 'kmesh-edge';
    try {
      const r = await agentResource({
        env: { NODE_NAME: 'worker-1' },
        version: '1',
        host,
        configured: { team: 'platform', 'host.arch': null, 'k8s.cluster.name': 'lab' },
      });
      assert.equal(r.attributes['service.name'], 'kmesh-edge', 'OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES');
      assert.equal(r.attributes['service.instance.id'], 'node-7', 'percent-decoded');
      assert.equal(r.attributes['deployment.environment.name'], 'prod');
      assert.equal(r.attributes.team, 'platform', 'service.telemetry.resource wins over the environment');
      assert.equal('host.arch' in r.attributes, false, 'a null in service.telemetry.resource removes the attribute');
      assert.equal(r.attributes['k8s.cluster.name'], 'lab');
      assert.equal(r.attributes['k8s.node.name'], 'worker-1');
    } finally {
      for (const [k, v] of [['OTEL_RESOURCE_ATTRIBUTES', saved.a], ['OTEL_SERVICE_NAME', saved.s]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('the real host detector gives host.name and, where /etc/machine-id exists, host.id as service.instance.id', async () => {
    const r = await agentResource({ env: {}, version: '1', otelEnv: noOtelEnv });
    const { hostname } = await import('node:os');
    const { readFileSync, existsSync } = await import('node:fs');
    assert.equal(r.attributes['host.name'], hostname());
    if (existsSync('/etc/machine-id')) {
      const id = readFileSync('/etc/machine-id', 'utf8').trim();
      assert.equal(r.attributes['host.id'], id);
      assert.equal(r.attributes['service.instance.id'], id);
    }
  });
});

describe('service.telemetry.resource and k8s.cluster.name from the config', () => {
  const factories = builtinFactories as readonly Factory[];
  const config = (extra: string, auth = 'serviceAccount'): string => `
receivers: { ebpf: {} }
processors: { k8s_attributes: { auth_type: ${auth}, cluster_name: prod-eu } }
exporters: { debug: {} }
service:
  telemetry:
    ${extra}
  pipelines:
    logs: { receivers: [ebpf], processors: [k8s_attributes], exporters: [debug] }
`;

  it('accepts attributes and nulls, and takes cluster_name from a used k8s_attributes processor', () => {
    const r = loadConfigText(config("resource: { deployment.environment.name: prod, host.arch: null, 'service.instance.id': }"), factories, {});
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.config!.resource, { 'deployment.environment.name': 'prod', 'host.arch': null, 'service.instance.id': null });
    assert.equal(configuredClusterName(r.config!), 'prod-eu');
  });

  it('no k8s.cluster.name when the processor does not talk to a cluster (auth_type none)', () => {
    const r = loadConfigText(config('resource: {}', 'none'), factories, {});
    assert.deepEqual(r.problems, []);
    assert.equal(configuredClusterName(r.config!), undefined);
  });

  it('names a misspelt key and a non-string value by their paths', () => {
    const typo = loadConfigText(config('resourse: { a: b }'), factories, {});
    assert.equal(formatProblems(typo.problems), 'service.telemetry.resourse: unknown key');
    const bad = loadConfigText(config('resource: { a: [1] }'), factories, {});
    assert.match(formatProblems(bad.problems), /^service\.telemetry\.resource\.a: /);
  });
});
