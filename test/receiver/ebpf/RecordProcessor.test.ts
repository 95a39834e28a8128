import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RawAttr, type FlowPoint } from '../../../src/model/metrics.js';
import { newDecodeContext } from '../../../src/receiver/ebpf/decode.js';
import { MonotonicClock } from '../../../src/receiver/ebpf/MonotonicClock.js';
import { RECORD_SIZE, RecordLayout } from '../../../src/receiver/ebpf/layout.js';
import { RecordProcessor, type RecordProcessorOptions } from '../../../src/receiver/ebpf/RecordProcessor.js';
import { batch, DIR, KIND, record, type RecordFields } from './records.js';
import { prng } from '../../helpers/prng.js';

const ctx = newDecodeContext(new MonotonicClock());

function processor(opts: Partial<RecordProcessorOptions> = {}): RecordProcessor {
  return new RecordProcessor(
    { connectionTtlMs: 15_000, maxConnections: 1000, logPeriodicReports: true, wantLogs: true, wantMetrics: true, ...opts },
    ctx,
  );
}

/** Client 10.0.0.1:port -> server 10.0.0.2:80, outbound. */
const conn = (cookie: bigint, f: RecordFields = {}): RecordFields => ({
  socketCookie: cookie,
  src: '10.0.0.1',
  dst: '10.0.0.2',
  dstPort: 80,
  srcPort: 40000 + Number(cookie),
  direction: DIR.OUTBOUND,
  ...f,
});

const values = (p: FlowPoint): Omit<FlowPoint, 'attributes'> => ({
  opened: p.opened,
  closed: p.closed,
  failed: p.failed,
  sentBytes: p.sentBytes,
  receivedBytes: p.receivedBytes,
  retransmits: p.retransmits,
  lostPackets: p.lostPackets,
  durationsSec: p.durationsSec,
  rttsSec: p.rttsSec,
});

