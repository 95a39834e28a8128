/**
 * The direct OTLP encoders against the SDK's: for the same data, the
 * request each produces is decoded with the official opentelemetry-proto
 * definitions (test/helpers/proto, as the in-repo receivers decode) and the
 * two decoded messages must be equal, field by field. Inputs are random
 * from printed seeds (replay one with EQUIV_SEED=<n>).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Attributes } from '@opentelemetry/api';
import { ValueType } from '@opentelemetry/api';
import { ProtobufLogsSerializer, ProtobufMetricsSerializer } from '@opentelemetry/otlp-transformer';
import { AggregationTemporality, DataPointType, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { LoggerProvider, type LogRecordProcessor, type ReadableLogRecord } from '@opentelemetry/sdk-logs';
import { toCollectionResult } from '../../../src/exporters/common/sdkMetrics.js';
import { AccessLogEncoder, LOG_RECORD_ATTRIBUTE_COUNT_LIMIT } from '../../../src/exporters/otlp/encoding/LogsEncoder.js';
import { hrTimeBits, MetricsEncoder } from '../../../src/exporters/otlp/encoding/MetricsEncoder.js';
import type { MetricSchema } from '../../../src/metrics/schema.js';
import { schemaByName } from '../../../src/metrics/schemas/registry.js';
import { SeriesStore } from '../../../src/metrics/SeriesStore.js';
import { SelfTelemetry } from '../../../src/telemetry/SelfTelemetry.js';
import { toLogRecord } from '../../../src/exporters/otlp/logRecord.js';
import type { ConnectionEvent, FailureReason } from '../../../src/model/connection.js';
import type { AccessLogEntry } from '../../../src/model/logs.js';
import { flowPoint, SLEEP_TO_HTTPBIN } from '../../helpers/flowPoints.js';
import { decodeExportRequest } from '../../helpers/otlpReceiver.js';
import { Gen } from '../../helpers/prng.js';


const OWN_KEYS = ['direction', 'src.addr', 'sent_bytes', 'network.type', 'failure.reason', 'state'];

/** Identity attribute sets, a few per batch (as processors make them), some odd: own keys, empty keys and values, many keys. */
function identitySets(g: Gen): Array<Record<string, string>> {
  const sets: Array<Record<string, string>> = [];
  const n = 1 + g.int(5);
  for (let i = 0; i < n; i++) {
    const s: Record<string, string> = {};
    const r = g.rnd();
    const keys = r < 0.05 ? LOG_RECORD_ATTRIBUTE_COUNT_LIMIT + g.int(20) : g.int(14);
    for (let k = 0; k < keys; k++) {
      const odd = g.rnd();
      const key = odd < 0.03 ? '' : odd < 0.08 ? g.pick(OWN_KEYS) : odd < 0.15 ? g.text() : `k8s.attr.${k}.${g.int(3)}`;
      s[key] = g.chance(0.1) ? '' : g.text();
    }
    if (g.chance(0.7)) {
      s['src.workload'] = `client-${g.int(9)}`;
      s['dst.service'] = `server.ns-${g.int(3)}.svc.cluster.local`;
    }
    sets.push(s);
  }
  return sets;
}

const STATES = ['CLOSE', 'ESTABLISHED', 'SYN_SENT', ''];
const FAILURES: FailureReason[] = ['refused', 'reset', 'timeout', 'host_unreachable', 'net_unreachable', 'other'];

