/**
 * The label vocabulary: every Istio/Kmesh label name (DESIGN.md, "Kmesh
 * schema"), and the two labels known without Kubernetes — who reports
 * (`reporter`) and the protocol (`request_protocol`). The k8s_attributes
 * processor sets labels by these names; metric schemas (src/metrics/schema.ts)
 * list their label sets from them and fill `reporter` and `request_protocol`
 * the same way when no processor ran.
 */
import type { Direction } from './connection.js';

/** Every label name, by role. */
export const Label = {
  reporter: 'reporter',
  sourceWorkload: 'source_workload',
  sourceCanonicalService: 'source_canonical_service',
  sourceCanonicalRevision: 'source_canonical_revision',
  sourceWorkloadNamespace: 'source_workload_namespace',
  sourcePrincipal: 'source_principal',
  sourceApp: 'source_app',
  sourceVersion: 'source_version',
  sourceCluster: 'source_cluster',
  destinationPodAddress: 'destination_pod_address',
  destinationPodNamespace: 'destination_pod_namespace',
  destinationPodName: 'destination_pod_name',
  destinationWorkload: 'destination_workload',
  destinationCanonicalService: 'destination_canonical_service',
  destinationCanonicalRevision: 'destination_canonical_revision',
  destinationWorkloadNamespace: 'destination_workload_namespace',
  destinationPrincipal: 'destination_principal',
  destinationApp: 'destination_app',
  destinationVersion: 'destination_version',
  destinationCluster: 'destination_cluster',
  requestProtocol: 'request_protocol',
  responseFlags: 'response_flags',
  connectionSecurityPolicy: 'connection_security_policy',
  destinationService: 'destination_service',
  destinationServiceNamespace: 'destination_service_namespace',
  destinationServiceName: 'destination_service_name',
} as const;

const L = Label;

/** The source peer's labels. */
export const SOURCE_LABELS: readonly string[] = [
  L.sourceWorkload,
  L.sourceCanonicalService,
  L.sourceCanonicalRevision,
  L.sourceWorkloadNamespace,
  L.sourcePrincipal,
  L.sourceApp,
  L.sourceVersion,
  L.sourceCluster,
];

/** The destination peer's labels, pod or service alike. */
export const DESTINATION_PEER_LABELS: readonly string[] = [
  L.destinationWorkload,
  L.destinationCanonicalService,
  L.destinationCanonicalRevision,
  L.destinationWorkloadNamespace,
  L.destinationPrincipal,
  L.destinationApp,
  L.destinationVersion,
  L.destinationCluster,
];

/** The destination pod (workload-level series). */
export const DESTINATION_POD_LABELS: readonly string[] = [L.destinationPodAddress, L.destinationPodNamespace, L.destinationPodName];

/** The destination service (service-level series). */
export const DESTINATION_SERVICE_LABELS: readonly string[] = [L.destinationService, L.destinationServiceNamespace, L.destinationServiceName];

/** Labels of the connection itself. */
export const CONNECTION_LABELS: readonly string[] = [L.reporter, L.requestProtocol, L.responseFlags, L.connectionSecurityPolicy];

/** `reporter`: the server socket (INBOUND) reports as `destination`, the client socket (OUTBOUND) as `source`, as Istio's proxies do. */
export function reporterFor(direction: Direction): 'source' | 'destination' {
  return direction === 'INBOUND' ? 'destination' : 'source';
}

/** `request_protocol`: every flow this agent sees is TCP — known, not a made-up constant. */
export const REQUEST_PROTOCOL = 'tcp';
