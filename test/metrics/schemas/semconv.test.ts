import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as incubating from '@opentelemetry/semantic-conventions/incubating';
import { RawAttr } from '../../../src/model/metrics.js';
import { SEMCONV_FAILED_LABELS, SEMCONV_LABELS, semconvAccessLog, semconvSchema } from '../../../src/metrics/schemas/semconv.js';
import { SeriesStore } from '../../../src/metrics/SeriesStore.js';
import { prometheusConfigSchema } from '../../../src/exporters/prometheus/config.js';
import { entry, event } from '../../helpers/accessLogEntries.js';
import { flowPoint, rawPoint, SLEEP_TO_HTTPBIN } from '../../helpers/flowPoints.js';

const REGISTRY: ReadonlySet<string> = new Set(
  Object.entries(incubating)
    .filter(([k, v]) => k.startsWith('ATTR_') && typeof v === 'string')
    .map(([, v]) => v as string),
);

/** `source.k8s.x` / `destination.k8s.x` name the registry's `k8s.x` of one end. */
function registryName(label: string): string {
  const m = /^(source|destination)\.(k8s\..*)$/.exec(label);
  return m === null ? label : m[2]!;
}

interface Series {
  labels: Record<string, string>;
  value: number;
  sum?: number;
}

function render(points: Parameters<SeriesStore['consume']>[0]['points']): Map<string, Series[]> {
  const store = new SeriesStore({ schema: semconvSchema });
  store.consume({ points });
  const m = new Map<string, Series[]>();
  for (const f of store.snapshot().families) {
    const list: Series[] = [];
    for (let i = 0; i < f.length; i++) {
      const ls = f.labels[i]!;
      const labels: Record<string, string> = {};
      ls.names.forEach((n, j) => (labels[n] = ls.values[j]!));
      const base = i * f.stride;
      if (f.def.type === 'counter') list.push({ labels, value: f.values[base]! });
      else list.push({ labels, value: f.values[base + f.stride - 3]!, sum: f.values[base + f.stride - 4]! });
    }
    m.set(f.def.name, list);
  }
  return m;
}

