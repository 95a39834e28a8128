import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import { RawAttr, reaggregate, type FlowPoint } from '../../../src/model/metrics.js';
import { attributeCacheFor, IstioAttributeCache } from '../../../src/processor/k8s_attributes/attributeCache.js';
import { createDefaultConfig } from '../../../src/processor/k8s_attributes/config.js';
import { istioAttributes, labelOptions } from '../../../src/processor/k8s_attributes/istioLabels.js';
import { MetadataIndex } from '../../../src/processor/k8s_attributes/MetadataIndex.js';
import { namespaceMeta, podMeta, serviceMeta } from '../../../src/processor/k8s_attributes/objects.js';
import { processMetrics } from '../../../src/processor/k8s_attributes/processor.js';
import { namespace, pod, service, type PodSpec, type ServiceSpec } from './fixtures.js';
import { flowKeyOf, rawPoint } from '../../helpers/flowPoints.js';

const T0 = 1_000_000;
const opts = labelOptions(createDefaultConfig());

const client: PodSpec = { name: 'sleep-7656cf8794-8fhdk', ip: '10.244.0.12', labels: { app: 'sleep', 'pod-template-hash': '7656cf8794' }, owner: { kind: 'ReplicaSet', name: 'sleep-7656cf8794' } };
const server: PodSpec = { name: 'httpbin-5c5944c58c-v9mlk', ip: '10.244.0.11', labels: { app: 'httpbin', version: 'v1', 'pod-template-hash': '5c5944c58c' }, owner: { kind: 'ReplicaSet', name: 'httpbin-5c5944c58c' }, ports: { http: 80 } };
const httpbin: ServiceSpec = { name: 'httpbin', clusterIP: '10.96.0.10', selector: { app: 'httpbin' }, ports: [{ port: 8000, targetPort: 'http' }] };

function addPod(ix: MetadataIndex, s: PodSpec, now = T0): void {
  ix.upsertPod(podMeta(pod(s) as V1Pod)!, now);
}
function addService(ix: MetadataIndex, s: ServiceSpec): void {
  ix.upsertService(serviceMeta(service(s) as V1Service)!);
}
function cluster(): MetadataIndex {
  const ix = new MetadataIndex();
  ix.upsertNamespace(namespaceMeta(namespace('default') as V1Namespace)!);
  addPod(ix, client);
  addPod(ix, server);
  addService(ix, httpbin);
  return ix;
}

const point = (extra: Record<string, string> = {}): Record<string, string> => ({
  [RawAttr.direction]: 'INBOUND',
  [RawAttr.sourceAddress]: '10.244.0.12',
  [RawAttr.destinationAddress]: '10.244.0.11',
  [RawAttr.destinationPort]: '80',
  ...extra,
});

const SOURCE = {
  source_workload: 'sleep',
  source_workload_namespace: 'default',
  source_canonical_service: 'sleep',
  source_canonical_revision: 'latest',
  source_app: 'sleep',
  source_version: 'latest',
  source_cluster: 'Kubernetes',
};
const EXPECTED: Record<string, string> = {
  direction: 'INBOUND',
  reporter: 'destination',
  request_protocol: 'tcp',
  response_flags: '-',
  ...SOURCE,
  destination_pod_address: '10.244.0.11',
  destination_pod_namespace: 'default',
  destination_pod_name: 'httpbin-5c5944c58c-v9mlk',
  destination_workload: 'httpbin',
  destination_workload_namespace: 'default',
  destination_canonical_service: 'httpbin',
  destination_canonical_revision: 'v1',
  destination_app: 'httpbin',
  destination_version: 'v1',
  destination_cluster: 'Kubernetes',
  destination_service: 'httpbin.default.svc.cluster.local',
  destination_service_namespace: 'default',
  destination_service_name: 'httpbin',
  connection_security_policy: 'none',
};

