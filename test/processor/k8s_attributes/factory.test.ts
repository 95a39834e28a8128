import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, afterEach, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { formatProblems, zodProblems } from '../../../src/config/errors.js';
import type { LogsBatch } from '../../../src/model/logs.js';
import { RawAttr, type MetricsBatch } from '../../../src/model/metrics.js';
import { rawPoint } from '../../helpers/flowPoints.js';
import { k8sAttributesConfigSchema, type K8sAttributesConfig } from '../../../src/processor/k8s_attributes/config.js';
import { k8sAttributesProcessorFactory, newK8sAttributesProcessorFactory } from '../../../src/processor/k8s_attributes/factory.js';
import { FakeApiServer } from '../../helpers/fakeApiServer.js';
import { testSettings } from '../../helpers/settings.js';
import { namespace, pod, service, waitFor } from './fixtures.js';

const testdata = new URL('../../../src/processor/k8s_attributes/testdata/', import.meta.url);
const host = { reportFatalError: (id: string, err: Error) => assert.fail(`fatal from ${id}: ${err.message}`) };

describe('k8s_attributes config', () => {
  it('defaults', () => {
    assert.deepEqual(k8sAttributesProcessorFactory.createDefaultConfig(), {
      auth_type: 'kubeConfig',
      cluster_name: 'Kubernetes',
      trust_domain: 'cluster.local',
      cluster_domain: 'cluster.local',
      node_name: '',
      namespaces: [],
      unknown_peer: 'omit',
      deleted_grace: 60_000,
      wait_for_metadata: false,
      wait_for_metadata_timeout: 10_000,
      mesh: {
        namespace_labels: ['istio.io/dataplane-mode=ambient', 'istio.io/dataplane-mode=Kmesh', 'istio-injection=enabled'],
        pod_labels: ['security.istio.io/tlsMode=istio', 'istio.io/dataplane-mode=ambient', 'istio.io/dataplane-mode=Kmesh'],
        pod_exclude_labels: ['istio.io/dataplane-mode=none'],
      },
    });
    assert.equal(k8sAttributesProcessorFactory.type, 'k8s_attributes');
    assert.equal(k8sAttributesProcessorFactory.kind, 'processor');
  });

  it('parses testdata/config.yaml', () => {
    const cfg = k8sAttributesConfigSchema.parse(parse(readFileSync(new URL('config.yaml', testdata), 'utf8')));
    assert.equal(cfg.auth_type, 'serviceAccount');
    assert.equal(cfg.deleted_grace, 120_000);
    assert.equal(cfg.wait_for_metadata_timeout, 30_000);
    assert.deepEqual(cfg.namespaces, ['shop', 'payments']);
    assert.deepEqual(cfg.mesh.pod_exclude_labels, []);
  });

  it('rejects testdata/typo.yaml naming the keys', () => {
    const r = k8sAttributesConfigSchema.safeParse(parse(readFileSync(new URL('typo.yaml', testdata), 'utf8')));
    assert.equal(r.success, false);
    const text = formatProblems(zodProblems(['processors', 'k8s_attributes'], r.error!));
    assert.match(text, /processors\.k8s_attributes\.clustr_name: unknown key/);
    assert.match(text, /processors\.k8s_attributes\.mesh\.pod_label: unknown key/);
  });

  it('rejects a bad label term and a bad duration', () => {
    assert.equal(k8sAttributesConfigSchema.safeParse({ mesh: { pod_labels: ['a = b'] } }).success, false);
    assert.equal(k8sAttributesConfigSchema.safeParse({ deleted_grace: '5 minutes' }).success, false);
  });
});

function metricsBatch(src: string, dst: string, port: number): MetricsBatch {
  return {
    points: [
      rawPoint(
        {
          [RawAttr.direction]: 'INBOUND',
          [RawAttr.sourceAddress]: src,
          [RawAttr.destinationAddress]: dst,
          [RawAttr.destinationPort]: String(port),
        },
        { opened: 1 },
      ),
    ],
  };
}

