import type { Attributes } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { DataPointType } from '@opentelemetry/sdk-metrics';
import { pino } from 'pino';
import { parseComponentId, type CreateSettings } from '../../src/component/component.js';
import { SelfTelemetry } from '../../src/telemetry/SelfTelemetry.js';

/**
 * CreateSettings for a component under test (or in a benchmark): silent
 * logger, its own self-telemetry, a resource with `resourceAttributes`.
 */
export function testSettings(id: string, resourceAttributes: Attributes = { 'service.name': 'kmesh-otel-test' }): CreateSettings {
  const parsed = parseComponentId(id);
  if (parsed === undefined) throw new Error(`bad component id ${id}`);
  const resource = resourceFromAttributes(resourceAttributes);
  return {
    id: parsed,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    telemetry: new SelfTelemetry(resource),
    resource,
  };
}

/** The resource benchmarks export with: what an agent on a node carries. */
export const BENCH_RESOURCE: Attributes = { 'service.name': 'kmesh-otel', 'service.version': 'bench', 'k8s.node.name': 'bench-node' };

/** Sum of one self-metric counter over all its attribute sets, read from the component's own telemetry. */
export async function selfCounter(settings: CreateSettings, name: string): Promise<number> {
  const { resourceMetrics } = await settings.telemetry.producer.collect();
  let total = 0;
  for (const sm of resourceMetrics.scopeMetrics) {
    for (const m of sm.metrics) {
      if (m.descriptor.name !== name || m.dataPointType !== DataPointType.SUM) continue;
      for (const p of m.dataPoints) total += p.value;
    }
  }
  return total;
}
