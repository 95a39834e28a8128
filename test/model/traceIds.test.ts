import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import type { ConnectionEvent } from '../../src/model/connection.js';
import { ConnectionTraceIds } from '../../src/model/traceIds.js';

type Ev = Pick<ConnectionEvent, 'kind' | 'direction' | 'isnClient' | 'isnServer' | 'srcAddr' | 'srcPort' | 'dstAddr' | 'dstPort'>;

/** The documented derivation, written out independently of the implementation. */
function expectedTraceId(isnC: number, isnS: number, key?: string): string {
  const h = key === undefined ? createHash('sha256') : createHmac('sha256', key);
  const b = Buffer.alloc(8);
  b.writeUInt32BE(isnC, 0);
  b.writeUInt32BE(isnS, 4);
  return h.update('kmesh-otel trace v1').update(b).digest().subarray(0, 16).toString('hex');
}
function expectedSpanId(label: 'client' | 'server', traceIdHex: string): string {
  const d = createHash('sha256').update('kmesh-otel span ids v1').update(Buffer.from(traceIdHex, 'hex')).digest();
  return (label === 'client' ? d.subarray(0, 8) : d.subarray(8, 16)).toString('hex');
}

const ids = new ConnectionTraceIds();

/** Both ends of one connection as each end's record shows it (tuples may differ under NAT). */
function ends(isnClient: number, isnServer: number, client: Partial<Ev> = {}, server: Partial<Ev> = {}): [Ev, Ev] {
  const base = { kind: 'close' as const, isnClient, isnServer };
  return [
    { ...base, direction: 'OUTBOUND', srcAddr: '10.244.0.17', srcPort: 51842, dstAddr: '10.96.0.10', dstPort: 80, ...client },
    { ...base, direction: 'INBOUND', srcAddr: '10.244.1.1', srcPort: 40001, dstAddr: '10.244.0.11', dstPort: 9080, ...server },
  ];
}

describe('ConnectionTraceIds', () => {
  it('derives the documented trace id from (ISN_c, ISN_s) and the span ids from it', () => {
    const [c, s] = ends(0x12345678, 0xfedcba98);
    const traceId = expectedTraceId(0x12345678, 0xfedcba98);
    assert.deepEqual(ids.forEvent(c), { traceId, spanId: expectedSpanId('client', traceId), parentSpanId: undefined });
    assert.deepEqual(ids.forEvent(s), { traceId, spanId: expectedSpanId('server', traceId), parentSpanId: expectedSpanId('client', traceId) });
  });

  for (const [family, client, server] of [
    ['IPv4 through DNAT + masquerade', { srcAddr: '10.244.0.17', dstAddr: '10.96.0.10', dstPort: 80 }, { srcAddr: '10.245.2.1', dstAddr: '10.244.0.11', dstPort: 9080 }],
    ['IPv6', { srcAddr: 'fd00:10:244::17', dstAddr: 'fd00:10:244::11', dstPort: 8080 }, { srcAddr: 'fd00:10:244::17', dstAddr: 'fd00:10:244::11', dstPort: 8080 }],
  ] as const) {
    it(`${family}: both ends get one trace, the server's span a child of the client's`, () => {
      for (const [isnC, isnS] of [[0, 0], [1, 2], [0xffffffff, 0x80000000], [123456789, 987654321]] as const) {
        const [c, s] = ends(isnC, isnS, client, server);
        const cc = ids.forEvent(c)!;
        const sc = ids.forEvent(s)!;
        assert.match(cc.traceId, /^[0-9a-f]{32}$/, 'trace id: 16 bytes, lowercase hex');
        assert.match(cc.spanId, /^[0-9a-f]{16}$/, 'span id: 8 bytes, lowercase hex');
        assert.notEqual(cc.traceId, '0'.repeat(32));
        assert.equal(sc.traceId, cc.traceId, `ISNs ${isnC}/${isnS}: same trace`);
        assert.equal(sc.parentSpanId, cc.spanId, `ISNs ${isnC}/${isnS}: server's parent is the client span`);
        assert.equal(cc.parentSpanId, undefined, 'the client span is the root');
        assert.notEqual(sc.spanId, cc.spanId, 'two spans');
      }
    });
  }

  it('gives different connections different traces (and the pair is ordered)', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) seen.add(ids.forEvent(ends(i, 1000 - i)[0])!.traceId);
    assert.equal(seen.size, 1000);
    assert.notEqual(ids.traceIdOfPair(1, 2).toString('hex'), ids.traceIdOfPair(2, 1).toString('hex'), 'client and server ISN are not interchangeable');
  });

  it('derives a failed connect from the client ISN and the tuple (IPv4 and IPv6)', () => {
    for (const tuple of [
      { srcAddr: '10.244.0.17', srcPort: 51842, dstAddr: '10.244.0.11', dstPort: 9080 },
      { srcAddr: 'fd00:10:244::17', srcPort: 51842, dstAddr: 'fd00:10:244::11', dstPort: 9080 },
    ]) {
      const fail: Ev = { kind: 'fail', direction: 'OUTBOUND', isnClient: 0xdeadbeef, isnServer: undefined, ...tuple };
      const isn = Buffer.alloc(4);
      isn.writeUInt32BE(0xdeadbeef);
      const traceId = createHash('sha256')
        .update('kmesh-otel failed connect v1')
        .update(isn)
        .update(`${tuple.srcAddr}|${tuple.srcPort}|${tuple.dstAddr}|${tuple.dstPort}`)
        .digest()
        .subarray(0, 16)
        .toString('hex');
      assert.deepEqual(ids.forEvent(fail), { traceId, spanId: expectedSpanId('client', traceId), parentSpanId: undefined });
      assert.notEqual(ids.forEvent({ ...fail, srcPort: 51843 })!.traceId, traceId, 'another source port, another trace');
      assert.notEqual(ids.forEvent({ ...fail, isnClient: 0xdeadbeee })!.traceId, traceId, 'another ISN, another trace');
    }
  });

  it('has no ids for a record without the ISNs it needs', () => {
    assert.equal(ids.forEvent({ ...ends(1, 2)[0], isnServer: undefined }), undefined, 'established without the server ISN');
    assert.equal(ids.forEvent({ ...ends(1, 2)[0], kind: 'fail', isnClient: undefined, isnServer: undefined }), undefined, 'failure without the client ISN');
  });

  it('with a key: HMAC-SHA-256, the same on every agent with that key, different from unkeyed', () => {
    const a = new ConnectionTraceIds('cluster secret');
    const b = new ConnectionTraceIds(Buffer.from('cluster secret'));
    const [c, s] = ends(42, 4242);
    assert.equal(a.forEvent(c)!.traceId, expectedTraceId(42, 4242, 'cluster secret'));
    assert.equal(b.forEvent(s)!.traceId, a.forEvent(c)!.traceId, 'two agents with one key join the ends');
    assert.equal(b.forEvent(s)!.parentSpanId, a.forEvent(c)!.spanId);
    assert.notEqual(a.forEvent(c)!.traceId, ids.forEvent(c)!.traceId);
    assert.equal(new ConnectionTraceIds('').forEvent(c)!.traceId, ids.forEvent(c)!.traceId, 'an empty key is no key');
  });
});
