import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionTraceIds } from '../../../src/model/traceIds.js';
import { newDecodeContext } from '../../../src/receiver/ebpf/decode.js';
import { MonotonicClock } from '../../../src/receiver/ebpf/MonotonicClock.js';
import { RecordProcessor, type RecordProcessorOptions } from '../../../src/receiver/ebpf/RecordProcessor.js';
import { batch, DIR, KIND, record, type RecordFields } from './records.js';

const clock = new MonotonicClock();
const ctx = newDecodeContext(clock);
const ids = new ConnectionTraceIds();

function processor(opts: Partial<RecordProcessorOptions> = {}): RecordProcessor {
  return new RecordProcessor(
    { connectionTtlMs: 15_000, maxConnections: 1000, logPeriodicReports: true, wantLogs: false, wantMetrics: false, wantTraces: true, ...opts },
    ctx,
  );
}

/** One end of the connection 10.244.0.17:40001 -> 10.244.0.11:8000 with ISNs (7, 9). */
const end = (direction: number, f: RecordFields = {}): RecordFields => ({
  socketCookie: direction === DIR.OUTBOUND ? 1n : 2n,
  src: '10.244.0.17',
  srcPort: 40001,
  dst: '10.244.0.11',
  dstPort: 8000,
  direction,
  isnClient: 7,
  isnServer: 9,
  isnKnown: 3,
  startNs: 1_000_000_000n,
  eventNs: 1_250_000_000n,
  ...f,
});

describe('RecordProcessor: connection spans', () => {
  it('a close on each end: a CLIENT and a SERVER span in one trace, the SERVER span the child', () => {
    const r = processor().process(
      batch(
        record(end(DIR.OUTBOUND, { kind: KIND.open })),
        record(end(DIR.OUTBOUND, { kind: KIND.report })),
        record(end(DIR.OUTBOUND, { kind: KIND.close, sentBytes: 1000n, receivedBytes: 300n })),
        record(end(DIR.INBOUND, { kind: KIND.close, sentBytes: 300n, receivedBytes: 1000n, startNs: 1_000_100_000n })),
      ),
    );
    const spans = r.traces!.spans;
    assert.equal(spans.length, 2, 'opens and reports make no span');
    const [c, s] = spans as [(typeof spans)[0], (typeof spans)[0]];
    const traceId = ids.traceIdOfPair(7, 9).toString('hex');
    assert.equal(c.kind, 'CLIENT');
    assert.equal(s.kind, 'SERVER');
    assert.equal(c.context.traceId, traceId);
    assert.equal(s.context.traceId, traceId);
    assert.equal(c.context.parentSpanId, undefined);
    assert.equal(s.context.parentSpanId, c.context.spanId);
    assert.equal(c.endUnixNano, clock.toUnixNano(1_250_000_000n), 'ends at the close');
    assert.equal(c.endUnixNano - c.startUnixNano, 250_000_000n, 'client: established 250 ms before the close');
    assert.equal(s.endUnixNano - s.startUnixNano, 249_900_000n, 'server: its own establishment');
    assert.equal(c.event.sentBytes, 1000);
    assert.deepEqual(c.attributes, {}, 'identities are the processors\' to add');
  });

  it('a failed connect: a CLIENT span from the connect to the failure, with only the client ISN', () => {
    const r = processor().process(
      batch(record(end(DIR.OUTBOUND, { kind: KIND.fail, skErr: 111, isnKnown: 1, isnServer: 0, startNs: 2_000_000_000n, eventNs: 2_003_000_000n }))),
    );
    const [f] = r.traces!.spans;
    assert.equal(f!.kind, 'CLIENT');
    assert.equal(f!.event.failure, 'refused');
    assert.equal(f!.endUnixNano - f!.startUnixNano, 3_000_000n, 'the attempt took 3 ms');
    assert.equal(
      f!.context.traceId,
      ids.traceIdOfFailedConnect(7, { srcAddr: '10.244.0.17', srcPort: 40001, dstAddr: '10.244.0.11', dstPort: 8000 }).toString('hex'),
    );
  });

  it('samples from the trace id (both ends alike), keeps failures, counts every decision', () => {
    const p = processor({ spans: { samplingRatio: 0, keepLongerThanMs: 200, traceIdKey: '' } });
    const r = p.process(
      batch(
        record(end(DIR.OUTBOUND, { kind: KIND.close })), // 250 ms: kept as long
        record(end(DIR.INBOUND, { kind: KIND.close, eventNs: 1_100_000_000n })), // 100 ms: dropped
        record(end(DIR.OUTBOUND, { socketCookie: 3n, kind: KIND.fail, isnKnown: 1 })),
      ),
    );
    assert.deepEqual(r.traces!.spans.map((s) => s.kind + ':' + (s.event.failure ?? 'ok')), ['CLIENT:ok', 'CLIENT:other']);
    assert.deepEqual(p.spanBuilder.sampler.counts, { failed: 1, long: 1, ratio: 0, dropped: 1 });
  });

  it('a final record without the ISNs it needs makes no span and is counted', () => {
    const p = processor();
    const r = p.process(batch(record(end(DIR.OUTBOUND, { kind: KIND.close, isnKnown: 1 })), record(end(DIR.OUTBOUND, { kind: KIND.fail, isnKnown: 0 }))));
    assert.equal(r.traces, undefined);
    assert.equal(p.spanBuilder.withoutIsns, 2);
  });

  it('builds no spans when no traces pipeline is wired', () => {
    const p = processor({ wantTraces: false, wantLogs: true });
    const r = p.process(batch(record(end(DIR.OUTBOUND, { kind: KIND.close }))));
    assert.equal(r.traces, undefined);
    assert.equal(r.logs!.entries.length, 1);
  });

  it('gives the span its own event when the same close is also logged', () => {
    const r = processor({ wantLogs: true }).process(batch(record(end(DIR.OUTBOUND, { kind: KIND.close }))));
    assert.notEqual(r.traces!.spans[0]!.event, r.logs!.entries[0]!.event, 'not shared with a possibly mutating logs pipeline');
    assert.deepEqual(r.traces!.spans[0]!.event, r.logs!.entries[0]!.event);
  });
});
