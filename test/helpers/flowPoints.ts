import { emptyFlowValues, type FlowPoint } from '../../src/model/metrics.js';

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
