/**
 * The pure mapping from raw connection attributes (addresses, port,
 * direction, failure reason) to the Istio label set, given a
 * {@link MetadataIndex}. No I/O, no clock: table-tested directly.
 */
import { RawAttr } from '../../model/metrics.js';
import type { ConnectionEvent, FailureReason } from '../../model/connection.js';
import { LogAttr } from '../../model/logs.js';
import type { K8sAttributesConfig, MeshConfig } from './config.js';
import type { MetadataIndex, PodRecord, ServiceRecord } from './MetadataIndex.js';

/** The 23 workload labels and the 3 service labels (DESIGN.md, Kmesh schema), as attribute keys. */
export const IstioAttr = {
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

/**
 * Envoy response flag per connect failure. Envoy marks every failed
 * upstream connect `UF` (upstream connection failure) whatever the socket
 * error — RST to the SYN (ECONNREFUSED), SYN retries exhausted (ETIMEDOUT),
 * ICMP unreachable — and keeps the cause in a separate field
 * (`upstream_transport_failure_reason`); `UT`/`UR`/`URX` are HTTP
 * request-level flags and do not apply to an L4 connect. The cause stays on
 * the access-log record as `failure.reason`.
 */
export const RESPONSE_FLAG_BY_FAILURE: Readonly<Record<FailureReason, string>> = {
  refused: 'UF',
  reset: 'UF',
  timeout: 'UF',
  host_unreachable: 'UF',
  net_unreachable: 'UF',
  other: 'UF',
};

/** Raw keys the processor consumes and removes from metric points (see README). */
const CONSUMED_KEYS: ReadonlySet<string> = new Set([
  RawAttr.sourceAddress,
  RawAttr.destinationAddress,
  RawAttr.destinationPort,
  RawAttr.originalDestinationAddress,
  RawAttr.originalDestinationPort,
  RawAttr.failureReason,
]);

/** A parsed `key=value` / `key` label term. */
interface LabelTerm {
  key: string;
  value: string | undefined;
}

/** The config, prepared for the hot path. */
export interface LabelOptions {
  clusterName: string;
  trustDomain: string;
  clusterDomain: string;
  unknownPeer: K8sAttributesConfig['unknown_peer'];
  mesh: { namespace: LabelTerm[]; pod: LabelTerm[]; podExclude: LabelTerm[] };
}

function parseTerms(terms: readonly string[]): LabelTerm[] {
  return terms.map((t) => {
    const i = t.indexOf('=');
    return i < 0 ? { key: t, value: undefined } : { key: t.slice(0, i), value: t.slice(i + 1) };
  });
}

export function labelOptions(config: K8sAttributesConfig): LabelOptions {
  const mesh: MeshConfig = config.mesh;
  return {
    clusterName: config.cluster_name,
    trustDomain: config.trust_domain,
    clusterDomain: config.cluster_domain,
    unknownPeer: config.unknown_peer,
    mesh: {
      namespace: parseTerms(mesh.namespace_labels),
      pod: parseTerms(mesh.pod_labels),
      podExclude: parseTerms(mesh.pod_exclude_labels),
    },
  };
}

function anyTerm(terms: LabelTerm[], labels: Readonly<Record<string, string>> | undefined): boolean {
  if (labels === undefined) return false;
  for (const t of terms) {
    const v = labels[t.key];
    if (v !== undefined && (t.value === undefined || v === t.value)) return true;
  }
  return false;
}

/** What a pod is called in the Istio label set. */
export interface PodIdentity {
  /** Workload name (Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet, else the pod). */
  workload: string;
  /** Kind of the workload: `Deployment`, ..., `Pod`. */
  workloadKind: string;
  canonicalService: string;
  canonicalRevision: string;
  inMesh: boolean;
  /** `spiffe://<trust_domain>/ns/<ns>/sa/<sa>` when in the mesh. */
  principal: string | undefined;
}

/**
 * The workload owning a pod, as Istio names it: a ReplicaSet whose name ends
 * in `-<pod-template-hash>` belongs to the Deployment of the remaining name
 * (the Deployment controller names them so; no ReplicaSet watch needed); a
 * Job owned by a CronJob belongs to the CronJob; StatefulSet, DaemonSet, Job
 * and a bare ReplicaSet are workloads themselves; anything else (no owner,
 * a static pod's Node, custom controllers) leaves the pod its own workload.
 */
export function workloadOf(pod: PodRecord, index: MetadataIndex): { name: string; kind: string } {
  const owner = pod.owner;
  if (owner === undefined) return { name: pod.name, kind: 'Pod' };
  switch (owner.kind) {
    case 'ReplicaSet': {
      const hash = pod.labels['pod-template-hash'];
      if (hash !== undefined && hash !== '' && owner.name.endsWith('-' + hash)) {
        return { name: owner.name.slice(0, -hash.length - 1), kind: 'Deployment' };
      }
      return { name: owner.name, kind: 'ReplicaSet' };
    }
    case 'Job': {
      const cron = index.cronJobOf(pod.namespace, owner.name);
      return cron !== undefined ? { name: cron, kind: 'CronJob' } : { name: owner.name, kind: 'Job' };
    }
    case 'StatefulSet':
    case 'DaemonSet':
      return { name: owner.name, kind: owner.kind };
    default:
      return { name: pod.name, kind: 'Pod' };
  }
}

/** Computes (and caches on the record) a pod's identity. */
export function podIdentity(pod: PodRecord, index: MetadataIndex, opts: LabelOptions): PodIdentity {
  const gen = index.identityGeneration;
  if (pod.identityGen === gen && pod.identity !== undefined) return pod.identity as PodIdentity;
  const w = workloadOf(pod, index);
  const l = pod.labels;
  const canonicalService = l['service.istio.io/canonical-name'] || l['app.kubernetes.io/name'] || l['app'] || w.name;
  const canonicalRevision = l['service.istio.io/canonical-revision'] || l['app.kubernetes.io/version'] || l['version'] || 'latest';
  const inMesh =
    !anyTerm(opts.mesh.podExclude, l) &&
    (anyTerm(opts.mesh.pod, l) || anyTerm(opts.mesh.namespace, index.namespaceLabels(pod.namespace)));
  const identity: PodIdentity = {
    workload: w.name,
    workloadKind: w.kind,
    canonicalService,
    canonicalRevision,
    inMesh,
    principal: inMesh ? `spiffe://${opts.trustDomain}/ns/${pod.namespace}/sa/${pod.serviceAccount}` : undefined,
  };
  pod.identity = identity;
  pod.identityGen = gen;
  return identity;
}

/** The peers of one connection, resolved. */
export interface ResolvedPeers {
  source: PodRecord | undefined;
  destination: PodRecord | undefined;
  service: ServiceRecord | undefined;
}

/**
 * Resolves both ends. The destination service is, in order: the service
 * whose cluster IP and port are the original (pre-DNAT) destination; the
 * service whose cluster IP and port are the destination (no DNAT seen);
 * else the first service (live first, then by name) selecting the
 * destination pod whose target port is the destination port.
 */
export function resolvePeers(
  index: MetadataIndex,
  srcAddr: string | undefined,
  dstAddr: string | undefined,
  dstPort: number,
  origAddr: string | undefined,
  origPort: number,
): ResolvedPeers {
  const source = srcAddr === undefined ? undefined : index.podByIp(srcAddr);
  const destination = dstAddr === undefined ? undefined : index.podByIp(dstAddr);
  let service: ServiceRecord | undefined;
  if (origAddr !== undefined && origPort > 0) service = index.serviceByClusterIp(origAddr, origPort);
  if (service === undefined && dstAddr !== undefined && destination === undefined && dstPort > 0) {
    service = index.serviceByClusterIp(dstAddr, dstPort);
  }
  if (service === undefined && destination !== undefined && dstPort > 0) service = index.serviceOfPodPort(destination, dstPort);
  return { source, destination, service };
}

function portOf(text: string | undefined): number {
  if (text === undefined) return 0;
  const n = Number(text);
  return Number.isInteger(n) && n > 0 && n < 65536 ? n : 0;
}

/** `name.namespace.svc.<cluster_domain>` */
export function serviceFqdn(s: ServiceRecord, opts: LabelOptions): string {
  return `${s.name}.${s.namespace}.svc.${opts.clusterDomain}`;
}

/**
 * Maps one metric point's attributes onto the Istio label set. Returns a new
 * attribute map: every label that can be known is set, unknown ones are
 * absent (the exporter's schema renders `-`/`unknown`), the raw address,
 * port and failure keys are removed, and any other attribute is kept.
 *
 * - `reporter`: `destination` for INBOUND, `source` for OUTBOUND;
 * - `request_protocol`: `tcp`;
 * - `response_flags`: `-`, or {@link RESPONSE_FLAG_BY_FAILURE} for a failed connect;
 * - source/destination identities from the pods at the addresses;
 * - `destination_pod_address`: the destination address only when it is a
 *   known pod (or with `unknown_peer: destination_address`);
 * - `*_principal` only for pods in the mesh;
 * - `connection_security_policy`: `mutual_tls` when both pods are known and
 *   in the mesh, `none` when both are known and one is not, absent when a
 *   pod is unknown.
 *
 * Uncached: the processor goes through {@link IstioAttributeCache}, which
 * returns equal maps.
 */
export function istioAttributes(
  attrs: Readonly<Record<string, string>>,
  index: MetadataIndex,
  opts: LabelOptions,
): Record<string, string> {
  const direction = attrs[RawAttr.direction];
  const srcAddr = attrs[RawAttr.sourceAddress];
  const dstAddr = attrs[RawAttr.destinationAddress];
  const dstPort = attrs[RawAttr.destinationPort];
  const origAddr = attrs[RawAttr.originalDestinationAddress];
  const origPort = attrs[RawAttr.originalDestinationPort];
  const failure = attrs[RawAttr.failureReason];
  if (onlyRawKeys(attrs, direction, srcAddr, dstAddr, dstPort, origAddr, origPort, failure)) {
    return labelBlock(direction, srcAddr, dstAddr, dstPort, origAddr, origPort, failure, index, opts);
  }
  return withExtraAttributes(attrs, labelBlock(direction, srcAddr, dstAddr, dstPort, origAddr, origPort, failure, index, opts));
}

/**
 * True when `attrs` holds nothing but the raw keys read (all defined), as
 * the receiver's points do: then the result is the label block alone. (Each
 * defined raw key is one enumerated key, so equal counts mean no other key.)
 */
export function onlyRawKeys(
  attrs: Readonly<Record<string, string>>,
  direction: string | undefined,
  srcAddr: string | undefined,
  dstAddr: string | undefined,
  dstPort: string | undefined,
  origAddr: string | undefined,
  origPort: string | undefined,
  failure: string | undefined,
): boolean {
  let n = 0;
  for (const _ in attrs) n++;
  const defined =
    (direction !== undefined ? 1 : 0) +
    (srcAddr !== undefined ? 1 : 0) +
    (dstAddr !== undefined ? 1 : 0) +
    (dstPort !== undefined ? 1 : 0) +
    (origAddr !== undefined ? 1 : 0) +
    (origPort !== undefined ? 1 : 0) +
    (failure !== undefined ? 1 : 0);
  return n === defined;
}

/**
 * The general case: the point's other attributes first (input order,
 * consumed keys dropped), then the block's labels (its `direction`, copied
 * from the same input, is already there).
 */
export function withExtraAttributes(attrs: Readonly<Record<string, string>>, block: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k in attrs) if (!CONSUMED_KEYS.has(k)) out[k] = attrs[k]!;
  for (const k in block) if (k !== RawAttr.direction) out[k] = block[k]!;
  return out;
}

