import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { describe, it } from 'node:test';
import type { CreateSettings, Host } from '../../../src/component/component.js';
import type { LogsBatch } from '../../../src/model/logs.js';
import type { MetricsBatch } from '../../../src/model/metrics.js';
import { createDefaultEbpfReceiverConfig, type EbpfReceiverConfig } from '../../../src/receiver/ebpf/config.js';
import { createEbpfReceiverFactory } from '../../../src/receiver/ebpf/factory.js';
import type { KernelSource, KernelSourceOptions, PeriodicSourceKind, UseSourceOptions, WalkResult, WalkStats } from '../../../src/receiver/ebpf/KernelSource.js';
import { EbpfReceiverStartError } from '../../../src/receiver/ebpf/preflight.js';
import { RECORD_SIZE } from '../../../src/receiver/ebpf/layout.js';
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
  /** Sources this fake kernel refuses, with the reason useSource throws. */
  refuse = new Map<PeriodicSourceKind, string>([['sk_storage_iter', 'Operation not permitted (errno 1)']]);
  sourceOptions: UseSourceOptions | undefined;
  /** What the next walks report about namespaces. */
  walkFailures: WalkStats['namespaceFailures'] = [];
  constructor(readonly options: KernelSourceOptions) {}
  load(): void {
    this.calls.push('load');
    if (this.failLoad !== undefined) throw this.failLoad;
  }
  useSource(kind: PeriodicSourceKind, options: UseSourceOptions): void {
    this.calls.push(`useSource ${kind}`);
    const reason = this.refuse.get(kind);
    if (reason !== undefined) throw new Error(`the kernel refused ${kind}: ${reason}\nlibbpf: log lines`);
    this.sourceOptions = options;
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
  iterate(): WalkResult {
    this.calls.push('iterate');
    const stats: WalkStats = { source: 'tcp_iter', durationMs: 12, namespaces: 3, reported: 0, namespaceFailures: this.walkFailures };
    if (this.failIterate) throw Object.assign(new Error('iterator broke'), { stats });
    const records = this.reports;
    stats.reported = records.byteLength / RECORD_SIZE;
    return { records, stats };
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
    assert.deepEqual(k.calls, ['load', 'useSource sk_storage_iter', 'useSource tcp_iter', 'attach /cg', 'startDrain']);
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
    const iterations = (): number => k.calls.filter((c) => c === 'iterate').length;
    try {
      // Two ticks of a 10 ms timer; the deadline only bounds a loaded machine's wait.
      const deadline = Date.now() + 5_000;
      while (iterations() < 2 && Date.now() < deadline) await sleep(10);
      assert.ok(iterations() >= 2, `iterated ${iterations()} times in 5 s`);
    } finally {
      // Stopped even when the assertion fails: a running timer would hold the file open.
      await r.receiver.shutdown();
    }
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
      assert.match(err.message, /kmesh-otel doctor/);
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

/** A pino logger whose lines land in `lines` (parsed). */
function capturingLogger(lines: Array<Record<string, unknown>>): CreateSettings['logger'] {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return pino({ level: 'info' }, sink);
}

describe('EbpfReceiver periodic-report sources', () => {
  it('auto: takes the first source the kernel loads, logs each one skipped with its reason, and names it in a gauge', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const r = rig({ proc_path: '/host/proc', netns_dirs: ['/var/run/netns'], report_interval: 7_000, connection_ttl: 30_000 }, {}, (k) =>
      k.refuse.set('tcp_iter', 'cannot enter network namespaces (setns: Operation not permitted (errno 1))'),
    );
    r.settings.logger = capturingLogger(lines);
    await r.receiver.start(host);
    const k = r.kernels[0]!;
    assert.deepEqual(k.calls.slice(0, 5), ['load', 'useSource sk_storage_iter', 'useSource tcp_iter', 'useSource sock_diag', 'attach /cg']);
    assert.deepEqual(k.sourceOptions, { procPath: '/host/proc', netnsDirs: ['/var/run/netns'], rttIntervalMs: 7_000 });
    assert.equal(r.receiver.periodicSource?.source, 'sock_diag');
    assert.equal(await selfMetric(r.settings, 'ebpf_periodic_source', { source: 'sock_diag' }), 1);
    assert.equal(await selfMetric(r.settings, 'ebpf_periodic_source'), 1, 'one source in use');
    const skipped = lines.filter((l) => l.msg === 'periodic-report source not available on this kernel');
    assert.deepEqual(
      skipped.map((l) => [l.source, l.reason]),
      [
        ['sk_storage_iter', 'the kernel refused sk_storage_iter: Operation not permitted (errno 1)'],
        ['tcp_iter', 'the kernel refused tcp_iter: cannot enter network namespaces (setns: Operation not permitted (errno 1))'],
      ],
    );
    const attached = lines.find((l) => l.msg === 'ebpf receiver attached');
    assert.equal(attached?.periodicSource, 'sock_diag');
    await r.receiver.shutdown();
  });

  it('auto with every source refused: starts on the core alone and says what is lost', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const r = rig({}, {}, (k) => {
      for (const s of ['tcp_iter', 'sock_diag', 'rtt_cb'] as const) k.refuse.set(s, 'no');
    });
    r.settings.logger = capturingLogger(lines);
    await r.receiver.start(host);
    assert.equal(r.receiver.periodicSource?.source, 'none');
    assert.equal(r.receiver.periodicSource?.skipped.length, 4);
    assert.equal(await selfMetric(r.settings, 'ebpf_periodic_source', { source: 'none' }), 1);
    const warn = lines.find((l) => l.level === 40);
    assert.match(String(warn?.msg), /bytes of long-lived connections appear only at their close/);
    r.kernels[0]!.onBatch!(close(1n, 5n));
    assert.equal(r.metrics.length, 1, 'the core still works');
    await r.receiver.shutdown();
  });

  it('a pinned source the kernel refuses is a start-up error quoting the kernel', async () => {
    const r = rig({ periodic_source: 'sk_storage_iter' });
    await assert.rejects(r.receiver.start(host), (err: Error) => {
      assert.ok(err instanceof EbpfReceiverStartError);
      assert.equal(
        err.message,
        'receivers.ebpf.periodic_source: sk_storage_iter was requested, but this kernel refuses it: the kernel refused sk_storage_iter: Operation not permitted (errno 1)',
      );
      return true;
    });
    assert.deepEqual(r.kernels[0]!.calls, ['load', 'useSource sk_storage_iter', 'close']);
    await r.receiver.shutdown();
  });

  it('periodic_source none tries nothing; a pinned one that loads is used', async () => {
    const none = rig({ periodic_source: 'none' });
    await none.receiver.start(host);
    assert.ok(!none.kernels[0]!.calls.some((c) => c.startsWith('useSource')));
    await none.receiver.shutdown();
    const pinned = rig({ periodic_source: 'rtt_cb' });
    await pinned.receiver.start(host);
    assert.deepEqual(pinned.kernels[0]!.calls.slice(0, 3), ['load', 'useSource rtt_cb', 'attach /cg']);
    await pinned.receiver.shutdown();
  });

  it('walk self-metrics per source; a namespace that cannot be entered is counted every walk and logged once', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const r = rig({ report_interval: 60_000, connection_ttl: 120_000 });
    r.settings.logger = capturingLogger(lines);
    await r.receiver.start(host);
    const k = r.kernels[0]!;
    k.reports = batch(
      record({ socketCookie: 1n, kind: KIND.report, sentBytes: 5n }),
      record({ socketCookie: 2n, kind: KIND.report, sentBytes: 6n }),
    );
    k.walkFailures = [{ path: '/proc/42/ns/net', reason: 'setns: Operation not permitted (errno 1)', first: true }];
    await r.receiver.reportTick();
    k.walkFailures = [{ path: '/proc/42/ns/net', reason: 'setns: Operation not permitted (errno 1)', first: false }];
    await r.receiver.reportTick();
    assert.equal(await selfMetric(r.settings, 'ebpf_walk_reported_sockets', { source: 'tcp_iter' }), 4);
    assert.equal(await selfMetric(r.settings, 'ebpf_netns_failures', { source: 'tcp_iter' }), 2);
    const logged = lines.filter((l) => l.namespace === '/proc/42/ns/net');
    assert.equal(logged.length, 1, 'logged once');
    assert.equal(logged[0]!.reason, 'setns: Operation not permitted (errno 1)');
    const { resourceMetrics } = await r.settings.telemetry.producer.collect();
    const hist = resourceMetrics.scopeMetrics.flatMap((m) => m.metrics).find((m) => m.descriptor.name === 'kmesh_otel_ebpf_walk_duration');
    assert.equal(hist?.descriptor.unit, 's');
    const dp = hist!.dataPoints[0]!.value as { count: number; sum: number };
    assert.equal(dp.count, 2);
    assert.ok(Math.abs(dp.sum - 0.024) < 1e-9, `two walks of 12 ms: ${dp.sum}`);
    await r.receiver.shutdown();
  });
});

