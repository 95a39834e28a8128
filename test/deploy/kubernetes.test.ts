/**
 * deploy/kubernetes: every document parses and is a named Kubernetes object;
 * the DaemonSet has what the agent needs on a node (capabilities, host paths,
 * NODE_NAME, probes on the health_check endpoint, scrape annotations on the
 * Prometheus endpoint); the ClusterRole grants exactly what the
 * k8s_attributes processor watches; the ConfigMap's config passes the agent's
 * own validator.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, it } from 'node:test';
import { parse, parseAllDocuments } from 'yaml';
import {
  DAEMONSET_CAPABILITIES,
  EXPECTED_CAPABILITIES,
  hostPidOverlayDir,
  NETNS_MOUNT,
  runTool,
  EXPECTED_VERBS,
  EXPECTED_WATCHED_RESOURCES,
  kubernetesDir,
  portOf,
  readText,
  repoRoot,
  resourceKeys,
  validateConfigText,
  yamlFilesIn,
  type WatchedResource,
} from './expected.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Doc {
  file: string;
  obj: Obj;
}

/** Every document of every YAML file in deploy/kubernetes, parse errors collected. */
function loadDocuments(): { docs: Doc[]; errors: string[] } {
  const docs: Doc[] = [];
  const errors: string[] = [];
  for (const file of yamlFilesIn(kubernetesDir)) {
    for (const d of parseAllDocuments(readText(join(kubernetesDir, file)))) {
      for (const e of d.errors) errors.push(`${file}: ${e.message}`);
      const js = d.toJS() as unknown;
      if (js === null || js === undefined) continue; // empty document (trailing ---)
      docs.push({ file, obj: js as Obj });
    }
  }
  return { docs, errors };
}

const { docs, errors: parseErrors } = loadDocuments();
const byKind = (kind: string): Obj[] => docs.filter((d) => d.obj.kind === kind).map((d) => d.obj);
const one = (kind: string): Obj => {
  const found = byKind(kind);
  assert.equal(found.length, 1, `expected exactly one ${kind}, found ${found.length}`);
  return found[0]!;
};

const daemonSet = (): Obj => one('DaemonSet');
const podSpec = (): Obj => daemonSet().spec.template.spec;
const container = (): Obj => {
  const cs = podSpec().containers as Obj[];
  assert.equal(cs.length, 1, 'the DaemonSet runs one container');
  return cs[0]!;
};
/** The agent config embedded in the ConfigMap the DaemonSet mounts. */
const configMapConfig = (): { text: string; config: Obj } => {
  const cm = one('ConfigMap');
  const text = cm.data?.['config.yaml'];
  assert.equal(typeof text, 'string', 'the ConfigMap must have data["config.yaml"]');
  return { text, config: parse(text) as Obj };
};

/** Normalizes what a processor might export as WATCHED_RESOURCES. */
function normalizeWatched(value: unknown): WatchedResource[] {
  assert.ok(Array.isArray(value), 'WATCHED_RESOURCES must be an array');
  return value.map((v) => {
    if (typeof v === 'string') {
      const [a, b] = v.includes('/') ? v.split('/') : ['', v];
      return { apiGroup: a === 'core' ? '' : a!, resource: b! };
    }
    const o = v as Obj;
    const apiGroup = o.apiGroup ?? o.group ?? '';
    const resource = o.resource ?? o.plural ?? o.name;
    assert.equal(typeof resource, 'string', `cannot read a resource name from ${JSON.stringify(v)}`);
    return { apiGroup: apiGroup === 'core' ? '' : String(apiGroup), resource };
  });
}

/**
 * What the processor watches, from its source: an exported WATCHED_RESOURCES
 * constant if there is one, else the API paths it lists and watches
 * (`/api/v1/.../pods`, `/apis/batch/v1/.../jobs`).
 */
