/**
 * A fake cluster whose pods live on loopback addresses: all of 127.0.0.0/8
 * is local on Linux, so a server can listen on 127.1.0.7 and a client bind
 * 127.1.3.9 without any network namespace, and every distinct (client IP,
 * server IP) pair is a distinct workload pair for k8s_attributes — a
 * distinct series. The pods are served by the in-repo fake API server
 * (test/helpers/fakeApiServer.ts) that the agent reads through KUBECONFIG.
 */
import { join } from 'node:path';
import { FakeApiServer, type KubeObject } from '../../test/helpers/fakeApiServer.js';
import type { BenchContext } from './types.js';

/**
 * The loopback address of pod `i` (0 <= i < 50,000): 127.<second>.x.y with y
 * in 1..200, so no address ends in .0 or .255 and the range stays clear of
 * 127.0.0.0/16 (127.0.0.1 carries the harness's own traffic).
 */
export function loopbackPodIp(i: number, second = 1): string {
  return `127.${second}.${Math.floor(i / 200)}.${(i % 200) + 1}`;
}

export interface PodSpec {
  name: string;
  namespace: string;
  ip: string;
  /** `app` label (the canonical service); default the pod name. */
  app?: string;
  /** Named container port (for a Service's named targetPort). */
  port?: number;
}

/** A Pod as the API returns it (no owner: its workload is its own name, its canonical service its `app` label). */
export function podObject(p: PodSpec): KubeObject {
  return {
    kind: 'Pod',
    apiVersion: 'v1',
    metadata: { name: p.name, namespace: p.namespace, labels: { app: p.app ?? p.name } },
    spec: {
      nodeName: 'bench-node',
      serviceAccountName: p.app ?? p.name,
      containers: [{ name: 'main', image: 'bench', ports: p.port === undefined ? [] : [{ name: 'tcp', containerPort: p.port, protocol: 'TCP' }] }],
    },
    status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }] },
  };
}

/** A ClusterIP Service selecting `app=<app>`, port 80 -> targetPort. */
export function serviceObject(name: string, namespace: string, clusterIP: string, app: string, targetPort: number): KubeObject {
  return {
    kind: 'Service',
    apiVersion: 'v1',
    metadata: { name, namespace },
    spec: {
      clusterIP,
      clusterIPs: [clusterIP],
      selector: { app },
      ports: [{ name: 'tcp', protocol: 'TCP', port: 80, targetPort }],
    },
  };
}

/** Starts a fake API server holding `objects`, stopped by the module cleanup; returns it and a kubeconfig path. */
export async function startFakeCluster(ctx: Pick<BenchContext, 'tmpDir' | 'onCleanup'>, objects: KubeObject[]): Promise<{ api: FakeApiServer; kubeconfig: string }> {
  const api = await FakeApiServer.start();
  ctx.onCleanup(() => api.stop());
  for (const o of objects) api.apply(o);
  return { api, kubeconfig: api.writeKubeconfig(join(ctx.tmpDir, 'kubeconfig')) };
}
