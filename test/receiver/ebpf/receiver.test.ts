import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import type { CreateSettings, Host } from '../../../src/component/component.js';
import type { LogsBatch } from '../../../src/model/logs.js';
import type { MetricsBatch } from '../../../src/model/metrics.js';
import { createDefaultEbpfReceiverConfig, type EbpfReceiverConfig } from '../../../src/receiver/ebpf/config.js';
import { createEbpfReceiverFactory } from '../../../src/receiver/ebpf/factory.js';
import type { KernelSource, KernelSourceOptions } from '../../../src/receiver/ebpf/KernelSource.js';
import { EbpfReceiverStartError } from '../../../src/receiver/ebpf/preflight.js';
import { EbpfReceiver, type EbpfReceiverDeps } from '../../../src/receiver/ebpf/receiver.js';
import { testSettings } from '../../helpers/settings.js';
import { batch, DIR, KIND, record } from './records.js';

class FakeKernel implements KernelSource {
  calls: string[] = [];
  onBatch: ((b: Uint8Array) => void) | undefined;
  pollTimeoutMs = 0;
  reports: Uint8Array = Buffer.alloc(0);
  pending: Uint8Array = Buffer.alloc(0);
  lost = 0n;
  failLoad: Error | undefined;
  failIterate = false;
  closed = 0;
  constructor(readonly options: KernelSourceOptions) {}
  load(): void {
    this.calls.push('load');
    if (this.failLoad !== undefined) throw this.failLoad;
  }
  attach(path: string): void {
    this.calls.push(`attach ${path}`);
  }
  startDrain(onBatch: (b: Uint8Array) => void, pollTimeoutMs: number): void {
    this.calls.push('startDrain');
    this.onBatch = onBatch;
    this.pollTimeoutMs = pollTimeoutMs;
  }
  drainNow(): Uint8Array {
    this.calls.push('drainNow');
    const p = this.pending;
    this.pending = Buffer.alloc(0);
    return p;
  }
  iterate(): Uint8Array {
    this.calls.push('iterate');
    if (this.failIterate) throw new Error('iterator broke');
    return this.reports;
  }
  lostRecords(): bigint {
    return this.lost;
  }
  close(): void {
    this.calls.push('close');
    this.closed++;
  }
}

const host: Host = { reportFatalError: () => assert.fail('no fatal errors expected') };

interface Rig {
  receiver: EbpfReceiver;
  kernels: FakeKernel[];
  metrics: MetricsBatch[];
  logs: LogsBatch[];
  settings: CreateSettings;
}

function rig(config: Partial<EbpfReceiverConfig> = {}, deps: Partial<EbpfReceiverDeps> = {}, kernelSetup?: (k: FakeKernel) => void): Rig {
  const kernels: FakeKernel[] = [];
  const metrics: MetricsBatch[] = [];
  const logs: LogsBatch[] = [];
  const settings = testSettings('ebpf');
  const receiver = new EbpfReceiver(
    settings,
    { ...createDefaultEbpfReceiverConfig(), cgroup_path: '/cg', ...config },
    {
      preflight: (c) => ({ cgroupPath: c.cgroup_path ?? '/auto' }),
      openKernel: async (o) => {
        const k = new FakeKernel(o);
        kernelSetup?.(k);
        kernels.push(k);
        return k;
      },
      ...deps,
    },
  );
  receiver.setMetricsConsumer({ consumeMetrics: (b) => void metrics.push(b) });
  receiver.setLogsConsumer({ consumeLogs: (b) => void logs.push(b) });
  return { receiver, kernels, metrics, logs, settings };
}

/** Sum of a self-metric's data points (optionally only those whose attributes include `attrs`). */
async function selfMetric(settings: CreateSettings, name: string, attrs: Record<string, string> = {}): Promise<number> {
  const { resourceMetrics } = await settings.telemetry.producer.collect();
  let sum = 0;
  for (const sm of resourceMetrics.scopeMetrics) {
    for (const m of sm.metrics) {
      if (m.descriptor.name !== `kmesh_otel_${name}`) continue;
      for (const dp of m.dataPoints) {
        if (Object.entries(attrs).every(([k, v]) => dp.attributes[k] === v)) sum += dp.value as number;
      }
    }
  }
  return sum;
}

const open = (cookie: bigint) => record({ socketCookie: cookie, kind: KIND.open, direction: DIR.OUTBOUND });
const close = (cookie: bigint, sent: bigint) => record({ socketCookie: cookie, kind: KIND.close, direction: DIR.OUTBOUND, sentBytes: sent });