function entries(g: Gen, n: number): AccessLogEntry[] {
  const sets = identitySets(g);
  const out: AccessLogEntry[] = [];
  // Times: near now, at the epoch, near 2^63 ns (year 2262), and within one second (the cached-second path).
  let t = g.pick([1_726_301_966_552_709_932n, 0n, 9_223_372_036_000_000_000n, 1_000_000_000n * BigInt(g.int(2 ** 31))]);
  for (let i = 0; i < n; i++) {
    t += BigInt(g.chance(0.3) ? g.int(3_000_000_000) : g.int(1000));
    const kind = g.pick(['open', 'close', 'fail', 'report'] as const);
    const v6 = g.chance(0.25);
    const event: ConnectionEvent = {
      kind,
      direction: g.pick(['INBOUND', 'OUTBOUND'] as const),
      family: v6 ? 6 : 4,
      srcAddr: g.addr(v6),
      srcPort: g.int(65536),
      dstAddr: g.addr(v6),
      dstPort: g.int(65536),
      socketCookie: i + 1,
      netnsCookie: 1,
      timeUnixNano: t,
      durationNs: g.pick([0, g.count(), 2_733_902, 1_000_000]),
      sentBytes: g.count(),
      receivedBytes: g.count(),
      srttUs: g.pick([0, g.int(10_000_000), 1000]),
      minRttUs: g.pick([0, g.int(1_000_000)]),
      retransmits: g.count(),
      lostPackets: g.count(),
      segsIn: g.int(100),
      segsOut: g.int(100),
      state: g.pick(STATES),
    };
    if (kind === 'fail' && g.chance(0.9)) event.failure = g.pick(FAILURES);
    if (g.chance(0.3)) event.origDstAddr = g.addr(v6);
    if (g.chance(0.3)) event.origDstPort = g.int(65536);
    // A fresh object per entry, as the processor makes them; equal content repeats.
    out.push({ event, attributes: { ...g.pick(sets) }, observedUnixNano: t + BigInt(g.int(100_000_000)) });
  }
  return out;
}

function resourceVariant(g: Gen): Resource {
  const attrs: Attributes = {};
  const v = g.int(4);
  if (v >= 1) {
    attrs['service.name'] = 'kmesh-otel';
    attrs['service.instance.id'] = g.text();
    attrs['k8s.node.name'] = 'node-1';
  }
  if (v >= 2) {
    attrs['process.pid'] = g.int(1 << 22);
    attrs['ratio'] = g.rnd();
    attrs['flag'] = g.chance(0.5);
    attrs['host.ip'] = ['10.0.0.1', 'fd00::1'];
    attrs['empty'] = '';
  }
  const schemaUrl = v === 3 ? 'https://opentelemetry.io/schemas/1.24.0' : undefined;
  return resourceFromAttributes(attrs, schemaUrl !== undefined ? { schemaUrl } : {});
}

/** The SDK path of the OTLP logs exporter: toLogRecord, sdk-logs LoggerProvider, ProtobufLogsSerializer. */
function sdkLogsRequest(resource: Resource, batch: AccessLogEntry[], accessLog?: MetricSchema['accessLog']): Uint8Array {
  const records: ReadableLogRecord[] = [];
  const collect: LogRecordProcessor = {
    onEmit: (r) => void records.push(r),
    forceFlush: () => Promise.resolve(),
    shutdown: () => Promise.resolve(),
  };
  const logger = new LoggerProvider({ resource, processors: [collect] }).getLogger('kmesh-otel');
  for (const e of batch) logger.emit(toLogRecord(e, accessLog));
  return ProtobufLogsSerializer.serializeRequest(records)!;
}

const SEEDS = process.env.EQUIV_SEED !== undefined ? [Number(process.env.EQUIV_SEED)] : Array.from({ length: 40 }, (_, i) => 1_000 + i * 7_919);

