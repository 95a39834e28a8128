import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatJsonLine, formatKmeshLine, formatKmeshTime, nsToMsString } from '../../../src/exporters/common/accessLogLine.js';
import { entry, event, KMESH_LINE } from '../../helpers/accessLogEntries.js';

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
