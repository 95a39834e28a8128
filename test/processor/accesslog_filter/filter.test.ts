import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Factory, LogsConsumer } from '../../../src/component/component.js';
import { builtinFactories } from '../../../src/components.js';
import { formatProblems } from '../../../src/config/errors.js';
import type { ConnectionEvent } from '../../../src/model/connection.js';
import type { AccessLogEntry, LogsBatch } from '../../../src/model/logs.js';
import { accessLogFilterConfigSchema } from '../../../src/processor/accesslog_filter/config.js';
import { accessLogFilterProcessorFactory } from '../../../src/processor/accesslog_filter/factory.js';
import { mixCookie, newAccessLogFilter, type FilterReason } from '../../../src/processor/accesslog_filter/filter.js';
import { loadConfigText } from '../../../src/service/config.js';
import { testSettings } from '../../helpers/settings.js';

function entry(cookie: number, over: Partial<ConnectionEvent> = {}, attributes: Record<string, string> = {}): AccessLogEntry {
  const event: ConnectionEvent = {
    kind: 'close', direction: 'OUTBOUND', family: 4, srcAddr: '10.244.0.17', srcPort: 40000 + cookie,
    dstAddr: '10.244.0.11', dstPort: 80, socketCookie: cookie, netnsCookie: 1,
    timeUnixNano: 1_726_301_966_552_709_932n, durationNs: 2_733_902, sentBytes: 5, receivedBytes: 292,
    srttUs: 0, minRttUs: 0, retransmits: 0, lostPackets: 0, segsIn: 0, segsOut: 0, state: 'CLOSE', ...over,
  };
  return { event, attributes, observedUnixNano: 0n };
}

function run(config: unknown, entries: AccessLogEntry[]): { kept: number[]; counts: Partial<Record<FilterReason, number>> } {
  const counts: Partial<Record<FilterReason, number>> = {};
  const body = newAccessLogFilter(accessLogFilterConfigSchema.parse(config), (why, n) => {
    counts[why] = (counts[why] ?? 0) + n;
  });
  const out = body({ entries });
  return { kept: out.entries.map((e) => e.event.socketCookie), counts };
}