/**
 * The label block of one raw key: exactly what {@link istioAttributes}
 * returns for a point carrying only these raw attributes (`direction` first,
 * then the labels in a fixed order). Written with named property stores, so
 * the object keeps fast properties: V8 turns an object into a slow
 * dictionary after ~16 properties added through computed (`o[k] = v`) keys,
 * which made every point's map slow to build and to read downstream.
 */
export function labelBlock(
  direction: string | undefined,
  srcAddr: string | undefined,
  dstAddr: string | undefined,
  dstPortText: string | undefined,
  origAddr: string | undefined,
  origPortText: string | undefined,
  failure: string | undefined,
  index: MetadataIndex,
  opts: LabelOptions,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (direction !== undefined) out.direction = direction;
  if (direction === 'INBOUND') out.reporter = 'destination';
  else if (direction === 'OUTBOUND') out.reporter = 'source';
  out.request_protocol = 'tcp';
  out.response_flags =
    failure === undefined ? '-' : (RESPONSE_FLAG_BY_FAILURE[failure as FailureReason] ?? RESPONSE_FLAG_BY_FAILURE.other);

  const peers = resolvePeers(index, srcAddr, dstAddr, portOf(dstPortText), origAddr, portOf(origPortText));

  let srcId: PodIdentity | undefined;
  if (peers.source !== undefined) {
    const p = peers.source;
    srcId = podIdentity(p, index, opts);
    out.source_workload = srcId.workload;
    out.source_workload_namespace = p.namespace;
    out.source_canonical_service = srcId.canonicalService;
    out.source_canonical_revision = srcId.canonicalRevision;
    out.source_app = srcId.canonicalService;
    out.source_version = srcId.canonicalRevision;
    if (srcId.principal !== undefined) out.source_principal = srcId.principal;
    out.source_cluster = opts.clusterName;
  }

  let dstId: PodIdentity | undefined;
  if (peers.destination !== undefined) {
    const p = peers.destination;
    dstId = podIdentity(p, index, opts);
    out.destination_pod_address = dstAddr!;
    out.destination_pod_namespace = p.namespace;
    out.destination_pod_name = p.name;
    out.destination_workload = dstId.workload;
    out.destination_workload_namespace = p.namespace;
    out.destination_canonical_service = dstId.canonicalService;
    out.destination_canonical_revision = dstId.canonicalRevision;
    out.destination_app = dstId.canonicalService;
    out.destination_version = dstId.canonicalRevision;
    if (dstId.principal !== undefined) out.destination_principal = dstId.principal;
    out.destination_cluster = opts.clusterName;
  } else if (opts.unknownPeer === 'destination_address' && dstAddr !== undefined && peers.service === undefined) {
    out.destination_pod_address = dstAddr;
  }

  if (peers.service !== undefined) {
    const s = peers.service;
    out.destination_service = serviceFqdn(s, opts);
    out.destination_service_namespace = s.namespace;
    out.destination_service_name = s.name;
    out.destination_cluster = opts.clusterName;
  }

  if (srcId !== undefined && dstId !== undefined) {
    out.connection_security_policy = srcId.inMesh && dstId.inMesh ? 'mutual_tls' : 'none';
  }
  return out;
}

