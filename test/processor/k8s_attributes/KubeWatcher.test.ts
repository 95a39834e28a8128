import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeWatcher, type KubeWatcherOptions } from '../../../src/processor/k8s_attributes/KubeWatcher.js';
import { MetadataIndex } from '../../../src/processor/k8s_attributes/MetadataIndex.js';
import { FakeApiServer } from '../../helpers/fakeApiServer.js';
import { job, namespace, pod, service, waitFor } from './fixtures.js';

const FAST = { initialBackoffMs: 50, maxBackoffMs: 400, minWatchIntervalMs: 20, pageSize: 2 };

function kubeConfigFor(server: FakeApiServer): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(server.writeKubeconfig());
  return kc;
}

describe('KubeWatcher against the fake API server (real client-node informers)', () => {
  let server: FakeApiServer;
  let index: MetadataIndex;
  let watcher: KubeWatcher;
  const errors: string[] = [];
  const recovered: string[] = [];

  before(async () => {
    server = await FakeApiServer.start();
    server.apply(namespace('default'));
    server.apply(namespace('other'));
    // More objects than one page (pageSize 2) to exercise `continue`.
    server.apply(pod({ name: 'a', ip: '10.0.0.1', labels: { app: 'a' } }));
    server.apply(pod({ name: 'b', ip: '10.0.0.2', labels: { app: 'b' } }));
    server.apply(pod({ name: 'c', ip: '10.0.0.3', labels: { app: 'c' } }));
    server.apply(pod({ name: 'elsewhere', ip: '10.0.9.9', node: 'node-2' }));
    server.apply(service({ name: 'svc-a', clusterIP: '10.96.0.1', selector: { app: 'a' }, ports: [{ port: 80 }] }));
    server.apply(job('default', 'nightly-1', 'nightly'));
    index = new MetadataIndex();
    const opts: KubeWatcherOptions = {
      nodeName: 'node-1',
      namespaces: [],
      timing: FAST,
      onError: (resource) => errors.push(resource),
      onRecovered: (resource) => recovered.push(resource),
    };
    watcher = new KubeWatcher(kubeConfigFor(server), index, opts);
    watcher.start();
    assert.equal(await watcher.waitForSync(5000), true, 'initial lists done');
  });

  after(async () => {
    await watcher.stop();
    await server.stop();
  });

  it('lists every page, with the node field selector', async () => {
    assert.equal(index.podByIp('10.0.0.1')?.name, 'a');
    assert.equal(index.podByIp('10.0.0.3')?.name, 'c');
    assert.equal(index.podByIp('10.0.9.9'), undefined, 'pod of another node not watched');
    assert.equal(index.serviceByClusterIp('10.96.0.1', 80)?.name, 'svc-a');
    assert.equal(index.cronJobOf('default', 'nightly-1'), 'nightly');
    assert.ok(index.namespaceLabels('other') !== undefined);
    const podLists = server.requests.filter((r) => r.path === '/api/v1/pods' && !r.watch);
    assert.ok(podLists.length >= 2, 'paged list');
    assert.ok(podLists.every((r) => r.query.fieldSelector === 'spec.nodeName=node-1'), 'field selector on every pod list');
    await waitFor('pod watch open', () => server.activeWatches('Pod') === 1);
    const podWatch = server.requests.find((r) => r.path === '/api/v1/pods' && r.watch);
    assert.equal(podWatch?.query.fieldSelector, 'spec.nodeName=node-1', JSON.stringify(server.requests));
  });

  it('reflects pods and services added, changed and deleted', async () => {
    server.apply(pod({ name: 'd', ip: '10.0.0.4', labels: { app: 'd' } }));
    await waitFor('pod d added', () => index.podByIp('10.0.0.4')?.name === 'd');
    server.apply(pod({ name: 'd', ip: '10.0.0.4', labels: { app: 'd2' } }));
    await waitFor('pod d relabelled', () => index.podByIp('10.0.0.4')?.labels.app === 'd2');
    server.delete('Pod', 'd', 'default');
    await waitFor('pod d retired', () => index.podByIp('10.0.0.4')?.retiredAt !== undefined);
    // Moving to another node leaves the field selection: seen as a deletion.
    server.apply(pod({ name: 'c', ip: '10.0.0.3', labels: { app: 'c' }, node: 'node-2' }));
    await waitFor('pod c moved away', () => index.podByIp('10.0.0.3')?.retiredAt !== undefined);

    server.apply(service({ name: 'svc-b', clusterIP: '10.96.0.2', selector: { app: 'b' }, ports: [{ port: 8080 }] }));
    await waitFor('service added', () => index.serviceByClusterIp('10.96.0.2', 8080)?.name === 'svc-b');
    server.apply(service({ name: 'svc-b', clusterIP: '10.96.0.2', selector: { app: 'b' }, ports: [{ port: 9090 }] }));
    await waitFor('service port changed', () => index.serviceByClusterIp('10.96.0.2', 9090)?.name === 'svc-b');
    assert.equal(index.serviceByClusterIp('10.96.0.2', 8080), undefined);
    server.delete('Service', 'svc-b', 'default');
    await waitFor('service retired', () => index.service('default', 'svc-b')?.retiredAt !== undefined);

    server.apply(namespace('other', { 'istio.io/dataplane-mode': 'ambient' }));
    await waitFor('namespace relabelled', () => index.namespaceLabels('other')?.['istio.io/dataplane-mode'] === 'ambient');
  });

  it('survives dropped watch connections (re-watch from its resourceVersion)', async () => {
    const listsBefore = server.requestCount('pods', false);
    await waitFor('watches open', () => server.activeWatches('Pod') === 1);
    assert.ok(server.dropWatches() >= 4, 'pods, services, jobs, namespaces watches dropped');
    server.apply(pod({ name: 'e', ip: '10.0.0.5' }));
    await waitFor('pod e after reconnect', () => index.podByIp('10.0.0.5')?.name === 'e');
    assert.equal(server.requestCount('pods', false), listsBefore, 'no re-list needed');
  });

  it('re-lists after 410 Gone (compacted history)', async () => {
    const listsBefore = server.requestCount('pods', false);
    server.apply(pod({ name: 'f', ip: '10.0.0.6' }));
    await waitFor('pod f', () => index.podByIp('10.0.0.6') !== undefined);
    // All synchronous, before the client notices the cut: it will ask for a
    // version older than the compaction and get 410 Expired.
    server.dropWatches();
    server.apply(pod({ name: 'g', ip: '10.0.0.7' }));
    server.compact();
    await waitFor('pod g after re-list', () => index.podByIp('10.0.0.7')?.name === 'g');
    assert.ok(server.requestCount('pods', false) > listsBefore, 'pods were re-listed');
  });

  it('survives the API server going away and coming back, without a busy loop', async () => {
    await server.stop();
    const errorsAtStop = errors.length;
    // While it is down, changes happen (the fake keeps its state)...
    server.apply(pod({ name: 'h', ip: '10.0.0.8' }));
    server.delete('Pod', 'a', 'default');
    await new Promise((r) => setTimeout(r, 1000));
    const during = errors.length - errorsAtStop;
    assert.ok(during >= 4, `errors reported while down (${during})`);
    // Backoff 50 ms doubling to 400 ms over 1 s: at most ~6 attempts per resource (4 resources).
    assert.ok(during <= 4 * 7, `no busy loop: ${during} errors in 1 s`);
    // ...and history is lost across the restart, so the watch must re-list.
    server.compact();
    await server.restart();
    await waitFor('pod h after restart', () => index.podByIp('10.0.0.8')?.name === 'h', 5000);
    await waitFor('pod a deleted by the re-list', () => index.podByIp('10.0.0.1')?.retiredAt !== undefined, 5000);
    await waitFor('recovery reported', () => recovered.includes('pods'));
  });
});

