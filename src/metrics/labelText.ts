/**
 * Label sets as Prometheus text format label pairs (`a="x",b="y"`): what the
 * Prometheus exporter caches per label set of its store and puts, as is,
 * between the braces of every sample line.
 *
 * Format: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 */

/** Label value escaping of the text format: backslash, double quote and line feed. */
export function escapeLabelValue(v: string): string {
  // Most values need nothing: test before allocating (indexOf is cheaper than a regex run per value).
  if (v.indexOf('"') < 0 && v.indexOf('\\') < 0 && v.indexOf('\n') < 0) return v;
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Per label-name list (schemas keep theirs for good): the text before each value, `",name="` (no `",` first). */
const separators = new WeakMap<readonly string[], string[]>();

/**
 * `names[0]="values[0]",...` with values escaped. `names` must be valid label
 * names (schemas define them). Built with one `join` of cached separators and
 * the values: that makes one flat string in one copy, where `+=` would leave
 * V8 a tree of ~100 string pieces per label set (about 2.5x the flat size, held
 * as long as the set lives).
 */
export function labelPairs(names: readonly string[], values: readonly string[]): string {
  const n = names.length;
  if (n === 0) return '';
  let seps = separators.get(names);
  if (seps === undefined) {
    seps = names.map((name, i) => (i === 0 ? '' : '",') + name + '="');
    separators.set(names, seps);
  }
  const parts = new Array<string>(2 * n + 1);
  for (let i = 0; i < n; i++) {
    parts[2 * i] = seps[i]!;
    parts[2 * i + 1] = escapeLabelValue(values[i]!);
  }
  parts[2 * n] = '"';
  return parts.join('');
}
