import { parse as parseYamlScalar } from 'yaml';

/** `${env:NAME}` or `${env:NAME:-default}`; `$${...}` escapes a literal `${...}` (collector rule). */
const REF = /\$(\$?)\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;
const WHOLE = /^\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}$/;

export interface ExpandResult {
  value: unknown;
  /** Variables referenced without a default and not set (expanded to empty, as the collector does). */
  missing: string[];
}

/**
 * Expands environment references in every string of a parsed config. A
 * string that is exactly one reference takes the variable's YAML type
 * (`port: ${env:PORT}` gives a number), as in the collector's confmap;
 * references inside a longer string are spliced in as text.
 */
export function expandEnv(value: unknown, env: NodeJS.ProcessEnv): ExpandResult {
  const missing = new Set<string>();
  const lookup = (name: string, def: string | undefined): string => {
    const v = env[name];
    if (v !== undefined) return v;
    if (def !== undefined) return def;
    missing.add(name);
    return '';
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      const whole = WHOLE.exec(v);
      if (whole !== null) {
        const text = lookup(whole[1]!, whole[2]);
        if (text === '') return text;
        try {
          const typed: unknown = parseYamlScalar(text);
          return typed === null || typeof typed === 'object' ? text : typed;
        } catch {
          return text;
        }
      }
      return v.replace(REF, (_m, escape: string, name: string, def: string | undefined) =>
        escape === '$' ? `\${env:${name}${def !== undefined ? `:-${def}` : ''}}` : lookup(name, def),
      );
    }
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, child] of Object.entries(v)) out[k] = walk(child);
      return out;
    }
    return v;
  };
  const expanded = walk(value);
  return { value: expanded, missing: [...missing].sort() };
}