async function processorWatched(): Promise<{ how: string; list: WatchedResource[] } | undefined> {
  const dir = join(repoRoot, 'src', 'processor', 'k8s_attributes');
  if (!existsSync(dir)) return undefined;
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  for (const f of files) {
    if (/export\s+const\s+WATCHED_RESOURCES\b/.test(readText(join(dir, f)))) {
      const mod = (await import(pathToFileURL(join(dir, f)).href)) as { WATCHED_RESOURCES: unknown };
      return { how: `WATCHED_RESOURCES in src/processor/k8s_attributes/${f}`, list: normalizeWatched(mod.WATCHED_RESOURCES) };
    }
  }
  const list: WatchedResource[] = [];
  const segment = String.raw`(?:\$\{[^}]*\})?`; // an interpolated namespace part
  const core = new RegExp(String.raw`['\`]/api/v1${segment}/([a-z]+)['\`]`, 'g');
  const grouped = new RegExp(String.raw`['\`]/apis/([a-z0-9.-]+)/v[0-9a-z]+${segment}/([a-z]+)['\`]`, 'g');
  for (const f of files) {
    const text = readText(join(dir, f));
    for (const m of text.matchAll(core)) list.push({ apiGroup: '', resource: m[1]! });
    for (const m of text.matchAll(grouped)) list.push({ apiGroup: m[1]!, resource: m[2]! });
  }
  return { how: 'API paths in src/processor/k8s_attributes/*.ts', list };
}

