import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionTraceIds } from '../../../src/model/traceIds.js';
import { randomness, SpanSampler } from '../../../src/receiver/ebpf/SpanSampler.js';

const ids = new ConnectionTraceIds();
/** A trace id whose 56 low bits are `r` (the top 9 bytes arbitrary). */
const withRandomness = (r: bigint): string => `abcdef0123456789ff${r.toString(16).padStart(14, '0')}`;

describe('SpanSampler', () => {
  it('reads the randomness from the trace id\'s last 7 bytes (hex or bytes)', () => {
    assert.equal(randomness(withRandomness(0x0102030405060708n & ((1n << 56n) - 1n))), 0x02030405060708n);
    const bytes = Buffer.from(withRandomness(0x11223344556677n), 'hex');
    assert.equal(randomness(bytes), 0x11223344556677n);
    assert.equal(randomness('xyz'), undefined);
    assert.equal(randomness(Buffer.alloc(8)), undefined);
  });

  it('keeps at R >= (1 - ratio) * 2^56 exactly', () => {
    const s = new SpanSampler({ ratio: 0.5 });
    const t = 1n << 55n;
    assert.equal(s.decision({ traceId: withRandomness(t - 1n), failed: false, durationNs: 0 }), 'dropped');
    assert.equal(s.decision({ traceId: withRandomness(t), failed: false, durationNs: 0 }), 'ratio');
    const quarter = new SpanSampler({ ratio: 0.25 });
    assert.equal(quarter.decision({ traceId: withRandomness(3n << 54n), failed: false, durationNs: 0 }), 'ratio');
    assert.equal(quarter.decision({ traceId: withRandomness((3n << 54n) - 1n), failed: false, durationNs: 0 }), 'dropped');
  });

  it('ratio 1 keeps every span, ratio 0 none but the failed', () => {
    const all = new SpanSampler({ ratio: 1 });
    const none = new SpanSampler({ ratio: 0 });
    for (let i = 0; i < 200; i++) {
      const traceId = ids.traceIdOfPair(i, i * 7919);
      assert.equal(all.decide({ traceId, failed: false, durationNs: 1 }), 'ratio');
      assert.equal(none.decide({ traceId, failed: false, durationNs: 1 }), 'dropped');
      assert.equal(none.decide({ traceId, failed: true, durationNs: 0 }), 'failed');
    }
    assert.deepEqual(all.counts, { failed: 0, long: 0, ratio: 200, dropped: 0 });
    assert.deepEqual(none.counts, { failed: 200, long: 0, ratio: 0, dropped: 200 });
  });

  it('both ends of a connection decide the same (one trace id), whatever their durations below the threshold', () => {
    const client = new SpanSampler({ ratio: 0.1, keepLongerThanNs: 10e9 });
    const server = new SpanSampler({ ratio: 0.1, keepLongerThanNs: 10e9 });
    let kept = 0;
    for (let i = 0; i < 5000; i++) {
      const [c, s] = [
        ids.forEvent({ kind: 'close', direction: 'OUTBOUND', isnClient: i * 2654435761, isnServer: i, srcAddr: 'a', srcPort: 1, dstAddr: 'b', dstPort: 2 })!,
        ids.forEvent({ kind: 'close', direction: 'INBOUND', isnClient: i * 2654435761, isnServer: i, srcAddr: 'c', srcPort: 3, dstAddr: 'd', dstPort: 4 })!,
      ];
      const dc = client.decide({ traceId: c.traceId, failed: false, durationNs: 5e6 + i });
      const ds = server.decide({ traceId: s.traceId, failed: false, durationNs: 4e6 + i });
      assert.equal(dc, ds, `connection ${i}`);
      if (dc !== 'dropped') kept++;
    }
    // 5000 hashed ids at 10 %: binomial sd ~21, so 500 +- 150 is > 7 sd.
    assert.ok(kept > 350 && kept < 650, `about a tenth kept: ${kept}`);
    assert.equal(client.counts.ratio, kept);
    assert.equal(client.counts.dropped, 5000 - kept, 'dropped spans counted');
  });

  it('keeps every connection at least keepLongerThanNs old, at any ratio', () => {
    const s = new SpanSampler({ ratio: 0, keepLongerThanNs: 2e9 });
    const traceId = ids.traceIdOfPair(1, 2);
    assert.equal(s.decide({ traceId, failed: false, durationNs: 2e9 }), 'long');
    assert.equal(s.decide({ traceId, failed: false, durationNs: 2e9 - 1 }), 'dropped');
    assert.deepEqual(s.counts, { failed: 0, long: 1, ratio: 0, dropped: 1 });
  });

  it('drops and counts a malformed trace id instead of throwing; rejects a bad configuration at construction', () => {
    const s = new SpanSampler({ ratio: 0.5 });
    assert.equal(s.decide({ traceId: 'not hex', failed: false, durationNs: 0 }), 'dropped');
    assert.equal(s.counts.dropped, 1);
    assert.throws(() => new SpanSampler({ ratio: 1.5 }), /within 0\.\.1/);
    assert.throws(() => new SpanSampler({ ratio: Number.NaN }), /within 0\.\.1/);
    assert.throws(() => new SpanSampler({ keepLongerThanNs: -1 }), />= 0/);
  });
});
