import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ConnectionEvent } from '../../../src/model/connection.js';
import { formatIPv6 } from '../../../src/receiver/ebpf/address.js';
import { decodeInto, DecodedRecord, eventFromRecord, newDecodeContext, newDecodeStats, type DecodeError } from '../../../src/receiver/ebpf/decode.js';
import { RECORD_SIZE } from '../../../src/receiver/ebpf/layout.js';
import { RecordProcessor } from '../../../src/receiver/ebpf/RecordProcessor.js';
import { MonotonicClock } from '../../../src/receiver/ebpf/MonotonicClock.js';
import { addrBytes, batch, DIR, KIND, record } from './records.js';

const clock = new MonotonicClock();
const ctx = newDecodeContext(clock);
const view = (b: Buffer): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** The record at `offset` through the production pair RecordProcessor runs: decodeInto, then eventFromRecord. */
function decodeRecord(v: DataView, offset: number, c = ctx): ConnectionEvent | DecodeError {
  const r = new DecodedRecord();
  const err = decodeInto(v, offset, c, r);
  return err !== undefined ? err : eventFromRecord(v, offset, c, r);
}

function decodeOne(b: Buffer): ConnectionEvent {
  const r = decodeRecord(view(b), 0, ctx);
  assert.equal(typeof r, 'object', `expected an event, got ${String(r)}`);
  return r as ConnectionEvent;
}