describe('RecordProcessor aggregation', () => {
  it('open -> opened+1; close -> closed+1 with deltas, duration and RTT; source ports dropped', () => {
    const p = processor();
    const r1 = p.process(batch(record(conn(1n, { kind: KIND.open })), record(conn(2n, { kind: KIND.open }))));
    assert.equal(r1.metrics!.points.length, 1, 'two source ports, one point');
    assert.deepEqual(r1.metrics!.points[0]!.attributes, {
      [RawAttr.direction]: 'OUTBOUND',
      [RawAttr.sourceAddress]: '10.0.0.1',
      [RawAttr.destinationAddress]: '10.0.0.2',
      [RawAttr.destinationPort]: '80',
    });
    assert.deepEqual(values(r1.metrics!.points[0]!), {
      opened: 2, closed: 0, failed: 0, sentBytes: 0, receivedBytes: 0, retransmits: 0, lostPackets: 0, durationsSec: [], rttsSec: [],
    });
    assert.equal(r1.logs, undefined, 'opens are not logged');

    const r2 = p.process(
      batch(
        record(conn(1n, { kind: KIND.close, sentBytes: 1000n, receivedBytes: 300n, totalRetrans: 2, lostOut: 1, srttUs: 1500, startNs: 1_000_000_000n, eventNs: 1_250_000_000n, state: 7 })),
      ),
    );
    assert.deepEqual(values(r2.metrics!.points[0]!), {
      opened: 0, closed: 1, failed: 0, sentBytes: 1000, receivedBytes: 300, retransmits: 2, lostPackets: 1, durationsSec: [0.25], rttsSec: [0.0015],
    });
    assert.equal(r2.logs!.entries.length, 1);
    const entry = r2.logs!.entries[0]!;
    assert.equal(entry.event.kind, 'close');
    assert.equal(entry.event.sentBytes, 1000, 'the log carries the connection totals');
    assert.deepEqual(entry.attributes, {});
    assert.equal(typeof entry.observedUnixNano, 'bigint');
    assert.equal(p.table.size, 1, 'socket 2 still tracked');
  });

  it('report -> deltas since the last record and an RTT sample; logged when log_periodic_reports', () => {
    const p = processor();
    p.process(record(conn(1n, { kind: KIND.open })));
    const r1 = p.process(record(conn(1n, { kind: KIND.report, sentBytes: 100n, receivedBytes: 10n, srttUs: 200 })));
    assert.deepEqual(values(r1.metrics!.points[0]!), {
      opened: 0, closed: 0, failed: 0, sentBytes: 100, receivedBytes: 10, retransmits: 0, lostPackets: 0, durationsSec: [], rttsSec: [0.0002],
    });
    assert.equal(r1.logs!.entries.length, 1);
    assert.equal(r1.logs!.entries[0]!.event.kind, 'report');
    const r2 = p.process(record(conn(1n, { kind: KIND.report, sentBytes: 150n, receivedBytes: 10n, srttUs: 0 })));
    assert.equal(r2.metrics!.points[0]!.sentBytes, 50);
    assert.deepEqual(r2.metrics!.points[0]!.rttsSec, [], 'no RTT sample when unknown');
    const r3 = p.process(record(conn(1n, { kind: KIND.close, sentBytes: 160n, receivedBytes: 15n })));
    assert.equal(r3.metrics!.points[0]!.sentBytes, 10);
    assert.equal(r3.metrics!.points[0]!.receivedBytes, 5);
    assert.equal(p.table.size, 0);
  });

  it('does not log reports when log_periodic_reports is false', () => {
    const p = processor({ logPeriodicReports: false });
    const r = p.process(record(conn(1n, { kind: KIND.report, sentBytes: 1n })));
    assert.equal(r.logs, undefined);
    assert.equal(r.metrics!.points[0]!.sentBytes, 1);
  });

  it('fail -> failed+1 (not opened) in its own point carrying the reason; logged', () => {
    const p = processor();
    const r = p.process(
      batch(
        record(conn(1n, { kind: KIND.fail, skErr: 111, state: 7 })),
        record(conn(2n, { kind: KIND.fail, skErr: 111, state: 7 })),
        record(conn(3n, { kind: KIND.fail, skErr: 110, state: 7 })),
        record(conn(4n, { kind: KIND.open })),
      ),
    );
    const points = r.metrics!.points;
    assert.equal(points.length, 3);
    const byReason = new Map<string | undefined, FlowPoint>(points.map((pt) => [pt.attributes[RawAttr.failureReason], pt]));
    assert.equal(byReason.get('refused')!.failed, 2);
    assert.equal(byReason.get('refused')!.opened, 0);
    assert.equal(byReason.get('timeout')!.failed, 1);
    assert.equal(byReason.get(undefined)!.opened, 1);
    assert.equal(byReason.get(undefined)!.failed, 0);
    assert.equal(r.logs!.entries.length, 3);
    assert.deepEqual(r.logs!.entries.map((e) => e.event.failure), ['refused', 'refused', 'timeout']);
    assert.equal(p.table.size, 1, 'failed sockets are not tracked');
  });

  it('keys points by addresses, destination port, original destination and direction', () => {
    const p = processor();
    const r = p.process(
      batch(
        record(conn(1n, { kind: KIND.open })),
        record(conn(2n, { kind: KIND.open, dstPort: 81 })),
        record(conn(3n, { kind: KIND.open, dst: '10.0.0.3' })),
        record(conn(4n, { kind: KIND.open, src: '10.0.0.9' })),
        record(conn(5n, { kind: KIND.open, direction: DIR.INBOUND })),
        record(conn(6n, { kind: KIND.open, origDst: '10.96.0.1', origDstPort: 8080 })),
        record(conn(7n, { kind: KIND.open, origDst: '10.96.0.1', origDstPort: 8080 })),
      ),
    );
    const points = r.metrics!.points;
    assert.equal(points.length, 6);
    const orig = points.find((pt) => pt.attributes[RawAttr.originalDestinationAddress] !== undefined)!;
    assert.equal(orig.attributes[RawAttr.originalDestinationAddress], '10.96.0.1');
    assert.equal(orig.attributes[RawAttr.originalDestinationPort], '8080');
    assert.equal(orig.opened, 2);
    assert.ok(points.some((pt) => pt.attributes[RawAttr.direction] === 'INBOUND'), 'inbound point');
  });

  it('starts a new flush per batch and returns nothing for an empty batch', () => {
    const p = processor();
    p.process(record(conn(1n, { kind: KIND.open })));
    const r = p.process(Buffer.alloc(0));
    assert.equal(r.metrics, undefined);
    assert.equal(r.logs, undefined);
  });

  it('builds only what is consumed', () => {
    const p = processor({ wantLogs: false });
    const r = p.process(record(conn(1n, { kind: KIND.close })));
    assert.equal(r.logs, undefined);
    assert.equal(r.metrics!.points[0]!.closed, 1);
    const q = processor({ wantMetrics: false });
    const s = q.process(record(conn(1n, { kind: KIND.close })));
    assert.equal(s.metrics, undefined);
    assert.equal(s.logs!.entries.length, 1);
  });

  it('counts records by kind and decode errors', () => {
    const p = processor();
    p.process(batch(record(conn(1n, { kind: KIND.open })), record(conn(1n, { kind: KIND.report })), record({ kind: 0 }), record(conn(1n, { kind: KIND.close }))));
    assert.deepEqual(p.kinds, { open: 1, close: 1, fail: 0, report: 1 });
    assert.equal(p.stats.unknownKind, 1);
    assert.equal(p.stats.decoded, 3);
  });
});