/** Workload-kind attribute names (OpenTelemetry k8s semantic conventions). */
const K8S_WORKLOAD_ATTR: Readonly<Record<string, string>> = {
  Deployment: 'k8s.deployment.name',
  StatefulSet: 'k8s.statefulset.name',
  DaemonSet: 'k8s.daemonset.name',
  CronJob: 'k8s.cronjob.name',
  Job: 'k8s.job.name',
  ReplicaSet: 'k8s.replicaset.name',
};

function addK8sAttrs(out: Record<string, string>, prefix: string, pod: PodRecord, id: PodIdentity): void {
  out[`${prefix}k8s.pod.name`] = pod.name;
  if (pod.uid !== '') out[`${prefix}k8s.pod.uid`] = pod.uid;
  out[`${prefix}k8s.namespace.name`] = pod.namespace;
  if (pod.nodeName !== '') out[`${prefix}k8s.node.name`] = pod.nodeName;
  const wk = K8S_WORKLOAD_ATTR[id.workloadKind];
  if (wk !== undefined) out[prefix + wk] = id.workload;
  // The pod's direct owners below the workload.
  if (pod.owner?.kind === 'ReplicaSet' && id.workloadKind === 'Deployment') out[`${prefix}k8s.replicaset.name`] = pod.owner.name;
  if (pod.owner?.kind === 'Job' && id.workloadKind === 'CronJob') out[`${prefix}k8s.job.name`] = pod.owner.name;
}

