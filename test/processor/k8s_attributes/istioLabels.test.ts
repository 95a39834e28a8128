import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Job, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';
import type { ConnectionEvent } from '../../../src/model/connection.js';
import type { AccessLogEntry } from '../../../src/model/logs.js';
import { RawAttr, type FlowPoint } from '../../../src/model/metrics.js';
import { createDefaultConfig, k8sAttributesConfigSchema } from '../../../src/processor/k8s_attributes/config.js';
import { istioAttributes, labelOptions, type LabelOptions } from '../../../src/processor/k8s_attributes/istioLabels.js';
import { flowKeyOf, rawPoint } from '../../helpers/flowPoints.js';
import { MetadataIndex } from '../../../src/processor/k8s_attributes/MetadataIndex.js';
import { canonicalIp, jobMeta, namespaceMeta, podMeta, serviceMeta } from '../../../src/processor/k8s_attributes/objects.js';
import { processLogs, processMetrics } from '../../../src/processor/k8s_attributes/processor.js';
import type { KubeObject } from '../../helpers/fakeApiServer.js';
import { job, namespace, pod, service } from './fixtures.js';

const T0 = 1_000_000;

function addPod(index: MetadataIndex, o: KubeObject, now = T0): void {
  index.upsertPod(podMeta(o as V1Pod)!, now);
}
function addService(index: MetadataIndex, o: KubeObject): void {
  index.upsertService(serviceMeta(o as V1Service)!);
}