describe('IstioAttributeCache', () => {
  it('returns what istioAttributes does (key order too), a new object every time, from one computation', () => {
    const ix = cluster();
    const cache = new IstioAttributeCache(ix, opts);
    const a = cache.attributes(flowKeyOf(point()));
    const b = cache.attributes(flowKeyOf(point()));
    assert.deepEqual(a, EXPECTED);
    assert.deepEqual(Object.keys(a), Object.keys(istioAttributes(flowKeyOf(point()), ix, opts)));
    assert.notEqual(a, b);
    a.reporter = 'mutated by a downstream consumer';
    assert.equal(cache.attributes(flowKeyOf(point())).reporter, 'destination');
    assert.equal(cache.misses, 1);
    assert.equal(cache.hits, 2);
  });

  it('keeps extra attributes (input order first) and tells every raw key apart', () => {
    const ix = cluster();
    const cache = new IstioAttributeCache(ix, opts);
    const cases = [
      point({ 'k8s.node.name': 'n1' }),
      { 'zz.first': 'x', ...point(), reporter: 'overwritten' },
      point({ [RawAttr.failureReason]: 'refused' }),
      point({ [RawAttr.originalDestinationAddress]: '10.96.0.10', [RawAttr.originalDestinationPort]: '8000' }),
      point({ [RawAttr.direction]: 'OUTBOUND' }),
      point({ [RawAttr.destinationPort]: '81' }),
    ];
    for (let round = 0; round < 2; round++) {
      for (const c of cases) {
        const got = cache.attributes(flowKeyOf(c), c);
        const want = istioAttributes(flowKeyOf(c), ix, opts, c);
        assert.deepEqual(got, want, JSON.stringify(c));
        assert.deepEqual(Object.keys(got), Object.keys(want), JSON.stringify(c));
      }
    }
    // The first two share one flow key (extra attributes are not part of it).
    assert.equal(cache.misses, cases.length - 1);
  });

  it('is invalidated when a pod or a service changes (exact values), not by status-only pod updates', () => {
    const ix = cluster();
    const cache = new IstioAttributeCache(ix, opts);
    assert.deepEqual(cache.attributes(flowKeyOf(point())), EXPECTED);

    // Status churn (same kept fields) and a re-list: the cache stays.
    const v = ix.version;
    addPod(ix, server, T0 + 1);
    addPod(ix, client, T0 + 1);
    assert.equal(ix.version, v);
    assert.deepEqual(cache.attributes(flowKeyOf(point())), EXPECTED);
    assert.equal(cache.invalidations, 0);

    // The destination pod is relabelled: new canonical revision.
    addPod(ix, { ...server, labels: { ...server.labels, version: 'v2' } });
    assert.deepEqual(cache.attributes(flowKeyOf(point())), {
      ...EXPECTED,
      destination_canonical_revision: 'v2',
      destination_version: 'v2',
    });
    assert.equal(cache.invalidations, 1);

    // The service is replaced by one with another name on the same target port.
    ix.deleteService('default', 'httpbin', T0);
    ix.sweep(T0, 0);
    addService(ix, { ...httpbin, name: 'httpbin-v2', clusterIP: '10.96.0.20' });
    assert.deepEqual(cache.attributes(flowKeyOf(point())), {
      ...EXPECTED,
      destination_canonical_revision: 'v2',
      destination_version: 'v2',
      destination_service: 'httpbin-v2.default.svc.cluster.local',
      destination_service_name: 'httpbin-v2',
    });

    // The source pod is deleted: it keeps resolving through the grace period, then is gone.
    ix.deletePod('default', client.name, T0);
    assert.equal(cache.attributes(flowKeyOf(point())).source_workload, 'sleep');
    ix.sweep(T0 + 10, 5);
    const gone = cache.attributes(flowKeyOf(point()));
    assert.equal(gone.source_workload, undefined);
    assert.equal(gone.connection_security_policy, undefined);
    assert.deepEqual(gone, istioAttributes(flowKeyOf(point()), ix, opts));

    // Namespace labels put the pods in the mesh: principals appear.
    addPod(ix, client);
    ix.upsertNamespace(namespaceMeta(namespace('default', { 'istio.io/dataplane-mode': 'ambient' }) as V1Namespace)!);
    const meshed = cache.attributes(flowKeyOf(point()));
    assert.equal(meshed.source_principal, 'spiffe://cluster.local/ns/default/sa/default');
    assert.equal(meshed.destination_principal, 'spiffe://cluster.local/ns/default/sa/default');
    assert.equal(meshed.connection_security_policy, 'mutual_tls');
  });

  it('a deleted pod that comes back, and a pod changing IPs, are changes', () => {
    const ix = cluster();
    const cache = new IstioAttributeCache(ix, opts);
    cache.attributes(flowKeyOf(point()));
    const v = ix.version;
    ix.deletePod('default', server.name, T0);
    assert.ok(ix.version > v);
    const v2 = ix.version;
    addPod(ix, server);
    assert.ok(ix.version > v2, 'a retired pod upserted again is revived');
    assert.equal(ix.pod('default', server.name)!.retiredAt, undefined);
    addPod(ix, { ...server, ip: '10.244.0.99' });
    assert.equal(cache.attributes(flowKeyOf(point())).destination_workload, undefined);
    assert.equal(cache.attributes(flowKeyOf(point({ [RawAttr.destinationAddress]: '10.244.0.99' }))).destination_workload, 'httpbin');
  });

  it('stays within its capacity', () => {
    const ix = cluster();
    const cache = new IstioAttributeCache(ix, opts, 3);
    for (let port = 1; port <= 10; port++) {
      const f = flowKeyOf(point({ [RawAttr.destinationPort]: String(port) }));
      assert.deepEqual(cache.attributes(f), istioAttributes(f, ix, opts));
      assert.ok(cache.size <= 3);
    }
    assert.ok(cache.evictions >= 3);
    assert.throws(() => new IstioAttributeCache(ix, opts, 0), RangeError);
  });

  it('one cache per index and options', () => {
    const ix = cluster();
    assert.equal(attributeCacheFor(ix, opts), attributeCacheFor(ix, opts));
    assert.notEqual(attributeCacheFor(ix, opts), attributeCacheFor(ix, labelOptions(createDefaultConfig())));
    assert.notEqual(attributeCacheFor(ix, opts), attributeCacheFor(cluster(), opts));
  });
});

