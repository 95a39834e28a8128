import { resourceFromAttributes } from '@opentelemetry/resources';
import { pino } from 'pino';
import { parseComponentId, type CreateSettings } from '../../src/component/component.js';
import { SelfTelemetry } from '../../src/telemetry/SelfTelemetry.js';

/** CreateSettings for a component under test: silent logger, its own self-telemetry. */
export function testSettings(id: string): CreateSettings {
  const parsed = parseComponentId(id);
  if (parsed === undefined) throw new Error(`bad component id ${id}`);
  const resource = resourceFromAttributes({ 'service.name': 'kmesh-otel-test' });
  return {
    id: parsed,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }),
    telemetry: new SelfTelemetry(resource),
    resource,
  };
}