describe('EbpfReceiver lifecycle', () => {
  it('shutdown before start is safe, twice too, and a later start attaches nothing', async () => {
    const r = rig();
    await r.receiver.shutdown();
    await r.receiver.shutdown();
    await r.receiver.start(host);
    assert.equal(r.kernels.length, 0);
  });

  it('starts once (both pipelines call start), loads, attaches and drains with the configured timeout', async () => {
    const r = rig({ drain_interval: 42, wakeup_bytes: 4096, bpf_object: '/x.o' });
    await Promise.all([r.receiver.start(host), r.receiver.start(host)]);
    assert.equal(r.kernels.length, 1);
    const k = r.kernels[0]!;
    assert.deepEqual(k.options, { objectPath: '/x.o', wakeupBytes: 4096 });
    assert.deepEqual(k.calls, ['load', 'attach /cg', 'startDrain']);
    assert.equal(k.pollTimeoutMs, 42);
    await r.receiver.shutdown();
    await r.receiver.shutdown();
    assert.equal(k.closed, 1);
  });

  it('hands each drained batch on at once: metrics and logs', async () => {
    const r = rig();
    await r.receiver.start(host);
    const k = r.kernels[0]!;
    k.onBatch!(batch(open(1n), open(2n)));
    assert.equal(r.metrics.length, 1);
    assert.equal(r.metrics[0]!.points[0]!.opened, 2);
    assert.equal(r.logs.length, 0, 'opens are not logged');
    k.onBatch!(close(1n, 700n));
    assert.equal(r.metrics.length, 2);
    assert.equal(r.metrics[1]!.points[0]!.closed, 1);
    assert.equal(r.metrics[1]!.points[0]!.sentBytes, 700);
    assert.equal(r.logs.length, 1);
    assert.equal(r.receiver.trackedConnections, 1);
    assert.equal(await selfMetric(r.settings, 'ebpf_records_received', { kind: 'open' }), 2);
    assert.equal(await selfMetric(r.settings, 'ebpf_records_received', { kind: 'close' }), 1);
    assert.equal(await selfMetric(r.settings, 'receiver_accepted_points'), 2);
    assert.equal(await selfMetric(r.settings, 'receiver_accepted_log_records'), 1);
    assert.equal(await selfMetric(r.settings, 'ebpf_connections_tracked'), 1);
    await r.receiver.shutdown();
  });

  it('counts decode errors by reason and never throws into the drain thread', async () => {
    const r = rig();
    await r.receiver.start(host);
    const k = r.kernels[0]!;
    k.onBatch!(Buffer.concat([record({ kind: 77 }), record({ family: 3 }), Buffer.alloc(5)]));
    assert.equal(await selfMetric(r.settings, 'ebpf_decode_errors', { reason: 'unknown_kind' }), 1);
    assert.equal(await selfMetric(r.settings, 'ebpf_decode_errors', { reason: 'unknown_family' }), 1);
    assert.equal(await selfMetric(r.settings, 'ebpf_decode_errors', { reason: 'truncated' }), 1);
    assert.equal(r.metrics.length, 0);
    await r.receiver.shutdown();
  });

  it('counts a throwing consumer as refused and keeps going', async () => {
    const r = rig();
    r.receiver.setMetricsConsumer({ consumeMetrics: () => { throw new Error('full'); } });
    r.receiver.setLogsConsumer({ consumeLogs: () => { throw new Error('full'); } });
    await r.receiver.start(host);
    r.kernels[0]!.onBatch!(batch(close(1n, 1n), close(2n, 1n)));
    assert.equal(await selfMetric(r.settings, 'receiver_refused_points'), 1);
    assert.equal(await selfMetric(r.settings, 'receiver_refused_log_records'), 2);
    await r.receiver.shutdown();
  });

  it('report tick: iterator reports, lost-record deltas, TTL expiry, read errors counted', async () => {
    const r = rig({ report_interval: 60_000, connection_ttl: 120_000 });
    await r.receiver.start(host);
    const k = r.kernels[0]!;
    k.reports = record({ socketCookie: 9n, kind: KIND.report, sentBytes: 50n, srttUs: 100 });
    k.lost = 5n;
    await r.receiver.reportTick(Date.now());
    assert.equal(r.metrics.at(-1)!.points[0]!.sentBytes, 50);
    assert.equal(r.logs.at(-1)!.entries[0]!.event.kind, 'report');
    assert.equal(await selfMetric(r.settings, 'ebpf_kernel_lost_records'), 5);
    k.lost = 8n;
    k.reports = Buffer.alloc(0);
    const metricsBefore = r.metrics.length;
    await r.receiver.reportTick(Date.now());
    assert.equal(r.metrics.length, metricsBefore, 'empty iterator walk emits nothing');
    assert.equal(await selfMetric(r.settings, 'ebpf_kernel_lost_records'), 8);
    assert.equal(r.receiver.trackedConnections, 1);
    await r.receiver.reportTick(Date.now() + 121_000);
    assert.equal(r.receiver.trackedConnections, 0, 'expired after the TTL');
    assert.equal(await selfMetric(r.settings, 'ebpf_connection_expirations'), 1);
    k.failIterate = true;
    await r.receiver.reportTick(Date.now());
    assert.equal(await selfMetric(r.settings, 'ebpf_kernel_read_errors', { operation: 'iterate' }), 1);
    await r.receiver.shutdown();
  });

  it('runs the report timer and stops it on shutdown', async () => {
    const r = rig({ report_interval: 10, connection_ttl: 1000 });
    await r.receiver.start(host);
    const k = r.kernels[0]!;
    await sleep(60);
    const iterations = k.calls.filter((c) => c === 'iterate').length;
    assert.ok(iterations >= 2, `iterated ${iterations} times`);
    await r.receiver.shutdown();
    const after = k.calls.length;
    await sleep(40);
    assert.equal(k.calls.length, after, 'no kernel calls after shutdown');
  });

  it('hands on what is left in the ringbuf at shutdown, and ignores batches after it', async () => {
    const r = rig();
    await r.receiver.start(host);
    const k = r.kernels[0]!;
    k.pending = close(3n, 10n);
    await r.receiver.shutdown();
    assert.deepEqual(k.calls.slice(-2), ['drainNow', 'close']);
    assert.equal(r.metrics.at(-1)!.points[0]!.closed, 1);
    const n = r.metrics.length;
    k.onBatch!(close(4n, 1n));
    assert.equal(r.metrics.length, n);
  });

  it('fails start with the preflight error and opens nothing', async () => {
    const r = rig({}, {
      preflight: () => {
        throw new EbpfReceiverStartError('ebpf receiver cannot start:\n  - /sys/fs/bpf is not a bpf filesystem');
      },
    });
    await assert.rejects(r.receiver.start(host), /bpf filesystem/);
    assert.equal(r.kernels.length, 0);
    await r.receiver.shutdown();
  });

  it('fails start with an explained load error and closes the probe', async () => {
    const r = rig({}, {}, (k) => (k.failLoad = new Error('Invalid argument: verifier says no')));
    await assert.rejects(r.receiver.start(host), (err: Error) => {
      assert.ok(err instanceof EbpfReceiverStartError);
      assert.match(err.message, /loading BPF object .* failed: Invalid argument: verifier says no/);
      assert.match(err.message, /kernel may be too old/);
      return true;
    });
    assert.equal(r.kernels[0]!.closed, 1);
    await r.receiver.shutdown();
    assert.equal(r.kernels[0]!.closed, 1, 'not closed twice');
  });

  it('fails start when the addon cannot be opened, naming the object', async () => {
    const r = rig({ bpf_object: '/o.o' }, { openKernel: async () => { throw new Error('addon not built: npm run build:native'); } });
    await assert.rejects(r.receiver.start(host), /cannot open BPF object \/o\.o: addon not built: npm run build:native/);
    await r.receiver.shutdown();
  });

  it('shutdown during start closes the probe once start finishes', async () => {
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    const kernels: FakeKernel[] = [];
    const r = rig({}, {
      openKernel: async (o) => {
        await gate;
        const k = new FakeKernel(o);
        kernels.push(k);
        return k;
      },
    });
    const started = r.receiver.start(host);
    const stopped = r.receiver.shutdown();
    release();
    await started;
    await stopped;
    assert.equal(kernels[0]!.closed, 1);
    assert.ok(!kernels[0]!.calls.includes('startDrain'), 'never started draining');
  });
});

