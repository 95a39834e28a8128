/**
 * Harness adapter for bench/k8s_index.ts (the k8s_attributes index at 10,000
 * pods and 5,000 services): runs it in a child with --expose-gc, so heap and
 * RSS of the index are measured in a process of its own, and turns its
 * per-run rates into figures.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { agentNodeFlags } from './lib/agent.js';
import { figure, median, type BenchContext, type Figure } from './lib/types.js';

export const title = 'k8s_attributes: enrichment with 10,000 pods and 5,000 services indexed';
export const budgetSeconds = 150;

interface K8sResult {
  results: Array<{ name: string; what: string; runs: number[] }>;
  index: { heapMB: number; rssMB: number };
}

export async function run(ctx: BenchContext): Promise<Figure[]> {
  // Run the compiled script (what the agent runs: no TypeScript loader in the
  // RSS figure), built now from the current source by tsconfig.bench.json into
  // dist-bench/, apart from what the package ships; from source under tsx only
  // if that build fails.
  const src = join(ctx.repoRoot, 'bench', 'k8s_index.ts');
  const built = join(ctx.repoRoot, 'dist-bench', 'bench', 'k8s_index.js');
  const tsc = spawnSync(process.execPath, [join(ctx.repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.bench.json'], {
    cwd: ctx.repoRoot,
    stdio: 'ignore',
  });
  const compiled = tsc.status === 0 && existsSync(built);
  // The agent's own Node flags (agentNodeFlags): the index's RSS as the agent, which carries it, runs.
  const flags = agentNodeFlags(ctx.repoRoot);
  const args = compiled ? [...flags, '--expose-gc', built] : [...flags, '--expose-gc', '--import', 'tsx', src];
  const loader = (compiled ? 'compiled (dist/)' : 'tsx loader included') + (flags.length ? `, the agent's ${flags.join(' ')}` : '');
  const r = spawnSync(process.execPath, args, {
    cwd: ctx.repoRoot,
    env: { ...process.env, BENCH_JSON: '1', REPS: ctx.quick ? '2' : '5' },
    encoding: 'utf8',
    timeout: (budgetSeconds - 10) * 1000,
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('JSON '));
  if (r.status !== 0 || line === undefined) throw new Error(`bench/k8s_index.ts failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const data = JSON.parse(line.slice(5)) as K8sResult;
  const runsOf = (name: string): number[] => data.results.find((x) => x.name.startsWith(name))?.runs ?? [];
  const scope = '10,000 pods, 5,000 services, one core';
  return [
    figure({
      id: 'k8s.pod_by_ip',
      title: 'IP -> pod lookups',
      unit: 'lookups/s',
      runs: runsOf('podByIp'),
      target: '>= 2M lookups/s',
      check: (f) => f.median >= 2e6,
      notes: `${scope}; 1 in 8 addresses unknown.`,
    }),
    figure({
      id: 'k8s.istio_cached',
      title: 'Istio label set per point, memoised (IstioAttributeCache.entry, warm: the lookup processMetrics does)',
      unit: 'points/s',
      runs: runsOf('IstioAttributeCache.entry'),
      comparison: { title: 'istioAttributes uncached (every point a cache miss)', runs: runsOf('istioAttributes') },
      target: '>= 2M lookups/s',
      check: (f) => f.median >= 2e6,
      notes:
        `${scope}; 4,096 distinct raw keys. The shared label block, as processMetrics uses it; ` +
        `attributes(), which returns a private copy of the 23 labels, runs at ` +
        `${(median(runsOf('IstioAttributeCache.attributes')) / 1e6).toFixed(2)}M points/s.`,
    }),
    figure({
      id: 'k8s.process_metrics',
      title: 'processMetrics full path (map + copy + re-aggregate), warm cache',
      unit: 'points/s',
      runs: runsOf('processMetrics, full path, warm'),
      comparison: { title: 'cache dropped before every batch (a pod changed)', runs: runsOf('processMetrics, full path, cache dropped') },
      notes: `${scope}; 4,096-point batches. Points are aggregated flows per flush, not records: a flush carries one point per distinct flow.`,
    }),
    figure({
      id: 'k8s.index_rss',
      title: `Process RSS with the index built (child process, --expose-gc, ${loader})`,
      unit: 'MB',
      runs: [data.index.rssMB],
      target: '< 100 MB',
      check: (f) => f.max < 100,
      notes: `Heap held by the index itself: ${data.index.heapMB.toFixed(1)} MB.`,
    }),
  ];
}
