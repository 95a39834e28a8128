/**
 * The `kmesh` schema (the default): Kmesh's families and label names,
 * unknown = `-`.
 */
import {
  CONNECTION_LABELS,
  DESTINATION_PEER_LABELS,
  DESTINATION_POD_LABELS,
  DESTINATION_SERVICE_LABELS,
  SOURCE_LABELS,
} from '../../model/labels.js';
import { counter, type FamilyDef, type LabelGroup, type MetricSchema } from '../schema.js';

/** Kmesh's 23 workload labels (`kmesh_tcp_workload_*`), sorted as Prometheus client libraries print them. */
export const KMESH_WORKLOAD_LABELS: readonly string[] = [
  ...SOURCE_LABELS,
  ...DESTINATION_POD_LABELS,
  ...DESTINATION_PEER_LABELS,
  ...CONNECTION_LABELS,
].sort();

/** Kmesh's service labels (`kmesh_tcp_*`): the workload set with `destination_service*` in place of `destination_pod_*`. */
export const KMESH_SERVICE_LABELS: readonly string[] = [
  ...SOURCE_LABELS,
  ...DESTINATION_SERVICE_LABELS,
  ...DESTINATION_PEER_LABELS,
  ...CONNECTION_LABELS,
].sort();

/** Connection duration buckets, seconds: 5 ms .. 1 h. */
export const DURATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
];
/** RTT buckets, seconds: 50 µs .. 1 s. */
export const RTT_BUCKETS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
];

/** The kmesh families, by role. Names exactly as Kmesh exposes them (including `conntections`). */
export const KMESH_FAMILIES = {
  workloadOpened: counter('kmesh_tcp_workload_connections_opened_total', 'The total number of TCP connections opened to a workload', '{connection}', KMESH_WORKLOAD_LABELS),
  workloadClosed: counter('kmesh_tcp_workload_connections_closed_total', 'The total number of TCP connections closed to a workload', '{connection}', KMESH_WORKLOAD_LABELS),
  workloadReceived: counter('kmesh_tcp_workload_received_bytes_total', 'The size of total bytes received during request to a workload', 'By', KMESH_WORKLOAD_LABELS),
  workloadSent: counter('kmesh_tcp_workload_sent_bytes_total', 'The size of total bytes sent during response to a workload', 'By', KMESH_WORKLOAD_LABELS),
  workloadFailed: counter('kmesh_tcp_workload_conntections_failed_total', 'The total number of TCP connections failed to a workload', '{connection}', KMESH_WORKLOAD_LABELS),
  serviceOpened: counter('kmesh_tcp_connections_opened_total', 'The total number of TCP connections opened to a service', '{connection}', KMESH_SERVICE_LABELS),
  serviceClosed: counter('kmesh_tcp_connections_closed_total', 'The total number of TCP connections closed to a service', '{connection}', KMESH_SERVICE_LABELS),
  serviceReceived: counter('kmesh_tcp_received_bytes_total', 'The size of total bytes received during request to a service', 'By', KMESH_SERVICE_LABELS),
  serviceSent: counter('kmesh_tcp_sent_bytes_total', 'The size of total bytes sent during response to a service', 'By', KMESH_SERVICE_LABELS),
  serviceFailed: counter('kmesh_tcp_conntections_failed_total', 'The total number of TCP connections failed to a service', '{connection}', KMESH_SERVICE_LABELS),
  retrans: counter('kmesh_tcp_retrans_total', 'Total number of retransmitted TCP segments of a workload', '{segment}', KMESH_WORKLOAD_LABELS),
  packetLoss: counter('kmesh_tcp_packet_loss_total', 'Total number of TCP packets lost by a workload', '{packet}', KMESH_WORKLOAD_LABELS),
  duration: {
    name: 'kmesh_tcp_connection_duration_seconds',
    help: 'Duration of closed TCP connections of a workload',
    unit: 's',
    type: 'histogram',
    labels: KMESH_WORKLOAD_LABELS,
    buckets: DURATION_BUCKETS,
  },
  rtt: {
    name: 'kmesh_tcp_rtt_seconds',
    help: 'Smoothed round-trip time of TCP connections of a workload, at close or periodic report',
    unit: 's',
    type: 'histogram',
    labels: KMESH_WORKLOAD_LABELS,
    buckets: RTT_BUCKETS,
  },
} as const satisfies Record<string, FamilyDef>;

const K = KMESH_FAMILIES;
const KMESH_GROUPS: readonly LabelGroup[] = [
  {
    labels: KMESH_WORKLOAD_LABELS,
    bindings: [
      { family: K.workloadOpened },
      { family: K.workloadClosed },
      { family: K.workloadReceived },
      { family: K.workloadSent },
      { family: K.workloadFailed },
      { family: K.retrans },
      { family: K.packetLoss },
      { family: K.duration, observations: (p) => p.durationsSec },
      { family: K.rtt, observations: (p) => p.rttsSec },
    ],
    read(p, out) {
      // Aligned with `bindings` above.
      out[0] = p.opened;
      out[1] = p.closed;
      out[2] = p.receivedBytes;
      out[3] = p.sentBytes;
      out[4] = p.failed;
      out[5] = p.retransmits;
      out[6] = p.lostPackets;
      out[7] = p.durationsSec.length;
      out[8] = p.rttsSec.length;
    },
  },
  {
    labels: KMESH_SERVICE_LABELS,
    bindings: [{ family: K.serviceOpened }, { family: K.serviceClosed }, { family: K.serviceReceived }, { family: K.serviceSent }, { family: K.serviceFailed }],
    read(p, out) {
      out[0] = p.opened;
      out[1] = p.closed;
      out[2] = p.receivedBytes;
      out[3] = p.sentBytes;
      out[4] = p.failed;
    },
  },
];

/**
 * The default schema: Kmesh's families and label names, unknown = `-`. Each
 * reporter counts bytes from its own socket (under `reporter="destination"`,
 * `received_bytes` is what the client sent), as Kmesh does.
 */
export const kmeshSchema: MetricSchema = {
  name: 'kmesh',
  unknown: '-',
  families: Object.values(KMESH_FAMILIES),
  groups: KMESH_GROUPS,
};
