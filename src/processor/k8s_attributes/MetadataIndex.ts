import type { JobMeta, NamespaceMeta, PodMeta, ServiceMeta } from './objects.js';

/** A pod as the index holds it. */
export interface PodRecord extends PodMeta {
  /** When the pod was deleted or terminated (ms since epoch); undefined while it lives. */
  retiredAt: number | undefined;
  /** Insertion order, newest highest: breaks ties between pods claiming one IP. */
  seq: number;
  /** Services selecting this pod (cache, valid while `servicesGen` equals the index's). */
  services: ServiceRecord[];
  servicesGen: number;
  /** Derived identity (cache, valid while `identityGen` equals the index's). */
  identity: unknown;
  identityGen: number;
}

export interface ServiceRecord extends ServiceMeta {
  retiredAt: number | undefined;
  seq: number;
}

interface NamespaceRecord extends NamespaceMeta {
  retiredAt: number | undefined;
}

const NO_SERVICES: ServiceRecord[] = [];

function key(namespace: string, name: string): string {
  return namespace + '/' + name;
}

/** Live first, then not terminated, then newest. */
function podRank(a: PodRecord, b: PodRecord): number {
  const ra = a.retiredAt === undefined ? 0 : 1;
  const rb = b.retiredAt === undefined ? 0 : 1;
  return ra - rb || b.seq - a.seq;
}

function serviceRank(a: ServiceRecord, b: ServiceRecord): number {
  const ra = a.retiredAt === undefined ? 0 : 1;
  const rb = b.retiredAt === undefined ? 0 : 1;
  return ra - rb || b.seq - a.seq;
}

