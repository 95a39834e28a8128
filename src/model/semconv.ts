/**
 * The OpenTelemetry semantic-convention vocabulary of this agent: the one
 * list of attribute names that connection spans, the `semconv` metric schema
 * and the `semconv` access-log records use, and the one function that
 * describes a connection event with them. Names follow the registry
 * (https://opentelemetry.io/docs/specs/semconv/registry/attributes/), checked
 * against @opentelemetry/semantic-conventions by test/model/semconv.test.ts.
 *
 * Identities of the two ends: the registry names `k8s.*` for one entity (a
 * resource); a connection has two, so each end's `k8s.*` attributes are
 * prefixed with `source.` (the client) or `destination.` (the server), the
 * registry's own names for the two ends of a network exchange
 * (`source.address`, `destination.address`). The logical services are
 * `client.service.name` / `server.service.name`, which the registry defines
 * for exactly this (the same value whichever end reports).
 *
 * What no convention covers (bytes each way of one connection, RTT, who
 * reports, Envoy's response flags) sits under `kmesh.*`.
 */
import type { ConnectionEvent, FailureReason } from './connection.js';

/** Attribute names, by role. */
export const SemconvAttr = {
  networkTransport: 'network.transport',
  networkType: 'network.type',
  networkLocalAddress: 'network.local.address',
  networkLocalPort: 'network.local.port',
  networkPeerAddress: 'network.peer.address',
  networkPeerPort: 'network.peer.port',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  clientAddress: 'client.address',
  clientPort: 'client.port',
  destinationAddress: 'destination.address',
  clientServiceName: 'client.service.name',
  serverServiceName: 'server.service.name',
  errorType: 'error.type',
  /** `source.` + a `k8s.*` name: the client end's identity. */
  sourcePrefix: 'source.',
  /** `destination.` + a `k8s.*` name: the server end's identity. */
  destinationPrefix: 'destination.',
} as const;

/** The registry's `k8s.*` names this agent fills (each under a {@link SemconvAttr.sourcePrefix} or destination prefix). */
export const K8sAttr = {
  podName: 'k8s.pod.name',
  podUid: 'k8s.pod.uid',
  namespaceName: 'k8s.namespace.name',
  nodeName: 'k8s.node.name',
  deploymentName: 'k8s.deployment.name',
  statefulsetName: 'k8s.statefulset.name',
  daemonsetName: 'k8s.daemonset.name',
  cronjobName: 'k8s.cronjob.name',
  jobName: 'k8s.job.name',
  replicasetName: 'k8s.replicaset.name',
  serviceName: 'k8s.service.name',
  serviceNamespace: 'k8s.service.namespace',
} as const;

/** Attributes with no semantic convention: this agent's own namespace. */
export const KmeshAttr = {
  sentBytes: 'kmesh.sent_bytes',
  receivedBytes: 'kmesh.received_bytes',
  retransmissions: 'kmesh.retransmissions',
  lostPackets: 'kmesh.lost_packets',
  /** Smoothed RTT, seconds. */
  srtt: 'kmesh.srtt',
  /** Minimum RTT, seconds. */
  minRtt: 'kmesh.min_rtt',
  responseFlags: 'kmesh.response_flags',
  /** `source` (the client's socket) or `destination` (the server's), as Istio's `reporter`. */
  reporter: 'kmesh.reporter',
  /** The access-log event: `open`, `close`, `fail`, `report`. */
  event: 'kmesh.connection.event',
  /** Connection age at the event, seconds (access-log records; a span has its start and end). */
  duration: 'kmesh.connection.duration',
  /** TCP state at the event. */
  state: 'kmesh.tcp.state',
} as const;

/**
 * `error.type` of a failed connect: the semantic conventions ask for a
 * low-cardinality reason; these are the errno names behind each reason.
 */
export const ERROR_TYPE: Readonly<Record<FailureReason, string>> = {
  refused: 'ECONNREFUSED',
  reset: 'ECONNRESET',
  timeout: 'ETIMEDOUT',
  host_unreachable: 'EHOSTUNREACH',
  net_unreachable: 'ENETUNREACH',
  // The registry's value for "none of the known ones".
  other: '_OTHER',
};

/** Kmesh access-log keys (`src.*`, `dst.*`): the same identities are carried as `k8s.*` attributes, not these. */
function isAccessLogKey(k: string): boolean {
  return k.startsWith('src.') || k.startsWith('dst.');
}

/**
 * One connection event in the vocabulary, as seen by the socket that
 * reported it (`client`: the OUTBOUND socket):
 * - `network.transport` tcp, `network.type` ipv4/ipv6;
 * - `network.local.*` / `network.peer.*`: this socket's own tuple (for the
 *   server, the peer is the client);
 * - `server.address`/`server.port` (what the client connected to: the
 *   original destination where known), `client.address`/`client.port`;
 * - `error.type` on a failed connect;
 * - bytes each way, retransmissions, RTT (seconds) and `response_flags`
 *   under `kmesh.*`;
 * - `identities` (the processors' k8s.* of both ends), without the Kmesh
 *   access-log keys.
 * Numbers stay numbers (OTLP int/double values).
 */
export function connectionAttributes(e: ConnectionEvent, client: boolean, identities: Readonly<Record<string, string>>): Record<string, string | number> {
  const A = SemconvAttr;
  const K = KmeshAttr;
  const out: Record<string, string | number> = {
    [A.networkTransport]: 'tcp',
    [A.networkType]: e.family === 4 ? 'ipv4' : 'ipv6',
    [A.networkLocalAddress]: client ? e.srcAddr : e.dstAddr,
    [A.networkLocalPort]: client ? e.srcPort : e.dstPort,
    [A.networkPeerAddress]: client ? e.dstAddr : e.srcAddr,
    [A.networkPeerPort]: client ? e.dstPort : e.srcPort,
    [A.serverAddress]: e.origDstAddr ?? e.dstAddr,
    [A.serverPort]: e.origDstPort ?? e.dstPort,
    [A.clientAddress]: e.srcAddr,
    [A.clientPort]: e.srcPort,
    [K.sentBytes]: e.sentBytes,
    [K.receivedBytes]: e.receivedBytes,
    [K.retransmissions]: e.retransmits,
    [K.srtt]: e.srttUs / 1e6,
    [K.minRtt]: e.minRttUs / 1e6,
    // Envoy's UF (upstream connection failure), as the metrics' response_flags label.
    [K.responseFlags]: e.failure !== undefined ? 'UF' : '-',
  };
  if (e.failure !== undefined) out[A.errorType] = ERROR_TYPE[e.failure];
  for (const k of Object.keys(identities)) if (!isAccessLogKey(k)) out[k] = identities[k]!;
  return out;
}
