/**
 * The ebpf receiver: loads the sockops program, attaches it at the cgroup v2
 * root, and turns every drained ringbuf batch (and every periodic iterator
 * walk) into one metrics batch and one logs batch for whichever consumers are
 * wired. Emitting per drained batch is what makes a closed connection visible
 * on the next scrape without any fixed sleep.
 */
import type { Attributes, Counter, Histogram } from '@opentelemetry/api';
import type { CreateSettings, Host, LogsConsumer, MetricsConsumer, Receiver, TracesConsumer } from '../../component/component.js';
import type { EbpfReceiverConfig } from './config.js';
import { newDecodeContext, type DecodeStats } from './decode.js';
import { nativeKernelSource, type KernelSource, type KernelSourceFactory, type WalkStats } from './KernelSource.js';
import { sharedClock, type MonotonicClock } from './MonotonicClock.js';
import { LossLog } from '../../telemetry/LossLog.js';
import { choosePeriodicSource, PinnedSourceError, SOURCE_NEEDS, type SourceChoice } from './periodicSource.js';
import { EbpfReceiverStartError, loadFailureMessage, preflight } from './preflight.js';
import { RecordProcessor, type KindCounts, type ProcessResult } from './RecordProcessor.js';

/** What the receiver needs from the outside world; fakes in unit tests. */
export interface EbpfReceiverDeps {
  /** Opens the BPF object (default: the native addon). */
  openKernel: KernelSourceFactory;
  /** Start-up checks; returns the cgroup to attach to or throws {@link EbpfReceiverStartError}. */
  preflight: (config: EbpfReceiverConfig) => { cgroupPath: string };
  /** Monotonic -> wall clock conversion (default: the process-wide one). */
  clock: MonotonicClock;
}

export const defaultEbpfReceiverDeps = (): EbpfReceiverDeps => ({
  openKernel: nativeKernelSource,
  preflight: (config) => preflight(config),
  clock: sharedClock(),
});

interface SelfMetrics {
  records: Counter;
  decodeErrors: Counter;
  lost: Counter;
  iteratorFallback: Counter;
  evictions: Counter;
  expirations: Counter;
  readErrors: Counter;
  walkDuration: Histogram;
  walkReported: Counter;
  netnsFailures: Counter;
  acceptedPoints: Counter;
  refusedPoints: Counter;
  acceptedLogs: Counter;
  refusedLogs: Counter;
  acceptedSpans: Counter;
  refusedSpans: Counter;
  spansSampled: Counter;
  spansWithoutIsn: Counter;
}

type State = 'created' | 'starting' | 'running' | 'stopped';