describe('processMetrics with the cache', () => {
  function flow(attributes: Record<string, string>, n: number): FlowPoint {
    return rawPoint(attributes, { opened: n, closed: n, sentBytes: 10 * n, receivedBytes: 20 * n, durationsSec: [n], rttsSec: [n / 1000] });
  }

  it('equals istioAttributes then reaggregate, batch after batch, across index changes', () => {
    const ix = cluster();
    addPod(ix, { ...client, name: 'sleep-7656cf8794-other', ip: '10.244.0.13' });
    const inputs = [
      point(),
      point({ [RawAttr.sourceAddress]: '10.244.0.13' }), // same workload: merges with the first
      point({ [RawAttr.failureReason]: 'timeout' }),
      point({ [RawAttr.sourceAddress]: '192.0.2.1' }),
      point({ [RawAttr.sourceAddress]: '192.0.2.2' }), // unknown sources merge
      point({ 'k8s.node.name': 'n1' }),
      { 'k8s.node.name': 'n1', ...point() }, // same label set, other key order: merges with the previous
      { ...point(), reporter: 'x' }, // extra key overwritten: same label set as the first
    ];
    const reference = (pts: FlowPoint[]): FlowPoint[] =>
      reaggregate(
        pts.map(({ flow, ...p }) => ({ ...p, durationsSec: p.durationsSec.slice(), rttsSec: p.rttsSec.slice(), attributes: istioAttributes(flow!, ix, opts, p.attributes) })),
      );
    for (let round = 0; round < 3; round++) {
      const batch = { points: inputs.map((a, i) => flow(a, i + 1)) };
      const before = structuredClone(batch);
      // Copies (as for a next consumer that mutates data): writing to them must not reach the cache.
      const out = processMetrics(batch, ix, opts, undefined, false);
      assert.deepEqual(out.points, reference(batch.points));
      assert.equal(out.points.length, 4);
      assert.deepEqual(batch, before, 'input untouched');
      out.points[0]!.attributes.reporter = 'mutated';
      out.points[0]!.durationsSec.push(99);
      if (round === 1) addPod(ix, { ...server, labels: { ...server.labels, version: 'v3' } });
    }
    assert.equal(processMetrics({ points: [flow(point(), 1)] }, ix, opts).points[0]!.attributes.destination_version, 'v3');
  });

  it('shares the cached block across batches unless the next consumer mutates data', () => {
    const ix = cluster();
    const first = processMetrics({ points: [flow(point(), 1)] }, ix, opts).points[0]!.attributes;
    const second = processMetrics({ points: [flow(point(), 2)] }, ix, opts).points[0]!.attributes;
    assert.equal(first, second, 'same object: exporters find their series by identity');
    const copy = processMetrics({ points: [flow(point(), 3)] }, ix, opts, undefined, false).points[0]!.attributes;
    assert.notEqual(copy, first);
    assert.deepEqual(copy, first);
  });
});
