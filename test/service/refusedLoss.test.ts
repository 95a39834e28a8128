/**
 * A consumer that throws on a batch loses it: the service counts it per
 * pipeline from start-up at 0 and logs it through its loss log (the first
 * at once with the error, the rest in a summary), not one line per batch.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { it } from 'node:test';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { DataPointType } from '@opentelemetry/sdk-metrics';
import { pino } from 'pino';
import { z } from 'zod';
import type { ExporterFactory, Factory } from '../../src/component/component.js';
import { loadConfigText } from '../../src/service/config.js';
import { Service } from '../../src/service/Service.js';
import { SelfTelemetry } from '../../src/telemetry/SelfTelemetry.js';
import { fakeFactories, fakeReceivers } from '../helpers/fakeComponents.js';

const schema = z.strictObject({});
const throwingExporterFactory: ExporterFactory<z.infer<typeof schema>> = {
  kind: 'exporter',
  type: 'throwing',
  stability: { logs: 'development' },
  configSchema: schema,
  createDefaultConfig: () => schema.parse({}),
  createLogs: () => ({
    start: async () => undefined,
    shutdown: async () => undefined,
    consumeLogs: () => {
      throw new Error('consumer bug');
    },
  }),
};

it('refused batches: counted per pipeline from 0, the first logged with its error, the rest summarised', async () => {
  const r = loadConfigText(
    // Two exporters: a fan-out (one consumer alone gets the batch directly and the receiver counts its refusal).
    `receivers: { fake: {} }\nexporters: { throwing: {}, collect: {} }\nservice:\n  pipelines: { logs: { receivers: [fake], exporters: [throwing, collect] } }\n`,
    [...fakeFactories, throwingExporterFactory] as unknown as Factory[],
    {},
  );
  assert.deepEqual(r.problems, []);
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const resource = resourceFromAttributes({ 'service.name': 'test' });
  const telemetry = new SelfTelemetry(resource);
  const service = new Service({ config: r.config!, logger: pino({ level: 'info' }, sink), telemetry, resource });
  const refused = async (): Promise<Record<string, number>> => {
    const { resourceMetrics } = await telemetry.producer.collect();
    const out: Record<string, number> = {};
    for (const m of resourceMetrics.scopeMetrics.flatMap((s) => s.metrics)) {
      if (m.descriptor.name !== 'kmesh_otel_pipeline_refused_batches' || m.dataPointType !== DataPointType.SUM) continue;
      for (const p of m.dataPoints) out[String(p.attributes.pipeline)] = p.value;
    }
    return out;
  };
  await service.start();
  assert.deepEqual(await refused(), { logs: 0 });
  for (let i = 0; i < 3; i++) fakeReceivers.get('fake')!.emitLogs({ entries: [] });
  assert.deepEqual(await refused(), { logs: 3 });
  const loss = (): Array<Record<string, unknown>> => lines.filter((l) => l.cause === 'consumer_refused_batch');
  assert.equal(loss().length, 1, 'one line for the first refusal, not one per batch');
  assert.equal(loss()[0]!.pipeline, 'logs');
  assert.match(JSON.stringify(loss()[0]!.err), /consumer bug/);
  await service.shutdown();
  assert.deepEqual(loss().map((l) => l.lost), [1, 2], 'the summary of the other two at shutdown');
});
