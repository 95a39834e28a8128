/**
 * What the deployment artefacts must agree on, kept in one place for the
 * tests under test/deploy, plus the helpers they share.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const composeFile = join(repoRoot, 'docker-compose.yml');
export const composeDir = join(repoRoot, 'deploy', 'compose');
export const kubernetesDir = join(repoRoot, 'deploy', 'kubernetes');
export const hostPidOverlayDir = join(repoRoot, 'deploy', 'overlays', 'host-pid');

/**
 * Linux capabilities the agent gets, in the compose file (`cap_add`) and the
 * DaemonSet (`securityContext.capabilities.add`), without the `CAP_` prefix:
 * BPF (maps, BTF, program load), PERFMON (the iterator programs are tracing
 * programs), NET_ADMIN (the sockops networking program), SYS_RESOURCE
 * (RLIMIT_MEMLOCK before Linux 5.11), and for the per-namespace
 * periodic-report sources (tcp_iter, sock_diag: kernels that refuse
 * sk_storage_iter) SYS_ADMIN (setns) and SYS_PTRACE (other processes'
 * /proc/<pid>/ns/net). Attaching sockops to a cgroup checks no capability.
 */
export const EXPECTED_CAPABILITIES: readonly string[] = ['BPF', 'PERFMON', 'NET_ADMIN', 'SYS_RESOURCE', 'SYS_ADMIN', 'SYS_PTRACE'];

/**
 * The DaemonSet's by default: no SYS_PTRACE, since it has no hostPID (pod
 * namespaces come from /run/netns); deploy/overlays/host-pid adds both.
 */
export const DAEMONSET_CAPABILITIES: readonly string[] = EXPECTED_CAPABILITIES.filter((c) => c !== 'SYS_PTRACE');

/** Where the per-namespace sources find bind-mounted namespaces in the container (receivers.ebpf.netns_dirs default). */
export const NETNS_MOUNT = '/run/netns';

/** One API resource the k8s_attributes processor lists and watches. */
export interface WatchedResource {
  /** API group; `""` is the core group. */
  readonly apiGroup: string;
  /** Plural resource name, as in RBAC rules. */
  readonly resource: string;
}

/**
 * What the k8s_attributes processor watches (src/processor/k8s_attributes/
 * KubeWatcher.ts): the ClusterRole must grant exactly these. The kubernetes
 * test also derives the list from the processor's source and fails when the
 * two diverge; once the processor exports it as `WATCHED_RESOURCES`, the test
 * reads that constant instead of scanning the source.
 */
export const EXPECTED_WATCHED_RESOURCES: readonly WatchedResource[] = [
  { apiGroup: '', resource: 'pods' },
  { apiGroup: '', resource: 'services' },
  { apiGroup: '', resource: 'namespaces' },
  { apiGroup: 'batch', resource: 'jobs' },
];

/** Verbs the ClusterRole grants on each watched resource. */
export const EXPECTED_VERBS: readonly string[] = ['list', 'watch'];

/** `a/b` keys of watched resources, sorted, for set comparisons with readable diffs. */
export function resourceKeys(list: readonly WatchedResource[]): string[] {
  return [...new Set(list.map((r) => `${r.apiGroup === '' ? 'core' : r.apiGroup}/${r.resource}`))].sort();
}

/** Runs a command; a missing binary is reported as a failure that says how to get it. */
export function runTool(cmd: string, args: readonly string[], opts: { cwd?: string } = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, { cwd: opts.cwd ?? repoRoot, encoding: 'utf8', timeout: 60_000 });
  if (r.error !== undefined) {
    throw new Error(`${cmd} could not be run (${r.error.message}); scripts/setup.sh installs it (Debian: docker-compose, prometheus)`);
  }
  return r;
}

/**
 * `kmesh-otel validate --config <file>` through the real CLI (TypeScript via
 * tsx), with exactly the environment given (plus PATH), as a DaemonSet or the
 * compose service would see it.
 */
export function validateConfigText(configText: string, env: Record<string, string>): SpawnSyncReturns<string> {
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-deploy-'));
  try {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, configText);
    return spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts', 'validate', '--config', file], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 60_000,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}

export function yamlFilesIn(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.yaml') || n.endsWith('.yml'))
    .sort();
}

/** host:port → port number. */
export function portOf(endpoint: string): number {
  const m = /:(\d+)$/.exec(endpoint);
  if (m === null) throw new Error(`no port in endpoint "${endpoint}"`);
  return Number(m[1]);
}

let selfMetricNames: Set<string> | undefined;

/**
 * Whether `series` (e.g. `kmesh_otel_exporter_dropped_log_records_total`)
 * is a self-metric the agent defines: its name without `kmesh_otel_` and
 * the Prometheus suffixes (`_total`, `_bucket`, `_sum`, `_count`) appears as
 * a string literal in src/ (every self-metric is created as
 * `telemetry.counter('<name>', ...)`, `gauge(...)` or `histogram(...)`).
 */
export function isSelfMetric(series: string): boolean {
  if (selfMetricNames === undefined) {
    const names = new Set<string>();
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/'([a-z][a-z0-9_]*)'/g)) names.add(m[1]!);
      }
    };
    walk(join(repoRoot, 'src'));
    selfMetricNames = names;
  }
  if (!series.startsWith('kmesh_otel_')) return false;
  const base = series.slice('kmesh_otel_'.length);
  return selfMetricNames.has(base) || selfMetricNames.has(base.replace(/_(total|bucket|sum|count)$/, ''));
}