describe('AccessLogEncoder: same ExportLogsServiceRequest as the SDK path', () => {
  it('decodes equal to the SDK serializer output over random seeded batches', () => {
    let records = 0;
    let spliced = 0;
    for (const seed of SEEDS) {
      const g = new Gen(seed);
      const resource = resourceVariant(g);
      const encoder = new AccessLogEncoder(resource);
      // Several batches through one encoder: later ones hit its caches.
      for (let b = 0; b < 3; b++) {
        const batch = entries(g, 1 + g.int(60));
        const mine = decodeExportRequest('logs', encoder.encode(batch).bytes);
        const sdk = decodeExportRequest('logs', sdkLogsRequest(resource, batch));
        assert.deepStrictEqual(mine, sdk, `seed ${seed}, batch ${b} (replay: EQUIV_SEED=${seed})`);
        records += batch.length;
      }
      spliced += encoder.cachedIdentitySets;
    }
    // The comparison covered records, and the cache was in use.
    assert.ok(records > SEEDS.length * 3, `records compared: ${records}`);
    assert.ok(spliced > 0, 'identity sets were cached');
  });

  it('reports the item count and encodes a batch of identical-identity records with one cached set', () => {
    const g = new Gen(42);
    const resource = resourceFromAttributes({ 'service.name': 'kmesh-otel' });
    const encoder = new AccessLogEncoder(resource);
    const batch = entries(g, 50).map((e) => ({ ...e, attributes: { 'src.workload': 'a', 'dst.workload': 'b' } }));
    const req = encoder.encode(batch);
    assert.equal(req.items, 50);
    assert.equal(encoder.cachedIdentitySets, 1);
    const decoded = decodeExportRequest('logs', req.bytes);
    const lrs = decoded.resourceLogs[0].scopeLogs[0].logRecords;
    assert.equal(lrs.length, 50);
    assert.equal(decoded.resourceLogs[0].scopeLogs[0].scope.name, 'kmesh-otel');
    for (const [i, lr] of lrs.entries()) {
      assert.equal(lr.timeUnixNano, batch[i]!.event.timeUnixNano.toString(), `record ${i} time`);
      assert.equal(lr.observedTimeUnixNano, batch[i]!.observedUnixNano.toString(), `record ${i} observed time`);
      assert.deepEqual(lr.attributes.slice(0, 2).map((kv: { key: string; value: { stringValue: string } }) => [kv.key, kv.value.stringValue]), [
        ['src.workload', 'a'],
        ['dst.workload', 'b'],
      ]);
    }
  });

  it('decodes equal to the SDK path in the semconv schema (short body, attributes once) over random seeded batches', () => {
    const accessLog = schemaByName('semconv').accessLog;
    assert.ok(accessLog !== undefined, 'semconv has a record form');
    let records = 0;
    for (const seed of SEEDS.slice(0, 10)) {
      const g = new Gen(seed);
      const resource = resourceVariant(g);
      const encoder = new AccessLogEncoder(resource, undefined, accessLog);
      const batch = entries(g, 1 + g.int(60));
      const mine = decodeExportRequest('logs', encoder.encode(batch).bytes);
      assert.deepStrictEqual(mine, decodeExportRequest('logs', sdkLogsRequest(resource, batch, accessLog)), `seed ${seed} (replay: EQUIV_SEED=${seed})`);
      const lrs = mine.resourceLogs[0].scopeLogs[0].logRecords;
      for (const [i, lr] of lrs.entries()) {
        assert.equal(lr.body.stringValue, accessLog(batch[i]!).body, `seed ${seed}, record ${i}: the schema's short body`);
      }
      records += batch.length;
    }
    assert.ok(records >= 10, `records compared: ${records}`);
  });

  it('decodes equal to the SDK for edge values: a 1 MiB attribute, 2^53 - 1 byte counts, empty identity, times at 0 and 2^64 - 1 ns', () => {
    const g = new Gen(7);
    const resource = resourceFromAttributes({});
    const base = entries(g, 4);
    base[0]!.attributes = { 'src.workload': 'x'.repeat(1 << 20) + '中' };
    base[0]!.event.sentBytes = Number.MAX_SAFE_INTEGER;
    base[1]!.attributes = {};
    base[1]!.event.timeUnixNano = 0n;
    base[1]!.observedUnixNano = 2n ** 64n - 1n;
    base[2]!.event.durationNs = 1.5; // a fractional duration: double_value
    const mine = decodeExportRequest('logs', new AccessLogEncoder(resource).encode(base).bytes);
    assert.deepStrictEqual(mine, decodeExportRequest('logs', sdkLogsRequest(resource, base)));
    const lr = mine.resourceLogs[0].scopeLogs[0].logRecords;
    assert.equal(lr[0].attributes[0].value.stringValue.length, (1 << 20) + 1);
    assert.equal(lr[1].observedTimeUnixNano, (2n ** 64n - 1n).toString());
  });
});

