/**
 * The pure mapping from a {@link FlowKey} (addresses, port, direction,
 * failure reason) to the Istio label set, given a {@link MetadataIndex}.
 * No I/O, no clock: table-tested directly. Label names come from the one
 * vocabulary, src/model/labels.ts.
 */
import type { ConnectionEvent, FailureReason } from '../../model/connection.js';
import type { FlowKey } from '../../model/flow.js';
import { REQUEST_PROTOCOL, reporterFor } from '../../model/labels.js';
import { LogAttr } from '../../model/logs.js';
import { RawAttr } from '../../model/metrics.js';
import type { K8sAttributesConfig, MeshConfig } from './config.js';
import type { MetadataIndex, PodRecord, ServiceRecord } from './MetadataIndex.js';

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

/** `name.namespace.svc.<cluster_domain>` */
export function serviceFqdn(s: ServiceRecord, opts: LabelOptions): string {
  return `${s.name}.${s.namespace}.svc.${opts.clusterDomain}`;
}

/**
 * Maps one flow onto the Istio label set. Returns a new attribute map:
 * every label that can be known is set, unknown ones are absent (the
 * exporter's schema renders `-`/`unknown`), and the flow's raw keys are
 * not carried over; `attrs`' other attributes (a point's attributes beside
 * its flow's, e.g. from another processor) are kept.
 *
 * - `reporter`: {@link reporterFor} the direction;
 * - `request_protocol`: {@link REQUEST_PROTOCOL};
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
  flow: FlowKey,
  index: MetadataIndex,
  opts: LabelOptions,
  attrs: Readonly<Record<string, string>> = flow.attributes,
): Record<string, string> {
  const block = labelBlock(flow, index, opts);
  return attrs === flow.attributes ? block : withExtraAttributes(attrs, block);
}

/**
 * The general case: the point's other attributes first (input order, the
 * flow's raw keys dropped), then the block's labels (its `direction` is
 * already there when the input had one).
 */
export function withExtraAttributes(attrs: Readonly<Record<string, string>>, block: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k in attrs) if (!CONSUMED_KEYS.has(k)) out[k] = attrs[k]!;
  for (const k in block) if (k !== RawAttr.direction || !(k in out)) out[k] = block[k]!;
  return out;
}

/**
 * The label block of one flow: exactly what {@link istioAttributes} returns
 * for a point carrying only the flow's attributes (`direction` first, then
 * the labels in a fixed order). Written with named property stores, so the
 * object keeps fast properties: V8 turns an object into a slow dictionary
 * after ~16 properties added through computed (`o[k] = v`) keys, which made
 * every point's map slow to build and to read downstream.
 */
export function labelBlock(flow: FlowKey, index: MetadataIndex, opts: LabelOptions): Record<string, string> {
  const { direction, srcAddr, dstAddr, failure } = flow;
  const out: Record<string, string> = {};
  out.direction = direction;
  out.reporter = reporterFor(direction);
  out.request_protocol = REQUEST_PROTOCOL;
  out.response_flags = failure === undefined ? '-' : (RESPONSE_FLAG_BY_FAILURE[failure] ?? RESPONSE_FLAG_BY_FAILURE.other);

  const peers = resolvePeers(index, srcAddr, dstAddr, flow.dstPort, flow.origDstAddr, flow.origDstPort ?? 0);

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
    out.destination_pod_address = dstAddr;
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
  } else if (opts.unknownPeer === 'destination_address' && peers.service === undefined) {
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
