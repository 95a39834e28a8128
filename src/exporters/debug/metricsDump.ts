import { DataPointType, type CollectionResult } from '@opentelemetry/sdk-metrics';

/**
 * A human-readable dump of a collection (pure). `basic`: one line per family
 * with its series count and the sum of its values (or observation count);
 * `detailed`: every series, labels sorted as stored. Empty string when empty.
 */
export function formatMetricsDump(result: CollectionResult, verbosity: 'basic' | 'detailed'): string {
  let out = '';
  for (const sm of result.resourceMetrics.scopeMetrics) {
    for (const m of sm.metrics) {
      const name = m.descriptor.name;
      if (m.dataPointType === DataPointType.SUM || m.dataPointType === DataPointType.GAUGE) {
        let total = 0;
        for (const dp of m.dataPoints) total += dp.value;
        out += `metrics: ${name} series=${m.dataPoints.length} total=${total}\n`;
        if (verbosity === 'detailed') {
          for (const dp of m.dataPoints) out += `  ${name}${labelText(dp.attributes)} ${dp.value}\n`;
        }
      } else if (m.dataPointType === DataPointType.HISTOGRAM) {
        let count = 0;
        for (const dp of m.dataPoints) count += dp.value.count;
        out += `metrics: ${name} series=${m.dataPoints.length} count=${count}\n`;
        if (verbosity === 'detailed') {
          for (const dp of m.dataPoints) {
            out += `  ${name}${labelText(dp.attributes)} count=${dp.value.count} sum=${dp.value.sum ?? 0}\n`;
          }
        }
      }
    }
  }
  return out;
}

function labelText(attrs: Record<string, unknown>): string {
  const parts = Object.entries(attrs).map(([k, v]) => `${k}="${String(v)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}
