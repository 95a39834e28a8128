import { randomUUID } from 'node:crypto';
import type { AttributeValue } from '@opentelemetry/api';
import {
  detectResources,
  hostDetector,
  resourceAttributesEnvDetector,
  resourceFromAttributes,
  serviceNameEnvDetector,
  type Resource,
} from '@opentelemetry/resources';
import type { AgentConfig } from './config.js';

/** What {@link agentResource} builds the agent's identity from. */
export interface AgentResourceOptions {
  /**
   * Environment carrying the downward-API variables of the DaemonSet:
   * `POD_UID`, `POD_NAME`, `POD_NAMESPACE`, `NODE_NAME` (each optional).
   */
  env: NodeJS.ProcessEnv;
  /** `service.version`. */
  version: string;
  /** `k8s.cluster.name`, when known (the k8s_attributes processor's `cluster_name`). */
  clusterName?: string;
  /**
   * `service.telemetry.resource` of the config: set these attributes, as the
   * Collector does; a `null` value removes the attribute. Applied last.
   */
  configured?: Readonly<Record<string, string | null>>;
  /**
   * Host attributes (`host.name`, `host.arch`, `host.id` = the machine id).
   * Default: the SDK's hostDetector. Tests inject fixed values.
   */
  host?: () => Promise<Record<string, AttributeValue | undefined>>;
  /**
   * Attributes from `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`.
   * Default: the SDK's env detectors, which read the process environment.
   */
  otelEnv?: () => Record<string, AttributeValue | undefined>;
}

async function detectHost(): Promise<Record<string, AttributeValue | undefined>> {
  const r = detectResources({ detectors: [hostDetector] });
  // host.id (the machine id) is read from a file, asynchronously.
  await r.waitForAsyncAttributes?.();
  return { ...r.attributes };
}

function detectOtelEnv(): Record<string, AttributeValue | undefined> {
  // OTEL_SERVICE_NAME wins over a service.name in OTEL_RESOURCE_ATTRIBUTES
  // (OpenTelemetry SDK environment variable specification).
  return { ...detectResources({ detectors: [resourceAttributesEnvDetector, serviceNameEnvDetector] }).attributes };
}

/**
 * The resource every exporter reports: who is speaking. Backends that take
 * many agents tell them apart by it — the Collector's Prometheus exporter and
 * Prometheus' OTLP ingestion by `service.instance.id` (the `instance` label,
 * with `service.name` as `job`), Loki by the stream labels it makes of
 * resource attributes — so two nodes with equal label sets never overwrite
 * each other's counters or share one log stream.
 *
 * From lowest to highest precedence:
 * 1. the agent's own: `service.name` = `kmesh-otel`, `service.version`,
 *    `host.name`, `host.arch`, `host.id` (machine id), `service.instance.id`
 *    (the pod UID on Kubernetes — one per agent pod, kept across restarts of
 *    its container; else the machine id; else a random UUID per process),
 *    `k8s.pod.name`, `k8s.pod.uid`, `k8s.namespace.name`, `k8s.node.name`
 *    from the downward API, `k8s.cluster.name` when known;
 * 2. `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME`;
 * 3. `service.telemetry.resource` in the config (`null` removes).
 */
export async function agentResource(opts: AgentResourceOptions): Promise<Resource> {
  const env = opts.env;
  const host = await (opts.host ?? detectHost)();
  const nonEmpty = (v: string | undefined): string | undefined => (v !== undefined && v.trim() !== '' ? v.trim() : undefined);
  const podUid = nonEmpty(env.POD_UID);
  const hostId = typeof host['host.id'] === 'string' && host['host.id'] !== '' ? host['host.id'] : undefined;
  const attrs: Record<string, AttributeValue | undefined> = {
    'service.name': 'kmesh-otel',
    'service.version': opts.version,
    'service.instance.id': podUid ?? hostId ?? randomUUID(),
    ...host,
    'k8s.pod.name': nonEmpty(env.POD_NAME),
    'k8s.pod.uid': podUid,
    'k8s.namespace.name': nonEmpty(env.POD_NAMESPACE),
    'k8s.node.name': nonEmpty(env.NODE_NAME),
    'k8s.cluster.name': opts.clusterName,
    ...(opts.otelEnv ?? detectOtelEnv)(),
  };
  for (const [k, v] of Object.entries(opts.configured ?? {})) attrs[k] = v ?? undefined;
  const out: Record<string, AttributeValue> = {};
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined) out[k] = v;
  return resourceFromAttributes(out);
}

/**
 * `k8s.cluster.name` as the config knows it: the `cluster_name` of a
 * k8s_attributes processor that talks to a cluster (`auth_type` other than
 * `none`) and is used by a pipeline. Undefined otherwise — a name the agent
 * only defaults to would be made up.
 */
export function configuredClusterName(config: AgentConfig): string | undefined {
  const used = new Set(config.pipelines.flatMap((p) => p.processors));
  for (const [, c] of config.components) {
    if (c.kind !== 'processor' || c.factory.type !== 'k8s_attributes' || !used.has(c.id.toString())) continue;
    const pc = c.config as { auth_type?: string; cluster_name?: string };
    if (pc.auth_type !== 'none' && typeof pc.cluster_name === 'string') return pc.cluster_name;
  }
  return undefined;
}