/** Store points: the kmesh or istio schema's families (counters and histograms) over random label sets and values. */
async function storeMetrics(g: Gen, resource: Resource): Promise<ResourceMetrics[]> {
  const out: ResourceMetrics[] = [];
  let now = 1_726_301_966_552 + g.int(1000);
  const store = new SeriesStore<Attributes>({
    schema: schemaByName(g.pick(['kmesh', 'istio'] as const)),
    temporality: g.pick(['cumulative', 'delta'] as const),
    now: () => now,
  });
  const labelSets = Array.from({ length: 1 + g.int(12) }, () => {
    const a = { ...SLEEP_TO_HTTPBIN };
    a['source_workload'] = g.text();
    a['destination_pod_name'] = g.text();
    a['reporter'] = g.pick(['source', 'destination']);
    return a;
  });
  for (let round = 0; round < 3; round++) {
    const points = Array.from({ length: 1 + g.int(30) }, () =>
      flowPoint(g.pick(labelSets), {
        opened: g.int(3),
        closed: g.int(3),
        failed: g.int(2),
        sentBytes: g.chance(0.1) ? 2 ** 50 + g.int(1000) : g.int(100_000),
        receivedBytes: g.int(100_000),
        retransmits: g.int(5),
        lostPackets: g.int(2),
        durationsSec: Array.from({ length: g.int(4) }, () => g.rnd() * g.pick([0.001, 1, 100, 1e6])),
        rttsSec: Array.from({ length: g.int(4) }, () => g.rnd() * 0.1),
      }),
    );
    store.consume({ points });
    now += 1 + g.int(60_000);
    out.push(toCollectionResult(store.snapshot(), resource).resourceMetrics);
  }
  // The agent's own self-metrics (counters and gauges of the SelfTelemetry producer), after some use.
  const self = new SelfTelemetry(resource);
  self.counter('exporter_sent_log_records', 'Log records the exporter delivered').add(g.int(1000), { exporter: 'otlp' });
  self.gauge('exporter_queue_size', 'Items queued', () => [[g.int(100), { exporter: 'otlp', signal: 'logs' }]]);
  out.push((await self.producer.collect()).resourceMetrics);
  return out;
}