export class EbpfReceiver implements Receiver {
  private readonly deps: EbpfReceiverDeps;
  private readonly processor: RecordProcessor;
  private readonly metrics: SelfMetrics;
  private readonly attrs: Attributes;
  private metricsNext: MetricsConsumer | undefined;
  private logsNext: LogsConsumer | undefined;
  private tracesNext: TracesConsumer | undefined;
  private state: State = 'created';
  private startPromise: Promise<void> | undefined;
  private shutdownPromise: Promise<void> | undefined;
  private kernel: KernelSource | undefined;
  private reportTimer: NodeJS.Timeout | undefined;
  /** The report tick in flight, if any. */
  private walk: Promise<void> | undefined;
  private lastLost = 0n;
  private lastIteratorFallback = 0n;
  private readErrorCount = 0;
  /** The periodic-report source start() settled on. */
  private choice: SourceChoice | undefined;
  private readonly losses: LossLog;
  private seen: {
    stats: DecodeStats;
    kinds: KindCounts;
    evictions: number;
    expirations: number;
    sampling: { failed: number; long: number; ratio: number; dropped: number };
    withoutIsns: number;
  };

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: EbpfReceiverConfig,
    deps: Partial<EbpfReceiverDeps> = {},
  ) {
    this.deps = { ...defaultEbpfReceiverDeps(), ...deps };
    this.processor = new RecordProcessor(
      {
        connectionTtlMs: config.connection_ttl,
        maxConnections: config.max_connections,
        logPeriodicReports: config.log_periodic_reports,
        wantMetrics: false,
        wantLogs: false,
        wantTraces: false,
        spans: {
          samplingRatio: config.traces.sampling_ratio,
          keepLongerThanMs: config.traces.keep_longer_than,
          traceIdKey: config.traces.trace_id_key,
        },
      },
      newDecodeContext(this.deps.clock),
    );
    this.seen = {
      stats: { ...this.processor.stats },
      kinds: { ...this.processor.kinds },
      evictions: 0,
      expirations: 0,
      sampling: { ...this.processor.spanBuilder.sampler.counts },
      withoutIsns: 0,
    };
    this.attrs = { receiver: settings.id.toString() };
    const t = settings.telemetry;
    this.metrics = {
      records: t.counter('ebpf_records_received', 'Kernel connection records decoded, by kind'),
      decodeErrors: t.counter('ebpf_decode_errors', 'Kernel records skipped because they could not be decoded, by reason'),
      lost: t.counter('ebpf_kernel_lost_records', 'Records the kernel dropped because the ringbuf was full'),
      iteratorFallback: t.counter(
        'ebpf_iterator_fallback_records',
        'Periodic reports returned through the iterator read() because the ringbuf was full (not lost; slow path)',
      ),
      evictions: t.counter('ebpf_connection_evictions', 'Tracked connections evicted because the table was full (max_connections)'),
      expirations: t.counter('ebpf_connection_expirations', 'Tracked connections forgotten after connection_ttl without a record (lost close)'),
      readErrors: t.counter('ebpf_kernel_read_errors', 'Failed reads of the kernel iterator or counters'),
      walkDuration: t.histogram('ebpf_walk_duration', 'Duration of one walk of the periodic-report source, by source', 's', [
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
      ]),
      walkReported: t.counter('ebpf_walk_reported_sockets', 'Connections reported by walks of the periodic-report source, by source'),
      netnsFailures: t.counter(
        'ebpf_netns_failures',
        'Network namespaces a per-namespace walk could not enter or read (each namespace is logged once)',
      ),
      acceptedPoints: t.counter('receiver_accepted_points', 'Metric points the next consumer accepted'),
      refusedPoints: t.counter('receiver_refused_points', 'Metric points the next consumer refused'),
      acceptedLogs: t.counter('receiver_accepted_log_records', 'Log records the next consumer accepted'),
      refusedLogs: t.counter('receiver_refused_log_records', 'Log records the next consumer refused'),
      acceptedSpans: t.counter('receiver_accepted_spans', 'Spans the next consumer accepted'),
      refusedSpans: t.counter('receiver_refused_spans', 'Spans the next consumer refused'),
      spansSampled: t.counter('ebpf_span_sampling_decisions', 'Connection spans by sampling decision: failed, long, ratio (kept) or dropped'),
      spansWithoutIsn: t.counter('ebpf_spans_without_isn', 'Closes and failed connects not emitted as spans: their record carried no ISN pair'),
    };
    // Every loss series exists from start-up at 0, so "no loss" is a
    // value a dashboard can show and an alert can compare against.
    const m = this.metrics;
    for (const c of [m.lost, m.evictions, m.expirations, m.refusedPoints, m.refusedLogs]) c.add(0, this.attrs);
    for (const reason of DECODE_ERROR_REASONS) m.decodeErrors.add(0, { ...this.attrs, reason });
    this.losses = new LossLog(settings.logger, t, this.attrs, [...LOSS_CAUSES]);
  }

  /** Wires the metrics pipeline (the factory calls this; one receiver may feed both signals). */
  setMetricsConsumer(next: MetricsConsumer): void {
    this.metricsNext = next;
    this.processor.setWants(this.metricsNext !== undefined, this.logsNext !== undefined);
  }

  /** Wires the logs pipeline. */
  setLogsConsumer(next: LogsConsumer): void {
    this.logsNext = next;
    this.processor.setWants(this.metricsNext !== undefined, this.logsNext !== undefined);
  }

  /** Wires the traces pipeline. */
  setTracesConsumer(next: TracesConsumer): void {
    this.tracesNext = next;
    this.processor.setWants(this.metricsNext !== undefined, this.logsNext !== undefined, true);
  }

  /** Connections currently tracked (for the gauge and tests). */
  get trackedConnections(): number {
    return this.processor.table.size;
  }

  /** Idempotent: a second call (the second pipeline) returns the first call's promise. */
  start(host: Host): Promise<void> {
    this.startPromise ??= this.doStart(host);
    return this.startPromise;
  }

  /** Safe before start and when called twice; releases every handle and timer. */
  shutdown(): Promise<void> {
    this.shutdownPromise ??= this.doShutdown();
    return this.shutdownPromise;
  }

  /**
   * Processes one packed buffer of records and hands the result on. Public so
   * the drain callback, the report tick and tests share one path; never throws.
   */
  ingest(buf: Uint8Array): void {
    let result: ProcessResult;
    try {
      result = this.processor.process(buf);
    } catch (err) {
      // Only a bug can get here (decoding never throws); keep running.
      this.settings.logger.error({ err }, 'ebpf receiver failed on a batch; batch dropped');
      return;
    }
    this.recordSelfMetrics();
    if (result.metrics !== undefined && this.metricsNext !== undefined) {
      const n = result.metrics.points.length;
      try {
        this.metricsNext.consumeMetrics(result.metrics);
        this.metrics.acceptedPoints.add(n, this.attrs);
      } catch (err) {
        this.metrics.refusedPoints.add(n, this.attrs);
        this.losses.record('refused_points', n, { err });
      }
    }
    if (result.logs !== undefined && this.logsNext !== undefined) {
      const n = result.logs.entries.length;
      try {
        this.logsNext.consumeLogs(result.logs);
        this.metrics.acceptedLogs.add(n, this.attrs);
      } catch (err) {
        this.metrics.refusedLogs.add(n, this.attrs);
        this.losses.record('refused_log_records', n, { err });
      }
    }
    if (result.traces !== undefined && this.tracesNext !== undefined) {
      const n = result.traces.spans.length;
      try {
        this.tracesNext.consumeTraces(result.traces);
        this.metrics.acceptedSpans.add(n, this.attrs);
      } catch (err) {
        this.metrics.refusedSpans.add(n, this.attrs);
        this.losses.record('refused_spans', n, { err });
      }
    }
  }

  /**
   * One report interval: iterator walk, lost-record count, TTL expiry, clock
   * resync. The walk runs on the addon's own thread, so the event loop keeps
   * serving scrapes and exports meanwhile. Its buffer also carries the events
   * drained with it, in kernel order, so it goes through the same ingest() as
   * a drained batch. At most one at a time: a tick that comes while a walk is
   * in flight is that walk.
   */
  reportTick(nowMs = Date.now()): Promise<void> {
    this.walk ??= this.doReportTick(nowMs).finally(() => {
      this.walk = undefined;
    });
    return this.walk;
  }

  private async doReportTick(nowMs: number): Promise<void> {
    const kernel = this.kernel;
    if (kernel === undefined) return;
    let reports: Uint8Array | undefined;
    try {
      // Chunk by chunk, as the addon delivers them (each chunk's buffer is
      // reused by the next): at 100k tracked sockets one whole-walk Buffer was
      // 14 MB that stayed resident until a later major GC (issue #15).
      const walk = await kernel.iterate((chunk) => this.ingest(chunk));
      reports = walk.records;
      this.recordWalk(walk.stats);
    } catch (err) {
      const stats = (err as { stats?: WalkStats }).stats;
      if (stats !== undefined) this.recordWalk(stats);
      this.readError('iterate', err);
    }
    // Also during shutdown (which waits for this walk): the buffer holds
    // the events drained with the walk, which nothing else will deliver.
    if (reports !== undefined && reports.byteLength > 0) this.ingest(reports);
    if (this.kernel !== kernel) return; // shut down meanwhile: the probe is closing
    try {
      const lost = kernel.lostRecords();
      if (lost > this.lastLost) {
        const n = Number(lost - this.lastLost);
        this.metrics.lost.add(n, this.attrs);
        this.losses.record('kernel_ringbuf_full', n, {
          hint: 'the ringbuf filled faster than it was drained: opens, closes or reports are missing; see wakeup_bytes and drain_interval',
        });
      }
      this.lastLost = lost;
    } catch (err) {
      this.readError('lost_records', err);
    }
    if (kernel.iteratorFallbackRecords !== undefined) {
      try {
        const n = kernel.iteratorFallbackRecords();
        if (n > this.lastIteratorFallback) this.metrics.iteratorFallback.add(Number(n - this.lastIteratorFallback), this.attrs);
        this.lastIteratorFallback = n;
      } catch (err) {
        this.readError('iter_fallback_records', err);
      }
    }
    this.processor.expire(nowMs);
    this.recordSelfMetrics();
    this.losses.tick();
    this.deps.clock.maybeResync();
  }

  /** Walk self-metrics, and one log line per namespace on its first failure. */
  private recordWalk(stats: WalkStats): void {
    const source = this.choice?.source ?? stats.source;
    if (source === 'none' || source === 'rtt_cb') return; // no walk: the tick only drains
    const attrs = { ...this.attrs, source };
    this.metrics.walkDuration.record(stats.durationMs / 1000, attrs);
    if (stats.reported > 0) this.metrics.walkReported.add(stats.reported, attrs);
    for (const f of stats.namespaceFailures) {
      this.metrics.netnsFailures.add(1, attrs);
      if (f.first) {
        this.settings.logger.warn(
          { source, namespace: f.path, reason: f.reason },
          'a network namespace could not be walked: its long-lived connections get no periodic report (logged once per namespace)',
        );
      }
    }
  }

  /** Which periodic-report source is in use (after start). */
  get periodicSource(): SourceChoice | undefined {
    return this.choice;
  }

  private async doStart(_host: Host): Promise<void> {
    if (this.state !== 'created') return; // shut down before start: nothing to do
    this.state = 'starting';
    const config = this.config;
    const { cgroupPath } = this.deps.preflight(config);

    let kernel: KernelSource;
    try {
      kernel = await this.deps.openKernel({ objectPath: config.bpf_object, wakeupBytes: config.wakeup_bytes });
    } catch (err) {
      throw new EbpfReceiverStartError(`cannot open BPF object ${config.bpf_object}: ${message(err)}`, { cause: err });
    }
    try {
      try {
        kernel.load();
      } catch (err) {
        throw new EbpfReceiverStartError(loadFailureMessage(config.bpf_object, err), { cause: err });
      }
      try {
        this.choice = choosePeriodicSource(kernel, config.periodic_source, {
          procPath: config.proc_path,
          netnsDirs: config.netns_dirs,
          rttIntervalMs: config.report_interval,
        });
      } catch (err) {
        if (err instanceof PinnedSourceError) throw new EbpfReceiverStartError(err.message, { cause: err });
        throw err;
      }
      try {
        kernel.attach(cgroupPath);
      } catch (err) {
        throw new EbpfReceiverStartError(
          `attaching the sockops program to ${cgroupPath} failed: ${message(err)} ` +
            '(it must be a cgroup v2 directory; attaching needs CAP_NET_ADMIN and CAP_BPF)',
          { cause: err },
        );
      }
      if (this.shutdownPromise !== undefined) {
        kernel.close(); // shutdown was called while we were loading
        return;
      }
      this.kernel = kernel;
      this.settings.telemetry.gauge('ebpf_connections_tracked', 'Connections in the receiver connection table', () => [
        [this.processor.table.size, this.attrs],
      ]);
      kernel.startDrain((buf) => {
        // A throw here would reach the addon's thread-safe call and end the
        // process (napi_fatal_exception); ingest() does not throw, and this
        // guard keeps it that way whatever a future change does.
        try {
          if (this.state === 'running') this.ingest(buf);
        } catch (err) {
          this.settings.logger.error({ err }, 'ebpf receiver failed on a drained batch; batch dropped');
        }
      }, config.drain_interval);
      this.reportTimer = setInterval(() => {
        this.reportTick().catch((err: unknown) => this.settings.logger.error({ err }, 'ebpf receiver report tick failed'));
      }, config.report_interval);
      this.state = 'running';
      const { source, skipped } = this.choice;
      this.settings.telemetry.gauge('ebpf_periodic_source', 'The periodic-report source in use (1), by source', () => [[1, { ...this.attrs, source }]]);
      for (const s of skipped) {
        this.settings.logger.info({ source: s.source, reason: s.reason }, 'periodic-report source not available on this kernel');
      }
      this.settings.logger.info(
        { cgroupPath, bpfObject: config.bpf_object, periodicSource: source, needs: source === 'none' ? undefined : SOURCE_NEEDS[source] },
        'ebpf receiver attached',
      );
      if (source === 'none') {
        this.settings.logger.warn(
          config.periodic_source === 'none'
            ? { reason: 'receivers.ebpf.periodic_source is none' }
            : { reason: 'this kernel refused every periodic-report source (see the lines above)' },
          'no periodic reports: open, close and failure records only; bytes of long-lived connections appear only at their close',
        );
      } else if (source === 'rtt_cb') {
        this.settings.logger.warn(
          {},
          'periodic reports come from ACKs with an RTT sample (rtt_cb): a socket that only receives data is reported only at its close',
        );
      }
    } catch (err) {
      try {
        kernel.close();
      } catch {
        // The start error is the one to report.
      }
      throw err;
    }
  }

  private async doShutdown(): Promise<void> {
    if (this.startPromise !== undefined) await this.startPromise.catch(() => undefined);
    const wasRunning = this.state === 'running';
    this.state = 'stopped';
    if (this.reportTimer !== undefined) clearInterval(this.reportTimer);
    this.reportTimer = undefined;
    // A walk in flight holds back the drained records (see iterate()): let it deliver them first.
    await this.walk?.catch(() => undefined);
    const kernel = this.kernel;
    this.kernel = undefined;
    if (kernel !== undefined) {
      if (wasRunning) {
        // Hand on what is still in the ringbuf: the last closes before exit.
        try {
          this.ingest(kernel.drainNow());
        } catch (err) {
          this.readError('drain', err);
        }
      }
      try {
        kernel.close();
      } catch (err) {
        this.settings.logger.warn({ err }, 'closing the BPF probe failed');
      }
    }
    this.processor.table.clear();
    this.losses.close();
  }

  private readError(operation: string, err: unknown): void {
    this.metrics.readErrors.add(1, { ...this.attrs, operation });
    // Not per item: the first failure and then every 100th.
    if (this.readErrorCount++ % 100 === 0) this.settings.logger.warn({ err, operation }, 'reading from the kernel failed');
  }

  /** Adds what changed since the last call to the self-metric counters. */
  private recordSelfMetrics(): void {
    const p = this.processor;
    const seen = this.seen;
    const a = this.attrs;
    for (const kind of ['open', 'close', 'fail', 'report'] as const) {
      const d = p.kinds[kind] - seen.kinds[kind];
      if (d > 0) this.metrics.records.add(d, { ...a, kind });
      seen.kinds[kind] = p.kinds[kind];
    }
    for (const [key, reason] of DECODE_ERRORS) {
      const d = p.stats[key] - seen.stats[key];
      if (d > 0) {
        this.metrics.decodeErrors.add(d, { ...a, reason });
        this.losses.record('decode_error', d, { reason });
      }
      seen.stats[key] = p.stats[key];
    }
    const ev = p.table.evictions - seen.evictions;
    if (ev > 0) {
      this.metrics.evictions.add(ev, a);
      this.losses.record('connection_evicted', ev, { hint: 'more live connections than max_connections' });
    }
    seen.evictions = p.table.evictions;
    const ex = p.table.expirations - seen.expirations;
    if (ex > 0) {
      this.metrics.expirations.add(ex, a);
      this.losses.record('connection_expired', ex, { hint: 'no record for connection_ttl: the close record was lost' });
    }
    seen.expirations = p.table.expirations;
    const counts = p.spanBuilder.sampler.counts;
    for (const decision of ['failed', 'long', 'ratio', 'dropped'] as const) {
      const d = counts[decision] - seen.sampling[decision];
      if (d > 0) this.metrics.spansSampled.add(d, { ...a, decision });
      seen.sampling[decision] = counts[decision];
    }
    const wi = p.spanBuilder.withoutIsns - seen.withoutIsns;
    if (wi > 0) this.metrics.spansWithoutIsn.add(wi, a);
    seen.withoutIsns = p.spanBuilder.withoutIsns;
  }
}

/** Decode error counters and their `reason` label values. */
const DECODE_ERRORS: ReadonlyArray<[keyof DecodeStats, string]> = [
  ['truncated', 'truncated'],
  ['unknownKind', 'unknown_kind'],
  ['unknownDirection', 'unknown_direction'],
  ['unknownFamily', 'unknown_family'],
];
const DECODE_ERROR_REASONS = DECODE_ERRORS.map(([, r]) => r);

/** What this receiver can lose, as LossLog causes. */
const LOSS_CAUSES = ['kernel_ringbuf_full', 'decode_error', 'connection_evicted', 'connection_expired', 'refused_points', 'refused_log_records', 'refused_spans'] as const;

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
