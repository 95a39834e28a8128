import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FlowPoint } from '../../src/model/metrics.js';
import type { MetricSchema } from '../../src/metrics/schema.js';
import { istioSchema } from '../../src/metrics/schemas/istio.js';
import { KMESH_SERVICE_LABELS, KMESH_WORKLOAD_LABELS, kmeshSchema } from '../../src/metrics/schemas/kmesh.js';
import { SCHEMA_NAMES, schemaByName } from '../../src/metrics/schemas/registry.js';
import { SeriesStore } from '../../src/metrics/SeriesStore.js';
import { flowPoint, rawPoint, SLEEP_TO_HTTPBIN } from '../helpers/flowPoints.js';

interface Rendered {
  labels: Record<string, string>;
  /** Counters: the value; histograms: the observation count. */
  value: number;
  /** Histograms: the sum of the observations. */
  sum?: number;
}

/** What one point renders to under `schema`, read back from a store's snapshot (the path every exporter takes). */
function render(schema: MetricSchema, p: FlowPoint): Map<string, Rendered> {
  const store = new SeriesStore({ schema });
  store.consume({ points: [p] });
  const m = new Map<string, Rendered>();
  for (const f of store.snapshot().families) {
    assert.equal(f.length, 1, `${f.def.name}: one series`);
    const ls = f.labels[0]!;
    const labels: Record<string, string> = {};
    ls.names.forEach((n, i) => (labels[n] = ls.values[i]!));
    if (f.def.type === 'counter') m.set(f.def.name, { labels, value: f.values[0]! });
    else m.set(f.def.name, { labels, value: f.values[f.stride - 3]!, sum: f.values[f.stride - 4]! });
  }
  return m;
}
const byName = (schema: MetricSchema, p: FlowPoint): Map<string, Rendered> => render(schema, p);

describe('kmesh schema', () => {
  it('has the 23 workload labels and the service variant, sorted', () => {
    assert.equal(KMESH_WORKLOAD_LABELS.length, 23);
    assert.equal(KMESH_SERVICE_LABELS.length, 23);
    assert.deepEqual([...KMESH_WORKLOAD_LABELS], [...KMESH_WORKLOAD_LABELS].sort());
    assert.ok(KMESH_SERVICE_LABELS.includes('destination_service_name'));
    assert.ok(!KMESH_SERVICE_LABELS.includes('destination_pod_address'));
  });

  it('renders every family with exact names, labels and values', () => {
    const p = flowPoint(SLEEP_TO_HTTPBIN, { opened: 2, closed: 1, failed: 3, sentBytes: 5, receivedBytes: 231, retransmits: 4, lostPackets: 1, durationsSec: [0.5], rttsSec: [0.001, 0.002] });
    const m = byName(kmeshSchema, p);
    assert.deepEqual([...m.keys()].sort(), [
      'kmesh_tcp_connection_duration_seconds',
      'kmesh_tcp_connections_closed_total',
      'kmesh_tcp_connections_opened_total',
      'kmesh_tcp_conntections_failed_total',
      'kmesh_tcp_packet_loss_total',
      'kmesh_tcp_received_bytes_total',
      'kmesh_tcp_retrans_total',
      'kmesh_tcp_rtt_seconds',
      'kmesh_tcp_sent_bytes_total',
      'kmesh_tcp_workload_connections_closed_total',
      'kmesh_tcp_workload_connections_opened_total',
      'kmesh_tcp_workload_conntections_failed_total',
      'kmesh_tcp_workload_received_bytes_total',
      'kmesh_tcp_workload_sent_bytes_total',
    ]);
    assert.equal(m.get('kmesh_tcp_workload_received_bytes_total')!.value, 231);
    assert.equal(m.get('kmesh_tcp_workload_sent_bytes_total')!.value, 5);
    assert.equal(m.get('kmesh_tcp_workload_connections_opened_total')!.value, 2);
    assert.equal(m.get('kmesh_tcp_conntections_failed_total')!.value, 3);
    assert.equal(m.get('kmesh_tcp_retrans_total')!.value, 4);
    assert.equal(m.get('kmesh_tcp_packet_loss_total')!.value, 1);
    assert.equal(m.get('kmesh_tcp_rtt_seconds')!.value, 2);
    assert.equal(m.get('kmesh_tcp_rtt_seconds')!.sum, 0.003);
    const w = m.get('kmesh_tcp_workload_received_bytes_total')!.labels;
    assert.equal(w['destination_pod_address'], '10.244.0.11');
    assert.equal(w['destination_principal'], '-');
    assert.equal(w['response_flags'], '-');
    assert.equal(w['reporter'], 'destination');
    const s = m.get('kmesh_tcp_received_bytes_total')!.labels;
    assert.equal(s['destination_service'], 'httpbin.default.svc.cluster.local');
    assert.equal(s['destination_pod_address'], undefined);
  });

  it('renders unknown as "-", derives reporter from direction, never renders raw keys', () => {
    const p = rawPoint({ direction: 'OUTBOUND', 'source.address': '10.0.0.1', 'destination.port': '80' }, { opened: 1 });
    const m = byName(kmeshSchema, p);
    const l = m.get('kmesh_tcp_workload_connections_opened_total')!.labels;
    assert.equal(l['reporter'], 'source');
    assert.equal(l['request_protocol'], 'tcp');
    assert.equal(l['source_workload'], '-');
    assert.equal(l['destination_pod_address'], '-');
    for (const k of Object.keys(l)) assert.ok(!k.includes('.'), `raw key ${k} rendered`);
  });

  it('omits zero increments', () => {
    const m = byName(kmeshSchema, flowPoint(SLEEP_TO_HTTPBIN, { sentBytes: 7 }));
    assert.deepEqual([...m.keys()].sort(), ['kmesh_tcp_sent_bytes_total', 'kmesh_tcp_workload_sent_bytes_total']);
  });
});

