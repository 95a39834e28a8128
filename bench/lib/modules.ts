/** The benchmark modules (bench/<name>.ts), in the order `npm run bench` runs them and BENCHMARKS.md lists them. */
export const MODULES = ['kernel', 'drain', 'receiver', 'metrics', 'freshness', 'logs', 'k8s', 'scale', 'otlp', 'walk'] as const;
