import type { z } from 'zod';

/** A problem in the user's config, located by its YAML key path. */
export interface ConfigProblem {
  /** Dotted path with `[i]` for list items, e.g. `service.pipelines.metrics.exporters[1]`. */
  path: string;
  message: string;
}

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += (out === '' ? '' : '.') + String(seg);
  }
  return out;
}

/**
 * Turns zod issues into path-named problems. Unknown keys become one problem
 * per key (`exporters.prometheus.endpointt: unknown key`), which is what a
 * user needs to find a typo.
 */
export function zodProblems(prefix: ReadonlyArray<PropertyKey>, error: z.ZodError): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const issue of error.issues) {
    const base = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: formatPath([...base, key]), message: 'unknown key' });
      continue;
    }
    out.push({ path: formatPath(base), message: issue.message });
  }
  return out;
}

export function formatProblems(problems: ConfigProblem[]): string {
  return problems.map((p) => (p.path === '' ? p.message : `${p.path}: ${p.message}`)).join('\n');
}