/** A small cluster covering every workload rule. */
function cluster(): MetadataIndex {
  const ix = new MetadataIndex();
  ix.upsertNamespace(namespaceMeta(namespace('default') as V1Namespace)!);
  ix.upsertNamespace(namespaceMeta(namespace('mesh', { 'istio.io/dataplane-mode': 'ambient' }) as V1Namespace)!);
  ix.upsertJob(jobMeta(job('default', 'backup-28000000', 'backup') as V1Job)!);
  ix.upsertJob(jobMeta(job('default', 'migrate') as V1Job)!);
  // Deployment through its ReplicaSet (pod-template-hash rule).
  addPod(ix, pod({ name: 'httpbin-5c5944c58c-v9mlk', ip: '10.244.0.11', labels: { app: 'httpbin', version: 'v1', 'pod-template-hash': '5c5944c58c' }, owner: { kind: 'ReplicaSet', name: 'httpbin-5c5944c58c' }, ports: { http: 80 } }));
  addPod(ix, pod({ name: 'sleep-7656cf8794-8fhdk', ip: '10.244.0.12', labels: { app: 'sleep', 'pod-template-hash': '7656cf8794' }, owner: { kind: 'ReplicaSet', name: 'sleep-7656cf8794' } }));
  addPod(ix, pod({ name: 'web-0', ip: '10.244.0.20', labels: { 'app.kubernetes.io/name': 'webapp', 'app.kubernetes.io/version': '2.1' }, owner: { kind: 'StatefulSet', name: 'web' } }));
  addPod(ix, pod({ name: 'fluentd-x7k2p', ip: '10.244.0.21', owner: { kind: 'DaemonSet', name: 'fluentd' } }));
  addPod(ix, pod({ name: 'backup-28000000-abcde', ip: '10.244.0.22', owner: { kind: 'Job', name: 'backup-28000000' } }));
  addPod(ix, pod({ name: 'migrate-q8w9e', ip: '10.244.0.23', owner: { kind: 'Job', name: 'migrate' } }));
  addPod(ix, pod({ name: 'debug', ip: '10.244.0.24' }));
  addPod(ix, pod({ name: 'rs-only-abc12', ip: '10.244.0.25', owner: { kind: 'ReplicaSet', name: 'rs-only' } }));
  addPod(ix, pod({ name: 'rollout-pod', ip: '10.244.0.26', owner: { kind: 'Rollout', name: 'my-rollout' } }));
  addPod(
    ix,
    pod({
      name: 'labelled',
      ip: '10.244.0.27',
      labels: {
        'service.istio.io/canonical-name': 'cn',
        'app.kubernetes.io/name': 'an',
        app: 'a',
        'service.istio.io/canonical-revision': 'cr',
        'app.kubernetes.io/version': 'av',
        version: 'v',
      },
    }),
  );
  addPod(ix, pod({ name: 'app-and-version', ip: '10.244.0.28', labels: { app: 'a', version: 'v', 'app.kubernetes.io/version': 'av' } }));
  // Mesh membership.
  addPod(ix, pod({ ns: 'mesh', name: 'productpage-v1-8499c849b9-bz9t9', ip: '10.244.1.11', labels: { app: 'productpage', version: 'v1', 'pod-template-hash': '8499c849b9' }, owner: { kind: 'ReplicaSet', name: 'productpage-v1-8499c849b9' }, sa: 'bookinfo-productpage' }));
  addPod(ix, pod({ ns: 'mesh', name: 'reviews-v1-1', ip: '10.244.1.12', labels: { app: 'reviews' }, sa: 'bookinfo-reviews' }));
  addPod(ix, pod({ ns: 'mesh', name: 'opted-out', ip: '10.244.1.13', labels: { 'istio.io/dataplane-mode': 'none' } }));
  addPod(ix, pod({ name: 'sidecar', ip: '10.244.0.30', labels: { 'security.istio.io/tlsMode': 'istio' } }));
  // Dual stack, host network.
  addPod(ix, pod({ name: 'dual', ip: ['10.244.0.40', 'fd00:10:244:0:0:0:0:40'], labels: { app: 'dual' } }));
  addPod(ix, pod({ name: 'hostnet', ip: '192.168.1.10', hostNetwork: true, labels: { app: 'hostnet' } }));
  // Services.
  addService(ix, service({ name: 'httpbin', clusterIP: '10.96.0.10', selector: { app: 'httpbin' }, ports: [{ port: 8000, targetPort: 80 }] }));
  addService(ix, service({ name: 'web', clusterIP: '10.96.0.11', selector: { 'app.kubernetes.io/name': 'webapp' }, ports: [{ port: 80, targetPort: 'http' }] }));
  addPod(ix, pod({ name: 'web-1', ip: '10.244.0.29', labels: { 'app.kubernetes.io/name': 'webapp' }, owner: { kind: 'StatefulSet', name: 'web' }, ports: { http: 8080, metrics: 9090 } }));
  addService(ix, service({ name: 'zeta', clusterIP: '10.96.0.12', selector: { app: 'dual' }, ports: [{ port: 80, targetPort: 8080 }] }));
  addService(ix, service({ name: 'alpha', clusterIP: '10.96.0.13', selector: { app: 'dual' }, ports: [{ port: 81, targetPort: 8080 }] }));
  addService(ix, service({ name: 'dual-metrics', clusterIP: '10.96.0.14', selector: { app: 'dual' }, ports: [{ port: 9090 }] }));
  addService(ix, service({ name: 'dual6', clusterIP: ['fd00:96::0:15'], selector: { app: 'dual' }, ports: [{ port: 443, targetPort: 8443 }] }));
  return ix;
}

const opts: LabelOptions = labelOptions(createDefaultConfig());

function attrs(direction: 'INBOUND' | 'OUTBOUND', src: string, dst: string, port: number, extra: Record<string, string> = {}): Record<string, string> {
  return {
    [RawAttr.direction]: direction,
    [RawAttr.sourceAddress]: src,
    [RawAttr.destinationAddress]: dst,
    [RawAttr.destinationPort]: String(port),
    ...extra,
  };
}

const COMMON = { direction: 'INBOUND', reporter: 'destination', request_protocol: 'tcp', response_flags: '-' };

function src(workload: string, ns: string, svc: string, rev: string, principal?: string): Record<string, string> {
  const out: Record<string, string> = {
    source_workload: workload,
    source_workload_namespace: ns,
    source_canonical_service: svc,
    source_canonical_revision: rev,
    source_app: svc,
    source_version: rev,
    source_cluster: 'Kubernetes',
  };
  if (principal) out.source_principal = principal;
  return out;
}

