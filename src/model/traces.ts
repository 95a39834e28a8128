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
import type { ConnectionEvent } from './connection.js';
import { connectionAttributes, K8sAttr, SemconvAttr } from './semconv.js';
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

export { ERROR_TYPE } from './semconv.js';

const DST = SemconvAttr.destinationPrefix;

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
    a[DST + K8sAttr.deploymentName] ??
    a[DST + K8sAttr.statefulsetName] ??
    a[DST + K8sAttr.daemonsetName] ??
    a[DST + K8sAttr.podName] ??
    e.origDstAddr ??
    e.dstAddr;
  const port = e.origDstPort ?? e.dstPort;
  return `${span.kind === 'CLIENT' ? 'tcp connect' : 'tcp accept'} ${dest}:${port}`;
}

/**
 * The span's attributes: {@link connectionAttributes} of its event, from the
 * reporting socket's side (CLIENT: the OUTBOUND socket), with the identities
 * processors added — the vocabulary the `semconv` metric and log schema
 * share (src/model/semconv.ts).
 */
export function connectionSpanAttributes(span: ConnectionSpan): Record<string, string | number> {
  return connectionAttributes(span.event, span.kind === 'CLIENT', span.attributes);
}
