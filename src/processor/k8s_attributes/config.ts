import { z } from 'zod';
import { duration } from '../../config/types.js';

/** `key=value` (label equals value) or `key` (label present). */
const labelSelectorTerm = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*(=[A-Za-z0-9._-]*)?$/, 'must be "key=value" or "key" (a label key, optionally with a value)');

/** How a pod is recognised as a member of the mesh (and so given a SPIFFE principal). */
export const meshConfigSchema = z.strictObject({
  /**
   * Namespace labels that put every pod of the namespace in the mesh.
   * Default: `istio.io/dataplane-mode=ambient`, `istio.io/dataplane-mode=Kmesh`,
   * `istio-injection=enabled`.
   */
  namespace_labels: z
    .array(labelSelectorTerm)
    .default(['istio.io/dataplane-mode=ambient', 'istio.io/dataplane-mode=Kmesh', 'istio-injection=enabled']),
  /**
   * Pod labels that put the pod in the mesh whatever its namespace says.
   * Default: `security.istio.io/tlsMode=istio` (set by sidecar injection),
   * `istio.io/dataplane-mode=ambient`, `istio.io/dataplane-mode=Kmesh`.
   */
  pod_labels: z
    .array(labelSelectorTerm)
    .default(['security.istio.io/tlsMode=istio', 'istio.io/dataplane-mode=ambient', 'istio.io/dataplane-mode=Kmesh']),
  /**
   * Pod labels that take the pod out of the mesh (checked first).
   * Default: `istio.io/dataplane-mode=none` (Istio's per-pod ambient opt-out).
   */
  pod_exclude_labels: z.array(labelSelectorTerm).default(['istio.io/dataplane-mode=none']),
});

/**
 * Config of the `k8s_attributes` processor. This schema is the single source
 * of truth for keys, types and defaults; unknown keys are rejected.
 */
export const k8sAttributesConfigSchema = z.strictObject({
  /**
   * How to reach the Kubernetes API. Default `kubeConfig`.
   * - `kubeConfig`: like kubectl — the files in `KUBECONFIG`, else
   *   `~/.kube/config`, else the in-cluster service account;
   * - `serviceAccount`: the pod's service account only
   *   (`/var/run/secrets/kubernetes.io/serviceaccount`, `KUBERNETES_SERVICE_HOST`);
   * - `none`: no Kubernetes; identities stay unknown, `reporter`,
   *   `request_protocol` and `response_flags` are still set.
   */
  auth_type: z.enum(['serviceAccount', 'kubeConfig', 'none']).default('kubeConfig'),
  /** Value of `source_cluster` / `destination_cluster` for known peers. Default `Kubernetes`. */
  cluster_name: z.string().min(1).default('Kubernetes'),
  /** SPIFFE trust domain of principals, `spiffe://<trust_domain>/ns/<ns>/sa/<sa>`. Default `cluster.local`. */
  trust_domain: z.string().min(1).default('cluster.local'),
  /** DNS domain of the cluster, for `destination_service` (`<name>.<ns>.svc.<cluster_domain>`). Default `cluster.local`. */
  cluster_domain: z.string().min(1).default('cluster.local'),
  /**
   * Watch only the pods of this node (field selector `spec.nodeName`); write
   * `${env:NODE_NAME}` in a DaemonSet. Peers on other nodes then stay unknown
   * (services are still watched cluster-wide). Default `""`: all nodes.
   */
  node_name: z.string().default(''),
  /** Watch pods, services and jobs of these namespaces only. Default `[]`: all namespaces. */
  namespaces: z.array(z.string().min(1)).default([]),
  /**
   * What an unresolved peer (not a known pod or service) contributes. Default `omit`.
   * - `omit`: nothing — its identity labels are absent and its address
   *   never reaches a label (bounded cardinality);
   * - `destination_address`: an unknown destination keeps its IP in
   *   `destination_pod_address` (to see external servers; cardinality grows
   *   with the number of distinct destinations). Source addresses, mostly
   *   client addresses, are never rendered.
   */
  unknown_peer: z.enum(['omit', 'destination_address']).default('omit'),
  /**
   * How long a deleted (or terminated) pod's or service's identity keeps
   * resolving, so records about its last connections still get labels.
   * Default `60s`.
   */
  deleted_grace: duration.default(60_000),
  /** Hold start-up until the first list of every watched resource arrived. Default `false`. */
  wait_for_metadata: z.boolean().default(false),
  /** With `wait_for_metadata`, fail start-up when the lists take longer than this. Default `10s`. */
  wait_for_metadata_timeout: duration.default(10_000),
  /** Mesh membership rules (principals and `connection_security_policy`). */
  mesh: meshConfigSchema.prefault({}),
});

/** The parsed config (durations in milliseconds). */
export type K8sAttributesConfig = z.output<typeof k8sAttributesConfigSchema>;
export type MeshConfig = z.output<typeof meshConfigSchema>;

export function createDefaultConfig(): K8sAttributesConfig {
  return k8sAttributesConfigSchema.parse({});
}
