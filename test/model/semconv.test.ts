import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
// The registry's names, from the OpenTelemetry package that generates them from semantic-conventions' YAML.
import { ATTR_CLIENT_ADDRESS, ATTR_CLIENT_PORT, ATTR_ERROR_TYPE, ATTR_NETWORK_LOCAL_ADDRESS, ATTR_NETWORK_LOCAL_PORT, ATTR_NETWORK_PEER_ADDRESS, ATTR_NETWORK_PEER_PORT, ATTR_NETWORK_TRANSPORT, ATTR_NETWORK_TYPE, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ERROR_TYPE_VALUE_OTHER, NETWORK_TRANSPORT_VALUE_TCP, NETWORK_TYPE_VALUE_IPV4, NETWORK_TYPE_VALUE_IPV6 } from '@opentelemetry/semantic-conventions';
import * as incubating from '@opentelemetry/semantic-conventions/incubating';
import { connectionAttributes, ERROR_TYPE, K8sAttr, SemconvAttr } from '../../src/model/semconv.js';
import { event } from '../helpers/accessLogEntries.js';

/** Every attribute name the registry defines (stable and incubating), from the package's ATTR_* constants. */
const REGISTRY: ReadonlySet<string> = new Set(
  Object.entries(incubating)
    .filter(([k, v]) => k.startsWith('ATTR_') && typeof v === 'string')
    .map(([, v]) => v as string),
);

describe('semconv vocabulary', () => {
  it('the network, server/client and error names are the stable registry constants', () => {
    const A = SemconvAttr;
    assert.equal(A.networkTransport, ATTR_NETWORK_TRANSPORT);
    assert.equal(A.networkType, ATTR_NETWORK_TYPE);
    assert.equal(A.networkLocalAddress, ATTR_NETWORK_LOCAL_ADDRESS);
    assert.equal(A.networkLocalPort, ATTR_NETWORK_LOCAL_PORT);
    assert.equal(A.networkPeerAddress, ATTR_NETWORK_PEER_ADDRESS);
    assert.equal(A.networkPeerPort, ATTR_NETWORK_PEER_PORT);
    assert.equal(A.serverAddress, ATTR_SERVER_ADDRESS);
    assert.equal(A.serverPort, ATTR_SERVER_PORT);
    assert.equal(A.clientAddress, ATTR_CLIENT_ADDRESS);
    assert.equal(A.clientPort, ATTR_CLIENT_PORT);
    assert.equal(A.errorType, ATTR_ERROR_TYPE);
    assert.equal(ERROR_TYPE.other, ERROR_TYPE_VALUE_OTHER);
  });

  it('the incubating names (destination, service names, k8s.*) are registry constants', () => {
    assert.equal(SemconvAttr.destinationAddress, incubating.ATTR_DESTINATION_ADDRESS);
    assert.equal(SemconvAttr.clientServiceName, incubating.ATTR_CLIENT_SERVICE_NAME);
    assert.equal(SemconvAttr.serverServiceName, incubating.ATTR_SERVER_SERVICE_NAME);
    assert.equal(K8sAttr.podName, incubating.ATTR_K8S_POD_NAME);
    assert.equal(K8sAttr.namespaceName, incubating.ATTR_K8S_NAMESPACE_NAME);
    assert.equal(K8sAttr.deploymentName, incubating.ATTR_K8S_DEPLOYMENT_NAME);
    for (const [role, name] of Object.entries(K8sAttr)) {
      // k8s.service.namespace is the one the registry lacks (it has k8s.service.name and k8s.namespace.name).
      if (role === 'serviceNamespace') assert.ok(!REGISTRY.has(name), 'if the registry gains it, drop this exception');
      else assert.ok(REGISTRY.has(name), `${role}: ${name} is a registry attribute`);
    }
    // source. / destination. are the registry's names for the two ends.
    assert.ok(REGISTRY.has(SemconvAttr.sourcePrefix + 'address'));
    assert.ok(REGISTRY.has(SemconvAttr.destinationPrefix + 'address'));
  });

  it('describes a connection from either socket with the registry values', () => {
    const e = event({ direction: 'OUTBOUND', family: 6, srcAddr: 'fd00::1', srcPort: 40000, dstAddr: 'fd00::2', dstPort: 80, origDstAddr: 'fd00::99', origDstPort: 8080 });
    const client = connectionAttributes(e, true, { 'destination.k8s.pod.name': 'web-1', 'src.workload': 'not carried' });
    assert.equal(client[ATTR_NETWORK_TRANSPORT], NETWORK_TRANSPORT_VALUE_TCP);
    assert.equal(client[ATTR_NETWORK_TYPE], NETWORK_TYPE_VALUE_IPV6);
    assert.equal(client[ATTR_NETWORK_LOCAL_ADDRESS], 'fd00::1');
    assert.equal(client[ATTR_NETWORK_PEER_PORT], 80);
    assert.equal(client[ATTR_SERVER_ADDRESS], 'fd00::99', 'what the client connected to (before DNAT)');
    assert.equal(client[ATTR_SERVER_PORT], 8080);
    assert.equal(client['destination.k8s.pod.name'], 'web-1');
    assert.equal(client['src.workload'], undefined, 'Kmesh line keys stay out');
    assert.equal(client[ATTR_ERROR_TYPE], undefined);
    const server = connectionAttributes(event({ family: 4 }), false, {});
    assert.equal(server[ATTR_NETWORK_TYPE], NETWORK_TYPE_VALUE_IPV4);
    assert.equal(server[ATTR_NETWORK_LOCAL_ADDRESS], '10.244.0.13');
    assert.equal(server[ATTR_NETWORK_PEER_ADDRESS], '10.244.0.17');
    assert.equal(server[ATTR_NETWORK_PEER_PORT], 51842);
    assert.equal(server['kmesh.srtt'], 0.00025, 'RTT in seconds');
    const failed = connectionAttributes(event({ kind: 'fail', direction: 'OUTBOUND', failure: 'timeout' }), true, {});
    assert.equal(failed[ATTR_ERROR_TYPE], 'ETIMEDOUT');
  });
});
