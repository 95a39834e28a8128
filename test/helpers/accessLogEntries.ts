/** Access-log entries for tests: the Kmesh example line's connection (DESIGN.md) and its identities. */
import type { ConnectionEvent } from '../../src/model/connection.js';
import type { AccessLogEntry } from '../../src/model/logs.js';

export function event(over: Partial<ConnectionEvent> = {}): ConnectionEvent {
  return {
    kind: 'close',
    direction: 'INBOUND',
    family: 4,
    srcAddr: '10.244.0.17',
    srcPort: 51842,
    dstAddr: '10.244.0.13',
    dstPort: 9080,
    socketCookie: 1,
    netnsCookie: 2,
    timeUnixNano: 1726301966552709932n,
    durationNs: 2733902,
    sentBytes: 5,
    receivedBytes: 292,
    srttUs: 250,
    minRttUs: 100,
    retransmits: 0,
    lostPackets: 0,
    segsIn: 3,
    segsOut: 3,
    state: 'CLOSE',
    ...over,
  };
}

export const KMESH_IDS = {
  'src.workload': 'prometheus-5fb7f6f8d8-h9cts',
  'src.namespace': 'istio-system',
  'dst.service': 'productpage.echo-1-27855.svc.cluster.local',
  'dst.workload': 'productpage-v1-8499c849b9-bz9t9',
  'dst.namespace': 'echo-1-27855',
};

export const entry = (e: ConnectionEvent, attributes: Record<string, string> = KMESH_IDS): AccessLogEntry => ({ event: e, attributes, observedUnixNano: 1726301966600000000n });

export const KMESH_LINE =
  'accesslog: 2024-09-14 08:19:26.552709932 +0000 UTC src.addr=10.244.0.17:51842, src.workload=prometheus-5fb7f6f8d8-h9cts, src.namespace=istio-system, dst.addr=10.244.0.13:9080, dst.service=productpage.echo-1-27855.svc.cluster.local, dst.workload=productpage-v1-8499c849b9-bz9t9, dst.namespace=echo-1-27855, direction=INBOUND, sent_bytes=5, received_bytes=292, duration=2.733902ms';
