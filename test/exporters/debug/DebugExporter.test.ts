import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassThrough } from 'node:stream';
import { DebugLogsExporter, DebugMetricsExporter } from '../../../src/exporters/debug/DebugExporter.js';
import { debugExporterFactory } from '../../../src/exporters/debug/factory.js';
import { entry, event, KMESH_LINE } from '../../helpers/accessLogEntries.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../../helpers/flowPoints.js';
import { testSettings } from '../../helpers/settings.js';

describe('debug logs exporter', () => {
  it('writes one line per entry to its stream and bounds the buffer', async () => {
    const out = new PassThrough({ highWaterMark: 16 });
    let written = '';
    const cfg = debugExporterFactory.configSchema.parse({ extra_fields: false, max_buffered_bytes: 2000 });
    const exp = new DebugLogsExporter(testSettings('debug'), cfg, { stream: out });
    await exp.start({ reportFatalError: () => undefined });
    exp.consumeLogs({ entries: [entry(event()), entry(event())] });
    written = out.read()?.toString() ?? '';
    assert.equal(written, `${KMESH_LINE}\n${KMESH_LINE}\n`);
    // Nobody reads now: the buffer fills, further batches are dropped, not queued.
    for (let i = 0; i < 100; i++) exp.consumeLogs({ entries: [entry(event())] });
    assert.ok(out.writableLength < 2000 + 400, `buffer bounded (${out.writableLength})`);
    await exp.shutdown();
    await exp.shutdown();
  });
});

describe('debug metrics exporter', () => {
  it('dumps its store: one line per family (basic), every series with its labels (detailed)', async () => {
    for (const verbosity of ['basic', 'detailed'] as const) {
      const out = new PassThrough();
      const cfg = debugExporterFactory.configSchema.parse({ verbosity, interval: '1h' });
      const exp = new DebugMetricsExporter(testSettings('debug'), cfg, { stream: out });
      await exp.start({ reportFatalError: () => undefined });
      exp.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 5 }), flowPoint({ ...SLEEP_TO_HTTPBIN, source_workload: 'b' }, { sentBytes: 7 })] });
      exp.dump();
      const text: string = (out.read() as Buffer | null)?.toString() ?? '';
      const lines = text.split('\n').filter((l) => l !== '');
      if (verbosity === 'basic') {
        assert.deepEqual(lines, [
          'metrics: kmesh_tcp_workload_sent_bytes_total series=2 total=12',
          'metrics: kmesh_tcp_sent_bytes_total series=2 total=12',
        ]);
      } else {
        const series = lines.filter((l) => l.startsWith('  kmesh_tcp_workload_sent_bytes_total{'));
        assert.equal(series.length, 2);
        assert.ok(series.some((l) => l.includes('source_workload="b"') && l.endsWith(' 7')), series.join('\n'));
        assert.ok(series[0]!.includes('reporter="destination"'), 'label values from the store, not its wire text');
      }
      await exp.shutdown();
      await exp.shutdown();
      exp.consumeMetrics({ points: [flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 1 })] });
      exp.dump();
      assert.equal(out.read(), null, 'nothing after shutdown');
    }
  });
});
