import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import type { Host } from '../../src/component/component.js';
import { debugExporterFactory } from '../../src/exporters/debug/factory.js';
import { formatSpanLine } from '../../src/exporters/debug/DebugTracesExporter.js';
import { otlpExporterFactory, otlpHttpExporterFactory } from '../../src/exporters/otlp/factory.js';
import { OtlpTracesExporter, toReadableSpan } from '../../src/exporters/otlp/OtlpTracesExporter.js';
import { DebugTracesExporter } from '../../src/exporters/debug/DebugTracesExporter.js';
import { ConnectionTraceIds } from '../../src/model/traceIds.js';
import { connectionSpanAttributes, spanName, type ConnectionSpan } from '../../src/model/traces.js';
import type { ConnectionEvent } from '../../src/model/connection.js';
import { OtlpHttpReceiver, OtlpReceiver, waitFor } from '../helpers/otlpReceiver.js';
import { selfCounter, testSettings } from '../helpers/settings.js';

const host: Host = { reportFatalError: () => undefined };
const ids = new ConnectionTraceIds();
const END = 1726301966552709932n;

function event(direction: 'OUTBOUND' | 'INBOUND', f: Partial<ConnectionEvent> = {}): ConnectionEvent {
  return {
    kind: 'close', direction, family: 4, srcAddr: '10.244.0.17', srcPort: 51842, dstAddr: '10.244.0.11', dstPort: 9080,
    origDstAddr: '10.96.0.10', origDstPort: 80, socketCookie: 1, netnsCookie: 1, timeUnixNano: END, durationNs: 2_733_902,
    sentBytes: direction === 'OUTBOUND' ? 5 : 292, receivedBytes: direction === 'OUTBOUND' ? 292 : 5, srttUs: 250, minRttUs: 100,
    retransmits: 1, lostPackets: 0, segsIn: 3, segsOut: 4, state: 'CLOSE', isnClient: 7, isnServer: 9, ...f,
  };
}

function span(e: ConnectionEvent, attributes: Record<string, string> = {}): ConnectionSpan {
  const context = ids.forEvent(e)!;
  const start = e.timeUnixNano - BigInt(e.kind === 'fail' ? 1_000_000 : e.durationNs);
  return { event: e, context, kind: e.direction === 'OUTBOUND' ? 'CLIENT' : 'SERVER', attributes, startUnixNano: start, endUnixNano: e.timeUnixNano, observedUnixNano: END + 1n };
}

const client = span(event('OUTBOUND'), { 'dst.service': 'productpage.default.svc.cluster.local', 'source.k8s.pod.name': 'sleep-1', 'src.workload': 'sleep-1' });
const server = span(event('INBOUND'), { 'dst.service': 'productpage.default.svc.cluster.local', 'destination.k8s.pod.name': 'productpage-1' });
const failed = span(event('OUTBOUND', { kind: 'fail', failure: 'refused', durationNs: 0, isnServer: undefined, sentBytes: 0, receivedBytes: 0, srcPort: 51843 }));

describe('connection span: name, attributes, SDK span', () => {
  it('names the span after the destination service and the port the client dialled', () => {
    assert.equal(spanName(client), 'tcp connect productpage.default.svc.cluster.local:80');
    assert.equal(spanName(server), 'tcp accept productpage.default.svc.cluster.local:80');
    assert.equal(spanName(failed), 'tcp connect 10.96.0.10:80', 'no identity: the address');
  });

  it('uses semantic-convention names, each socket seen from itself', () => {
    assert.deepEqual(connectionSpanAttributes(client), {
      'network.transport': 'tcp',
      'network.type': 'ipv4',
      'network.local.address': '10.244.0.17',
      'network.local.port': 51842,
      'network.peer.address': '10.244.0.11',
      'network.peer.port': 9080,
      'server.address': '10.96.0.10',
      'server.port': 80,
      'client.address': '10.244.0.17',
      'client.port': 51842,
      'kmesh.sent_bytes': 5,
      'kmesh.received_bytes': 292,
      'kmesh.retransmissions': 1,
      'kmesh.srtt': 0.00025,
      'kmesh.min_rtt': 0.0001,
      'kmesh.response_flags': '-',
      'source.k8s.pod.name': 'sleep-1',
    });
    const s = connectionSpanAttributes(server);
    assert.equal(s['network.local.port'], 9080);
    assert.equal(s['network.peer.address'], '10.244.0.17');
    assert.equal(s['kmesh.sent_bytes'], 292);
    assert.equal(connectionSpanAttributes(failed)['error.type'], 'ECONNREFUSED');
    assert.equal(connectionSpanAttributes(failed)['kmesh.response_flags'], 'UF');
  });

  it('maps to the SDK ReadableSpan: ids, kind, remote parent, times, status', () => {
    const resource = resourceFromAttributes({ 'service.name': 'kmesh-otel' });
    const c = toReadableSpan(client, resource);
    const s = toReadableSpan(server, resource);
    const f = toReadableSpan(failed, resource);
    assert.equal(c.kind, SpanKind.CLIENT);
    assert.equal(s.kind, SpanKind.SERVER);
    assert.equal(c.spanContext().traceId, s.spanContext().traceId);
    assert.equal(c.parentSpanContext, undefined);
    assert.deepEqual(s.parentSpanContext, { traceId: c.spanContext().traceId, spanId: c.spanContext().spanId, traceFlags: 1, isRemote: true });
    assert.deepEqual(c.startTime, [1726301966, 552709932 - 2_733_902]);
    assert.deepEqual(c.endTime, [1726301966, 552709932]);
    assert.deepEqual(c.duration, [0, 2_733_902]);
    assert.deepEqual(c.status, { code: SpanStatusCode.UNSET });
    assert.deepEqual(f.status, { code: SpanStatusCode.ERROR, message: 'ECONNREFUSED' });
    assert.equal(c.resource, resource);
  });

  it('debug: one line per span', () => {
    assert.equal(
      formatSpanLine(client),
      `span: 2024-09-14 08:19:26.549976030 +0000 UTC trace_id=${client.context.traceId} span_id=${client.context.spanId} parent_span_id=- ` +
        'kind=CLIENT name="tcp connect productpage.default.svc.cluster.local:80" src.addr=10.244.0.17:51842, dst.addr=10.244.0.11:9080, ' +
        'duration=2.733902ms sent_bytes=5 received_bytes=292 status=OK',
    );
    assert.match(formatSpanLine(server), new RegExp(`parent_span_id=${client.context.spanId} kind=SERVER`));
    assert.match(formatSpanLine(failed), / duration=1ms sent_bytes=0 received_bytes=0 status=ERROR error.type=ECONNREFUSED$/);
    const out = new PassThrough();
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    const exp = new DebugTracesExporter(testSettings('debug'), debugExporterFactory.createDefaultConfig(), { stream: out });
    exp.consumeTraces({ spans: [client, server, failed] });
    assert.equal(text.split('\n').filter(Boolean).length, 3);
  });
});