describe('EbpfReceiver losses', () => {
  it('every loss series exists from start-up at 0; kernel losses are logged once, then summarised', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const r = rig({ report_interval: 60_000, connection_ttl: 120_000 });
    r.settings.logger = capturingLogger(lines);
    const receiver = new EbpfReceiver(r.settings, { ...createDefaultEbpfReceiverConfig(), cgroup_path: '/cg', report_interval: 60_000, connection_ttl: 120_000 }, {
      preflight: () => ({ cgroupPath: '/cg' }),
      openKernel: async (o) => {
        const k = new FakeKernel(o);
        r.kernels.push(k);
        return k;
      },
    });
    const { resourceMetrics } = await r.settings.telemetry.producer.collect();
    const present = new Set(resourceMetrics.scopeMetrics.flatMap((m) => m.metrics.filter((x) => x.dataPoints.length > 0).map((x) => x.descriptor.name)));
    for (const name of ['ebpf_kernel_lost_records', 'ebpf_decode_errors', 'ebpf_connection_evictions', 'ebpf_connection_expirations', 'data_loss_last_time']) {
      assert.ok(present.has(`kmesh_otel_${name}`), `${name} exists before any loss`);
    }
    assert.equal(await selfMetric(r.settings, 'ebpf_decode_errors', { reason: 'unknown_kind' }), 0);
    await receiver.start(host);
    const k = r.kernels[0]!;
    k.lost = 7n;
    await receiver.reportTick();
    k.lost = 9n;
    await receiver.reportTick();
    const lost = lines.filter((l) => l.cause === 'kernel_ringbuf_full');
    assert.equal(lost.length, 1, 'first occurrence only; the next is summarised later');
    assert.equal(lost[0]!.lost, 7);
    assert.ok((await selfMetric(r.settings, 'data_loss_last_time', { cause: 'kernel_ringbuf_full' })) > 0);
    await receiver.shutdown();
    const all = lines.filter((l) => l.cause === 'kernel_ringbuf_full');
    assert.deepEqual([all.length, all[1]?.lost, all[1]?.lostTotal], [2, 2, 9], 'shutdown flushes the pending summary');
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
