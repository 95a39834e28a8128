import type { Counter } from '@opentelemetry/api';
import type { CreateSettings, Host } from '../../component/component.js';
import { LossLog } from '../../telemetry/LossLog.js';
import type { OtlpCommonConfig } from './config.js';
import { ConcurrentBatcher, type ConcurrentBatchOptions } from './ConcurrentBatcher.js';
import { EncodingExporter, type BatchDone } from './exportWrappers.js';
import { Retrier } from './retry.js';
import { QUEUE_CAPACITY_GAUGE, QUEUE_SIZE_GAUGE } from './selfMetrics.js';
import { OtlpTransport, type EncodedRequest, type OtlpProtocol } from './transport.js';

/** What tells the logs and traces exporters apart in their self-telemetry. */
export interface BatchingSignal {
  /** `signal` attribute of the queue gauges and loss log. */
  signal: 'logs' | 'traces';
  /** What the items are called in `unflushed()` (`log_records`, `spans`). */
  items: 'log_records' | 'spans';
  /**
   * The sent / send_failed / dropped counters, names spelled out (so a search
   * for a self-metric finds it), descriptions as the debug exporter of the
   * signal words them (one self-metric, one description, whichever exporter
   * registers it).
   */
  counters: Record<'sent' | 'failed' | 'dropped', { name: string; description: string }>;
}

/**
 * The SDK reference path of an exporter (benchmarks and tests; not a config
 * key): its own batching processor in front of a retrying SDK exporter.
 */
export interface SdkPath<T> {
  add(item: T): void;
  /** Stops retrying: pending retries fail now, later failures are final. */
  stop(): void;
  forceFlush(): Promise<void>;
  shutdown(): Promise<void>;
}

/**
 * An OTLP exporter of items that are batched and sent as they come (access-log
 * entries, connection spans), behind one bounded queue: items accepted and
 * not yet finished (buffered, in flight or waiting for a retry) never exceed
 * `sending_queue.queue_size`; beyond it new items are dropped and counted in
 * the exporter's dropped counter, a dead backend costs bounded memory,
 * and delivery resumes when it returns. Each item is counted once as sent,
 * send_failed or dropped, and every loss is logged (LossLog).
 *
 * The direct path (the agent's): `encoder` encodes each batch, which
 * {@link ConcurrentBatcher} closes at `batch.min_size` items or
 * `batch.flush_timeout` and sends with up to `num_consumers` in flight. The
 * SDK path (`sdkPath`) is the reference the equivalence tests and benchmarks
 * compare against. One class for both signals, so their queue, counting and
 * loss rules cannot drift apart.
 */
export abstract class BatchingOtlpExporter<T> {
  /** The direct path's wrapper and batcher, or the SDK path. */
  private direct: { wrapper: EncodingExporter<T>; batcher: ConcurrentBatcher<T> } | undefined;
  private sdk: SdkPath<T> | undefined;
  private started = false;
  private inFlight = 0;
  private stopped = false;
  private shutdownPromise: Promise<void> | undefined;
  private readonly attrs: { exporter: string };
  private readonly sent: Counter;
  private readonly failed: Counter;
  private readonly dropped: Counter;
  /** Failed exports and drops, logged rate-limited with their counts. */
  private readonly losses: LossLog;
  protected readonly transport: OtlpTransport;

  constructor(
    protected readonly settings: CreateSettings,
    protected readonly config: OtlpCommonConfig,
    private readonly kind: BatchingSignal,
    protocol: OtlpProtocol,
    /** Jitter source of the retries (tests). */
    private readonly random: () => number,
    /** `sdk`: the reference path; not a config key. */
    private readonly useSdk: boolean,
  ) {
    this.attrs = { exporter: settings.id.toString() };
    const t = settings.telemetry;
    const { counters, signal } = kind;
    this.sent = t.counter(counters.sent.name, counters.sent.description);
    this.failed = t.counter(counters.failed.name, counters.failed.description);
    this.dropped = t.counter(counters.dropped.name, counters.dropped.description);
    // The loss series exist from start-up at 0 ("no loss" is a value to alert on).
    this.failed.add(0, this.attrs);
    this.dropped.add(0, this.attrs);
    this.losses = new LossLog(settings.logger, t, { ...this.attrs, signal }, ['export_failed', 'queue_full', 'shut_down']);
    t.gauge(QUEUE_SIZE_GAUGE.name, QUEUE_SIZE_GAUGE.description, () => (this.stopped ? [] : [[this.inFlight, { ...this.attrs, signal }]]));
    t.gauge(QUEUE_CAPACITY_GAUGE.name, QUEUE_CAPACITY_GAUGE.description, () =>
      this.stopped ? [] : [[this.config.sending_queue.queue_size, { ...this.attrs, signal }]],
    );
    // Reads the TLS files now (fail fast at creation).
    this.transport = new OtlpTransport(protocol, config, settings.id.toString());
  }

