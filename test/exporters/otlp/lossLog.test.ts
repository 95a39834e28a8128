/**
 * The OTLP exporters' losses are logged (issue 19): queue overflow and
 * failed exports each logged at once for the first time, with counts that
 * add up to the self-metrics; the loss counters exist from start-up at 0.
 * Against a real (absent) endpoint on loopback: nothing listens there.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { it } from 'node:test';
import { pino } from 'pino';
import type { Host } from '../../../src/component/component.js';
import { otlpExporterFactory } from '../../../src/exporters/otlp/factory.js';
import type { ConnectionEvent } from '../../../src/model/connection.js';
import type { AccessLogEntry } from '../../../src/model/logs.js';
import { ConnectionTraceIds } from '../../../src/model/traceIds.js';
import type { ConnectionSpan } from '../../../src/model/traces.js';
import { freePort } from '../../helpers/freePort.js';
import { selfCounter, testSettings } from '../../helpers/settings.js';

const host: Host = { reportFatalError: () => undefined };
const ids = new ConnectionTraceIds();

/**
 * An exporter's settings whose log lines are captured, and a config with a
 * 10-item queue, no retries, and an endpoint nothing listens on.
 */
async function absentBackend() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const settings = { ...testSettings('otlp'), logger: pino({ level: 'info' }, sink) };
  const config = otlpExporterFactory.configSchema.parse({
    endpoint: `127.0.0.1:${await freePort()}`,
    tls: { insecure: true },
    timeout: '2s',
    retry_on_failure: { enabled: false },
    sending_queue: { queue_size: 10, batch: { min_size: 10, flush_timeout: '50ms' } },
  });
  return { lines, settings, config };
}

function logEntry(i: number): AccessLogEntry {
  return {
    event: {
      kind: 'close', direction: 'INBOUND', family: 4, srcAddr: '10.244.0.17', srcPort: 40000 + i, dstAddr: '10.244.0.13', dstPort: 9080,
      socketCookie: i, netnsCookie: 1, timeUnixNano: 1726301966552709932n + BigInt(i), durationNs: 2733902,
      sentBytes: 5, receivedBytes: 292, srttUs: 250, minRttUs: 100, retransmits: 0, lostPackets: 0, segsIn: 1, segsOut: 1, state: 'CLOSE',
    },
    attributes: {},
    observedUnixNano: 1726301966600000000n,
  };
}

it('otlp logs: queue overflow and failed exports are counted from 0 and logged with the same counts', async () => {
  const { lines, settings, config } = await absentBackend();
  const exp = otlpExporterFactory.createLogs!(settings, config);
  assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_dropped_log_records'), 0);
  assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_send_failed_log_records'), 0);
  await exp.start(host);
  exp.consumeLogs({ entries: Array.from({ length: 25 }, (_, i) => logEntry(i)) });
  assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_dropped_log_records'), 15, 'queue_size 10: 15 of 25 dropped');
  const queueFull = lines.filter((l) => l.cause === 'queue_full');
  assert.deepEqual(queueFull.map((l) => [l.lost, l.queue_size, l.signal, l.exporter]), [[15, 10, 'logs', 'otlp']]);
  // The 10 queued fail (connection refused, no retry).
  const deadline = Date.now() + 10_000;
  while ((await selfCounter(settings, 'kmesh_otel_exporter_send_failed_log_records')) < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_send_failed_log_records'), 10);
  await exp.shutdown();
  const failed = lines.filter((l) => l.cause === 'export_failed');
  assert.match(String(failed[0]?.msg), /first occurrence/);
  assert.match(String(failed[0]?.err), /UNAVAILABLE|ECONNREFUSED/);
  assert.equal(failed.reduce((a, l) => a + Number(l.lost), 0), 10, 'every failed record is in the log lines (the summary is flushed at shutdown)');
  await settings.telemetry.shutdown();
});

function clientSpan(i: number): ConnectionSpan {
  const e: ConnectionEvent = {
    kind: 'close', direction: 'OUTBOUND', family: 4, srcAddr: '10.244.0.17', srcPort: 40000 + i, dstAddr: '10.244.0.13', dstPort: 9080,
    socketCookie: i, netnsCookie: 1, timeUnixNano: 1726301966552709932n + BigInt(i), durationNs: 2733902,
    sentBytes: 5, receivedBytes: 292, srttUs: 250, minRttUs: 100, retransmits: 0, lostPackets: 0, segsIn: 1, segsOut: 1, state: 'CLOSE',
    isnClient: 1000 + i, isnServer: 2000 + i,
  };
  return { event: e, context: ids.forEvent(e)!, kind: 'CLIENT', attributes: {}, startUnixNano: e.timeUnixNano - 2733902n, endUnixNano: e.timeUnixNano, observedUnixNano: e.timeUnixNano + 1n };
}

it('otlp traces: the same rule — queue overflow and failed exports counted from 0, logged with the same counts', async () => {
  const { lines, settings, config } = await absentBackend();
  const exp = otlpExporterFactory.createTraces!(settings, config);
  assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_dropped_spans'), 0);
  assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_send_failed_spans'), 0);
  await exp.start(host);
  exp.consumeTraces({ spans: Array.from({ length: 25 }, (_, i) => clientSpan(i)) });
  assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_dropped_spans'), 15, 'queue_size 10: 15 of 25 dropped');
  const queueFull = lines.filter((l) => l.cause === 'queue_full');
  assert.deepEqual(queueFull.map((l) => [l.lost, l.queue_size, l.signal, l.exporter]), [[15, 10, 'traces', 'otlp']]);
  const deadline = Date.now() + 10_000;
  while ((await selfCounter(settings, 'kmesh_otel_exporter_send_failed_spans')) < 10 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_send_failed_spans'), 10);
  await exp.shutdown();
  const failed = lines.filter((l) => l.cause === 'export_failed');
  assert.match(String(failed[0]?.msg), /first occurrence/);
  assert.match(String(failed[0]?.err), /UNAVAILABLE|ECONNREFUSED/);
  assert.equal(failed.reduce((a, l) => a + Number(l.lost), 0), 10, 'every failed span is in the log lines');
  await settings.telemetry.shutdown();
});
