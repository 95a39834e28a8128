import { RawAttr, type FlowPoint } from '../model/metrics.js';

/**
 * Metric schemas: what one {@link FlowPoint} (attributes + per-flush deltas)
 * adds to which metric families under which label values, described by
 * label groups that a `SeriesStore` applies.
 *
 * A schema names every label it renders; attributes it does not name (the
 * receiver's raw dotted keys such as `source.address`) are never rendered, so
 * raw addresses cannot leak into label sets by accident.
 */

/** Which schema an exporter renders. */
export type SchemaName = 'kmesh' | 'istio';
export const SCHEMA_NAMES = ['kmesh', 'istio'] as const;

/** One metric family: name exactly as exposed, fixed label names in a stable (sorted) order. */
export interface FamilyDef {
  readonly name: string;
  readonly help: string;
  /** UCUM unit for OTLP (`By`, `s`, `{connection}`...). */
  readonly unit: string;
  /** `counter`: monotonic sum; `histogram`: explicit-bucket histogram. */
  readonly type: 'counter' | 'histogram';
  /** Label names, sorted, so label keys are rendered in a stable order. */
  readonly labels: readonly string[];
  /** Upper bucket bounds (histograms only), ascending. */
  readonly buckets?: readonly number[];
}

/** A family of a {@link LabelGroup}; histograms also say where their observations are. */
export interface FamilyBinding {
  readonly family: FamilyDef;
  /** Observations of a point (histograms only). */
  readonly observations?: (p: FlowPoint) => readonly number[];
}

/**
 * Families that share one label-name list (Kmesh: the workload families, the
 * service families). A point's label values are rendered once per group, and
 * a SeriesStore keeps one label set per distinct value list per group, shared
 * by every family of the group.
 */
export interface LabelGroup {
  /** Label names, sorted (the `labels` of every family in `bindings`). */
  readonly labels: readonly string[];
  readonly bindings: readonly FamilyBinding[];
  /**
   * Writes what `p` adds to each binding's family into `out[i]` (counters:
   * the increment; histograms: the number of observations); <= 0 means
   * nothing. One call per point and group rather than one closure per family:
   * the store's hot path reads a few numbers from a typed array instead of
   * making ~14 megamorphic calls per point.
   */
  readonly read: (p: FlowPoint, out: Float64Array) => void;
}

export interface MetricSchema {
  readonly name: SchemaName;
  /** The placeholder rendered for an unknown label value. */
  readonly unknown: string;
  /** Every family, in exposition order. */
  readonly families: readonly FamilyDef[];
  /** The families by label group; what a point contributes is fully described here. */
  readonly groups: readonly LabelGroup[];
}

// ---------------------------------------------------------------------------
// Label sets

const SOURCE_LABELS = [
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
] as const;

const DESTINATION_PEER_LABELS = [
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
] as const;

const CONNECTION_LABELS = ['reporter', 'request_protocol', 'response_flags', 'connection_security_policy'] as const;

/** Kmesh's 23 workload labels (`kmesh_tcp_workload_*`), sorted as Prometheus client libraries print them. */
export const KMESH_WORKLOAD_LABELS: readonly string[] = [
  ...SOURCE_LABELS,
  'destination_pod_address',
  'destination_pod_namespace',
  'destination_pod_name',
  ...DESTINATION_PEER_LABELS,
  ...CONNECTION_LABELS,
].sort();

/** Kmesh's service labels (`kmesh_tcp_*`): the workload set with `destination_service*` in place of `destination_pod_*`. */
export const KMESH_SERVICE_LABELS: readonly string[] = [
  ...SOURCE_LABELS,
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  ...DESTINATION_PEER_LABELS,
  ...CONNECTION_LABELS,
].sort();

/** Istio's standard TCP metric labels (https://istio.io/latest/docs/reference/config/metrics/). */
export const ISTIO_LABELS: readonly string[] = KMESH_SERVICE_LABELS;

// ---------------------------------------------------------------------------
// Families

/** Connection duration buckets, seconds: 5 ms .. 1 h. */
export const DURATION_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
];
/** RTT buckets, seconds: 50 µs .. 1 s. */
export const RTT_BUCKETS: readonly number[] = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
];

function counter(name: string, help: string, unit: string, labels: readonly string[]): FamilyDef {
  return { name, help, unit, type: 'counter', labels };
}

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

/** The istio families: Istio's standard TCP metrics. */
export const ISTIO_FAMILIES = {
  sent: counter('istio_tcp_sent_bytes_total', 'Total bytes sent during response in case of a TCP connection (server to client)', 'By', ISTIO_LABELS),
  received: counter('istio_tcp_received_bytes_total', 'Total bytes received during request in case of a TCP connection (client to server)', 'By', ISTIO_LABELS),
  opened: counter('istio_tcp_connections_opened_total', 'Total TCP connections opened', '{connection}', ISTIO_LABELS),
  closed: counter('istio_tcp_connections_closed_total', 'Total TCP connections closed', '{connection}', ISTIO_LABELS),
} as const satisfies Record<string, FamilyDef>;

// ---------------------------------------------------------------------------
// Label values

/**
 * `reporter` as set by the k8s_attributes processor; without it, derived from
 * the receiver's `direction` (INBOUND is the server side: `destination`).
 */
export function reporterOf(attrs: Record<string, string>): string | undefined {
  const r = attrs['reporter'];
  if (r !== undefined && r !== '') return r;
  const d = attrs[RawAttr.direction];
  if (d === 'INBOUND') return 'destination';
  if (d === 'OUTBOUND') return 'source';
  return undefined;
}

/** Label values for `names`, `unknown` where the attribute is absent or empty. */
export function labelValues(attrs: Record<string, string>, names: readonly string[], unknown: string): string[] {
  const out = new Array<string>(names.length);
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    let v: string | undefined;
    if (name === 'reporter') v = reporterOf(attrs);
    // Every flow this agent sees is TCP: that is known, not a made-up constant.
    else if (name === 'request_protocol') v = attrs[name] || 'tcp';
    else v = attrs[name];
    out[i] = v === undefined || v === '' ? unknown : v;
  }
  return out;
}

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

const I = ISTIO_FAMILIES;
const ISTIO_GROUPS: readonly LabelGroup[] = [
  {
    labels: ISTIO_LABELS,
    bindings: [{ family: I.sent }, { family: I.received }, { family: I.opened }, { family: I.closed }],
    read(p, out) {
      // The client socket (`reporter="source"`) sees the connection from the other side: swap the byte directions.
      const clientSide = reporterOf(p.attributes) === 'source';
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

export function schemaByName(name: SchemaName): MetricSchema {
  return name === 'istio' ? istioSchema : kmeshSchema;
}