describe('k8s_attributes factory', () => {
  let server: FakeApiServer;
  let savedKubeconfig: string | undefined;

  before(async () => {
    server = await FakeApiServer.start();
    server.apply(namespace('default'));
    server.apply(pod({ name: 'client', ip: '10.0.0.1', labels: { app: 'client' } }));
    server.apply(pod({ name: 'server-6d4b7c-x1', ip: '10.0.0.2', labels: { app: 'server', version: 'v2', 'pod-template-hash': '6d4b7c' }, owner: { kind: 'ReplicaSet', name: 'server-6d4b7c' } }));
    server.apply(service({ name: 'server', clusterIP: '10.96.0.2', selector: { app: 'server' }, ports: [{ port: 80, targetPort: 8080 }] }));
    savedKubeconfig = process.env.KUBECONFIG;
    process.env.KUBECONFIG = server.writeKubeconfig();
  });

  after(async () => {
    if (savedKubeconfig === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = savedKubeconfig;
    await server.stop();
  });

  afterEach(async () => {
    await waitFor('every watch closed after the test', () => server.activeWatches() === 0);
  });

  it('shares one watch between the metrics and logs processors of a config', async () => {
    const config: K8sAttributesConfig = k8sAttributesConfigSchema.parse({ wait_for_metadata: true });
    const metricsOut: MetricsBatch[] = [];
    const logsOut: LogsBatch[] = [];
    const mp = k8sAttributesProcessorFactory.createMetrics!(testSettings('k8s_attributes'), config, { consumeMetrics: (b) => metricsOut.push(b) });
    const lp = k8sAttributesProcessorFactory.createLogs!(testSettings('k8s_attributes'), config, { consumeLogs: (b) => logsOut.push(b) });
    await mp.shutdown(); // before start: no-op
    await Promise.all([mp.start(host), lp.start(host)]);
    await waitFor('watches open', () => server.activeWatches() === 4);
    assert.equal(server.requestCount('pods', false), 1, 'one pod list for both processors');

    mp.consumeMetrics(metricsBatch('10.0.0.1', '10.0.0.2', 8080));
    const attrs = metricsOut[0]!.points[0]!.attributes;
    assert.equal(attrs.source_workload, 'client');
    assert.equal(attrs.destination_workload, 'server');
    assert.equal(attrs.destination_version, 'v2');
    assert.equal(attrs.destination_service, 'server.default.svc.cluster.local');
    assert.equal(attrs.reporter, 'destination');

    // The last processor shut down stops the watch; a second shutdown is a no-op.
    await mp.shutdown();
    assert.equal(server.activeWatches(), 4, 'logs processor still holds the watch');
    await lp.shutdown();
    await lp.shutdown();
    await mp.shutdown();
    await waitFor('watches closed', () => server.activeWatches() === 0);
  });

  it('auth_type none: no Kubernetes, identities absent, addresses out of the labels', async () => {
    const lists = server.requestCount('pods');
    const config = k8sAttributesConfigSchema.parse({ auth_type: 'none' });
    const out: MetricsBatch[] = [];
    const mp = k8sAttributesProcessorFactory.createMetrics!(testSettings('k8s_attributes/none'), config, { consumeMetrics: (b) => out.push(b) });
    await mp.start(host);
    mp.consumeMetrics(metricsBatch('10.0.0.1', '10.0.0.2', 8080));
    await mp.shutdown();
    assert.deepEqual(out[0]!.points[0]!.attributes, { direction: 'INBOUND', reporter: 'destination', request_protocol: 'tcp', response_flags: '-' });
    assert.equal(server.requestCount('pods'), lists, 'no API request');
  });

  it('wait_for_metadata fails start-up when the API server cannot be reached', async () => {
    const down = await FakeApiServer.start();
    const kubeconfig = down.writeKubeconfig();
    await down.stop();
    const factory = newK8sAttributesProcessorFactory({ timing: { initialBackoffMs: 20, maxBackoffMs: 50 } });
    const saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = kubeconfig;
    try {
      const config = k8sAttributesConfigSchema.parse({ wait_for_metadata: true, wait_for_metadata_timeout: '300ms' });
      const mp = factory.createMetrics!(testSettings('k8s_attributes'), config, { consumeMetrics: () => undefined });
      await assert.rejects(mp.start(host), /not listed within 300 ms/);
      await mp.shutdown();
    } finally {
      process.env.KUBECONFIG = saved;
    }
  });

  it('kubeConfig with a missing KUBECONFIG file fails start-up with the path', async () => {
    const saved = process.env.KUBECONFIG;
    process.env.KUBECONFIG = '/nonexistent/kubeconfig';
    try {
      const config = k8sAttributesConfigSchema.parse({});
      const lp = k8sAttributesProcessorFactory.createLogs!(testSettings('k8s_attributes'), config, { consumeLogs: () => undefined });
      await assert.rejects(lp.start(host), /KUBECONFIG file not found: \/nonexistent\/kubeconfig/);
      await lp.shutdown();
    } finally {
      process.env.KUBECONFIG = saved;
    }
  });

  it('identities of deleted pods resolve during deleted_grace, then disappear', async () => {
    server.apply(pod({ name: 'short-lived', ip: '10.0.0.9', labels: { app: 'short' } }));
    const config = k8sAttributesConfigSchema.parse({ wait_for_metadata: true, deleted_grace: '300ms' });
    const out: MetricsBatch[] = [];
    const mp = k8sAttributesProcessorFactory.createMetrics!(testSettings('k8s_attributes'), config, { consumeMetrics: (b) => out.push(b) });
    await mp.start(host);
    try {
      await waitFor('pod watch open', () => server.activeWatches('Pod') === 1);
      server.delete('Pod', 'short-lived', 'default');
      const workload = (): string | undefined => {
        mp.consumeMetrics(metricsBatch('10.0.0.1', '10.0.0.9', 80));
        return out.at(-1)!.points[0]!.attributes.destination_workload;
      };
      assert.equal(workload(), 'short-lived', 'resolves right after deletion');
      await waitFor('identity dropped after the grace', () => workload() === undefined, 3000);
    } finally {
      await mp.shutdown();
    }
  });
});