describe('otlp traces export (real gRPC and HTTP receivers decoding the protobufs)', () => {
  let rx: OtlpReceiver;
  let http: OtlpHttpReceiver;
  before(async () => {
    rx = await OtlpReceiver.start();
    http = await OtlpHttpReceiver.start();
  });
  after(async () => {
    await rx.stop();
    await http.stop();
  });

  for (const [protocol, encoding] of [['grpc', 'direct'], ['http', 'direct'], ['grpc', 'sdk'], ['http', 'sdk']] as const) {
    it(`${protocol}, ${encoding} encoding: every span arrives once with its ids, kind, parent, times, status and attributes; sent counted`, async () => {
      const settings = testSettings(protocol === 'grpc' ? 'otlp' : 'otlp_http');
      const grpcConfig = otlpExporterFactory.configSchema.parse({ endpoint: rx.endpoint, tls: { insecure: true }, sending_queue: { batch: { flush_timeout: '50ms' } } });
      const httpConfig = otlpHttpExporterFactory.configSchema.parse({ endpoint: http.endpoint, sending_queue: { batch: { flush_timeout: '50ms' } } });
      const config = protocol === 'grpc' ? grpcConfig : httpConfig;
      // The factories build the default (direct) exporter; the SDK reference path is built by hand.
      const exp =
        encoding === 'sdk'
          ? new OtlpTracesExporter(settings, config, protocol, Math.random, 'sdk')
          : ((protocol === 'grpc' ? otlpExporterFactory.createTraces!(settings, grpcConfig) : otlpHttpExporterFactory.createTraces!(settings, httpConfig)) as OtlpTracesExporter);
      const before = (protocol === 'grpc' ? rx : http).spans().length;
      const sink = protocol === 'grpc' ? rx : http;
      await exp.start(host);
      try {
        exp.consumeTraces({ spans: [client, server, failed] });
        await waitFor(() => sink.spans().length >= before + 3, 10_000, 'three spans');
        // The export completes when the response is back (after the receiver recorded the request).
        await waitFor(() => exp.queued === 0, 10_000, 'the export to complete');
        const got = sink.spans().slice(before);
        assert.equal(got.length, 3);
        const [c, s, f] = got as [(typeof got)[0], (typeof got)[0], (typeof got)[0]];
        assert.equal(c.traceId, client.context.traceId);
        assert.equal(c.spanId, client.context.spanId);
        assert.equal(c.parentSpanId, '');
        assert.equal(c.kind, 'SPAN_KIND_CLIENT');
        assert.equal(s.kind, 'SPAN_KIND_SERVER');
        assert.equal(s.traceId, client.context.traceId);
        assert.equal(s.parentSpanId, client.context.spanId);
        assert.equal(c.startTimeUnixNano, String(client.startUnixNano));
        assert.equal(c.endTimeUnixNano, String(END));
        assert.equal(c.name, 'tcp connect productpage.default.svc.cluster.local:80');
        assert.deepEqual(c.attributes, connectionSpanAttributes(client));
        assert.equal(f.statusCode, 'STATUS_CODE_ERROR');
        assert.equal(f.statusMessage, 'ECONNREFUSED');
        assert.equal(c.resource['service.name'], 'kmesh-otel-test');
        assert.equal(c.scope, 'kmesh-otel');
        assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_sent_spans'), 3);
        assert.equal(exp.queued, 0);
      } finally {
        await exp.shutdown();
      }
      exp.consumeTraces({ spans: [client] });
      assert.equal(await selfCounter(settings, 'kmesh_otel_exporter_dropped_spans'), 1, 'after shutdown: dropped and counted');
    });
  }
});