describe('decodeInto + eventFromRecord (one record)', () => {
  it('decodes every field of a close record', () => {
    const e = decodeOne(
      record({
        socketCookie: 0x1_0000_0001n, // both 32-bit halves
        netnsCookie: 0x1f_ffff_ffff_fff0n, // 2^53 - 16: cookies are exact up to 2^53
        startNs: 5_000_000_000n,
        eventNs: 7_500_000_123n,
        sentBytes: 5_000_000_000n, // > 2^32: no 32-bit truncation
        receivedBytes: 300n,
        src: '10.244.0.17',
        dst: '10.244.0.13',
        origDst: '10.96.0.10',
        srttUs: 1234,
        minRttUs: 800,
        totalRetrans: 3,
        lostOut: 2,
        segsIn: 11,
        segsOut: 12,
        srcPort: 51842,
        dstPort: 9080,
        origDstPort: 80,
        kind: KIND.close,
        direction: DIR.INBOUND,
        state: 7,
      }),
    );
    assert.deepEqual(e, {
      kind: 'close',
      direction: 'INBOUND',
      family: 4,
      srcAddr: '10.244.0.17',
      srcPort: 51842,
      dstAddr: '10.244.0.13',
      dstPort: 9080,
      origDstAddr: '10.96.0.10',
      origDstPort: 80,
      socketCookie: 0x1_0000_0001,
      netnsCookie: 0x1f_ffff_ffff_fff0,
      timeUnixNano: 7_500_000_123n + clock.offsetNs,
      durationNs: 2_500_000_123,
      sentBytes: 5_000_000_000,
      receivedBytes: 300,
      srttUs: 1234,
      minRttUs: 800,
      retransmits: 3,
      lostPackets: 2,
      segsIn: 11,
      segsOut: 12,
      state: 'CLOSE',
      failure: undefined,
    });
  });

  it('maps kinds, directions and TCP states', () => {
    const kinds = [
      [KIND.open, 'open'],
      [KIND.close, 'close'],
      [KIND.fail, 'fail'],
      [KIND.report, 'report'],
    ] as const;
    for (const [value, name] of kinds) assert.equal(decodeOne(record({ kind: value })).kind, name, `kind ${value}`);
    assert.equal(decodeOne(record({ direction: DIR.OUTBOUND })).direction, 'OUTBOUND');
    assert.equal(decodeOne(record({ direction: DIR.INBOUND })).direction, 'INBOUND');
    const states = ['UNKNOWN', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE', 'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV'];
    states.forEach((s, i) => assert.equal(decodeOne(record({ state: i })).state, s, `state ${i}`));
    assert.equal(decodeOne(record({ state: 200 })).state, 'UNKNOWN');
  });

  it('maps sk_err of failures to reasons, duration 0', () => {
    const cases = [
      [111, 'refused'],
      [104, 'reset'],
      [110, 'timeout'],
      [113, 'host_unreachable'],
      [101, 'net_unreachable'],
      [0, 'other'],
      [22, 'other'],
    ] as const;
    for (const [errno, reason] of cases) {
      const e = decodeOne(record({ kind: KIND.fail, skErr: errno, state: 7 }));
      assert.equal(e.failure, reason, `errno ${errno}`);
      assert.equal(e.durationNs, 0, `errno ${errno}: failures have no age`);
    }
    assert.equal(decodeOne(record({ kind: KIND.close, skErr: 111 })).failure, undefined, 'only fail records carry a reason');
  });

  it('leaves unknown original destination and port undefined', () => {
    const e = decodeOne(record({}));
    assert.equal(e.origDstAddr, undefined);
    assert.equal(e.origDstPort, undefined);
  });

  it('reads zero start as duration 0 and never a negative duration', () => {
    assert.equal(decodeOne(record({ startNs: 0n, eventNs: 5n })).durationNs, 0);
    assert.equal(decodeOne(record({ startNs: 10n, eventNs: 5n })).durationNs, 0);
  });

  it('decodes IPv6 in RFC 5952 form', () => {
    const e = decodeOne(record({ src: 'fd00:0:0:1::17', dst: '2001:db8::1:0:0:1', origDst: 'fd00::a', origDstPort: 443 }));
    assert.equal(e.family, 6);
    assert.equal(e.srcAddr, 'fd00:0:0:1::17');
    assert.equal(e.dstAddr, '2001:db8::1:0:0:1');
    assert.equal(e.origDstAddr, 'fd00::a');
    assert.equal(e.origDstPort, 443);
  });

  it('normalises IPv4-mapped IPv6 to IPv4', () => {
    const e = decodeOne(record({ src: '::ffff:127.0.0.1', dst: '::ffff:10.1.2.3', origDst: '::ffff:10.96.0.1', family: 10 }));
    assert.equal(e.family, 4);
    assert.equal(e.srcAddr, '127.0.0.1');
    assert.equal(e.dstAddr, '10.1.2.3');
    assert.equal(e.origDstAddr, '10.96.0.1');
  });

  it('keeps family 6 when only one side is mapped, still printing the mapped one as IPv4', () => {
    const e = decodeOne(record({ src: '::ffff:10.0.0.1', dst: '::1', family: 10 }));
    assert.equal(e.family, 6);
    assert.equal(e.srcAddr, '10.0.0.1');
    assert.equal(e.dstAddr, '::1');
  });

  it('rejects unknown kind, direction and family', () => {
    assert.equal(decodeRecord(view(record({ kind: 0 })), 0, ctx), 'unknown_kind');
    assert.equal(decodeRecord(view(record({ kind: 5 })), 0, ctx), 'unknown_kind');
    assert.equal(decodeRecord(view(record({ direction: 0 })), 0, ctx), 'unknown_direction');
    assert.equal(decodeRecord(view(record({ direction: 3 })), 0, ctx), 'unknown_direction');
    assert.equal(decodeRecord(view(record({ family: 1 })), 0, ctx), 'unknown_family');
  });

  it('returns truncated for a record running past the end or a bad offset', () => {
    assert.equal(decodeRecord(view(record().subarray(0, RECORD_SIZE - 1)), 0, ctx), 'truncated');
    assert.equal(decodeRecord(view(record()), 1, ctx), 'truncated');
    assert.equal(decodeRecord(view(record()), -1, ctx), 'truncated');
  });
});

describe('formatIPv6 (RFC 5952)', () => {
  const cases: Array<[string, string]> = [
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // first of two equal runs (4.2.3)
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group is not shortened (4.2.2)
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run (4.2.3)
    ['2001:DB8:AAAA:BBBB:CCCC:DDDD:EEEE:1', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:1'], // lower case (4.3)
    ['fe80:0:0:0:0:0:0:ff', 'fe80::ff'],
    ['0:0:0:0:0:0:a00:1', '::a00:1'], // IPv4-compatible (deprecated) stays hex
  ];
  for (const [input, expected] of cases) {
    it(`${input} -> ${expected}`, () => {
      const b = addrBytes(input);
      assert.equal(formatIPv6(view(b), 0), expected);
    });
  }
});

describe('a batch through RecordProcessor.process (the production decode loop)', () => {
  /** Close records each give one log entry: the entries show which records were decoded, in order. */
  function run(buf: Uint8Array): { cookies: number[]; processor: RecordProcessor } {
    const processor = new RecordProcessor(
      { connectionTtlMs: 60_000, maxConnections: 1000, logPeriodicReports: true, wantLogs: true, wantMetrics: true },
      ctx,
    );
    const r = processor.process(buf);
    return { cookies: (r.logs?.entries ?? []).map((e) => e.event.socketCookie), processor };
  }
  const close = (cookie: bigint, more: Parameters<typeof record>[0] = {}): Buffer => record({ kind: KIND.close, socketCookie: cookie, ...more });

  it('decodes every record of a batch in order', () => {
    const { cookies, processor } = run(batch(close(1n), close(2n), close(3n)));
    assert.deepEqual(cookies, [1, 2, 3]);
    assert.deepEqual(processor.stats, { ...newDecodeStats(), decoded: 3 });
  });

  it('decodes a batch that is a view into a larger buffer (byteOffset != 0)', () => {
    const big = Buffer.concat([Buffer.alloc(7), close(9n, { srcPort: 1234 }), Buffer.alloc(5)]);
    const processor = new RecordProcessor({ connectionTtlMs: 60_000, maxConnections: 10, logPeriodicReports: true, wantLogs: true, wantMetrics: false }, ctx);
    const entries = processor.process(big.subarray(7, 7 + RECORD_SIZE)).logs?.entries ?? [];
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.event.socketCookie, 9);
    assert.equal(entries[0]!.event.srcPort, 1234);
  });

  it('accepts an empty batch', () => {
    const { cookies, processor } = run(Buffer.alloc(0));
    assert.deepEqual(cookies, []);
    assert.deepEqual(processor.stats, newDecodeStats());
  });

  it('counts a length that is not a multiple once and decodes the whole records', () => {
    const a = run(Buffer.concat([close(1n), close(2n).subarray(0, 100)]));
    assert.deepEqual(a.cookies, [1]);
    assert.equal(a.processor.stats.truncated, 1);
    const b = run(Buffer.alloc(RECORD_SIZE - 1));
    assert.deepEqual(b.cookies, []);
    assert.equal(b.processor.stats.truncated, 1);
  });

  it('skips and counts bad records between good ones', () => {
    const { cookies, processor } = run(batch(close(1n), record({ kind: 9 }), record({ direction: 7 }), record({ family: 3 }), close(5n)));
    assert.deepEqual(cookies, [1, 5]);
    assert.deepEqual(processor.stats, { decoded: 2, truncated: 0, unknownKind: 1, unknownDirection: 1, unknownFamily: 1 });
  });
});


