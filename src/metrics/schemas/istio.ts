/** The `istio` schema: Istio's standard TCP metrics, unknown = `unknown`. */
import { counter, reporterOf, type FamilyDef, type LabelGroup, type MetricSchema } from '../schema.js';
import { KMESH_SERVICE_LABELS } from './kmesh.js';

/** Istio's standard TCP metric labels (https://istio.io/latest/docs/reference/config/metrics/). */
export const ISTIO_LABELS: readonly string[] = KMESH_SERVICE_LABELS;

/** The istio families: Istio's standard TCP metrics. */
export const ISTIO_FAMILIES = {
  sent: counter('istio_tcp_sent_bytes_total', 'Total bytes sent during response in case of a TCP connection (server to client)', 'By', ISTIO_LABELS),
  received: counter('istio_tcp_received_bytes_total', 'Total bytes received during request in case of a TCP connection (client to server)', 'By', ISTIO_LABELS),
  opened: counter('istio_tcp_connections_opened_total', 'Total TCP connections opened', '{connection}', ISTIO_LABELS),
  closed: counter('istio_tcp_connections_closed_total', 'Total TCP connections closed', '{connection}', ISTIO_LABELS),
} as const satisfies Record<string, FamilyDef>;

const I = ISTIO_FAMILIES;
const ISTIO_GROUPS: readonly LabelGroup[] = [
  {
    labels: ISTIO_LABELS,
    bindings: [{ family: I.sent }, { family: I.received }, { family: I.opened }, { family: I.closed }],
    read(p, out) {
      // The client socket (`reporter="source"`) sees the connection from the other side: swap the byte directions.
      const clientSide = reporterOf(p) === 'source';
      out[0] = clientSide ? p.receivedBytes : p.sentBytes;
      out[1] = clientSide ? p.sentBytes : p.receivedBytes;
      out[2] = p.opened;
      out[3] = p.closed;
    },
  },
];

/**
 * Istio's standard TCP metrics, unknown = `unknown`. Istio reports bytes from
 * the connection's point of view whichever proxy reports: `sent` is "bytes
 * sent during response" (server to client) and `received` is "bytes received
 * during request" (client to server) — istio.io/latest/docs/reference/config/metrics.
 * So the server socket (`reporter="destination"`) maps directly, and the
 * client socket (`reporter="source"`) is swapped. Failed connects have no
 * Istio family and are not rendered.
 */
export const istioSchema: MetricSchema = {
  name: 'istio',
  unknown: 'unknown',
  families: Object.values(ISTIO_FAMILIES),
  groups: ISTIO_GROUPS,
};
