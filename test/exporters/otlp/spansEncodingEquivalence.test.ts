/**
 * The direct span encoder against the SDK path: for the same connection
 * spans, the ExportTraceServiceRequest of ConnectionSpanEncoder and the one
 * of toReadableSpan + ProtobufTraceSerializer (@opentelemetry/otlp-transformer)
 * are decoded with the official opentelemetry-proto definitions
 * (test/helpers/proto, as the in-repo receivers decode) and must be equal,
 * field by field. Inputs are random from printed seeds (replay one with
 * EQUIV_SEED=<n>).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Attributes } from '@opentelemetry/api';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { ConnectionSpanEncoder } from '../../../src/exporters/otlp/encoding/SpansEncoder.js';
import { toReadableSpan } from '../../../src/exporters/otlp/OtlpTracesExporter.js';
import type { ConnectionEvent, FailureReason } from '../../../src/model/connection.js';
import { ConnectionTraceIds } from '../../../src/model/traceIds.js';
import type { ConnectionSpan } from '../../../src/model/traces.js';
import { decodeExportRequest } from '../../helpers/otlpReceiver.js';
import { Gen } from '../../helpers/prng.js';

type Json = ReturnType<typeof decodeExportRequest>;


/** Keys connectionAttributes sets itself: an identity set holding one takes the generic path. */
const OWN_KEYS = ['network.peer.address', 'kmesh.sent_bytes', 'error.type', 'server.port', 'network.transport'];

/**
 * Identity sets as k8s_attributes makes them (both ends' k8s.* under
 * source./destination., the Kmesh src.* and dst.* keys spans leave out), a few
 * per batch, some odd: own keys, array-index keys, empty keys and values,
 * unicode and huge values.
 */
function identitySets(g: Gen): Array<Record<string, string>> {
  const sets: Array<Record<string, string>> = [];
  const n = 1 + g.int(5);
  for (let i = 0; i < n; i++) {
    const s: Record<string, string> = {};
    if (g.chance(0.7)) {
      s['src.workload'] = `client-${g.int(9)}`;
      s['dst.service'] = `server.ns-${g.int(3)}.svc.cluster.local`;
      s['source.k8s.pod.name'] = `client-${g.int(9)}-7656cf8794-9v2gv`;
      s['source.k8s.namespace.name'] = 'default';
      s['destination.k8s.deployment.name'] = g.chance(0.8) ? `server-${g.int(3)}` : '';
      s['destination.k8s.namespace.name'] = `ns-${g.int(3)}`;
    }
    const extra = g.chance(0.05) ? 150 + g.int(20) : g.int(6);
    for (let k = 0; k < extra; k++) {
      const odd = g.rnd();
      const key = odd < 0.03 ? '' : odd < 0.08 ? g.pick(OWN_KEYS) : odd < 0.12 ? String(g.int(50)) : odd < 0.2 ? g.text() : `destination.k8s.attr.${k}`;
      s[key] = g.chance(0.1) ? '' : g.text();
    }
    sets.push(s);
  }
  return sets;
}

const FAILURES: FailureReason[] = ['refused', 'reset', 'timeout', 'host_unreachable', 'net_unreachable', 'other'];

