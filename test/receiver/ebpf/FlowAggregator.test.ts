import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RawAttr } from '../../../src/model/metrics.js';
import { FlowAggregator, type FlowInput } from '../../../src/receiver/ebpf/FlowAggregator.js';

const delta = (sentBytes = 0, receivedBytes = 0) => ({ sentBytes, receivedBytes, retransmits: 0, lostPackets: 0 });

function ev(over: Partial<FlowInput> = {}): FlowInput {
  return {
    kind: 'close',
    direction: 'OUTBOUND',
    srcAddr: '10.0.0.1',
    dstAddr: '10.0.0.2',
    dstPort: 80,
    origDstAddr: undefined,
    origDstPort: undefined,
    failure: undefined,
    durationNs: 2_000_000,
    srttUs: 150,
    ...over,
  };
}

describe('FlowAggregator', () => {
  it('aggregates per flow key within a flush: counts, bytes, durations and RTTs exact', () => {
    const a = new FlowAggregator();
    a.add(ev({ kind: 'open' }), delta(0, 0));
    a.add(ev({ kind: 'report', srttUs: 100 }), delta(10, 20));
    a.add(ev({ kind: 'close', durationNs: 3_000_000_000, srttUs: 0 }), delta(5, 1));
    a.add(ev({ kind: 'fail', failure: 'refused' }), delta(999, 999));
    assert.equal(a.size, 2);
    const [ok, failed] = a.flush();
    assert.equal(ok!.opened, 1);
    assert.equal(ok!.closed, 1);
    assert.equal(ok!.sentBytes, 15);
    assert.equal(ok!.receivedBytes, 21);
    assert.deepEqual(ok!.durationsSec, [3]);
    assert.deepEqual(ok!.rttsSec, [0.0001], 'a zero srtt is not an RTT sample');
    assert.equal(failed!.failed, 1);
    assert.equal(failed!.sentBytes, 0, 'a failure carries no deltas');
    assert.equal(failed!.flow!.failure, 'refused');
    assert.equal(a.size, 0);
    assert.deepEqual(a.flush(), []);
  });

  it('keys numerically and typed: port, direction, failure and original destination tell flows apart; source ports do not exist in the key', () => {
    const a = new FlowAggregator();
    const variants: Partial<FlowInput>[] = [
      {},
      { dstPort: 81 },
      { direction: 'INBOUND' },
      { failure: 'timeout', kind: 'fail' },
      { origDstAddr: '10.96.0.1', origDstPort: 8080 },
      { dstAddr: '10.0.0.3' },
      { srcAddr: '10.0.0.4' },
    ];
    for (const v of variants) a.add(ev(v), delta(1));
    const points = a.flush();
    assert.equal(points.length, variants.length);
    const keys = points.map((p) => p.flow!);
    assert.deepEqual(keys.map((k) => k.dstPort), [80, 81, 80, 80, 80, 80, 80]);
    assert.equal(typeof keys[0]!.dstPort, 'number');
    assert.equal(keys[2]!.direction, 'INBOUND');
    assert.equal(keys[4]!.origDstAddr, '10.96.0.1');
    assert.equal(keys[4]!.origDstPort, 8080);
    // The raw attributes view, built once per key.
    assert.deepEqual(keys[4]!.attributes, {
      [RawAttr.direction]: 'OUTBOUND',
      [RawAttr.sourceAddress]: '10.0.0.1',
      [RawAttr.destinationAddress]: '10.0.0.2',
      [RawAttr.destinationPort]: '80',
      [RawAttr.originalDestinationAddress]: '10.96.0.1',
      [RawAttr.originalDestinationPort]: '8080',
    });
  });

  it('interns keys across flushes: equal keys are one object, and a point carries its key attributes object itself', () => {
    const a = new FlowAggregator();
    a.add(ev(), delta(1));
    a.add(ev({ origDstAddr: '10.96.0.1', origDstPort: 8080 }), delta(1));
    const first = a.flush();
    a.add(ev({ origDstAddr: '10.96.0.1', origDstPort: 8080 }), delta(2));
    a.add(ev(), delta(2));
    const second = a.flush();
    assert.equal(second[1]!.flow, first[0]!.flow, 'same key object, flush after flush');
    assert.equal(second[0]!.flow, first[1]!.flow, 'also with an original destination');
    assert.equal(second[1]!.attributes, first[0]!.attributes);
    assert.equal(second[1]!.attributes, second[1]!.flow!.attributes);
    assert.notEqual(second[1], first[0], 'a new point per flush');
    assert.equal(second[1]!.sentBytes, 2, 'values start from zero every flush');
    assert.equal(a.keys, 2);
  });

  it('stays within its key bound: past maxKeys the table is dropped at the next flush and keys are rebuilt', () => {
    const a = new FlowAggregator(3);
    for (let port = 1; port <= 5; port++) a.add(ev({ dstPort: port }), delta(1));
    const before = a.flush();
    assert.equal(before.length, 5, 'nothing is lost within a flush');
    assert.equal(a.keys, 0, 'dropped after the flush');
    a.add(ev({ dstPort: 1 }), delta(1));
    const after = a.flush();
    assert.notEqual(after[0]!.flow, before[0]!.flow, 'a new key object once the table was dropped');
    assert.deepEqual(after[0]!.flow!.attributes, before[0]!.flow!.attributes, 'equal content');
    assert.equal(a.keys, 1);
  });
});
