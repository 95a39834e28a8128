/**
 * Bounded shutdown (issue 19): one grace period (`service.shutdown_timeout`)
 * is shared by every component, and what the components cut short still
 * held is counted and logged with its count.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, beforeEach, describe, it } from 'node:test';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { DataPointType } from '@opentelemetry/sdk-metrics';
import { pino } from 'pino';
import { z } from 'zod';
import type { ExporterFactory, Factory } from '../../src/component/component.js';
import { otlpExporterFactory } from '../../src/exporters/otlp/factory.js';
import type { AccessLogEntry } from '../../src/model/logs.js';
import { loadConfigText } from '../../src/service/config.js';
import { Service } from '../../src/service/Service.js';
import { SelfTelemetry } from '../../src/telemetry/SelfTelemetry.js';
import { fakeFactories, fakeReceivers } from '../helpers/fakeComponents.js';
import { startHungBackend } from '../helpers/otlpReceiver.js';

const resource = resourceFromAttributes({ 'service.name': 'test' });

/** An exporter whose shutdown never finishes and that says it holds `holds` log records. */
const stuckSchema = z.strictObject({ holds: z.number().default(0) });
const stuckExporterFactory: ExporterFactory<z.infer<typeof stuckSchema>> = {
  kind: 'exporter',
  type: 'stuck',
  stability: { logs: 'development' },
  configSchema: stuckSchema,
  createDefaultConfig: () => stuckSchema.parse({}),
  createLogs: (_settings, config) => ({
    start: async () => undefined,
    shutdown: () => new Promise<void>(() => undefined),
    consumeLogs: () => undefined,
    unflushed: () => ({ log_records: config.holds }),
  }),
};

function rig(configText: string): { service: Service; lines: Array<Record<string, unknown>>; telemetry: SelfTelemetry } {
  const factories = [...fakeFactories, stuckExporterFactory, otlpExporterFactory] as unknown as Factory[];
  const r = loadConfigText(configText, factories, {});
  assert.deepEqual(r.problems, []);
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const telemetry = new SelfTelemetry(resource);
  return { service: new Service({ config: r.config!, logger: pino({ level: 'info' }, sink), telemetry, resource }), lines, telemetry };
}

/** Values of one counter by a label (sum over the other labels). */
async function counterBy(telemetry: SelfTelemetry, name: string, label: string): Promise<Record<string, number>> {
  const { resourceMetrics } = await telemetry.producer.collect();
  const out: Record<string, number> = {};
  for (const sm of resourceMetrics.scopeMetrics) {
    for (const m of sm.metrics) {
      if (m.descriptor.name !== name || m.dataPointType !== DataPointType.SUM) continue;
      for (const p of m.dataPoints) {
        const k = `${String(p.attributes[label])}`;
        out[k] = (out[k] ?? 0) + p.value;
      }
    }
  }
  return out;
}

function logEntry(i: number): AccessLogEntry {
  return {
    event: {
      kind: 'close', direction: 'INBOUND', family: 4, srcAddr: '10.244.0.17', srcPort: 40000 + (i % 20000), dstAddr: '10.244.0.13', dstPort: 9080,
      socketCookie: i, netnsCookie: 1, timeUnixNano: 1726301966552709932n + BigInt(i), durationNs: 2733902,
      sentBytes: 5, receivedBytes: 292, srttUs: 250, minRttUs: 100, retransmits: 0, lostPackets: 0, segsIn: 1, segsOut: 1, state: 'CLOSE',
    },
    attributes: {},
    observedUnixNano: 1726301966600000000n,
  };
}

describe('bounded shutdown', () => {
  beforeEach(() => fakeReceivers.clear());

  it('the config key defaults to 10 s and names itself when invalid', () => {
    const base = `receivers: { fake: {} }\nexporters: { stuck: {} }\nservice:\n  pipelines: { logs: { receivers: [fake], exporters: [stuck] } }\n`;
    const factories = [...fakeFactories, stuckExporterFactory] as unknown as Factory[];
    assert.equal(loadConfigText(base, factories, {}).config?.shutdownTimeoutMs, 10_000);
    assert.equal(loadConfigText(base + '  shutdown_timeout: 2500ms\n', factories, {}).config?.shutdownTimeoutMs, 2500);
    const bad = loadConfigText(base + '  shutdown_timeout: soon\n', factories, {});
    assert.equal(bad.config, undefined);
    assert.equal(bad.problems[0]?.path, 'service.shutdown_timeout', JSON.stringify(bad.problems));
  });

  it('two stuck exporters share one grace period, and what they held is counted and logged exactly', async () => {
    const { service, lines, telemetry } = rig(`receivers: { fake: {} }
exporters: { stuck/a: { holds: 7 }, stuck/b: { holds: 5 } }
service:
  shutdown_timeout: 400ms
  pipelines:
    logs: { receivers: [fake], exporters: [stuck/a, stuck/b] }
`);
    await service.start();
    const t0 = performance.now();
    await service.shutdown();
    const ms = performance.now() - t0;
    // Each used to get its own deadline (N components: N times the grace).
    assert.ok(ms >= 390 && ms < 700, `shutdown took ${ms.toFixed(0)} ms with a 400 ms grace period shared by two stuck exporters`);
    assert.equal(service.shutdownCutShort, true);
    assert.equal(service.state, 'stopped');
    const cut = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('shutdown grace period'));
    assert.deepEqual(
      cut.map((l) => [l.component, l.lost, l.unflushed]),
      [
        ['exporter/stuck/b', 5, { log_records: 5 }],
        ['exporter/stuck/a', 7, { log_records: 7 }],
      ],
    );
    assert.deepEqual(await counterBy(telemetry, 'kmesh_otel_service_shutdown_unflushed_items', 'component'), { 'exporter/stuck/b': 5, 'exporter/stuck/a': 7 });
  });

  it('a hung OTLP backend: shutdown ends with the grace period and the exact number of queued records is logged as lost', async () => {
    const backend = await startHungBackend();
    after(() => backend.close());
    const { service, lines, telemetry } = rig(`receivers: { fake: {} }
exporters:
  otlp:
    endpoint: ${backend.endpoint}
    tls: { insecure: true }
    timeout: 30s
service:
  shutdown_timeout: 1s
  pipelines:
    logs: { receivers: [fake], exporters: [otlp] }
`);
    await service.start();
    const N = 1234;
    const receiver = fakeReceivers.get('fake')!;
    for (let i = 0; i < N; i += 100) receiver.emitLogs({ entries: Array.from({ length: Math.min(100, N - i) }, (_, k) => logEntry(i + k)) });
    // The batches go out and hang (the backend accepts and never answers).
    const deadline = Date.now() + 5_000;
    while (backend.connections() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(backend.connections() > 0, 'the exporter connected to the hung backend');
    const t0 = performance.now();
    await service.shutdown();
    const ms = performance.now() - t0;
    assert.ok(ms >= 990 && ms < 1_500, `shutdown took ${ms.toFixed(0)} ms with a 1 s grace period`);
    assert.equal(service.shutdownCutShort, true);
    const cut = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('shutdown grace period'));
    assert.deepEqual(cut.map((l) => [l.component, l.lost]), [['exporter/otlp', N]]);
    assert.deepEqual(await counterBy(telemetry, 'kmesh_otel_service_shutdown_unflushed_items', 'item'), { log_records: N });
    // The service's loss log says so too (data_loss_last_time{cause="shutdown_unflushed"} is set).
    assert.ok(lines.some((l) => l.cause === 'shutdown_unflushed' && l.lost === N), 'a loss line for cause shutdown_unflushed');
  });
});