describe('istio schema', () => {
  it('uses istio names, "unknown", and connection-view bytes', () => {
    // Server socket (reporter=destination): sent = server->client directly.
    const dst = byName(istioSchema, flowPoint(SLEEP_TO_HTTPBIN, { opened: 1, closed: 1, failed: 1, sentBytes: 5, receivedBytes: 231 }));
    assert.deepEqual([...dst.keys()].sort(), [
      'istio_tcp_connections_closed_total',
      'istio_tcp_connections_opened_total',
      'istio_tcp_received_bytes_total',
      'istio_tcp_sent_bytes_total',
    ]);
    assert.equal(dst.get('istio_tcp_sent_bytes_total')!.value, 5);
    assert.equal(dst.get('istio_tcp_received_bytes_total')!.value, 231);
    assert.equal(dst.get('istio_tcp_sent_bytes_total')!.labels['destination_principal'], 'unknown');
    // Client socket (reporter=source): its sent bytes are the request (received).
    const src = byName(istioSchema, rawPoint({ direction: 'OUTBOUND' }, { sentBytes: 231, receivedBytes: 5 }));
    assert.equal(src.get('istio_tcp_sent_bytes_total')!.value, 5);
    assert.equal(src.get('istio_tcp_received_bytes_total')!.value, 231);
    assert.equal(src.get('istio_tcp_sent_bytes_total')!.labels['reporter'], 'source');
    assert.equal(src.get('istio_tcp_sent_bytes_total')!.labels['source_workload'], 'unknown');
  });
});

describe('schema registry', () => {
  it('names every registered schema, kmesh first (the default), each under its own name', () => {
    assert.deepEqual(SCHEMA_NAMES, ['kmesh', 'istio']);
    for (const n of SCHEMA_NAMES) assert.equal(schemaByName(n).name, n);
    assert.equal(schemaByName('kmesh'), kmeshSchema);
    assert.equal(schemaByName('istio'), istioSchema);
  });
});

describe('label values without a processor', () => {
  it('derive reporter from the point flow, as the processor does', () => {
    const inbound = byName(kmeshSchema, rawPoint({ direction: 'INBOUND', 'source.address': '10.0.0.1', 'destination.address': '10.0.0.2', 'destination.port': '80' }, { opened: 1 }));
    assert.equal(inbound.get('kmesh_tcp_workload_connections_opened_total')!.labels['reporter'], 'destination');
    assert.equal(inbound.get('kmesh_tcp_workload_connections_opened_total')!.labels['request_protocol'], 'tcp');
    const noFlow = byName(kmeshSchema, flowPoint({}, { opened: 1 }));
    assert.equal(noFlow.get('kmesh_tcp_workload_connections_opened_total')!.labels['reporter'], '-', 'unknown without a flow or a reporter attribute');
  });
});
