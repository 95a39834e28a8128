import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { LossLog } from '../../src/telemetry/LossLog.js';
import { testSettings } from '../helpers/settings.js';

function rig(intervalMs = 60_000) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const settings = testSettings('ebpf');
  let now = 1_000_000;
  const log = new LossLog(pino({ level: 'info' }, sink), settings.telemetry, { receiver: 'ebpf' }, ['kernel_ringbuf_full', 'decode_error'], {
    summaryIntervalMs: intervalMs,
    now: () => now,
  });
  return { log, lines, settings, advance: (ms: number) => (now += ms) };
}

async function lastLossTimes(settings: ReturnType<typeof testSettings>): Promise<Record<string, number>> {
  const { resourceMetrics } = await settings.telemetry.producer.collect();
  const out: Record<string, number> = {};
  for (const sm of resourceMetrics.scopeMetrics) {
    for (const m of sm.metrics) {
      if (m.descriptor.name !== 'kmesh_otel_data_loss_last_time') continue;
      for (const dp of m.dataPoints) out[String(dp.attributes.cause)] = dp.value as number;
    }
  }
  return out;
}

describe('LossLog', () => {
  it('declared causes exist from the start at 0', async () => {
    const r = rig();
    assert.deepEqual(await lastLossTimes(r.settings), { kernel_ringbuf_full: 0, decode_error: 0 });
    assert.equal(r.lines.length, 0);
  });

  it('logs the first loss of a cause at once, then one summary per interval with the counts', async () => {
    const r = rig(60_000);
    r.log.record('kernel_ringbuf_full', 5, { hint: 'h' });
    assert.equal(r.lines.length, 1);
    assert.equal(r.lines[0]!.level, 40);
    assert.deepEqual([r.lines[0]!.cause, r.lines[0]!.lost, r.lines[0]!.hint, r.lines[0]!.receiver], ['kernel_ringbuf_full', 5, 'h', 'ebpf']);
    for (let i = 0; i < 100; i++) {
      r.advance(100);
      r.log.record('kernel_ringbuf_full', 2);
    }
    assert.equal(r.lines.length, 1, 'no line per loss within the interval');
    r.advance(50_000); // 60 s after the first line
    r.log.tick();
    assert.equal(r.lines.length, 2);
    assert.deepEqual([r.lines[1]!.lost, r.lines[1]!.lostTotal, r.lines[1]!.sinceMs], [200, 205, 60_000]);
    r.log.tick();
    assert.equal(r.lines.length, 2, 'nothing pending: no line');
    assert.equal(r.log.total('kernel_ringbuf_full'), 205);
    assert.deepEqual(await lastLossTimes(r.settings), { kernel_ringbuf_full: (1_000_000 + 100 * 100) / 1000, decode_error: 0 }, "the time of the last loss");
  });

  it('keeps causes apart, ignores zero, and flushes what is pending at shutdown', () => {
    const r = rig(60_000);
    r.log.record('decode_error', 0);
    assert.equal(r.lines.length, 0);
    r.log.record('decode_error', 1, { reason: 'truncated' });
    r.log.record('kernel_ringbuf_full', 3);
    r.log.record('decode_error', 4);
    r.log.record('new_cause', 7);
    assert.deepEqual(r.lines.map((l) => [l.cause, l.lost]), [['decode_error', 1], ['kernel_ringbuf_full', 3], ['new_cause', 7]]);
    r.log.flush();
    assert.deepEqual(r.lines.slice(3).map((l) => [l.cause, l.lost, l.lostTotal]), [['decode_error', 4, 5]]);
  });
});

describe('LossLog summary timer', () => {
  it('summarises a loss that stopped without another record() or tick(), and close() stops it', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const settings = testSettings('otlp');
    const log = new LossLog(pino({ level: 'info' }, sink), settings.telemetry, { exporter: 'otlp' }, ['export_failed'], { summaryIntervalMs: 50 });
    log.record('export_failed', 3);
    log.record('export_failed', 4);
    assert.deepEqual(lines.map((l) => l.lost), [3]);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(lines.map((l) => [l.lost, l.lostTotal]), [[3, undefined], [4, 7]], 'the timer logged the pending summary');
    log.close();
    log.record('export_failed', 5); // due at once: record() itself summarises
    log.record('export_failed', 6); // within the interval: pending
    assert.deepEqual(lines.map((l) => l.lost), [3, 4, 5]);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(lines.length, 3, 'closed: no timer, the pending loss waits for the next record(), tick() or flush()');
    log.flush();
    assert.deepEqual(lines.map((l) => l.lost), [3, 4, 5, 6]);
  });
});