function dst(addr: string, podName: string, workload: string, ns: string, svc: string, rev: string, principal?: string): Record<string, string> {
  const out: Record<string, string> = {
    destination_pod_address: addr,
    destination_pod_namespace: ns,
    destination_pod_name: podName,
    destination_workload: workload,
    destination_workload_namespace: ns,
    destination_canonical_service: svc,
    destination_canonical_revision: rev,
    destination_app: svc,
    destination_version: rev,
    destination_cluster: 'Kubernetes',
  };
  if (principal) out.destination_principal = principal;
  return out;
}

function svc(name: string, ns = 'default'): Record<string, string> {
  return {
    destination_service: `${name}.${ns}.svc.cluster.local`,
    destination_service_namespace: ns,
    destination_service_name: name,
    destination_cluster: 'Kubernetes',
  };
}

describe('istioAttributes', () => {
  const ix = cluster();
  const debugSrc = src('debug', 'default', 'debug', 'latest');

  const table: Array<{ name: string; in: Record<string, string>; want: Record<string, string>; opts?: LabelOptions }> = [
    {
      name: 'Deployment via ReplicaSet (the DESIGN example), service by target port',
      in: attrs('INBOUND', '10.244.0.12', '10.244.0.11', 80),
      want: {
        ...COMMON,
        ...src('sleep', 'default', 'sleep', 'latest'),
        ...dst('10.244.0.11', 'httpbin-5c5944c58c-v9mlk', 'httpbin', 'default', 'httpbin', 'v1'),
        ...svc('httpbin'),
        connection_security_policy: 'none',
      },
    },
    {
      name: 'OUTBOUND reporter is source; original (pre-DNAT) destination names the service',
      in: attrs('OUTBOUND', '10.244.0.12', '10.244.0.11', 80, { [RawAttr.originalDestinationAddress]: '10.96.0.10', [RawAttr.originalDestinationPort]: '8000' }),
      want: {
        ...COMMON,
        direction: 'OUTBOUND',
        reporter: 'source',
        ...src('sleep', 'default', 'sleep', 'latest'),
        ...dst('10.244.0.11', 'httpbin-5c5944c58c-v9mlk', 'httpbin', 'default', 'httpbin', 'v1'),
        ...svc('httpbin'),
        connection_security_policy: 'none',
      },
    },
    {
      name: 'destination is a cluster IP (no DNAT seen): service known, pod unknown',
      in: attrs('OUTBOUND', '10.244.0.12', '10.96.0.10', 8000),
      want: { ...COMMON, direction: 'OUTBOUND', reporter: 'source', ...src('sleep', 'default', 'sleep', 'latest'), ...svc('httpbin') },
    },
    {
      name: 'StatefulSet; app.kubernetes.io labels; named target port resolved via container ports',
      in: attrs('INBOUND', '10.244.0.24', '10.244.0.29', 8080),
      want: {
        ...COMMON,
        ...debugSrc,
        ...dst('10.244.0.29', 'web-1', 'web', 'default', 'webapp', 'latest'),
        ...svc('web'),
        connection_security_policy: 'none',
      },
    },
    {
      name: 'named target port does not match another container port',
      in: attrs('INBOUND', '10.244.0.24', '10.244.0.29', 9090),
      want: { ...COMMON, ...debugSrc, ...dst('10.244.0.29', 'web-1', 'web', 'default', 'webapp', 'latest'), connection_security_policy: 'none' },
    },
    {
      name: 'StatefulSet with app.kubernetes.io/version',
      in: attrs('INBOUND', '10.244.0.24', '10.244.0.20', 5432),
      want: { ...COMMON, ...debugSrc, ...dst('10.244.0.20', 'web-0', 'web', 'default', 'webapp', '2.1'), connection_security_policy: 'none' },
    },
    {
      name: 'DaemonSet, no labels: canonical service = workload, revision latest',
      in: attrs('INBOUND', '10.244.0.24', '10.244.0.21', 24224),
      want: { ...COMMON, ...debugSrc, ...dst('10.244.0.21', 'fluentd-x7k2p', 'fluentd', 'default', 'fluentd', 'latest'), connection_security_policy: 'none' },
    },
    {
      name: 'CronJob through its Job',
      in: attrs('INBOUND', '10.244.0.22', '10.244.0.24', 22),
      want: { ...COMMON, ...src('backup', 'default', 'backup', 'latest'), ...dst('10.244.0.24', 'debug', 'debug', 'default', 'debug', 'latest'), connection_security_policy: 'none' },
    },
    {
      name: 'Job without CronJob',
      in: attrs('INBOUND', '10.244.0.23', '10.244.0.24', 22),
      want: { ...COMMON, ...src('migrate', 'default', 'migrate', 'latest'), ...dst('10.244.0.24', 'debug', 'debug', 'default', 'debug', 'latest'), connection_security_policy: 'none' },
    },
    {
      name: 'bare ReplicaSet (no pod-template-hash) and unknown owner kind',
      in: attrs('INBOUND', '10.244.0.25', '10.244.0.26', 22),
      want: {
        ...COMMON,
        ...src('rs-only', 'default', 'rs-only', 'latest'),
        ...dst('10.244.0.26', 'rollout-pod', 'rollout-pod', 'default', 'rollout-pod', 'latest'),
        connection_security_policy: 'none',
      },
    },
    {
      name: 'canonical-name/revision labels win over app.kubernetes.io/* and app/version',
      in: attrs('INBOUND', '10.244.0.27', '10.244.0.28', 22),
      want: {
        ...COMMON,
        ...src('labelled', 'default', 'cn', 'cr'),
        // app.kubernetes.io/version wins over version; app is the canonical service.
        ...dst('10.244.0.28', 'app-and-version', 'app-and-version', 'default', 'a', 'av'),
        connection_security_policy: 'none',
      },
    },
    {
      name: 'both in the mesh (ambient namespace): principals and mutual_tls',
      in: attrs('INBOUND', '10.244.1.11', '10.244.1.12', 9080),
      want: {
        ...COMMON,
        ...src('productpage-v1', 'mesh', 'productpage', 'v1', 'spiffe://cluster.local/ns/mesh/sa/bookinfo-productpage'),
        ...dst('10.244.1.12', 'reviews-v1-1', 'reviews-v1-1', 'mesh', 'reviews', 'latest', 'spiffe://cluster.local/ns/mesh/sa/bookinfo-reviews'),
        connection_security_policy: 'mutual_tls',
      },
    },
    {
      name: 'pod opted out of the mesh: no principal, policy none',
      in: attrs('INBOUND', '10.244.1.11', '10.244.1.13', 9080),
      want: {
        ...COMMON,
        ...src('productpage-v1', 'mesh', 'productpage', 'v1', 'spiffe://cluster.local/ns/mesh/sa/bookinfo-productpage'),
        ...dst('10.244.1.13', 'opted-out', 'opted-out', 'mesh', 'opted-out', 'latest'),
        connection_security_policy: 'none',
      },
    },
    {
      name: 'sidecar pod label puts a pod of a plain namespace in the mesh',
      in: attrs('INBOUND', '10.244.0.30', '10.244.1.12', 9080),
      want: {
        ...COMMON,
        ...src('sidecar', 'default', 'sidecar', 'latest', 'spiffe://cluster.local/ns/default/sa/default'),
        ...dst('10.244.1.12', 'reviews-v1-1', 'reviews-v1-1', 'mesh', 'reviews', 'latest', 'spiffe://cluster.local/ns/mesh/sa/bookinfo-reviews'),
        connection_security_policy: 'mutual_tls',
      },
    },
    {
      name: 'several services select the pod: the one whose target port matches, first by name',
      in: attrs('INBOUND', '10.244.0.24', '10.244.0.40', 8080),
      want: { ...COMMON, ...debugSrc, ...dst('10.244.0.40', 'dual', 'dual', 'default', 'dual', 'latest'), ...svc('alpha'), connection_security_policy: 'none' },
    },
    {
      name: 'target port defaulting to the port',
      in: attrs('INBOUND', '10.244.0.24', '10.244.0.40', 9090),
      want: { ...COMMON, ...debugSrc, ...dst('10.244.0.40', 'dual', 'dual', 'default', 'dual', 'latest'), ...svc('dual-metrics'), connection_security_policy: 'none' },
    },
    {
      name: 'IPv6 pod address (stored in RFC 5952 form) and IPv6 cluster IP',
      in: attrs('OUTBOUND', 'fd00:10:244::40', 'fd00:96::15', 443),
      want: { ...COMMON, direction: 'OUTBOUND', reporter: 'source', ...src('dual', 'default', 'dual', 'latest'), ...svc('dual6') },
    },
    {
      name: 'host-network pod does not claim the node IP; unknown peers leave no address',
      in: attrs('INBOUND', '192.168.1.10', '10.244.0.24', 22),
      want: { ...COMMON, ...dst('10.244.0.24', 'debug', 'debug', 'default', 'debug', 'latest') },
    },
    {
      name: 'unknown destination: absent labels, address not leaked',
      in: attrs('OUTBOUND', '10.244.0.24', '203.0.113.7', 443),
      want: { ...COMMON, direction: 'OUTBOUND', reporter: 'source', ...debugSrc },
    },
    {
      name: 'unknown_peer destination_address keeps an unknown destination IP',
      in: attrs('OUTBOUND', '10.244.0.24', '203.0.113.7', 443),
      opts: labelOptions(k8sAttributesConfigSchema.parse({ unknown_peer: 'destination_address' })),
      want: { ...COMMON, direction: 'OUTBOUND', reporter: 'source', ...debugSrc, destination_pod_address: '203.0.113.7' },
    },
    {
      name: 'failed connect: response_flags UF, failure key consumed',
      in: attrs('OUTBOUND', '10.244.0.24', '10.244.0.11', 81, { [RawAttr.failureReason]: 'refused' }),
      want: {
        ...COMMON,
        direction: 'OUTBOUND',
        reporter: 'source',
        response_flags: 'UF',
        ...debugSrc,
        ...dst('10.244.0.11', 'httpbin-5c5944c58c-v9mlk', 'httpbin', 'default', 'httpbin', 'v1'),
        connection_security_policy: 'none',
      },
    },
    {
      name: 'other attributes are kept',
      in: { ...attrs('INBOUND', '203.0.113.1', '203.0.113.2', 1), 'custom.key': 'x' },
      want: { ...COMMON, 'custom.key': 'x' },
    },
  ];

  for (const c of table) {
    it(c.name, () => {
      assert.deepEqual(istioAttributes(flowKeyOf(c.in), ix, c.opts ?? opts, c.in), c.want);
    });
  }

  it('an empty index (auth_type none) still sets reporter, protocol and flags', () => {
    const empty = new MetadataIndex();
    assert.deepEqual(istioAttributes(flowKeyOf(attrs('OUTBOUND', '10.0.0.1', '10.0.0.2', 80, { [RawAttr.failureReason]: 'timeout' })), empty, opts), {
      direction: 'OUTBOUND',
      reporter: 'source',
      request_protocol: 'tcp',
      response_flags: 'UF',
    });
  });

  it('canonicalIp writes IPv6 in RFC 5952 form', () => {
    assert.equal(canonicalIp('FD00:0000:0000:0000:0000:0000:0000:0001'), 'fd00::1');
    assert.equal(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
    assert.equal(canonicalIp('10.1.2.3'), '10.1.2.3');
  });
});

describe('MetadataIndex lifecycle', () => {
  it('a deleted pod keeps resolving for the grace period, then is swept', () => {
    const ix = new MetadataIndex();
    addPod(ix, pod({ name: 'gone', ip: '10.0.0.5', labels: { app: 'gone' } }));
    ix.deletePod('default', 'gone', T0 + 10);
    const a = attrs('INBOUND', '10.0.0.9', '10.0.0.5', 80);
    assert.equal(istioAttributes(flowKeyOf(a), ix, opts).destination_workload, 'gone', 'within grace');
    assert.equal(ix.sweep(T0 + 10 + 59_999, 60_000), 0, 'nothing swept before the grace ends');
    assert.equal(istioAttributes(flowKeyOf(a), ix, opts).destination_workload, 'gone', 'still within grace');
    assert.equal(ix.sweep(T0 + 10 + 60_000, 60_000), 1, 'swept at the end of the grace');
    assert.equal(istioAttributes(flowKeyOf(a), ix, opts).destination_workload, undefined, 'gone after grace');
    assert.equal(ix.podByIp('10.0.0.5'), undefined);
  });

  it('a live pod reusing a retired pod IP wins; sweeping the old one keeps the new', () => {
    const ix = new MetadataIndex();
    addPod(ix, pod({ name: 'old', ip: '10.0.0.5' }));
    ix.deletePod('default', 'old', T0);
    addPod(ix, pod({ name: 'new', ip: '10.0.0.5' }), T0 + 1);
    assert.equal(ix.podByIp('10.0.0.5')?.name, 'new');
    ix.sweep(T0 + 120_000, 60_000);
    assert.equal(ix.podByIp('10.0.0.5')?.name, 'new');
  });

  it('a Succeeded pod loses its IP to a running one regardless of order', () => {
    const ix = new MetadataIndex();
    addPod(ix, pod({ name: 'running', ip: '10.0.0.6' }));
    addPod(ix, pod({ name: 'done', ip: '10.0.0.6', phase: 'Succeeded' }));
    assert.equal(ix.podByIp('10.0.0.6')?.name, 'running');
  });

  it('a deleted service keeps resolving for the grace period; a new one on the same IP wins', () => {
    const ix = new MetadataIndex();
    addService(ix, service({ name: 'a', clusterIP: '10.96.1.1', ports: [{ port: 80 }] }));
    ix.deleteService('default', 'a', T0);
    assert.equal(ix.serviceByClusterIp('10.96.1.1', 80)?.name, 'a');
    addService(ix, service({ name: 'b', clusterIP: '10.96.1.1', ports: [{ port: 80 }] }));
    assert.equal(ix.serviceByClusterIp('10.96.1.1', 80)?.name, 'b');
    ix.sweep(T0 + 60_000, 60_000);
    assert.equal(ix.serviceByClusterIp('10.96.1.1', 80)?.name, 'b');
    assert.equal(ix.service('default', 'a'), undefined);
  });

  it('pod label and service changes re-resolve the pod services', () => {
    const ix = new MetadataIndex();
    addPod(ix, pod({ name: 'p', ip: '10.0.0.7', labels: { app: 'x' } }));
    addService(ix, service({ name: 's', clusterIP: '10.96.2.1', selector: { app: 'y' }, ports: [{ port: 80 }] }));
    const p = () => ix.podByIp('10.0.0.7')!;
    assert.equal(ix.serviceOfPodPort(p(), 80), undefined);
    addPod(ix, pod({ name: 'p', ip: '10.0.0.7', labels: { app: 'y' } }));
    assert.equal(ix.serviceOfPodPort(p(), 80)?.name, 's');
    addService(ix, service({ name: 's', clusterIP: '10.96.2.1', selector: { app: 'z' }, ports: [{ port: 80 }] }));
    assert.equal(ix.serviceOfPodPort(p(), 80), undefined);
  });

  it('a Job learning its CronJob later re-derives the workload', () => {
    const ix = new MetadataIndex();
    addPod(ix, pod({ name: 'j-1-x', ip: '10.0.0.8', owner: { kind: 'Job', name: 'j-1' } }));
    const a = attrs('OUTBOUND', '10.0.0.8', '203.0.113.1', 80);
    assert.equal(istioAttributes(flowKeyOf(a), ix, opts).source_workload, 'j-1');
    ix.upsertJob(jobMeta(job('default', 'j-1', 'j') as V1Job)!);
    assert.equal(istioAttributes(flowKeyOf(a), ix, opts).source_workload, 'j');
  });
});

function point(attributes: Record<string, string>, v: Partial<FlowPoint>): FlowPoint {
  return rawPoint(attributes, v);
}

describe('processMetrics / processLogs', () => {
  const ix = cluster();

  it('re-aggregates points whose label sets became equal, without touching the input', () => {
    // Two pods of one Deployment calling httpbin, and the same pod from two ports' worth of points.
    addPod(ix, pod({ name: 'sleep-7656cf8794-zzzzz', ip: '10.244.0.13', labels: { app: 'sleep', 'pod-template-hash': '7656cf8794' }, owner: { kind: 'ReplicaSet', name: 'sleep-7656cf8794' } }));
    const input = {
      points: [
        point(attrs('INBOUND', '10.244.0.12', '10.244.0.11', 80), { opened: 1, sentBytes: 100, durationsSec: [1] }),
        point(attrs('INBOUND', '10.244.0.13', '10.244.0.11', 80), { opened: 2, sentBytes: 50, durationsSec: [2] }),
        point(attrs('INBOUND', '10.244.0.24', '10.244.0.11', 80), { opened: 5 }),
      ],
    };
    const before = structuredClone(input);
    const out = processMetrics(input, ix, opts);
    assert.deepEqual(input, before, 'input batch unchanged');
    assert.equal(out.points.length, 2);
    const sleep = out.points.find((p) => p.attributes.source_workload === 'sleep')!;
    assert.equal(sleep.opened, 3);
    assert.equal(sleep.sentBytes, 150);
    assert.deepEqual(sleep.durationsSec, [1, 2]);
    assert.equal(sleep.attributes['source.address'], undefined, 'raw source address removed');
    const debug = out.points.find((p) => p.attributes.source_workload === 'debug')!;
    assert.equal(debug.opened, 5);
  });

  it('adds the Kmesh access-log fields and k8s.* attributes', () => {
    const event: ConnectionEvent = {
      kind: 'close',
      direction: 'INBOUND',
      family: 4,
      srcAddr: '10.244.0.12',
      srcPort: 51842,
      dstAddr: '10.244.0.11',
      dstPort: 80,
      socketCookie: 1,
      netnsCookie: 2,
      timeUnixNano: 3n,
      durationNs: 1000,
      sentBytes: 5,
      receivedBytes: 292,
      srttUs: 0,
      minRttUs: 0,
      retransmits: 0,
      lostPackets: 0,
      segsIn: 0,
      segsOut: 0,
      state: 'CLOSE',
    };
    const entry: AccessLogEntry = { event, attributes: { keep: 'me' }, observedUnixNano: 4n };
    const out = processLogs({ entries: [entry] }, ix, opts);
    assert.deepEqual(entry.attributes, { keep: 'me' }, 'input entry unchanged');
    assert.deepEqual(out.entries[0]!.attributes, {
      keep: 'me',
      'src.workload': 'sleep-7656cf8794-8fhdk',
      'src.namespace': 'default',
      'dst.workload': 'httpbin-5c5944c58c-v9mlk',
      'dst.namespace': 'default',
      'dst.service': 'httpbin.default.svc.cluster.local',
      'source.k8s.pod.name': 'sleep-7656cf8794-8fhdk',
      'source.k8s.pod.uid': 'uid-default-sleep-7656cf8794-8fhdk',
      'source.k8s.namespace.name': 'default',
      'source.k8s.node.name': 'node-1',
      'source.k8s.deployment.name': 'sleep',
      'source.k8s.replicaset.name': 'sleep-7656cf8794',
      'destination.k8s.pod.name': 'httpbin-5c5944c58c-v9mlk',
      'destination.k8s.pod.uid': 'uid-default-httpbin-5c5944c58c-v9mlk',
      'destination.k8s.namespace.name': 'default',
      'destination.k8s.node.name': 'node-1',
      'destination.k8s.deployment.name': 'httpbin',
      'destination.k8s.replicaset.name': 'httpbin-5c5944c58c',
      'destination.k8s.service.name': 'httpbin',
      'destination.k8s.service.namespace': 'default',
    });
    assert.equal(out.entries[0]!.event, event);
  });
});
