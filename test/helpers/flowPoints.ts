import type { Direction, FailureReason } from '../../src/model/connection.js';
import { newFlowKey, type FlowKey, type FlowKeyFields } from '../../src/model/flow.js';
import { emptyFlowValues, RawAttr, type FlowPoint } from '../../src/model/metrics.js';

/** The Kmesh example's identities (DESIGN.md), as the k8s_attributes processor sets them. */
export const SLEEP_TO_HTTPBIN: Record<string, string> = {
  reporter: 'destination',
  source_workload: 'sleep',
  source_canonical_service: 'sleep',
  source_canonical_revision: 'latest',
  source_workload_namespace: 'default',
  source_app: 'sleep',
  source_version: 'latest',
  source_cluster: 'Kubernetes',
  destination_pod_address: '10.244.0.11',
  destination_pod_namespace: 'default',
  destination_pod_name: 'httpbin-5c5944c58c-v9mlk',
  destination_workload: 'httpbin',
  destination_canonical_service: 'httpbin',
  destination_canonical_revision: 'v1',
  destination_workload_namespace: 'default',
  destination_app: 'httpbin',
  destination_version: 'v1',
  destination_cluster: 'Kubernetes',
  destination_service: 'httpbin.default.svc.cluster.local',
  destination_service_namespace: 'default',
  destination_service_name: 'httpbin',
  request_protocol: 'tcp',
  connection_security_policy: 'mutual_tls',
};

/** A FlowPoint with the given attributes and values (others zero). */
export function flowPoint(attributes: Record<string, string>, values: Partial<Omit<FlowPoint, 'attributes'>> = {}): FlowPoint {
  return { ...emptyFlowValues(), ...values, attributes: { ...attributes } };
}

const RAW_KEYS: ReadonlySet<string> = new Set(Object.values(RawAttr));
const interned = new Map<string, FlowKey>();

/**
 * The FlowKey of test input written as the receiver's raw attributes,
 * interned as the receiver's FlowAggregator interns (equal input, one key
 * object). Missing keys: INBOUND, empty addresses, port 0.
 */
export function flowKeyOf(attrs: Readonly<Record<string, string>>): FlowKey {
  const orig = attrs[RawAttr.originalDestinationPort];
  const fields: FlowKeyFields = {
    direction: (attrs[RawAttr.direction] ?? 'INBOUND') as Direction,
    srcAddr: attrs[RawAttr.sourceAddress] ?? '',
    dstAddr: attrs[RawAttr.destinationAddress] ?? '',
    dstPort: Number(attrs[RawAttr.destinationPort] ?? 0),
    origDstAddr: attrs[RawAttr.originalDestinationAddress],
    origDstPort: orig === undefined ? undefined : Number(orig),
    failure: attrs[RawAttr.failureReason] as FailureReason | undefined,
  };
  const k = JSON.stringify(fields);
  let f = interned.get(k);
  if (f === undefined) {
    f = newFlowKey(fields);
    interned.set(k, f);
  }
  return f;
}

/**
 * A point as the receiver emits it: its flow key, and as attributes the
 * key's own object — or, when `attrs` holds more than raw keys (as if a
 * processor had added some), a copy of `attrs`.
 */
export function rawPoint(attrs: Readonly<Record<string, string>>, values: Partial<Omit<FlowPoint, 'attributes' | 'flow'>> = {}): FlowPoint {
  const flow = flowKeyOf(attrs);
  const onlyRaw = Object.keys(attrs).every((k) => RAW_KEYS.has(k));
  return { ...emptyFlowValues(), ...values, flow, attributes: onlyRaw ? (flow.attributes as Record<string, string>) : { ...attrs } };
}