describe('RecordProcessor.process fuzz (the production decode path)', () => {
  it('never throws on random and half-plausible batches, and accounts for every record', (t) => {
    const seed = Number(process.env.KMESH_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32));
    t.diagnostic(`seed ${seed} (replay with KMESH_FUZZ_SEED=${seed})`);
    const rnd = prng(seed);
    const byte = (): number => Math.floor(rnd() * 256);
    const p = processor({ maxConnections: 64 });
    let whole = 0;
    let ragged = 0;
    let opened = 0;
    let failed = 0;
    for (let i = 0; i < 3000; i++) {
      const n = 1 + Math.floor(rnd() * 4);
      const extra = i % 9 === 0 ? 1 + Math.floor(rnd() * (RECORD_SIZE - 1)) : 0;
      const buf = Buffer.alloc(n * RECORD_SIZE + extra);
      for (let j = 0; j < buf.length; j++) buf[j] = byte();
      // Most records plausible, so the paths past validation (table,
      // aggregation, log entries) run too; small cookies so they repeat.
      for (let off = 0; off + RECORD_SIZE <= buf.length; off += RECORD_SIZE) {
        if (rnd() < 0.8) {
          buf[off + RecordLayout.kind.offset] = 1 + Math.floor(rnd() * 4);
          buf[off + RecordLayout.direction.offset] = 1 + Math.floor(rnd() * 2);
          buf.writeUInt16LE(rnd() < 0.5 ? 2 : 10, off + RecordLayout.family.offset);
          buf.writeBigUInt64LE(BigInt(Math.floor(rnd() * 200)), off + RecordLayout.socket_cookie.offset);
          if (rnd() < 0.5) buf.writeBigUInt64LE(BigInt(Math.floor(rnd() * 1e9)), off + RecordLayout.sent_bytes.offset);
        }
      }
      whole += n;
      if (extra > 0) ragged++;
      const r = p.process(buf, 1_000_000 + i);
      for (const pt of r.metrics?.points ?? []) {
        for (const v of [pt.opened, pt.closed, pt.failed, pt.sentBytes, pt.receivedBytes, pt.retransmits, pt.lostPackets]) {
          assert.ok(Number.isFinite(v) && v >= 0, `batch ${i}: point value ${v}`);
        }
        for (const d of pt.durationsSec) assert.ok(Number.isFinite(d) && d >= 0, `batch ${i}: duration ${d}`);
        opened += pt.opened;
        failed += pt.failed;
      }
      for (const e of r.logs?.entries ?? []) assert.ok(e.event.kind !== 'open', 'opens are never logged');
      assert.ok(p.table.size <= 64, `table bounded: ${p.table.size}`);
    }
    const s = p.stats;
    assert.equal(s.decoded + s.unknownKind + s.unknownDirection + s.unknownFamily, whole, 'every whole record decoded or counted by reason');
    assert.equal(s.truncated, ragged, 'one truncation per ragged batch');
    assert.equal(p.kinds.open + p.kinds.close + p.kinds.fail + p.kinds.report, s.decoded, 'every decoded record has its kind');
    assert.equal(opened, p.kinds.open, 'every open counted once in the points');
    assert.equal(failed, p.kinds.fail, 'every failure counted once in the points');
    assert.ok(s.decoded > 5000 && s.unknownKind > 0, `both paths exercised: ${JSON.stringify(s)}`);
  });
});
