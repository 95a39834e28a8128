/**
 * The `semconv` schema: the OpenTelemetry semantic conventions on OTLP.
 * Attribute names from the registry (src/model/semconv.ts, the vocabulary the
 * connection spans use too), units in the metric metadata (UCUM: `By`, `s`,
 * `{connection}`) instead of in the name, durations and RTT in seconds, and
 * access-log records that carry the attributes once with a short body.
 *
 * Metric names follow the conventions' naming rules (dot-separated
 * namespaces, no unit or `_total` in the name); no convention defines
 * per-connection TCP metrics yet, so they live under `kmesh.tcp.*`.
 */
import type { AccessLogEntry } from '../../model/logs.js';
import { Label, REQUEST_PROTOCOL } from '../../model/labels.js';
import type { FlowPoint } from '../../model/metrics.js';
import { RawAttr } from '../../model/metrics.js';
import { connectionAttributes, ERROR_TYPE, K8sAttr, KmeshAttr, SemconvAttr } from '../../model/semconv.js';
import type { FailureReason } from '../../model/connection.js';
import { counter, reporterOf, type FamilyDef, type LabelGroup, type MetricSchema } from '../schema.js';
import { DURATION_BUCKETS, RTT_BUCKETS } from './kmesh.js';

const A = SemconvAttr;
const SRC = A.sourcePrefix;
const DST = A.destinationPrefix;

/**
 * Each semconv label and the vocabulary label (src/model/labels.ts) it is
 * read from; `null`: computed in {@link readIdentity}. One series set per
 * destination pod and service, the granularity of Kmesh's workload series.
 */
const IDENTITY: readonly (readonly [string, string | null])[] = [
  [A.clientServiceName, Label.sourceCanonicalService],
  [A.destinationAddress, Label.destinationPodAddress],
  [DST + K8sAttr.namespaceName, Label.destinationWorkloadNamespace],
  [DST + K8sAttr.podName, Label.destinationPodName],
  [DST + K8sAttr.serviceName, Label.destinationServiceName],
  [KmeshAttr.reporter, null],
  [A.networkTransport, null],
  [A.serverAddress, Label.destinationService],
  [A.serverServiceName, Label.destinationCanonicalService],
  [SRC + K8sAttr.namespaceName, Label.sourceWorkloadNamespace],
];

/** The labels of every family but the failed-connect one, sorted. */
export const SEMCONV_LABELS: readonly string[] = IDENTITY.map(([name]) => name).sort();
/** The failed-connect family's labels: the same plus `error.type`. */
export const SEMCONV_FAILED_LABELS: readonly string[] = [...SEMCONV_LABELS, A.errorType].sort();

/** The semconv families, by role. */
export const SEMCONV_FAMILIES = {
  opened: counter('kmesh.tcp.connection.opened', 'TCP connections established', '{connection}', SEMCONV_LABELS),
  closed: counter('kmesh.tcp.connection.closed', 'TCP connections closed', '{connection}', SEMCONV_LABELS),
  failed: counter('kmesh.tcp.connection.failed', 'TCP connects that failed, by error.type', '{connection}', SEMCONV_FAILED_LABELS),
  sent: counter('kmesh.tcp.sent', 'Payload bytes the reporting socket sent', 'By', SEMCONV_LABELS),
  received: counter('kmesh.tcp.received', 'Payload bytes the reporting socket received', 'By', SEMCONV_LABELS),
  retransmissions: counter('kmesh.tcp.retransmissions', 'Retransmitted TCP segments', '{segment}', SEMCONV_LABELS),
  lost: counter('kmesh.tcp.packets.lost', 'TCP packets lost', '{packet}', SEMCONV_LABELS),
  duration: {
    name: 'kmesh.tcp.connection.duration',
    help: 'Duration of closed TCP connections',
    unit: 's',
    type: 'histogram',
    labels: SEMCONV_LABELS,
    buckets: DURATION_BUCKETS,
  },
  rtt: {
    name: 'kmesh.tcp.rtt',
    help: 'Smoothed round-trip time of TCP connections, at close or periodic report',
    unit: 's',
    type: 'histogram',
    labels: SEMCONV_LABELS,
    buckets: RTT_BUCKETS,
  },
} as const satisfies Record<string, FamilyDef>;

/** Where each sorted label comes from (the sort moved them away from IDENTITY's order). */
const SOURCE_OF: ReadonlyMap<string, string | null> = new Map(IDENTITY);

