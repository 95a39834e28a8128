import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassThrough } from 'node:stream';
import { debugExporterFactory } from '../../src/exporters/debug/factory.js';
import { DebugLogsExporter } from '../../src/exporters/debug/DebugExporter.js';
import { formatJsonLine, formatKmeshLine, formatKmeshTime, nsToMsString } from '../../src/exporters/common/accessLogLine.js';
import type { ConnectionEvent } from '../../src/model/connection.js';
import type { AccessLogEntry } from '../../src/model/logs.js';
import { testSettings } from '../helpers/settings.js';

function event(over: Partial<ConnectionEvent> = {}): ConnectionEvent {
  return {
    kind: 'close',
    direction: 'INBOUND',
    family: 4,
    srcAddr: '10.244.0.17',
    srcPort: 51842,
    dstAddr: '10.244.0.13',
    dstPort: 9080,
    socketCookie: 1,
    netnsCookie: 2,
    timeUnixNano: 1726301966552709932n,
    durationNs: 2733902,
    sentBytes: 5,
    receivedBytes: 292,
    srttUs: 250,
    minRttUs: 100,
    retransmits: 0,
    lostPackets: 0,
    segsIn: 3,
    segsOut: 3,
    state: 'CLOSE',
    ...over,
  };
}

const KMESH_IDS = {
  'src.workload': 'prometheus-5fb7f6f8d8-h9cts',
  'src.namespace': 'istio-system',
  'dst.service': 'productpage.echo-1-27855.svc.cluster.local',
  'dst.workload': 'productpage-v1-8499c849b9-bz9t9',
  'dst.namespace': 'echo-1-27855',
};

const entry = (e: ConnectionEvent, attributes: Record<string, string> = KMESH_IDS): AccessLogEntry => ({ event: e, attributes, observedUnixNano: 1726301966600000000n });

const KMESH_LINE =
  'accesslog: 2024-09-14 08:19:26.552709932 +0000 UTC src.addr=10.244.0.17:51842, src.workload=prometheus-5fb7f6f8d8-h9cts, src.namespace=istio-system, dst.addr=10.244.0.13:9080, dst.service=productpage.echo-1-27855.svc.cluster.local, dst.workload=productpage-v1-8499c849b9-bz9t9, dst.namespace=echo-1-27855, direction=INBOUND, sent_bytes=5, received_bytes=292, duration=2.733902ms';

describe('Kmesh access-log line', () => {
  it('is exactly the Kmesh line (without extra fields)', () => {
    assert.equal(formatKmeshLine(entry(event()), { extraFields: false }), KMESH_LINE);
  });
  it('appends state, retransmissions, srtt, min_rtt after duration', () => {
    assert.equal(formatKmeshLine(entry(event({ retransmits: 3 }))), KMESH_LINE + ', state=CLOSE, retransmissions=3, srtt=0.25ms, min_rtt=0.1ms');
  });
  it('brackets IPv6 and marks unknown peers with -', () => {
    const line = formatKmeshLine(entry(event({ family: 6, srcAddr: 'fd00::17', dstAddr: 'fd00::13', direction: 'OUTBOUND' }), {}), { extraFields: false });
    assert.equal(
      line,
      'accesslog: 2024-09-14 08:19:26.552709932 +0000 UTC src.addr=[fd00::17]:51842, src.workload=-, src.namespace=-, dst.addr=[fd00::13]:9080, dst.service=-, dst.workload=-, dst.namespace=-, direction=OUTBOUND, sent_bytes=5, received_bytes=292, duration=2.733902ms',
    );
  });
  it('reports failures with the reason', () => {
    const line = formatKmeshLine(entry(event({ kind: 'fail', direction: 'OUTBOUND', durationNs: 0, sentBytes: 0, receivedBytes: 0, srttUs: 0, minRttUs: 0, state: 'CLOSE', failure: 'refused' })));
    assert.ok(line.endsWith('direction=OUTBOUND, sent_bytes=0, received_bytes=0, duration=0ms, state=CLOSE, retransmissions=0, srtt=-, min_rtt=-, failure_reason=refused'), line);
  });
  it('prints long-lived reports with plain-decimal ms and 9-digit ns time', () => {
    const line = formatKmeshLine(entry(event({ kind: 'report', state: 'ESTABLISHED', durationNs: 3_600_000_000_001, timeUnixNano: 1726301966000000005n })));
    assert.ok(line.startsWith('accesslog: 2024-09-14 08:19:26.000000005 +0000 UTC '), line);
    assert.ok(line.includes('duration=3600000.000001ms, state=ESTABLISHED'), line);
    assert.equal(nsToMsString(1), '0.000001');
    assert.equal(nsToMsString(1e21), '1000000000000000');
  });
});

describe('JSON access-log line', () => {
  it('carries the fields as one object', () => {
    const j = JSON.parse(formatJsonLine(entry(event({ kind: 'fail', failure: 'timeout', family: 6, srcAddr: 'fd00::1', dstAddr: 'fd00::2' }), {})));
    assert.deepEqual(j, {
      time: '2024-09-14T08:19:26.552709932Z',
      observed_time: '2024-09-14T08:19:26.600000000Z',
      severity: 'WARN',
      'src.addr': '[fd00::1]:51842',
      'dst.addr': '[fd00::2]:9080',
      direction: 'INBOUND',
      event: 'fail',
      sent_bytes: 5,
      received_bytes: 292,
      duration: 2.733902,
      state: 'CLOSE',
      retransmissions: 0,
      lost_packets: 0,
      srtt: 0.25,
      min_rtt: 0.1,
      'failure.reason': 'timeout',
      'source.address': 'fd00::1',
      'source.port': 51842,
      'destination.address': 'fd00::2',
      'destination.port': 9080,
      'network.transport': 'tcp',
      'network.type': 'ipv6',
    });
  });
});

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

describe('Kmesh time', () => {
  it('prints Go time.Time.String() in UTC with 9-digit ns, across second boundaries and before 1970', () => {
    // The date prefix is cached per second: the same second twice, then the next, then back.
    assert.equal(formatKmeshTime(1_726_301_966_552_709_932n), '2024-09-14 08:19:26.552709932 +0000 UTC');
    assert.equal(formatKmeshTime(1_726_301_966_000_000_001n), '2024-09-14 08:19:26.000000001 +0000 UTC');
    assert.equal(formatKmeshTime(1_726_301_967_000_000_000n), '2024-09-14 08:19:27.000000000 +0000 UTC');
    assert.equal(formatKmeshTime(1_726_301_966_999_999_999n), '2024-09-14 08:19:26.999999999 +0000 UTC');
    assert.equal(formatKmeshTime(-1n), '1969-12-31 23:59:59.999999999 +0000 UTC');
    assert.equal(formatKmeshTime(0n), '1970-01-01 00:00:00.000000000 +0000 UTC');
  });

  it('prints durations as plain decimals beyond 2^53 ns', () => {
    assert.equal(nsToMsString(2_733_902), '2.733902');
    assert.equal(nsToMsString(3_000_000), '3');
    assert.equal(nsToMsString(2 ** 60), '1152921504606.846976');
  });
});
