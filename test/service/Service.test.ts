import assert from 'node:assert/strict';
import { get } from 'node:http';
import { join } from 'node:path';
import { beforeEach, describe, it } from 'node:test';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { pino } from 'pino';
import type { Factory } from '../../src/component/component.js';
import { healthCheckExtensionFactory } from '../../src/extension/health_check/factory.js';
import type { HealthCheckExtension } from '../../src/extension/health_check/HealthCheckExtension.js';
import { emptyFlowValues } from '../../src/model/metrics.js';
import { loadConfigFile, loadConfigText } from '../../src/service/config.js';
import { Service } from '../../src/service/Service.js';
import { SelfTelemetry } from '../../src/telemetry/SelfTelemetry.js';
import { collectExporters, fakeFactories, fakeReceivers, lifecycleLog } from '../helpers/fakeComponents.js';

const factories = [...fakeFactories, healthCheckExtensionFactory] as unknown as Factory[];
const resource = resourceFromAttributes({ 'service.name': 'test' });

function newService(configPath: string, env: NodeJS.ProcessEnv = { TAG_VALUE: 'v2' }): Service {
  const r = loadConfigFile(configPath, factories, env);
  assert.deepEqual(r.problems, []);
  return new Service({ config: r.config!, logger: pino({ level: 'silent' }), telemetry: new SelfTelemetry(resource), resource });
}

function httpStatus(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

describe('Service', () => {
  beforeEach(() => {
    lifecycleLog.length = 0;
    fakeReceivers.clear();
    collectExporters.clear();
  });

  it('starts exporters before receivers, shuts down in reverse, shares the receiver across signals', async () => {
    const svc = newService(join(import.meta.dirname, 'testdata', 'valid.yaml'));
    await svc.start();
    assert.equal(svc.state, 'running');
    assert.deepEqual(lifecycleLog, [
      'start exporter/collect:metrics',
      'start exporter/collect/other:metrics',
      'start exporter/collect:logs',
      'start receiver/fake',
    ]);
    const receiver = fakeReceivers.get('fake')!;
    assert.equal(receiver.started, 1, 'one receiver instance for both signals, started once');
    await svc.shutdown();
    await svc.shutdown();
    assert.equal(receiver.stopped, 1);
    assert.deepEqual(lifecycleLog.slice(4), [
      'shutdown receiver/fake',
      'shutdown exporter/collect:logs',
      'shutdown exporter/collect/other:metrics',
      'shutdown exporter/collect:metrics',
    ]);
    assert.equal(svc.state, 'stopped');
  });

  it('runs processors in order; exporters, which only read, share the batch', async () => {
    const svc = newService(join(import.meta.dirname, 'testdata', 'valid.yaml'));
    await svc.start();
    try {
      fakeReceivers.get('fake')!.emitMetrics({
        points: [{ attributes: { 'destination.port': '80' }, ...emptyFlowValues(), opened: 3 }],
      });
      const a = collectExporters.get('collect:metrics')!.metrics;
      const b = collectExporters.get('collect/other:metrics')!.metrics;
      assert.equal(a.length, 1);
      assert.equal(b.length, 1);
      assert.deepEqual(a[0]!.points[0]!.attributes, { 'destination.port': '80', tagged: 'yes', second: 'v2' });
      assert.deepEqual(b[0]!.points[0]!.attributes, a[0]!.points[0]!.attributes);
      assert.equal(a[0], b[0], 'no copy for consumers that do not mutate data');
      assert.equal(a[0]!.points[0]!.opened, 3);
      assert.equal(collectExporters.get('collect:logs')!.metrics.length, 0, 'metrics do not reach the logs pipeline');
    } finally {
      await svc.shutdown();
    }
  });

  it('shutdown before start is safe and start after shutdown is refused', async () => {
    const svc = newService(join(import.meta.dirname, 'testdata', 'valid.yaml'));
    await svc.shutdown();
    await svc.shutdown();
    await assert.rejects(svc.start(), /cannot start from state stopped/);
  });

  it('fails fast when a component cannot start, naming it, and stops what had started', async () => {
    const text = `
receivers: {fake: }
exporters: {collect: }
extensions:
  health_check: {endpoint: "127.0.0.1:0"}
  health_check/clash: {endpoint: "127.0.0.1:PORT"}
service:
  extensions: [health_check, health_check/clash]
  pipelines: {metrics: {receivers: [fake], exporters: [collect]}}`;
    // Occupy a port so the second extension cannot bind.
    const blocker = (await import('node:net')).createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', () => r()));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = loadConfigText(text.replace('PORT', String(port)), factories, {});
      assert.deepEqual(r.problems, []);
      const svc = new Service({
        config: r.config!,
        logger: pino({ level: 'silent' }),
        telemetry: new SelfTelemetry(resource),
        resource,
      });
      await assert.rejects(svc.start(), /extension\/health_check\/clash failed to start: health_check cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/);
      assert.equal(svc.state, 'failed');
      assert.deepEqual(lifecycleLog, [], 'no exporter or receiver was started after the failure');
    } finally {
      blocker.close();
    }
  });

  it('health_check answers 200 while running and 503 after a fatal error', async () => {
    const text = `
receivers: {fake: }
exporters: {collect: }
extensions: {health_check: {endpoint: "127.0.0.1:0"}}
service:
  extensions: [health_check]
  pipelines: {logs: {receivers: [fake], exporters: [collect]}}`;
    const r = loadConfigText(text, factories, {});
    let fatal = '';
    const svc = new Service({
      config: r.config!,
      logger: pino({ level: 'silent' }),
      telemetry: new SelfTelemetry(resource),
      resource,
      onFatalError: (id) => (fatal = id),
    });
    await svc.start();
    try {
      // The extension instance is internal; find its port through the component list.
      const ext = (svc as unknown as { extensions: Array<{ component: HealthCheckExtension }> }).extensions[0]!.component;
      const port = ext.address!.port;
      assert.equal(await httpStatus(port, '/healthz'), 200);
      assert.equal(await httpStatus(port, '/other'), 404);
      svc.reportFatalError('receiver/fake', new Error('boom'));
      assert.equal(fatal, 'receiver/fake');
      assert.equal(await httpStatus(port, '/healthz'), 503);
    } finally {
      await svc.shutdown();
    }
  });
});