describe('deploy/kubernetes manifests', () => {
  it('every YAML document parses and is a named Kubernetes object', () => {
    assert.deepEqual(parseErrors, []);
    assert.ok(docs.length >= 7, `expected at least 7 documents, found ${docs.length}`);
    for (const { file, obj } of docs) {
      assert.ok(typeof obj.apiVersion === 'string' && obj.apiVersion.length > 0, `${file}: apiVersion missing`);
      assert.ok(typeof obj.kind === 'string' && obj.kind.length > 0, `${file}: kind missing`);
      assert.ok(typeof obj.metadata?.name === 'string' && obj.metadata.name.length > 0, `${file} (${obj.kind}): metadata.name missing`);
    }
  });

  it('kustomization.yaml lists every other manifest, and only existing files', () => {
    const k = one('Kustomization');
    const listed = [...(k.resources as string[])].sort();
    const files = yamlFilesIn(kubernetesDir).filter((f) => f !== 'kustomization.yaml');
    assert.deepEqual(listed, files);
  });

  it('has one of each object, all namespaced ones in the agent\'s namespace', () => {
    const ns = one('Namespace').metadata.name as string;
    for (const kind of ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet']) one(kind);
    for (const { file, obj } of docs) {
      if (['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'Kustomization'].includes(obj.kind)) continue;
      assert.equal(obj.metadata.namespace, ns, `${file} (${obj.kind}) must be in namespace ${ns}`);
    }
    assert.equal(one('Namespace').metadata.labels?.['pod-security.kubernetes.io/enforce'], 'privileged');
  });

  it('binds the ClusterRole to the DaemonSet\'s ServiceAccount', () => {
    const sa = one('ServiceAccount').metadata;
    const crb = one('ClusterRoleBinding');
    assert.equal(podSpec().serviceAccountName, sa.name);
    assert.deepEqual(crb.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: one('ClusterRole').metadata.name });
    assert.deepEqual(crb.subjects, [{ kind: 'ServiceAccount', name: sa.name, namespace: sa.namespace }]);
  });
});

describe('ClusterRole', () => {
  /** resource key → verbs, from the rules. */
  const granted = (): Map<string, string[]> => {
    const out = new Map<string, string[]>();
    for (const rule of one('ClusterRole').rules as Obj[]) {
      assert.equal(rule.resourceNames, undefined, 'rules must not narrow by resourceNames');
      assert.equal(rule.nonResourceURLs, undefined, 'no non-resource URLs');
      for (const g of rule.apiGroups as string[]) {
        for (const r of rule.resources as string[]) {
          const key = resourceKeys([{ apiGroup: g, resource: r }])[0]!;
          assert.ok(!out.has(key), `${key} is granted twice`);
          out.set(key, [...(rule.verbs as string[])].sort());
        }
      }
    }
    return out;
  };

  it('grants exactly list/watch on exactly the expected resources', () => {
    const g = granted();
    assert.deepEqual([...g.keys()].sort(), resourceKeys(EXPECTED_WATCHED_RESOURCES));
    for (const [key, verbs] of g) assert.deepEqual(verbs, [...EXPECTED_VERBS].sort(), `verbs on ${key}`);
  });

  it('matches what the k8s_attributes processor watches', async (t) => {
    const found = await processorWatched();
    if (found === undefined) {
      t.diagnostic('src/processor/k8s_attributes does not exist yet: only the expected list was checked');
      return;
    }
    assert.ok(found.list.length > 0, `cannot tell what the processor watches (${found.how} found nothing): export WATCHED_RESOURCES from it`);
    t.diagnostic(`processor's resources from ${found.how}: ${resourceKeys(found.list).join(', ')}`);
    assert.deepEqual(resourceKeys(found.list), resourceKeys(EXPECTED_WATCHED_RESOURCES), 'update deploy/kubernetes/clusterrole.yaml and test/deploy/expected.ts');
    assert.deepEqual([...granted().keys()].sort(), resourceKeys(found.list));
  });
});

describe('DaemonSet', () => {
  it('runs on the host network (not its PID namespace) with cluster DNS, on every node', () => {
    const spec = podSpec();
    assert.equal(spec.hostNetwork, true);
    // hostPID only where the periodic-report source needs it (deploy/overlays/host-pid).
    assert.equal(spec.hostPID, undefined);
    assert.equal(spec.dnsPolicy, 'ClusterFirstWithHostNet');
    assert.ok(
      (spec.tolerations as Obj[] | undefined)?.some((t) => t.operator === 'Exists' && t.key === undefined && t.effect === undefined),
      'a toleration with operator Exists (no key, no effect) is needed to run on every node',
    );
    const labels = daemonSet().spec.template.metadata.labels as Obj;
    const selector = daemonSet().spec.selector.matchLabels as Obj;
    assert.ok(Object.keys(selector).length > 0, 'the selector needs labels');
    for (const [k, v] of Object.entries(selector)) assert.equal(labels[k], v, `pod template label ${k} must match the selector`);
  });

  it('hardening: critical priority, endpoints on the node IP only, OTLP over TLS with the CA from a Secret', () => {
    assert.equal(podSpec().priorityClassName, 'system-node-critical');
    const env = container().env as Obj[];
    assert.deepEqual(env.find((e) => e.name === 'NODE_IP')?.valueFrom, { fieldRef: { fieldPath: 'status.hostIP' } });
    const { config } = configMapConfig();
    assert.equal(config.exporters.prometheus.endpoint, '${env:NODE_IP}:15020', 'metrics on the node IP, not 0.0.0.0');
    assert.equal(config.extensions.health_check.endpoint, '${env:NODE_IP}:13133');
    const tls = config.exporters.otlp.tls as Obj;
    assert.notEqual(tls.insecure, true, 'no cleartext OTLP in the shipped manifests');
    const caFile = String(tls.ca_file);
    const mounts = container().volumeMounts as Obj[];
    const mount = mounts.find((m) => caFile.startsWith(`${String(m.mountPath)}/`));
    assert.ok(mount !== undefined, `tls.ca_file ${caFile} is on a mounted volume`);
    const volume = (podSpec().volumes as Obj[]).find((v) => v.name === mount.name);
    assert.equal(typeof volume?.secret?.secretName, 'string', 'the CA comes from a Secret');
    assert.equal(mount.readOnly, true);
  });

  it('adds exactly the expected capabilities, drops the rest, and is not privileged', () => {
    const sc = container().securityContext as Obj;
    assert.deepEqual([...(sc.capabilities.add as string[])].sort(), [...DAEMONSET_CAPABILITIES].sort());
    assert.deepEqual(sc.capabilities.drop, ['ALL']);
    assert.equal(sc.privileged, false);
    assert.equal(sc.runAsUser, 0, 'loading BPF needs uid 0 with the capabilities effective');
  });

  it('passes the agent identity through the downward API (POD_UID becomes service.instance.id)', () => {
    const env = container().env as Obj[];
    const fieldOf = (name: string): unknown => env.find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath;
    assert.equal(fieldOf('POD_UID'), 'metadata.uid');
    assert.equal(fieldOf('POD_NAME'), 'metadata.name');
    assert.equal(fieldOf('POD_NAMESPACE'), 'metadata.namespace');
    assert.equal(fieldOf('NODE_NAME'), 'spec.nodeName');
  });

  it('sets NODE_NAME from spec.nodeName and uses it in the config', () => {
    const env = container().env as Obj[];
    const nodeName = env.find((e) => e.name === 'NODE_NAME');
    assert.deepEqual(nodeName?.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
    const { config } = configMapConfig();
    assert.equal(config.processors.k8s_attributes.node_name, '${env:NODE_NAME}');
    assert.equal(config.processors.k8s_attributes.auth_type, 'serviceAccount');
  });

  it('mounts the config, bpffs, the host cgroup root and kernel BTF, host paths read-only', () => {
    const mounts = new Map((container().volumeMounts as Obj[]).map((m) => [m.name, m]));
    const volumes = new Map((podSpec().volumes as Obj[]).map((v) => [v.name, v]));
    for (const name of mounts.keys()) assert.ok(volumes.has(name), `volumeMount ${name} has no volume`);
    const hostMount = (hostPath: string): Obj => {
      const vol = [...volumes.values()].find((v) => v.hostPath?.path === hostPath);
      assert.ok(vol !== undefined, `no hostPath volume for ${hostPath}`);
      const m = mounts.get(vol.name);
      assert.ok(m !== undefined, `hostPath ${hostPath} is not mounted`);
      assert.equal(m.readOnly, true, `${hostPath} must be mounted read-only`);
      return m;
    };
    assert.equal(hostMount('/sys/fs/bpf').mountPath, '/sys/fs/bpf');
    assert.equal(hostMount('/sys/kernel/btf').mountPath, '/sys/kernel/btf');
    // Per-namespace sources: the runtime's namespace bind mounts, new pods' included.
    const netns = hostMount('/var/run/netns');
    assert.equal(netns.mountPath, NETNS_MOUNT);
    assert.equal(netns.mountPropagation, 'HostToContainer', 'pods started after the agent must show up');
    const cgroup = hostMount('/sys/fs/cgroup');
    assert.notEqual(cgroup.mountPath, '/sys/fs/cgroup', 'mount the node\'s cgroup root away from the container\'s own /sys/fs/cgroup');
    // The receiver attaches where the host's cgroup root is mounted.
    const env = container().env as Obj[];
    assert.equal(env.find((e) => e.name === 'KMESH_OTEL_CGROUP_PATH')?.value, cgroup.mountPath);
    assert.match(String(configMapConfig().config.receivers.ebpf.cgroup_path), /\$\{env:KMESH_OTEL_CGROUP_PATH/);
    // The config file the args name is the ConfigMap's.
    const args = container().args as string[];
    const configPath = args[args.indexOf('--config') + 1]!;
    const configVol = [...volumes.values()].find((v) => v.configMap?.name === one('ConfigMap').metadata.name);
    assert.ok(configVol !== undefined, 'the ConfigMap is not a volume');
    assert.equal(`${mounts.get(configVol.name)?.mountPath}/config.yaml`, configPath);
  });

  it('probes readiness and liveness on the health_check endpoint', () => {
    const hc = configMapConfig().config.extensions.health_check as Obj;
    assert.ok(configMapConfig().config.service.extensions.includes('health_check'), 'health_check must be enabled in service.extensions');
    const port = portOf(String(hc.endpoint));
    const path = hc.path ?? '/healthz';
    for (const probe of ['readinessProbe', 'livenessProbe']) {
      const p = container()[probe] as Obj | undefined;
      assert.ok(p !== undefined, `${probe} missing`);
      assert.deepEqual({ path: p.httpGet?.path, port: p.httpGet?.port }, { path, port }, `${probe} must GET ${path} on ${port}`);
    }
  });

  it('carries Prometheus scrape annotations for the prometheus exporter endpoint', () => {
    const ann = daemonSet().spec.template.metadata.annotations as Obj;
    const port = portOf(String(configMapConfig().config.exporters.prometheus.endpoint));
    assert.equal(ann['prometheus.io/scrape'], 'true');
    assert.equal(ann['prometheus.io/port'], String(port));
    assert.equal(ann['prometheus.io/path'], '/metrics');
    assert.ok((container().ports as Obj[]).some((p) => p.containerPort === port), `containerPort ${port} must be declared`);
  });

  it('has resource requests and limits', () => {
    const r = container().resources as Obj;
    for (const k of ['cpu', 'memory']) {
      assert.ok(r.requests?.[k] !== undefined, `requests.${k} missing`);
      assert.ok(r.limits?.[k] !== undefined, `limits.${k} missing`);
    }
  });
});

describe('ConfigMap config', () => {
  /** The environment the DaemonSet gives the agent: plain values, NODE_NAME from the downward API. */
  const daemonSetEnv = (): Record<string, string> => {
    const out: Record<string, string> = { NODE_NAME: 'node-1' };
    for (const e of container().env as Obj[]) if (typeof e.value === 'string') out[e.name] = e.value;
    return out;
  };

  it('sends metrics to Prometheus and OTLP, logs to OTLP and debug', () => {
    const { config } = configMapConfig();
    assert.deepEqual([...config.service.pipelines.metrics.exporters].sort(), ['otlp', 'prometheus']);
    assert.deepEqual([...config.service.pipelines.logs.exporters].sort(), ['debug', 'otlp']);
    assert.match(String(config.exporters.otlp.endpoint), /\$\{env:KMESH_OTEL_OTLP_ENDPOINT/);
  });

  it('passes `kmesh-otel validate` with the DaemonSet\'s environment', () => {
    const r = validateConfigText(configMapConfig().text, daemonSetEnv());
    assert.equal(r.status, 0, `kmesh-otel validate failed:\n${r.stderr}${r.stdout}`);
  });

  it('would be rejected with a misspelt key (control)', () => {
    const text = configMapConfig().text.replace('auth_type:', 'auth_typo:');
    const r = validateConfigText(text, daemonSetEnv());
    assert.equal(r.status, 2, `expected exit 2:\n${r.stderr}${r.stdout}`);
    assert.match(r.stderr, /processors\.k8s_attributes\.auth_typo/);
  });
});

describe('deploy/overlays/host-pid', () => {
  // Rendered by kubectl's own kustomize, offline.
  const render = (dir: string): Obj[] => {
    const r = runTool('kubectl', ['kustomize', dir]);
    assert.equal(r.status, 0, `kubectl kustomize ${dir} failed:\n${r.stderr}`);
    return parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
  };

  it('adds hostPID and SYS_PTRACE to the DaemonSet and changes nothing else', () => {
    const base = render(kubernetesDir);
    const overlay = render(hostPidOverlayDir);
    assert.equal(overlay.length, base.length);
    const ds = (docs: Obj[]): Obj => docs.find((d) => d.kind === 'DaemonSet')!;
    const spec = ds(overlay).spec.template.spec as Obj;
    assert.equal(spec.hostPID, true);
    assert.deepEqual([...(spec.containers[0].securityContext.capabilities.add as string[])].sort(), [...EXPECTED_CAPABILITIES].sort());
    // The rest is the base: undo the two additions and compare.
    delete spec.hostPID;
    spec.containers[0].securityContext.capabilities.add = (spec.containers[0].securityContext.capabilities.add as string[]).filter((c) => c !== 'SYS_PTRACE');
    assert.deepEqual(overlay, base);
  });

  it('the base renders without hostPID (control for the overlay test)', () => {
    const ds = render(kubernetesDir).find((d) => d.kind === 'DaemonSet')!;
    assert.equal(ds.spec.template.spec.hostPID, undefined);
  });
});