describe('KubeWatcher scoping and shutdown', () => {
  it('watches only the configured namespaces, one watch per namespace', async () => {
    const server = await FakeApiServer.start();
    try {
      server.apply(pod({ ns: 'team-a', name: 'p1', ip: '10.1.0.1' }));
      server.apply(pod({ ns: 'team-b', name: 'p2', ip: '10.1.0.2' }));
      server.apply(pod({ ns: 'team-c', name: 'p3', ip: '10.1.0.3' }));
      const index = new MetadataIndex();
      const w = new KubeWatcher(kubeConfigFor(server), index, { nodeName: '', namespaces: ['team-a', 'team-b'], timing: FAST });
      w.start();
      assert.equal(await w.waitForSync(5000), true);
      assert.equal(index.podByIp('10.1.0.1')?.name, 'p1');
      assert.equal(index.podByIp('10.1.0.2')?.name, 'p2');
      assert.equal(index.podByIp('10.1.0.3'), undefined, 'namespace not included');
      assert.ok(server.requests.some((r) => r.path === '/api/v1/namespaces/team-a/pods'));
      assert.ok(!server.requests.some((r) => r.path === '/api/v1/pods'), 'no cluster-wide pod list');
      await w.stop();
      await waitFor('watches closed', () => server.activeWatches() === 0);
    } finally {
      await server.stop();
    }
  });

  it('stop before start, twice, and while the server is unreachable', async () => {
    const server = await FakeApiServer.start();
    const kc = kubeConfigFor(server);
    await server.stop();
    const w = new KubeWatcher(kc, new MetadataIndex(), { nodeName: '', namespaces: [], timing: FAST });
    await w.stop();
    w.start();
    assert.equal(await w.waitForSync(200), false, 'cannot sync without a server');
    await w.stop();
    await w.stop();
  });
});