  /** The direct path's encoder of one batch. */
  protected abstract encoder(): { encode(items: T[]): EncodedRequest };

  /** The SDK reference path, reporting each batch's completion through `onDone`. */
  protected abstract sdkPath(retrier: Retrier, onDone: BatchDone, options: ConcurrentBatchOptions): SdkPath<T>;

  async start(_host: Host): Promise<void> {
    if (this.stopped || this.started) return;
    this.started = true;
    const c = this.config;
    const q = c.sending_queue;
    const onDone: BatchDone = (n, ok, error) => {
      this.inFlight -= n;
      if (ok) this.sent.add(n, this.attrs);
      else {
        this.failed.add(n, this.attrs);
        this.losses.record('export_failed', n, { endpoint: this.config.endpoint, err: error?.message });
      }
    };
    // A batch closes at min_size items (max_size when only that is set),
    // or flush_timeout after its first item; never above queue_size.
    const batchSize = q.batch.min_size > 0 ? q.batch.min_size : q.batch.max_size > 0 ? q.batch.max_size : 1;
    const options: ConcurrentBatchOptions = {
      batchSize: Math.min(batchSize, q.queue_size),
      // Queue disabled: one export at a time, as the SDK's batch processors.
      maxConcurrentExports: q.enabled ? q.num_consumers : 1,
      flushDelayMillis: Math.max(1, q.batch.flush_timeout),
    };
    const retrier = new Retrier(c.retry_on_failure, this.random);
    if (this.useSdk) {
      this.sdk = this.sdkPath(retrier, onDone, options);
      return;
    }
    const wrapper = new EncodingExporter<T>(
      this.encoder(),
      this.transport.encodedExporter(this.kind.signal),
      retrier,
      this.settings.resource,
      onDone,
      (err) => this.settings.logger.warn({ err }, `otlp ${this.kind.signal} exporter: cannot encode a batch; its items count as send_failed`),
    );
    this.direct = { wrapper, batcher: new ConcurrentBatcher(wrapper, options) };
  }

  /** Accepts `items` within the queue's bound; the rest are dropped, counted and logged. */
  protected accept(items: readonly T[]): void {
    const { direct, sdk } = this;
    if (this.stopped || (direct === undefined && sdk === undefined)) {
      if (items.length > 0) {
        this.dropped.add(items.length, this.attrs);
        this.losses.record('shut_down', items.length);
      }
      return;
    }
    const cap = this.config.sending_queue.queue_size;
    let dropped = 0;
    for (const item of items) {
      if (this.inFlight >= cap) {
        dropped++;
        continue;
      }
      this.inFlight++;
      if (direct !== undefined) direct.batcher.add(item);
      else sdk!.add(item);
    }
    if (dropped > 0) {
      this.dropped.add(dropped, this.attrs);
      this.losses.record('queue_full', dropped, { queue_size: cap });
    }
  }

  /** Exports everything queued now. */
  async forceFlush(): Promise<void> {
    await this.direct?.batcher.forceFlush();
    await this.sdk?.forceFlush();
  }

  /** Items accepted and not yet delivered or failed. */
  get queued(): number {
    return this.inFlight;
  }

  /** What a shutdown cut short by the grace period loses: the items not yet delivered or failed. */
  unflushed(): Record<string, number> {
    return { [this.kind.items]: this.inFlight };
  }

  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      this.stopped = true;
      // Pending retries fail now; what is queued gets one attempt bounded by `timeout`.
      this.direct?.wrapper.stop();
      this.sdk?.stop();
      const warn = (err: unknown): void => this.settings.logger.warn({ err }, `otlp ${this.kind.signal} exporter shutdown`);
      await this.direct?.batcher.shutdown().catch(warn);
      await this.sdk?.shutdown().catch(warn);
      this.losses.close();
    })();
    return this.shutdownPromise;
  }
}
