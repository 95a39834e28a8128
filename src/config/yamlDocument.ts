/**
 * Turning config text into plain data without trusting it: a size limit, a
 * bound on alias expansion, duplicate keys found in linear time, and keys
 * that a JavaScript object cannot hold as data (`__proto__`) rejected under
 * their own path. Every failure is a {@link ConfigProblem}, never a throw.
 */
import { isAlias, isMap, isPair, isScalar, isSeq, parseDocument, type Node } from 'yaml';
import { formatPath, type ConfigProblem } from './errors.js';

/**
 * Largest config accepted: a collector config is a few KiB; the bound keeps a
 * mistaken or hostile file from costing start-up minutes and memory.
 */
export const MAX_CONFIG_BYTES = 1 << 20;

/**
 * Alias nodes resolved at most while building the data (the yaml library's
 * default). An "alias bomb" (each anchor a list of aliases of the previous
 * one) expands exponentially; legitimate configs use a handful.
 */
export const MAX_ALIAS_COUNT = 100;

/** Keys that assignment to a plain object turns into a prototype change instead of data. */
const RESERVED_KEYS = new Set(['__proto__']);

export interface ParsedYaml {
  value?: unknown;
  problems: ConfigProblem[];
}

/** Parses config text into plain data, or says what is wrong with it. */
export function parseConfigYaml(text: string): ParsedYaml {
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > MAX_CONFIG_BYTES) {
    return { problems: [{ path: '', message: `config is ${bytes} bytes; the limit is ${MAX_CONFIG_BYTES} (1 MiB)` }] };
  }
  // uniqueKeys: false, because the library's own check compares every pair
  // of keys of a map (40,000 keys took 34 s); keyProblems() does it with a
  // set per map.
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: false });
  if (doc.errors.length > 0) return { problems: doc.errors.map((e) => ({ path: '', message: `YAML: ${e.message}` })) };
  const problems = keyProblems(doc.contents);
  if (problems.length > 0) return { problems };
  try {
    return { value: doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT }) ?? {}, problems: [] };
  } catch (err) {
    // The library throws a ReferenceError when aliases expand past the bound.
    return {
      problems: [
        {
          path: '',
          message: `YAML: aliases expand to more than ${MAX_ALIAS_COUNT} alias nodes (${(err as Error).message}); write the values out instead`,
        },
      ],
    };
  }
}

/**
 * Duplicate and reserved keys of every map in the tree, named by path.
 * Iterative (no recursion depth limit to hit) and linear in the number of
 * nodes; aliases are not followed (their anchors are checked where defined).
 */
function keyProblems(root: Node | null): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const stack: Array<{ node: unknown; path: Array<string | number> }> = [{ node: root, path: [] }];
  while (stack.length > 0) {
    const { node, path } = stack.pop()!;
    if (isMap(node)) {
      const seen = new Set<string>();
      for (const item of node.items) {
        if (!isPair(item)) continue;
        const key = isScalar(item.key) ? String(item.key.value) : undefined;
        if (key === undefined) {
          if (!isAlias(item.key)) problems.push({ path: formatPath(path), message: 'a key must be a plain value (not a list or map)' });
          continue;
        }
        const at = [...path, key];
        if (RESERVED_KEYS.has(key)) {
          problems.push({ path: formatPath(at), message: 'reserved key name (it cannot be stored as data)' });
          continue;
        }
        if (seen.has(key)) {
          problems.push({ path: formatPath(at), message: 'duplicate key' });
          continue;
        }
        seen.add(key);
        stack.push({ node: item.value, path: at });
      }
    } else if (isSeq(node)) {
      node.items.forEach((child, i) => stack.push({ node: child, path: [...path, i] }));
    }
  }
  return problems.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