/** Deterministic order of the services selecting one pod: live first, then by name. */
function serviceNameOrder(a: ServiceRecord, b: ServiceRecord): number {
  const ra = a.retiredAt === undefined ? 0 : 1;
  const rb = b.retiredAt === undefined ? 0 : 1;
  if (ra !== rb) return ra - rb;
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function sameLabels(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  if (a === b) return true;
  let n = 0;
  for (const k in a) {
    if (a[k] !== b[k]) return false;
    n++;
  }
  for (const _ in b) n--;
  return n === 0;
}

function sameStrings(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function samePorts(a: ReadonlyMap<string, number>, b: ReadonlyMap<string, number>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/**
 * True when upserting `meta` over `old` would change nothing the index
 * answers with: every kept field is equal and the record would keep its
 * retirement (a live pod stays live; a terminated one keeps its time; a
 * deleted pod coming back is a change).
 */
function samePod(old: PodRecord, meta: PodMeta): boolean {
  return (
    old.terminated === meta.terminated &&
    (meta.terminated || old.retiredAt === undefined) &&
    old.uid === meta.uid &&
    old.serviceAccount === meta.serviceAccount &&
    old.nodeName === meta.nodeName &&
    old.hostNetwork === meta.hostNetwork &&
    old.owner?.kind === meta.owner?.kind &&
    old.owner?.name === meta.owner?.name &&
    sameStrings(old.ips, meta.ips) &&
    samePorts(old.namedPorts, meta.namedPorts) &&
    sameLabels(old.labels, meta.labels)
  );
}

function selects(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const k in selector) if (labels[k] !== selector[k]) return false;
  return true;
}

/**
 * Pods, services, namespaces and jobs by the keys the processor looks them up
 * with: IP -> pod, (cluster IP, port) -> service, pod -> selecting services.
 * Fed by the Kubernetes watch (or directly by tests); read on every batch.
 *
 * A deleted (or terminated) object is *retired*, not removed: it keeps
 * resolving for the grace period, losing to any live object that claims the
 * same IP, until {@link sweep} drops it.
 */
export class MetadataIndex {
  private readonly pods = new Map<string, PodRecord>();
  /** IP -> every pod claiming it, best first (usually one). */
  private readonly podIpClaims = new Map<string, PodRecord[]>();
  /** IP -> best claimant, for the hot path. */
  private readonly podByIpMap = new Map<string, PodRecord>();
  private readonly services = new Map<string, ServiceRecord>();
  /** Cluster IP -> services claiming it, best first. */
  private readonly serviceIpClaims = new Map<string, ServiceRecord[]>();
  /** Namespace -> services with a selector (any order). */
  private readonly selectorServices = new Map<string, Set<ServiceRecord>>();
  private readonly namespaces = new Map<string, NamespaceRecord>();
  private readonly jobs = new Map<string, JobMeta>();
  private seq = 0;
  /** Bumped on any service change: invalidates pods' service lists. */
  private servicesGen = 1;
  /** Bumped on namespace or job changes: invalidates pods' derived identities. */
  private identityGen = 1;
  /** Bumped on every change that can alter a lookup's answer (see {@link version}). */
  private ver = 1;

  // --- pods -----------------------------------------------------------------

  upsertPod(meta: PodMeta, now: number): void {
    const k = key(meta.namespace, meta.name);
    const old = this.pods.get(k);
    // Most pod updates are status churn (conditions, container states) that
    // change none of the fields kept: keep the record, answers and caches.
    if (old !== undefined && samePod(old, meta)) return;
    this.ver++;
    if (old !== undefined) this.unclaimPodIps(old);
    // Every field assigned in one fixed order: one hidden class for all records (hot path).
    const rec: PodRecord = {
      namespace: meta.namespace,
      name: meta.name,
      uid: meta.uid,
      labels: meta.labels,
      owner: meta.owner,
      serviceAccount: meta.serviceAccount,
      nodeName: meta.nodeName,
      hostNetwork: meta.hostNetwork,
      ips: meta.ips,
      namedPorts: meta.namedPorts,
      terminated: meta.terminated,
      retiredAt: meta.terminated ? (old?.retiredAt ?? now) : undefined,
      seq: old !== undefined && old.uid === meta.uid ? old.seq : ++this.seq,
      services: NO_SERVICES,
      servicesGen: 0,
      identity: undefined,
      identityGen: 0,
    };
    this.pods.set(k, rec);
    this.claimPodIps(rec);
  }

  /** Retires a deleted pod: it keeps resolving until swept. */
  deletePod(namespace: string, name: string, now: number): void {
    const rec = this.pods.get(key(namespace, name));
    if (rec === undefined || rec.retiredAt !== undefined) return;
    rec.retiredAt = now;
    this.ver++;
    for (const ip of rec.ips) this.rankPodIp(ip);
  }

  podByIp(ip: string): PodRecord | undefined {
    return this.podByIpMap.get(ip);
  }

  pod(namespace: string, name: string): PodRecord | undefined {
    return this.pods.get(key(namespace, name));
  }

  private claimPodIps(rec: PodRecord): void {
    for (const ip of rec.ips) {
      let claims = this.podIpClaims.get(ip);
      if (claims === undefined) {
        claims = [];
        this.podIpClaims.set(ip, claims);
      }
      claims.push(rec);
      this.rankPodIp(ip);
    }
  }

  private unclaimPodIps(rec: PodRecord): void {
    for (const ip of rec.ips) {
      const claims = this.podIpClaims.get(ip);
      if (claims === undefined) continue;
      const i = claims.indexOf(rec);
      if (i >= 0) claims.splice(i, 1);
      if (claims.length === 0) {
        this.podIpClaims.delete(ip);
        this.podByIpMap.delete(ip);
      } else this.rankPodIp(ip);
    }
  }

  private rankPodIp(ip: string): void {
    const claims = this.podIpClaims.get(ip);
    if (claims === undefined || claims.length === 0) return;
    if (claims.length > 1) claims.sort(podRank);
    this.podByIpMap.set(ip, claims[0]!);
  }

  // --- services -------------------------------------------------------------

  upsertService(meta: ServiceMeta): void {
    const k = key(meta.namespace, meta.name);
    const old = this.services.get(k);
    if (old !== undefined) this.unlinkService(old);
    const rec: ServiceRecord = {
      namespace: meta.namespace,
      name: meta.name,
      clusterIPs: meta.clusterIPs,
      selector: meta.selector,
      ports: meta.ports,
      retiredAt: undefined,
      seq: ++this.seq,
    };
    this.services.set(k, rec);
    this.linkService(rec);
    this.servicesGen++;
    this.ver++;
  }

  deleteService(namespace: string, name: string, now: number): void {
    const rec = this.services.get(key(namespace, name));
    if (rec === undefined || rec.retiredAt !== undefined) return;
    rec.retiredAt = now;
    for (const ip of rec.clusterIPs) this.serviceIpClaims.get(ip)?.sort(serviceRank);
    this.servicesGen++;
    this.ver++;
  }

  /** The service whose cluster IP and port are (ip, port). */
  serviceByClusterIp(ip: string, port: number): ServiceRecord | undefined {
    const claims = this.serviceIpClaims.get(ip);
    if (claims === undefined) return undefined;
    for (const s of claims) for (const p of s.ports) if (p.port === port) return s;
    return undefined;
  }

  /** True when `ip` is some service's cluster IP (whatever the port). */
  isClusterIp(ip: string): boolean {
    return this.serviceIpClaims.has(ip);
  }

  /** Services whose selector matches the pod (same namespace): live first, then by name. */
  servicesOf(pod: PodRecord): ServiceRecord[] {
    if (pod.servicesGen === this.servicesGen) return pod.services;
    const out: ServiceRecord[] = [];
    const candidates = this.selectorServices.get(pod.namespace);
    if (candidates !== undefined) {
      for (const s of candidates) if (s.selector !== undefined && selects(s.selector, pod.labels)) out.push(s);
    }
    out.sort(serviceNameOrder);
    pod.services = out;
    pod.servicesGen = this.servicesGen;
    return out;
  }

  /**
   * The first service (in {@link servicesOf} order) selecting `pod` whose
   * target port — a number, or a name resolved through the pod's container
   * ports — is `port`.
   */
  serviceOfPodPort(pod: PodRecord, port: number): ServiceRecord | undefined {
    for (const s of this.servicesOf(pod)) {
      for (const p of s.ports) {
        const t = p.targetPort;
        if (typeof t === 'number' ? t === port : pod.namedPorts.get(t) === port) return s;
      }
    }
    return undefined;
  }

  service(namespace: string, name: string): ServiceRecord | undefined {
    return this.services.get(key(namespace, name));
  }

  private linkService(rec: ServiceRecord): void {
    for (const ip of rec.clusterIPs) {
      let claims = this.serviceIpClaims.get(ip);
      if (claims === undefined) {
        claims = [];
        this.serviceIpClaims.set(ip, claims);
      }
      claims.push(rec);
      claims.sort(serviceRank);
    }
    if (rec.selector !== undefined) {
      let set = this.selectorServices.get(rec.namespace);
      if (set === undefined) {
        set = new Set();
        this.selectorServices.set(rec.namespace, set);
      }
      set.add(rec);
    }
  }

  private unlinkService(rec: ServiceRecord): void {
    for (const ip of rec.clusterIPs) {
      const claims = this.serviceIpClaims.get(ip);
      if (claims === undefined) continue;
      const i = claims.indexOf(rec);
      if (i >= 0) claims.splice(i, 1);
      if (claims.length === 0) this.serviceIpClaims.delete(ip);
    }
    const set = this.selectorServices.get(rec.namespace);
    if (set !== undefined) {
      set.delete(rec);
      if (set.size === 0) this.selectorServices.delete(rec.namespace);
    }
  }

  // --- namespaces and jobs --------------------------------------------------

  upsertNamespace(meta: NamespaceMeta): void {
    this.namespaces.set(meta.name, { ...meta, retiredAt: undefined });
    this.identityGen++;
    this.ver++;
  }

  deleteNamespace(name: string, now: number): void {
    const rec = this.namespaces.get(name);
    if (rec !== undefined && rec.retiredAt === undefined) {
      rec.retiredAt = now;
      this.ver++;
    }
  }

  namespaceLabels(name: string): Readonly<Record<string, string>> | undefined {
    return this.namespaces.get(name)?.labels;
  }

  upsertJob(meta: JobMeta): void {
    const k = key(meta.namespace, meta.name);
    const old = this.jobs.get(k);
    this.jobs.set(k, meta);
    if (old?.cronJob !== meta.cronJob) {
      this.identityGen++;
      this.ver++;
    }
  }

  /** Jobs carry nothing once gone: their pods are deleted with them (and keep their cached identity). */
  deleteJob(namespace: string, name: string): void {
    if (this.jobs.delete(key(namespace, name))) this.ver++;
  }

  /** The CronJob owning a Job, if known. */
  cronJobOf(namespace: string, jobName: string): string | undefined {
    return this.jobs.get(key(namespace, jobName))?.cronJob;
  }

  /** The generation a cached pod identity must carry to be valid. */
  get identityGeneration(): number {
    return this.identityGen;
  }

  /**
   * Moves on every change that can alter an answer: any pod, service,
   * namespace or job added, changed, deleted (retired) or swept. A pod
   * update whose kept fields are all unchanged (status churn) is not a
   * change, nor is a Job update that keeps its CronJob. Answers derived
   * from the index may be memoised while this stays the same.
   */
  get version(): number {
    return this.ver;
  }

  // --- housekeeping ---------------------------------------------------------

  /** Drops objects retired at or before `now - graceMs`. Returns how many were dropped. */
  sweep(now: number, graceMs: number): number {
    const limit = now - graceMs;
    let n = 0;
    for (const [k, rec] of this.pods) {
      if (rec.retiredAt !== undefined && rec.retiredAt <= limit) {
        this.pods.delete(k);
        this.unclaimPodIps(rec);
        n++;
      }
    }
    let servicesChanged = false;
    for (const [k, rec] of this.services) {
      if (rec.retiredAt !== undefined && rec.retiredAt <= limit) {
        this.services.delete(k);
        this.unlinkService(rec);
        servicesChanged = true;
        n++;
      }
    }
    if (servicesChanged) this.servicesGen++;
    for (const [k, rec] of this.namespaces) {
      if (rec.retiredAt !== undefined && rec.retiredAt <= limit) {
        this.namespaces.delete(k);
        n++;
      }
    }
    if (n > 0) this.ver++;
    return n;
  }

  /** Object counts (retired included), for the agent's own metrics. */
  sizes(): { pods: number; services: number; namespaces: number; jobs: number; pod_ips: number } {
    return {
      pods: this.pods.size,
      services: this.services.size,
      namespaces: this.namespaces.size,
      jobs: this.jobs.size,
      pod_ips: this.podByIpMap.size,
    };
  }
}