/**
 * Identity attributes for one access-log record: the Kmesh line's fields
 * (`src.workload` and `dst.workload` are pod names, `dst.service` the
 * service FQDN) and OpenTelemetry `k8s.*` attributes of each side under
 * `source.` / `destination.` prefixes, plus `destination.k8s.service.name` /
 * `destination.k8s.service.namespace`. Returns a new map (the entry's
 * attributes, then these).
 */
export function logAttributes(
  event: ConnectionEvent,
  existing: Readonly<Record<string, string>>,
  index: MetadataIndex,
  opts: LabelOptions,
): Record<string, string> {
  const out: Record<string, string> = { ...existing };
  const peers = resolvePeers(
    index,
    event.srcAddr,
    event.dstAddr,
    event.dstPort,
    event.origDstAddr,
    event.origDstPort ?? 0,
  );
  if (peers.source !== undefined) {
    const p = peers.source;
    out[LogAttr.srcWorkload] = p.name;
    out[LogAttr.srcNamespace] = p.namespace;
    addK8sAttrs(out, 'source.', p, podIdentity(p, index, opts));
  }
  if (peers.destination !== undefined) {
    const p = peers.destination;
    out[LogAttr.dstWorkload] = p.name;
    out[LogAttr.dstNamespace] = p.namespace;
    addK8sAttrs(out, 'destination.', p, podIdentity(p, index, opts));
  }
  if (peers.service !== undefined) {
    const s = peers.service;
    out[LogAttr.dstService] = serviceFqdn(s, opts);
    out['destination.k8s.service.name'] = s.name;
    out['destination.k8s.service.namespace'] = s.namespace;
    if (peers.destination === undefined) out[LogAttr.dstNamespace] = s.namespace;
  }
  return out;
}