function readIdentity(p: FlowPoint, names: readonly string[], unknown: string): string[] {
  const attrs = p.attributes;
  const out = new Array<string>(names.length);
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    let v: string | undefined;
    if (name === KmeshAttr.reporter) v = reporterOf(p);
    else if (name === A.networkTransport) v = attrs[Label.requestProtocol] || REQUEST_PROTOCOL;
    else if (name === A.errorType) v = errorTypeOf(p);
    else v = attrs[SOURCE_OF.get(name)!];
    out[i] = v === undefined || v === '' ? unknown : v;
  }
  return out;
}

/**
 * `error.type`: as the k8s_attributes processor set it; without a processor,
 * from the receiver's raw `failure.reason` (the point's flow's).
 */
function errorTypeOf(p: FlowPoint): string | undefined {
  const set = p.attributes[A.errorType];
  if (set !== undefined && set !== '') return set;
  const raw = p.attributes[RawAttr.failureReason] as FailureReason | undefined;
  if (raw !== undefined) return ERROR_TYPE[raw] ?? ERROR_TYPE.other;
  return p.flow?.failure === undefined ? undefined : ERROR_TYPE[p.flow.failure];
}

const F = SEMCONV_FAMILIES;
const SEMCONV_GROUPS: readonly LabelGroup[] = [
  {
    labels: SEMCONV_LABELS,
    bindings: [
      { family: F.opened },
      { family: F.closed },
      { family: F.sent },
      { family: F.received },
      { family: F.retransmissions },
      { family: F.lost },
      { family: F.duration, observations: (p) => p.durationsSec },
      { family: F.rtt, observations: (p) => p.rttsSec },
    ],
    read(p, out) {
      // Aligned with `bindings` above.
      out[0] = p.opened;
      out[1] = p.closed;
      out[2] = p.sentBytes;
      out[3] = p.receivedBytes;
      out[4] = p.retransmits;
      out[5] = p.lostPackets;
      out[6] = p.durationsSec.length;
      out[7] = p.rttsSec.length;
    },
    values: (p, unknown) => readIdentity(p, SEMCONV_LABELS, unknown),
  },
  {
    labels: SEMCONV_FAILED_LABELS,
    bindings: [{ family: F.failed }],
    read(p, out) {
      out[0] = p.failed;
    },
    values: (p, unknown) => readIdentity(p, SEMCONV_FAILED_LABELS, unknown),
  },
];

/**
 * A `semconv` access-log record: the short body says what happened; the
 * attributes (once, not repeated in the body) are the connection in the
 * shared vocabulary ({@link connectionAttributes}) plus the event, its
 * duration in seconds and the TCP state.
 */
export function semconvAccessLog(entry: AccessLogEntry): { body: string; attributes: Record<string, string | number> } {
  const e = entry.event;
  const attributes = connectionAttributes(e, e.direction === 'OUTBOUND', entry.attributes);
  attributes[KmeshAttr.reporter] = e.direction === 'OUTBOUND' ? 'source' : 'destination';
  attributes[KmeshAttr.event] = e.kind;
  attributes[KmeshAttr.duration] = e.durationNs / 1e9;
  attributes[KmeshAttr.lostPackets] = e.lostPackets;
  if (e.state !== '') attributes[KmeshAttr.state] = e.state;
  const body = e.kind === 'fail' ? `tcp connect failed: ${ERROR_TYPE[e.failure ?? 'other']}` : `tcp connection ${SEMCONV_EVENT_WORD[e.kind]}`;
  return { body, attributes };
}

const SEMCONV_EVENT_WORD: Readonly<Record<'open' | 'close' | 'report' | 'fail', string>> = {
  open: 'opened',
  close: 'closed',
  report: 'report',
  fail: 'failed',
};

/**
 * Semantic-convention names on OTLP, unknown = `unknown`. Each reporter
 * counts bytes from its own socket, as in the kmesh schema, told apart by
 * `kmesh.reporter`. Dots in the names make it an OTLP schema: the
 * Prometheus exporter refuses it (see {@link MetricSchema.otlpOnly}).
 */
export const semconvSchema: MetricSchema = {
  name: 'semconv',
  unknown: 'unknown',
  families: Object.values(SEMCONV_FAMILIES),
  groups: SEMCONV_GROUPS,
  otlpOnly: true,
  accessLog: semconvAccessLog,
};