describe('semconv schema', () => {
  it('every label is a registry attribute, except the kmesh.* ones no convention covers', () => {
    for (const l of SEMCONV_FAILED_LABELS) {
      if (l.startsWith('kmesh.')) continue;
      assert.ok(REGISTRY.has(registryName(l)), `${l} (${registryName(l)}) is in the registry`);
    }
    assert.deepEqual([...SEMCONV_LABELS], [...SEMCONV_LABELS].sort());
    assert.ok(SEMCONV_FAILED_LABELS.includes(incubating.ATTR_ERROR_TYPE));
    assert.ok(!SEMCONV_LABELS.includes(incubating.ATTR_ERROR_TYPE), 'error.type only where there is an error');
  });

  it('units in the metadata (UCUM), none in the names; durations in seconds', () => {
    const units = Object.fromEntries(semconvSchema.families.map((f) => [f.name, f.unit]));
    assert.deepEqual(units, {
      'kmesh.tcp.connection.opened': '{connection}',
      'kmesh.tcp.connection.closed': '{connection}',
      'kmesh.tcp.connection.failed': '{connection}',
      'kmesh.tcp.sent': 'By',
      'kmesh.tcp.received': 'By',
      'kmesh.tcp.retransmissions': '{segment}',
      'kmesh.tcp.packets.lost': '{packet}',
      'kmesh.tcp.connection.duration': 's',
      'kmesh.tcp.rtt': 's',
    });
    for (const f of semconvSchema.families) assert.doesNotMatch(f.name, /_total$|bytes|seconds|_/, `${f.name}: no unit or suffix in the name`);
  });

  it('renders the processor labels under semconv names, exact values', () => {
    const m = render([
      flowPoint(SLEEP_TO_HTTPBIN, { opened: 2, closed: 1, sentBytes: 5, receivedBytes: 231, retransmits: 4, lostPackets: 1, durationsSec: [0.5, 2], rttsSec: [0.001] }),
      flowPoint({ ...SLEEP_TO_HTTPBIN, reporter: 'source', response_flags: 'UF', 'error.type': 'ECONNREFUSED' }, { failed: 3 }),
    ]);
    const want = {
      'client.service.name': 'sleep',
      'destination.address': '10.244.0.11',
      'destination.k8s.namespace.name': 'default',
      'destination.k8s.pod.name': 'httpbin-5c5944c58c-v9mlk',
      'destination.k8s.service.name': 'httpbin',
      'kmesh.reporter': 'destination',
      'network.transport': 'tcp',
      'server.address': 'httpbin.default.svc.cluster.local',
      'server.service.name': 'httpbin',
      'source.k8s.namespace.name': 'default',
    };
    assert.deepEqual(m.get('kmesh.tcp.received'), [{ labels: want, value: 231 }]);
    assert.deepEqual(m.get('kmesh.tcp.sent'), [{ labels: want, value: 5 }]);
    assert.deepEqual(m.get('kmesh.tcp.connection.opened'), [{ labels: want, value: 2 }]);
    assert.deepEqual(m.get('kmesh.tcp.retransmissions'), [{ labels: want, value: 4 }]);
    assert.deepEqual(m.get('kmesh.tcp.connection.duration'), [{ labels: want, value: 2, sum: 2.5 }]);
    assert.deepEqual(m.get('kmesh.tcp.connection.failed'), [{ labels: { ...want, 'kmesh.reporter': 'source', 'error.type': 'ECONNREFUSED' }, value: 3 }]);
  });

  it('without a processor: reporter from the flow, error.type from the raw failure reason, unknown identities', () => {
    const m = render([
      rawPoint({ [RawAttr.direction]: 'OUTBOUND', [RawAttr.sourceAddress]: '10.0.0.1', [RawAttr.destinationAddress]: '10.0.0.2', [RawAttr.destinationPort]: '80', [RawAttr.failureReason]: 'host_unreachable' }, { failed: 1 }),
    ]);
    const s = m.get('kmesh.tcp.connection.failed')!;
    assert.equal(s.length, 1);
    assert.equal(s[0]!.value, 1);
    assert.equal(s[0]!.labels['error.type'], 'EHOSTUNREACH');
    assert.equal(s[0]!.labels['kmesh.reporter'], 'source');
    assert.equal(s[0]!.labels['server.service.name'], 'unknown');
    assert.equal(s[0]!.labels['destination.address'], 'unknown', 'raw addresses are not rendered, as in kmesh');
  });

  it('access-log records: the attributes once, a short body, duration in seconds', () => {
    const ids = { 'src.workload': 'sleep-1', 'source.k8s.pod.name': 'sleep-1', 'destination.k8s.service.name': 'productpage' };
    const closed = semconvAccessLog(entry(event(), ids));
    assert.equal(closed.body, 'tcp connection closed');
    assert.equal(closed.attributes['kmesh.connection.duration'], 0.002733902);
    assert.equal(closed.attributes['kmesh.connection.event'], 'close');
    assert.equal(closed.attributes['kmesh.reporter'], 'destination');
    assert.equal(closed.attributes['kmesh.sent_bytes'], 5);
    assert.equal(closed.attributes['kmesh.received_bytes'], 292);
    assert.equal(closed.attributes['source.k8s.pod.name'], 'sleep-1');
    assert.equal(closed.attributes['network.peer.address'], '10.244.0.17');
    // Once: no Kmesh-line duplicates of the same facts.
    for (const k of ['src.workload', 'src.addr', 'dst.addr', 'duration', 'sent_bytes', 'source.address']) assert.equal(closed.attributes[k], undefined, k);
    const failed = semconvAccessLog(entry(event({ kind: 'fail', direction: 'OUTBOUND', failure: 'refused', durationNs: 0 }), {}));
    assert.equal(failed.body, 'tcp connect failed: ECONNREFUSED');
    assert.equal(failed.attributes['error.type'], 'ECONNREFUSED');
  });

  it('is an OTLP schema: the Prometheus exporter refuses it, naming the key', () => {
    const r = prometheusConfigSchema.safeParse({ schema: 'semconv' });
    assert.equal(r.success, false);
    assert.deepEqual(r.error!.issues.map((i) => i.path.join('.')), ['schema']);
    assert.equal(prometheusConfigSchema.safeParse({}).data?.schema, 'kmesh', 'the endpoint keeps the Kmesh names by default');
  });
});