/** Hand-made MetricData of every shape the SDK serializer distinguishes: gauge/sum, int/double, temporalities, optional fields. */
function sdkShapes(g: Gen, resource: Resource): ResourceMetrics {
  const t = (): [number, number] => [g.pick([0, 1_726_301_966, 2 ** 33, g.int(2 ** 31)]), g.int(1_000_000_000)];
  const attrs = (): Attributes => (g.chance(0.3) ? {} : { [g.text() || 'k']: g.pick<string | number | boolean>([g.text(), g.count(), g.rnd(), true]), 'host.name': 'node-1' });
  const metrics: MetricData[] = [];
  for (let i = 0; i < 1 + g.int(6); i++) {
    const descriptor = { name: `m_${i}_${g.text()}`, description: g.chance(0.5) ? g.text() : '', unit: g.pick(['', 'By', 's', '{connection}']), valueType: g.pick([ValueType.INT, ValueType.DOUBLE]) };
    const temporality = g.pick([AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA]);
    const kind = g.int(3);
    const n = g.int(5);
    if (kind === 0 || kind === 1) {
      const int = descriptor.valueType === ValueType.INT;
      const dataPoints = Array.from({ length: n }, () => ({
        startTime: t(),
        endTime: t(),
        attributes: attrs(),
        value: int ? g.pick([0, -g.count(), g.count()]) : g.pick([0, -1.5, g.rnd() * 1e9, Number.MAX_VALUE, NaN, Infinity]),
      }));
      if (kind === 0) metrics.push({ descriptor, aggregationTemporality: temporality, dataPointType: DataPointType.GAUGE, dataPoints });
      else metrics.push({ descriptor, aggregationTemporality: temporality, dataPointType: DataPointType.SUM, isMonotonic: g.chance(0.5), dataPoints });
    } else {
      const dataPoints = Array.from({ length: n }, () => {
        const boundaries = g.chance(0.2) ? [] : [0.005, 0.1, 1, 10].slice(0, 1 + g.int(4));
        const counts = boundaries.length === 0 && g.chance(0.5) ? [] : Array.from({ length: boundaries.length + 1 }, () => g.int(1000));
        const count = counts.reduce((a, b) => a + b, 0);
        return {
          startTime: t(),
          endTime: t(),
          attributes: attrs(),
          value: { buckets: { boundaries, counts }, count, ...(g.chance(0.8) ? { sum: g.rnd() * 100 } : {}), ...(g.chance(0.5) ? { min: 0.001, max: 9.5 } : {}) },
        };
      });
      metrics.push({ descriptor, aggregationTemporality: temporality, dataPointType: DataPointType.HISTOGRAM, dataPoints });
    }
  }
  const scope = g.chance(0.5) ? { name: 'kmesh-otel' } : { name: g.text(), version: '1.2.3', schemaUrl: 'https://opentelemetry.io/schemas/1.24.0' };
  return { resource, scopeMetrics: g.chance(0.1) ? [] : [{ scope, metrics }] };
}

describe('MetricsEncoder: same ExportMetricsServiceRequest as the SDK serializer', () => {
  it('decodes equal over random seeded store collections (counters, histograms, both temporalities) and self-metrics', async () => {
    let points = 0;
    for (const seed of SEEDS) {
      const g = new Gen(seed);
      const resource = resourceVariant(g);
      const encoder = new MetricsEncoder();
      // Collect after collect through one encoder: later ones splice cached attributes.
      for (const [i, rm] of (await storeMetrics(g, resource)).entries()) {
        const mine = encoder.encode(rm);
        const sdk = ProtobufMetricsSerializer.serializeRequest(rm)!;
        assert.deepStrictEqual(decodeExportRequest('metrics', mine.bytes), decodeExportRequest('metrics', sdk), `seed ${seed}, collect ${i} (replay: EQUIV_SEED=${seed})`);
        let n = 0;
        for (const sm of rm.scopeMetrics) for (const m of sm.metrics) n += m.dataPoints.length;
        assert.equal(mine.items, n, `seed ${seed}, collect ${i}: item count`);
        points += n;
      }
    }
    assert.ok(points > SEEDS.length * 10, `points compared: ${points}`);
  });

  it('decodes equal over random MetricData shapes (gauges, int sums, empty buckets, absent sum/min/max, scope versions)', () => {
    for (const seed of SEEDS) {
      const g = new Gen(seed);
      const rm = sdkShapes(g, resourceVariant(g));
      const mine = new MetricsEncoder().encode(rm).bytes;
      assert.deepStrictEqual(decodeExportRequest('metrics', mine), decodeExportRequest('metrics', ProtobufMetricsSerializer.serializeRequest(rm)!), `seed ${seed}`);
    }
  });

  it('hrTimeBits is exact where seconds x 10^9 passes 2^53', () => {
    const cases: Array<[number, number]> = [[0, 0], [1, 999_999_999], [1_726_301_966, 552_709_932], [2 ** 33 + 12_345, 999_999_999], [18_446_744_073, 709_551_615]];
    for (const [s, ns] of cases) {
      const b = hrTimeBits([s, ns]);
      const want = BigInt(s) * 1_000_000_000n + BigInt(ns);
      assert.equal((BigInt(b.high) << 32n) + BigInt(b.low), want, `[${s}, ${ns}]`);
    }
  });
});