function spans(g: Gen, n: number, ids: ConnectionTraceIds): ConnectionSpan[] {
  const sets = identitySets(g);
  const out: ConnectionSpan[] = [];
  // End times: near now, soon after the epoch, near 2^63 ns (year 2262), and within one second (the cached-second
  // path); never before a span's start can be >= 0 (the model's times are ns since the epoch; the edge test has 0).
  let t = g.pick([1_726_301_966_552_709_932n, 2n ** 41n, 9_223_372_036_000_000_000n, 1_000_000_000n * BigInt(2_000 + g.int(2 ** 31))]);
  for (let i = 0; i < n; i++) {
    t += BigInt(g.chance(0.3) ? g.int(3_000_000_000) : g.int(1000));
    const failed = g.chance(0.25);
    const v6 = g.chance(0.25);
    const direction = failed || g.chance(0.5) ? 'OUTBOUND' : 'INBOUND';
    const durationNs = g.pick([0, 1_000_000, 2_733_902, g.int(1_000_000), g.int(2 ** 40)]);
    const event: ConnectionEvent = {
      kind: failed ? 'fail' : 'close',
      direction,
      family: v6 ? 6 : 4,
      srcAddr: g.addr(v6),
      srcPort: g.int(65536),
      dstAddr: g.addr(v6),
      dstPort: g.int(65536),
      socketCookie: i + 1,
      netnsCookie: 1,
      timeUnixNano: t,
      durationNs: failed ? 0 : durationNs,
      sentBytes: failed ? 0 : g.count(),
      receivedBytes: failed ? 0 : g.count(),
      srttUs: g.pick([0, g.int(10_000_000), 1000, 1_000_000, 250]),
      minRttUs: g.pick([0, g.int(1_000_000), 2_000_000]),
      retransmits: g.count(),
      lostPackets: g.count(),
      segsIn: g.int(100),
      segsOut: g.int(100),
      state: failed ? 'SYN_SENT' : 'CLOSE',
      isnClient: g.int(2 ** 32),
    };
    if (!failed) event.isnServer = g.int(2 ** 32);
    if (failed && g.chance(0.9)) event.failure = g.pick(FAILURES);
    if (g.chance(0.3)) event.origDstAddr = g.addr(v6);
    if (g.chance(0.3)) event.origDstPort = g.int(65536);
    // Real derived ids mostly; sometimes arbitrary ones (the encoder takes any 32/16-hex-digit id).
    const context = g.chance(0.8)
      ? ids.forEvent(event)!
      : { traceId: g.hex(16), spanId: g.hex(8), parentSpanId: direction === 'INBOUND' ? g.hex(8) : undefined };
    // A fresh attribute object per span, as the processor makes them; equal content repeats.
    out.push({
      event,
      context,
      kind: direction === 'OUTBOUND' ? 'CLIENT' : 'SERVER',
      attributes: { ...g.pick(sets) },
      startUnixNano: t - BigInt(failed ? g.int(3_000_000_000) : durationNs),
      endUnixNano: t,
      observedUnixNano: t + BigInt(g.int(100_000_000)),
    });
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

/** The SDK path of the OTLP traces exporter: toReadableSpan, then the SDK's ProtobufTraceSerializer. */
function sdkTracesRequest(resource: Resource, batch: ConnectionSpan[]): Uint8Array {
  return ProtobufTraceSerializer.serializeRequest(batch.map((s) => toReadableSpan(s, resource)))!;
}

function decodedSpans(req: Json): Json[] {
  return req.resourceSpans[0].scopeSpans[0].spans;
}

const SEEDS = process.env.EQUIV_SEED !== undefined ? [Number(process.env.EQUIV_SEED)] : Array.from({ length: 40 }, (_, i) => 2_000 + i * 7_919);

describe('ConnectionSpanEncoder: same ExportTraceServiceRequest as the SDK path', () => {
  it('decodes equal to the SDK serializer output over random seeded batches (both kinds, ERROR status, unicode, empty and huge values, parent or none)', () => {
    const seen = { client: 0, server: 0, error: 0, parent: 0, generic: 0 };
    let cached = 0;
    for (const seed of SEEDS) {
      const g = new Gen(seed);
      const resource = resourceVariant(g);
      const encoder = new ConnectionSpanEncoder(resource);
      const ids = new ConnectionTraceIds(g.chance(0.5) ? undefined : 'cluster-key');
      // Several batches through one encoder: later ones hit its caches.
      for (let b = 0; b < 3; b++) {
        const batch = spans(g, 1 + g.int(60), ids);
        const mine = decodeExportRequest('traces', encoder.encode(batch).bytes);
        const sdk = decodeExportRequest('traces', sdkTracesRequest(resource, batch));
        assert.deepStrictEqual(mine, sdk, `seed ${seed}, batch ${b} (replay: EQUIV_SEED=${seed})`);
        for (const s of decodedSpans(mine)) {
          if (s.kind === 'SPAN_KIND_CLIENT') seen.client++;
          if (s.kind === 'SPAN_KIND_SERVER') seen.server++;
          if (s.status.code === 'STATUS_CODE_ERROR') seen.error++;
          if (s.parentSpanId.length > 0) seen.parent++;
          if (s.attributes.some((kv: { key: string }) => kv.key === 'network.transport') && s.attributes[0].key !== 'network.transport') seen.generic++;
        }
      }
      cached += encoder.cachedIdentitySets;
    }
    // The comparison covered every shape, and the identity cache was in use.
    assert.ok(seen.client > 100 && seen.server > 100, `client ${seen.client}, server ${seen.server} spans compared`);
    assert.ok(seen.error > 50, `ERROR spans compared: ${seen.error}`);
    assert.ok(seen.parent === seen.server, `every server span has its parent (${seen.parent} of ${seen.server})`);
    assert.ok(seen.generic > 0, `spans whose identities reorder the attributes (array-index keys) compared: ${seen.generic}`);
    assert.ok(cached > 0, 'identity sets were cached');
  });

  it('encodes the known content of a client, a server and a failed span exactly', () => {
    const resource = resourceFromAttributes({ 'service.name': 'kmesh-otel' });
    const ids = new ConnectionTraceIds();
    const base: ConnectionEvent = {
      kind: 'close', direction: 'OUTBOUND', family: 4, srcAddr: '10.244.0.17', srcPort: 51842, dstAddr: '10.244.0.11', dstPort: 9080,
      origDstAddr: '10.96.0.10', origDstPort: 80, socketCookie: 1, netnsCookie: 1, timeUnixNano: 1_726_301_966_552_709_932n, durationNs: 2_733_902,
      sentBytes: 5, receivedBytes: 292, srttUs: 250, minRttUs: 100, retransmits: 1, lostPackets: 0, segsIn: 3, segsOut: 4, state: 'CLOSE',
      isnClient: 7, isnServer: 9,
    };
    const identities = { 'dst.service': 'productpage.default.svc.cluster.local', 'source.k8s.pod.name': 'sleep-1' };
    const mk = (e: ConnectionEvent): ConnectionSpan => ({
      event: e,
      context: ids.forEvent(e)!,
      kind: e.direction === 'OUTBOUND' ? 'CLIENT' : 'SERVER',
      attributes: { ...identities },
      startUnixNano: e.timeUnixNano - BigInt(e.durationNs),
      endUnixNano: e.timeUnixNano,
      observedUnixNano: e.timeUnixNano,
    });
    const client = mk(base);
    const server = mk({ ...base, direction: 'INBOUND', sentBytes: 292, receivedBytes: 5 });
    const failed = mk({ ...base, kind: 'fail', failure: 'refused', durationNs: 0, isnServer: undefined, sentBytes: 0, receivedBytes: 0 });
    const encoder = new ConnectionSpanEncoder(resource);
    const req = encoder.encode([client, server, failed]);
    assert.equal(req.items, 3);
    assert.equal(encoder.cachedIdentitySets, 1, 'one identity set for three spans');
    const decoded = decodeExportRequest('traces', req.bytes);
    assert.deepStrictEqual(decoded, decodeExportRequest('traces', sdkTracesRequest(resource, [client, server, failed])));
    assert.equal(decoded.resourceSpans[0].scopeSpans[0].scope.name, 'kmesh-otel');
    const [c, s, f] = decodedSpans(decoded);
    const hex = (b64: string): string => Buffer.from(b64, 'base64').toString('hex');
    assert.equal(hex(c.traceId), client.context.traceId);
    assert.equal(hex(c.spanId), client.context.spanId);
    assert.equal(c.parentSpanId, '', 'the client span has no parent');
    assert.equal(hex(s.traceId), client.context.traceId, 'one trace for both ends');
    assert.equal(hex(s.parentSpanId), client.context.spanId, "the server span's parent is the client span");
    assert.equal(c.name, 'tcp connect productpage.default.svc.cluster.local:80');
    assert.equal(s.name, 'tcp accept productpage.default.svc.cluster.local:80');
    assert.equal(c.kind, 'SPAN_KIND_CLIENT');
    assert.equal(s.kind, 'SPAN_KIND_SERVER');
    assert.equal(c.flags, 0x101);
    assert.equal(s.flags, 0x301, 'a remote parent');
    assert.equal(c.startTimeUnixNano, (base.timeUnixNano - 2_733_902n).toString());
    assert.equal(c.endTimeUnixNano, base.timeUnixNano.toString());
    assert.deepEqual(c.status, { message: '', code: 'STATUS_CODE_UNSET' });
    assert.deepEqual(f.status, { message: 'ECONNREFUSED', code: 'STATUS_CODE_ERROR' });
    const attrs = (sp: Json): Record<string, unknown> =>
      Object.fromEntries(sp.attributes.map((kv: { key: string; value: Record<string, unknown> }) => [kv.key, kv.value[kv.value.value as string]]));
    assert.deepEqual(attrs(c), {
      'network.transport': 'tcp',
      'network.type': 'ipv4',
      'network.local.address': '10.244.0.17',
      'network.local.port': '51842',
      'network.peer.address': '10.244.0.11',
      'network.peer.port': '9080',
      'server.address': '10.96.0.10',
      'server.port': '80',
      'client.address': '10.244.0.17',
      'client.port': '51842',
      'kmesh.sent_bytes': '5',
      'kmesh.received_bytes': '292',
      'kmesh.retransmissions': '1',
      'kmesh.srtt': 0.00025,
      'kmesh.min_rtt': 0.0001,
      'kmesh.response_flags': '-',
      'source.k8s.pod.name': 'sleep-1',
    });
    assert.equal(attrs(s)['network.local.port'], '9080');
    assert.equal(attrs(f)['error.type'], 'ECONNREFUSED');
    assert.equal(attrs(f)['kmesh.response_flags'], 'UF');
  });

  it('decodes equal to the SDK for edge values: a 1 MiB identity value, 2^53 - 1 counts, no identities, times at 0 and 2^64 - 1 ns, an unknown failure reason', () => {
    const g = new Gen(11);
    const resource = resourceFromAttributes({});
    const base = spans(g, 5, new ConnectionTraceIds());
    base[0]!.attributes = { 'destination.k8s.pod.name': 'x'.repeat(1 << 20) + '中' };
    base[0]!.event.sentBytes = Number.MAX_SAFE_INTEGER;
    base[1]!.attributes = {};
    base[1]!.startUnixNano = 0n;
    base[1]!.endUnixNano = 2n ** 64n - 1n;
    base[2]!.event.srttUs = Number.NaN; // bad input: a double, as the SDK writes it
    base[3]!.event = { ...base[3]!.event, kind: 'fail', failure: 'bogus' as FailureReason };
    const mine = decodeExportRequest('traces', new ConnectionSpanEncoder(resource).encode(base).bytes);
    assert.deepStrictEqual(mine, decodeExportRequest('traces', sdkTracesRequest(resource, base)));
    const d = decodedSpans(mine);
    assert.equal(d[0].attributes.at(-1).value.stringValue.length, (1 << 20) + 1);
    assert.equal(d[1].startTimeUnixNano, '0');
    assert.equal(d[1].endTimeUnixNano, (2n ** 64n - 1n).toString());
    assert.equal(d[3].status.code, 'STATUS_CODE_ERROR');
  });
});
