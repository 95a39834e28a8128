/**
 * The traces signal: one span per connection per reporting socket, emitted
 * when the socket closes (or its connect fails). The client's socket gives a
 * CLIENT span, the server's a SERVER span that is the CLIENT span's child;
 * both sit in the trace derived from the connection's ISN pair
 * (src/model/traceIds.ts), so the two ends join without any header.
 *
 * Exporters build their span from {@link spanName} and
 * {@link connectionSpanAttributes}, which use the OpenTelemetry semantic
 * conventions (network.*, server.*, client.*, error.type).
 */
import type { ConnectionEvent, FailureReason } from './connection.js';
import type { ConnectionSpanContext } from './traceIds.js';

export type ConnectionSpanKind = 'CLIENT' | 'SERVER';

/** One span: the socket's final event, its ids, and the identities processors add. */
export interface ConnectionSpan {
  /** The `close` or `fail` event of the reporting socket. */
  event: ConnectionEvent;
  context: ConnectionSpanContext;
  /** CLIENT for the OUTBOUND socket, SERVER for the INBOUND one. */
  kind: ConnectionSpanKind;
  /**
   * Identity attributes added by processors (k8s_attributes adds the k8s.*
   * attributes of both ends under `source.` / `destination.`, and the Kmesh
   * access-log keys `src.*` / `dst.*`). Absent key: unknown.
   */
  attributes: Record<string, string>;
  /**
   * Span start and end, ns since the Unix epoch: the socket's establishment
   * (its connect() for a failed connect) and its close (or failure).
   */
  startUnixNano: bigint;
  endUnixNano: bigint;
  /** When the agent read the record, ns since the Unix epoch. */
  observedUnixNano: bigint;
}

export interface TracesBatch {
  spans: ConnectionSpan[];
}

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
  other: '_OTHER',
};

/**
 * Low-cardinality span name: `tcp connect {destination}:{port}` for the
 * client, `tcp accept {destination}:{port}` for the server, where the
 * destination is the service (FQDN) when the processor resolved one, else the
 * destination workload, else the destination address.
 */
export function spanName(span: ConnectionSpan): string {
  const a = span.attributes;
  const e = span.event;
  const dest =
    a['dst.service'] ??
    a['destination.k8s.deployment.name'] ??
    a['destination.k8s.statefulset.name'] ??
    a['destination.k8s.daemonset.name'] ??
    a['destination.k8s.pod.name'] ??
    e.origDstAddr ??
    e.dstAddr;
  const port = e.origDstPort ?? e.dstPort;
  return `${span.kind === 'CLIENT' ? 'tcp connect' : 'tcp accept'} ${dest}:${port}`;
}

/** Kmesh access-log keys: the span carries the same identities as k8s.* attributes, not these. */
function isAccessLogKey(k: string): boolean {
  return k.startsWith('src.') || k.startsWith('dst.');
}

/**
 * The span's attributes, by the semantic conventions
 * (https://opentelemetry.io/docs/specs/semconv/registry/attributes/network/):
 * - `network.transport` tcp, `network.type` ipv4/ipv6;
 * - `network.local.*` / `network.peer.*`: this socket's own tuple (for the
 *   server, the peer is the client);
 * - `server.address`/`server.port` (what the client connected to: the
 *   original destination where known), `client.address`/`client.port`;
 * - `error.type` on a failed connect;
 * - bytes each way, retransmissions, RTT (seconds) and `response_flags`
 *   under `kmesh.*` (no convention exists for them);
 * - the processors' identities (k8s.* of both ends), without the Kmesh
 *   access-log keys.
 * Numbers stay numbers (OTLP int/double values).
 */
export function connectionSpanAttributes(span: ConnectionSpan): Record<string, string | number> {
  const e = span.event;
  const client = span.kind === 'CLIENT';
  const out: Record<string, string | number> = {
    'network.transport': 'tcp',
    'network.type': e.family === 4 ? 'ipv4' : 'ipv6',
    'network.local.address': client ? e.srcAddr : e.dstAddr,
    'network.local.port': client ? e.srcPort : e.dstPort,
    'network.peer.address': client ? e.dstAddr : e.srcAddr,
    'network.peer.port': client ? e.dstPort : e.srcPort,
    'server.address': e.origDstAddr ?? e.dstAddr,
    'server.port': e.origDstPort ?? e.dstPort,
    'client.address': e.srcAddr,
    'client.port': e.srcPort,
    'kmesh.sent_bytes': e.sentBytes,
    'kmesh.received_bytes': e.receivedBytes,
    'kmesh.retransmissions': e.retransmits,
    'kmesh.srtt': e.srttUs / 1e6,
    'kmesh.min_rtt': e.minRttUs / 1e6,
    // Envoy's UF (upstream connection failure), as the metrics' response_flags label.
    'kmesh.response_flags': e.failure !== undefined ? 'UF' : '-',
  };
  if (e.failure !== undefined) out['error.type'] = ERROR_TYPE[e.failure];
  for (const [k, v] of Object.entries(span.attributes)) if (!isAccessLogKey(k)) out[k] = v;
  return out;
}