describe('ebpfReceiverFactory', () => {
  it('is the `ebpf` receiver with metrics and logs, one shared instance per config', async () => {
    const kernels: FakeKernel[] = [];
    const f = createEbpfReceiverFactory({
      preflight: () => ({ cgroupPath: '/cg' }),
      openKernel: async (o) => {
        const k = new FakeKernel(o);
        kernels.push(k);
        return k;
      },
    });
    assert.equal(f.type, 'ebpf');
    assert.equal(f.kind, 'receiver');
    const config = f.createDefaultConfig();
    const metrics: MetricsBatch[] = [];
    const logs: LogsBatch[] = [];
    const settings = testSettings('ebpf');
    const a = f.createMetrics!(settings, config, { consumeMetrics: (b) => void metrics.push(b) });
    const b = f.createLogs!(settings, config, { consumeLogs: (l) => void logs.push(l) });
    assert.equal(a, b, 'one instance feeds both pipelines');
    const other = f.createMetrics!(settings, f.createDefaultConfig(), { consumeMetrics: () => undefined });
    assert.notEqual(other, a, 'another config, another instance');
    await a.start(host);
    await b.start(host);
    assert.equal(kernels.length, 1, 'attached once');
    kernels[0]!.onBatch!(close(1n, 5n));
    assert.equal(metrics.length, 1);
    assert.equal(logs.length, 1);
    await a.shutdown();
    await b.shutdown();
    await other.shutdown();
    assert.equal(kernels[0]!.closed, 1);
  });

  it('validates with its schema', () => {
    const f = createEbpfReceiverFactory();
    assert.equal(f.configSchema.safeParse({ report_intervall: '5s' }).success, false);
    assert.equal(f.configSchema.safeParse({ report_interval: '5s' }).success, true);
  });
});
