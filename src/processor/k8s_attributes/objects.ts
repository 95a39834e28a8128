/**
 * The few fields of Kubernetes objects the processor uses, cut out of API
 * objects as soon as they arrive, so memory is proportional to what is kept
 * (a pod is labels + a handful of strings, not its whole spec and status).
 */
import type { V1Job, V1Namespace, V1Pod, V1Service } from '@kubernetes/client-node';

/** The controlling owner reference of an object. */
export interface OwnerRef {
  kind: string;
  name: string;
}

export interface PodMeta {
  namespace: string;
  name: string;
  uid: string;
  labels: Readonly<Record<string, string>>;
  /** The `controller: true` owner reference (else the first), if any. */
  owner: OwnerRef | undefined;
  /** `spec.serviceAccountName`, `default` when unset (as the API server defaults it). */
  serviceAccount: string;
  nodeName: string;
  hostNetwork: boolean;
  /** `status.podIPs` (else `status.podIP`), IPv6 in RFC 5952 form. Empty for host-network pods. */
  ips: string[];
  /** Named container ports (TCP): name -> port, for services' named target ports. */
  namedPorts: ReadonlyMap<string, number>;
  /** Phase Succeeded or Failed: the pod no longer owns its IPs. */
  terminated: boolean;
}

export interface ServicePortMeta {
  port: number;
  /** A port number or a container port name; `spec.ports[].targetPort`, defaulting to `port`. */
  targetPort: number | string;
}

export interface ServiceMeta {
  namespace: string;
  name: string;
  /** `spec.clusterIPs` (else `spec.clusterIP`), without `None`. */
  clusterIPs: string[];
  /** `spec.selector`; undefined when the service has none (then no pod maps to it by selector). */
  selector: Readonly<Record<string, string>> | undefined;
  /** TCP ports only. */
  ports: ServicePortMeta[];
}

export interface NamespaceMeta {
  name: string;
  labels: Readonly<Record<string, string>>;
}

export interface JobMeta {
  namespace: string;
  name: string;
  /** Name of the owning CronJob, if any. */
  cronJob: string | undefined;
}

/** Loose shape of the API objects' metadata (typed list results and raw watch JSON share it). */
interface MetaLike {
  name?: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  ownerReferences?: Array<{ kind?: string; name?: string; controller?: boolean }>;
}

const EMPTY_LABELS: Readonly<Record<string, string>> = Object.freeze({});
const NO_PORTS: ReadonlyMap<string, number> = new Map();

function labelsOf(meta: MetaLike | undefined): Readonly<Record<string, string>> {
  const l = meta?.labels;
  if (l === undefined || l === null) return EMPTY_LABELS;
  const out: Record<string, string> = {};
  for (const k of Object.keys(l)) out[k] = String(l[k]);
  return out;
}

function controllerOf(meta: MetaLike | undefined): OwnerRef | undefined {
  const refs = meta?.ownerReferences;
  if (!Array.isArray(refs) || refs.length === 0) return undefined;
  const ref = refs.find((r) => r.controller === true) ?? refs[0]!;
  if (typeof ref.kind !== 'string' || typeof ref.name !== 'string') return undefined;
  return { kind: ref.kind, name: ref.name };
}

/**
 * Canonical text of an IP address: IPv6 in RFC 5952 form (lower case,
 * longest zero run compressed), as the receiver prints addresses; IPv4 as is.
 */
export function canonicalIp(ip: string): string {
  if (!ip.includes(':')) return ip;
  try {
    // The WHATWG URL serializer writes IPv6 hosts in RFC 5952 form.
    const host = new URL(`http://[${ip}]/`).hostname;
    return host.slice(1, -1);
  } catch {
    return ip.toLowerCase();
  }
}

export function podMeta(pod: V1Pod): PodMeta | undefined {
  const meta = pod.metadata as MetaLike | undefined;
  if (meta?.name === undefined || meta.namespace === undefined) return undefined;
  const hostNetwork = pod.spec?.hostNetwork === true;
  const ips: string[] = [];
  // A host-network pod reports the node's address as its own; it must not claim it.
  if (!hostNetwork) {
    for (const p of pod.status?.podIPs ?? []) if (p?.ip) ips.push(canonicalIp(p.ip));
    if (ips.length === 0 && pod.status?.podIP) ips.push(canonicalIp(pod.status.podIP));
  }
  let namedPorts: Map<string, number> | undefined;
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) {
      if (!p.name || (p.protocol !== undefined && p.protocol !== 'TCP')) continue;
      namedPorts ??= new Map();
      if (!namedPorts.has(p.name)) namedPorts.set(p.name, p.containerPort);
    }
  }
  const phase = pod.status?.phase;
  return {
    namespace: meta.namespace,
    name: meta.name,
    uid: meta.uid ?? '',
    labels: labelsOf(meta),
    owner: controllerOf(meta),
    serviceAccount: pod.spec?.serviceAccountName || 'default',
    nodeName: pod.spec?.nodeName ?? '',
    hostNetwork,
    ips,
    namedPorts: namedPorts ?? NO_PORTS,
    terminated: phase === 'Succeeded' || phase === 'Failed',
  };
}

export function serviceMeta(svc: V1Service): ServiceMeta | undefined {
  const meta = svc.metadata as MetaLike | undefined;
  if (meta?.name === undefined || meta.namespace === undefined) return undefined;
  const ips = new Set<string>();
  for (const ip of svc.spec?.clusterIPs ?? []) if (ip && ip !== 'None') ips.add(canonicalIp(ip));
  const single = svc.spec?.clusterIP;
  if (ips.size === 0 && single && single !== 'None') ips.add(canonicalIp(single));
  const ports: ServicePortMeta[] = [];
  for (const p of svc.spec?.ports ?? []) {
    if (p.protocol !== undefined && p.protocol !== 'TCP') continue;
    // targetPort is an IntOrString; typed lists may hand it over as a string of digits.
    const raw = p.targetPort as unknown;
    let targetPort: number | string = p.port;
    if (typeof raw === 'number') targetPort = raw;
    else if (typeof raw === 'string' && raw !== '') targetPort = /^\d+$/.test(raw) ? Number(raw) : raw;
    ports.push({ port: p.port, targetPort });
  }
  const sel = svc.spec?.selector;
  return {
    namespace: meta.namespace,
    name: meta.name,
    clusterIPs: [...ips],
    selector: sel === undefined || sel === null || Object.keys(sel).length === 0 ? undefined : { ...sel },
    ports,
  };
}

export function namespaceMeta(ns: V1Namespace): NamespaceMeta | undefined {
  const meta = ns.metadata as MetaLike | undefined;
  if (meta?.name === undefined) return undefined;
  return { name: meta.name, labels: labelsOf(meta) };
}

export function jobMeta(job: V1Job): JobMeta | undefined {
  const meta = job.metadata as MetaLike | undefined;
  if (meta?.name === undefined || meta.namespace === undefined) return undefined;
  const owner = controllerOf(meta);
  return { namespace: meta.namespace, name: meta.name, cronJob: owner?.kind === 'CronJob' ? owner.name : undefined };
}
