/** Builders for Kubernetes objects in the shape the API server returns them. */
import type { KubeObject } from '../../helpers/fakeApiServer.js';

export interface PodSpec {
  ns?: string;
  name: string;
  ip?: string | string[];
  labels?: Record<string, string>;
  owner?: { kind: string; name: string };
  sa?: string;
  node?: string;
  hostNetwork?: boolean;
  phase?: string;
  /** Named container ports: name -> port. */
  ports?: Record<string, number>;
}

export function pod(s: PodSpec): KubeObject {
  const ips = s.ip === undefined ? [] : Array.isArray(s.ip) ? s.ip : [s.ip];
  const metadata: KubeObject['metadata'] = { name: s.name, namespace: s.ns ?? 'default', uid: `uid-${s.ns ?? 'default'}-${s.name}` };
  if (s.labels) metadata.labels = s.labels;
  if (s.owner) metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: s.owner.kind, name: s.owner.name, uid: 'o', controller: true }];
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata,
    spec: {
      nodeName: s.node ?? 'node-1',
      serviceAccountName: s.sa,
      hostNetwork: s.hostNetwork,
      containers: [
        {
          name: 'main',
          image: 'x',
          ports: Object.entries(s.ports ?? {}).map(([name, containerPort]) => ({ name, containerPort, protocol: 'TCP' })),
        },
      ],
    },
    status: {
      phase: s.phase ?? 'Running',
      podIP: ips[0],
      podIPs: ips.map((ip) => ({ ip })),
    },
  };
}

export interface ServiceSpec {
  ns?: string;
  name: string;
  clusterIP?: string | string[];
  selector?: Record<string, string>;
  ports?: Array<{ port: number; targetPort?: number | string; protocol?: string; name?: string }>;
}

export function service(s: ServiceSpec): KubeObject {
  const ips = s.clusterIP === undefined ? ['None'] : Array.isArray(s.clusterIP) ? s.clusterIP : [s.clusterIP];
  return {
    kind: 'Service',
    apiVersion: 'v1',
    metadata: { name: s.name, namespace: s.ns ?? 'default' },
    spec: {
      clusterIP: ips[0],
      clusterIPs: ips,
      selector: s.selector,
      ports: (s.ports ?? []).map((p, i) => ({ name: p.name ?? `p${i}`, protocol: p.protocol ?? 'TCP', port: p.port, targetPort: p.targetPort ?? p.port })),
    },
  };
}

export function namespace(name: string, labels?: Record<string, string>): KubeObject {
  const metadata: KubeObject['metadata'] = { name };
  if (labels) metadata.labels = labels;
  return { kind: 'Namespace', apiVersion: 'v1', metadata };
}

export function job(ns: string, name: string, cronJob?: string): KubeObject {
  const metadata: KubeObject['metadata'] = { name, namespace: ns };
  if (cronJob) metadata.ownerReferences = [{ apiVersion: 'batch/v1', kind: 'CronJob', name: cronJob, uid: 'c', controller: true }];
  return { kind: 'Job', apiVersion: 'batch/v1', metadata };
}

/** Polls `check` until it returns true or `timeoutMs` passes (then throws with `what`). */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