describe('accesslog_filter', () => {
  it('keeps everything with the default config and returns the same batch', () => {
    const batch: LogsBatch = { entries: [entry(1), entry(2, { kind: 'fail', failure: 'refused' }), entry(3, { kind: 'report' })] };
    const body = newAccessLogFilter(accessLogFilterConfigSchema.parse({}), () => assert.fail('nothing may be counted'));
    assert.equal(body(batch), batch);
  });

  it('filters by event kind and failures_only, counting each reason', () => {
    const entries = [entry(1), entry(2, { kind: 'fail', failure: 'refused' }), entry(3, { kind: 'report' }), entry(4)];
    assert.deepEqual(run({ events: ['close', 'fail'] }, entries), { kept: [1, 2, 4], counts: { event: 1 } });
    assert.deepEqual(run({ failures_only: true }, entries), { kept: [2], counts: { failures_only: 3 } });
  });

  it('excludes namespaces on either side and destination ports, original destination included', () => {
    const entries = [
      entry(1, {}, { 'src.namespace': 'kube-system' }),
      entry(2, {}, { 'dst.namespace': 'kube-system' }),
      entry(3, {}, { 'src.namespace': 'default', 'dst.namespace': 'echo' }),
      entry(4, { dstPort: 15021 }),
      entry(5, { dstPort: 8080, origDstAddr: '10.96.0.10', origDstPort: 15021 }),
      entry(6, { dstPort: 8080 }),
    ];
    assert.deepEqual(run({ exclude: { namespaces: ['kube-system'], ports: [15021] } }, entries), {
      kept: [3, 6],
      counts: { namespace: 2, port: 2 },
    });
  });

  it('samples 1 in N successful connections per socket and always keeps failures', () => {
    const n = 10;
    const entries: AccessLogEntry[] = [];
    for (let c = 1; c <= 10_000; c++) entries.push(entry(c));
    for (let c = 1; c <= 100; c++) entries.push(entry(20_000 + c, { kind: 'fail', failure: 'timeout' }));
    const { kept, counts } = run({ sample_successful: n }, entries);
    const keptClosed = kept.filter((c) => c <= 10_000);
    // The exact set is the one the mix selects; the count is close to 1/N.
    assert.deepEqual(keptClosed, entries.filter((e) => e.event.kind === 'close' && mixCookie(e.event.socketCookie) % n === 0).map((e) => e.event.socketCookie));
    assert.ok(keptClosed.length > 900 && keptClosed.length < 1100, `kept ${keptClosed.length} of 10000`);
    assert.equal(kept.length - keptClosed.length, 100, 'every failure kept');
    assert.deepEqual(counts, { sampled: 10_000 - keptClosed.length });
    // The same socket's periodic report and close share the decision.
    const sampledIn = keptClosed[0]!;
    const sampledOut = entries.find((e) => !keptClosed.includes(e.event.socketCookie))!.event.socketCookie;
    const again = run({ sample_successful: n }, [entry(sampledIn, { kind: 'report' }), entry(sampledIn), entry(sampledOut, { kind: 'report' })]);
    assert.deepEqual(again.kept, [sampledIn, sampledIn]);
  });

  it('does not follow the cookie sequence (1 in 2 is not every other socket)', () => {
    let agree = 0;
    for (let c = 1; c <= 1000; c++) if ((mixCookie(c) % 2 === 0) === (c % 2 === 0)) agree++;
    assert.ok(agree > 400 && agree < 600, `decision agrees with cookie parity ${agree} of 1000 times`);
    assert.equal(mixCookie(0x1_0000_0001), mixCookie(0), 'high and low halves fold together');
  });

  it('counts what it left out in self-metrics, by processor and reason', async () => {
    const settings = testSettings('accesslog_filter/probes');
    const got: LogsBatch[] = [];
    const next: LogsConsumer = { consumeLogs: (b) => void got.push(b) };
    const p = accessLogFilterProcessorFactory.createLogs!(settings, accessLogFilterConfigSchema.parse({ exclude: { ports: [15021] } }), next);
    await p.start({ reportFatalError: () => undefined });
    p.consumeLogs({ entries: [entry(1, { dstPort: 15021 }), entry(2)] });
    p.consumeLogs({ entries: [entry(3, { dstPort: 15021 })] });
    assert.deepEqual(got.map((b) => b.entries.map((e) => e.event.socketCookie)), [[2]]);
    const { resourceMetrics } = await settings.telemetry.producer.collect();
    const metrics = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics);
    const filtered = metrics.find((m) => m.descriptor.name === 'kmesh_otel_processor_filtered_log_records');
    assert.deepEqual(filtered?.dataPoints.map((d) => [d.attributes, d.value]), [[{ processor: 'accesslog_filter/probes', reason: 'port' }, 2]]);
    await p.shutdown();
    await settings.telemetry.shutdown();
  });

  it('is rejected in a metrics pipeline and names bad keys by path', () => {
    const yaml = (processors: string, extra = ''): string => `
receivers: { ebpf: {} }
processors:
  accesslog_filter:${extra}
exporters: { debug: {} }
service:
  pipelines:
    ${processors}
`;
    const factories = builtinFactories as Factory[];
    const metrics = loadConfigText(yaml('metrics: { receivers: [ebpf], processors: [accesslog_filter], exporters: [debug] }'), factories, {});
    assert.deepEqual(formatProblems(metrics.problems).split('\n'), ['service.pipelines.metrics.processors[0]: processor "accesslog_filter" does not support metrics']);
    const bad = loadConfigText(
      yaml('logs: { receivers: [ebpf], processors: [accesslog_filter], exporters: [debug] }', `\n    sample_successfull: 10\n    events: []\n    exclude: { ports: [0] }`),
      factories,
      {},
    );
    assert.deepEqual(formatProblems(bad.problems).split('\n').sort(), [
      'processors.accesslog_filter.events: must list at least one event kind (an empty list would drop every record)',
      'processors.accesslog_filter.exclude.ports[0]: Too small: expected number to be >=1',
      'processors.accesslog_filter.sample_successfull: unknown key',
    ]);
  });
});
