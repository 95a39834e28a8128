import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import { MetadataIndex } from '../../../src/processor/k8s_attributes/MetadataIndex.js';
import { podMeta, serviceMeta } from '../../../src/processor/k8s_attributes/objects.js';
import type { KubeObject } from '../../helpers/fakeApiServer.js';
import { pod, service } from './fixtures.js';

const T0 = 1_000_000;
const addPod = (ix: MetadataIndex, o: KubeObject, now = T0): void => ix.upsertPod(podMeta(o as V1Pod)!, now);
const addService = (ix: MetadataIndex, o: KubeObject): void => ix.upsertService(serviceMeta(o as V1Service)!);

describe('MetadataIndex', () => {
  it('finds pods by each of their IPs, and forgets an IP the pod no longer has', () => {
    const ix = new MetadataIndex();
    addPod(ix, pod({ name: 'a', ip: ['10.0.0.1', 'fd00::1'] }));
    assert.equal(ix.podByIp('10.0.0.1')!.name, 'a');
    assert.equal(ix.podByIp('fd00::1')!.name, 'a');
    assert.equal(ix.podByIp('10.0.0.2'), undefined);
    addPod(ix, pod({ name: 'a', ip: '10.0.0.3' }));
    assert.equal(ix.podByIp('10.0.0.1'), undefined, 'old IP released');
    assert.equal(ix.podByIp('10.0.0.3')!.name, 'a');
    assert.equal(ix.pod('default', 'a')!.name, 'a');
    assert.deepEqual(ix.sizes(), { pods: 1, services: 0, namespaces: 0, jobs: 0, pod_ips: 1 });
  });

  it('resolves a service by cluster IP and port, and by a selected pod and its (named) target port', () => {
    const ix = new MetadataIndex();
    addPod(ix, pod({ name: 'web-1', ip: '10.0.0.5', labels: { app: 'web' }, ports: { http: 8080 } }));
    addService(ix, service({ name: 'web', clusterIP: '10.96.0.5', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http' }] }));
    addService(ix, service({ name: 'admin', clusterIP: '10.96.0.6', selector: { app: 'web' }, ports: [{ port: 9000, targetPort: 9000 }] }));
    assert.equal(ix.serviceByClusterIp('10.96.0.5', 80)!.name, 'web');
    assert.equal(ix.serviceByClusterIp('10.96.0.5', 81), undefined, 'a port the service does not expose');
    assert.ok(ix.isClusterIp('10.96.0.6'));
    assert.ok(!ix.isClusterIp('10.0.0.5'));
    const p = ix.podByIp('10.0.0.5')!;
    assert.deepEqual(ix.servicesOf(p).map((s) => s.name), ['admin', 'web'], 'by name');
    assert.equal(ix.serviceOfPodPort(p, 8080)!.name, 'web', 'named target port through the pod container ports');
    assert.equal(ix.serviceOfPodPort(p, 9000)!.name, 'admin');
    assert.equal(ix.serviceOfPodPort(p, 1234), undefined);
  });

  it('moves its version on every change that can alter a label set, not on an unchanged re-list', () => {
    const ix = new MetadataIndex();
    const v0 = ix.version;
    addPod(ix, pod({ name: 'a', ip: '10.0.0.1', labels: { app: 'a' } }));
    const v1 = ix.version;
    assert.ok(v1 > v0, 'pod added');
    addPod(ix, pod({ name: 'a', ip: '10.0.0.1', labels: { app: 'a' } }), T0 + 5);
    assert.equal(ix.version, v1, 'same pod again');
    addPod(ix, pod({ name: 'a', ip: '10.0.0.1', labels: { app: 'b' } }));
    assert.ok(ix.version > v1, 'labels changed');
    const v2 = ix.version;
    addService(ix, service({ name: 's', clusterIP: '10.96.0.1', selector: { app: 'b' }, ports: [{ port: 80 }] }));
    assert.ok(ix.version > v2, 'service added');
  });

  it('keeps a deleted pod through the grace period, then sweeps it', () => {
    const ix = new MetadataIndex();
    addPod(ix, pod({ name: 'gone', ip: '10.0.0.9' }));
    ix.deletePod('default', 'gone', T0 + 10);
    assert.equal(ix.podByIp('10.0.0.9')!.name, 'gone', 'within grace');
    assert.equal(ix.sweep(T0 + 10 + 29_999, 30_000), 0);
    assert.equal(ix.sweep(T0 + 10 + 30_000, 30_000), 1);
    assert.equal(ix.podByIp('10.0.0.9'), undefined);
    assert.equal(ix.sizes().pods, 0);
  });
});
