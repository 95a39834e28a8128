import { RawAttr, type FlowPoint } from '../model/metrics.js';

/**
 * Metric schemas: pure renderers from one {@link FlowPoint} (attributes +
 * per-flush deltas) to metric-family contributions (family, label values,
 * value). Exporters feed the contributions into a `SeriesStore`.
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

/** What one FlowPoint adds to one series of one family. */
export interface Contribution {
  readonly family: FamilyDef;
  /** Values aligned with `family.labels`. */
  readonly labelValues: readonly string[];
  /** Cheap identity of the label set within the family (values joined). */
  readonly key: string;
  /** Counter increment (counters). */
  readonly value: number;
  /** Observations (histograms); `value` is then their count. */
  readonly observations?: readonly number[];
}

export interface MetricSchema {
  readonly name: SchemaName;
  /** The placeholder rendered for an unknown label value. */
  readonly unknown: string;
  readonly families: readonly FamilyDef[];
  /** Contributions of one point; zero increments are omitted (no empty series are created). */
  render(point: FlowPoint): Contribution[];
}

/** Separator of label values in a series key; cannot appear in Kubernetes names. */
const KEY_SEP = '\u0001';

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

function push(out: Contribution[], family: FamilyDef, values: string[], key: string, value: number): void {
  if (value > 0) out.push({ family, labelValues: values, key, value });
}

function pushHistogram(out: Contribution[], family: FamilyDef, values: string[], key: string, obs: readonly number[]): void {
  if (obs.length > 0) out.push({ family, labelValues: values, key, value: obs.length, observations: obs });
}

/**
 * The default schema: Kmesh's families and label names, unknown = `-`. Each
 * reporter counts bytes from its own socket (under `reporter="destination"`,
 * `received_bytes` is what the client sent), as Kmesh does.
 */
export const kmeshSchema: MetricSchema = {
  name: 'kmesh',
  unknown: '-',
  families: Object.values(KMESH_FAMILIES),
  render(p: FlowPoint): Contribution[] {
    const out: Contribution[] = [];
    const f = KMESH_FAMILIES;
    const w = labelValues(p.attributes, KMESH_WORKLOAD_LABELS, '-');
    const wk = w.join(KEY_SEP);
    push(out, f.workloadOpened, w, wk, p.opened);
    push(out, f.workloadClosed, w, wk, p.closed);
    push(out, f.workloadReceived, w, wk, p.receivedBytes);
    push(out, f.workloadSent, w, wk, p.sentBytes);
    push(out, f.workloadFailed, w, wk, p.failed);
    push(out, f.retrans, w, wk, p.retransmits);
    push(out, f.packetLoss, w, wk, p.lostPackets);
    pushHistogram(out, f.duration, w, wk, p.durationsSec);
    pushHistogram(out, f.rtt, w, wk, p.rttsSec);
    if (p.opened > 0 || p.closed > 0 || p.receivedBytes > 0 || p.sentBytes > 0 || p.failed > 0) {
      const s = labelValues(p.attributes, KMESH_SERVICE_LABELS, '-');
      const sk = s.join(KEY_SEP);
      push(out, f.serviceOpened, s, sk, p.opened);
      push(out, f.serviceClosed, s, sk, p.closed);
      push(out, f.serviceReceived, s, sk, p.receivedBytes);
      push(out, f.serviceSent, s, sk, p.sentBytes);
      push(out, f.serviceFailed, s, sk, p.failed);
    }
    return out;
  },
};

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
  render(p: FlowPoint): Contribution[] {
    const out: Contribution[] = [];
    const f = ISTIO_FAMILIES;
    const v = labelValues(p.attributes, ISTIO_LABELS, 'unknown');
    const k = v.join(KEY_SEP);
    const clientSide = reporterOf(p.attributes) === 'source';
    const serverToClient = clientSide ? p.receivedBytes : p.sentBytes;
    const clientToServer = clientSide ? p.sentBytes : p.receivedBytes;
    push(out, f.sent, v, k, serverToClient);
    push(out, f.received, v, k, clientToServer);
    push(out, f.opened, v, k, p.opened);
    push(out, f.closed, v, k, p.closed);
    return out;
  },
};

export function schemaByName(name: SchemaName): MetricSchema {
  return name === 'istio' ? istioSchema : kmeshSchema;
}
