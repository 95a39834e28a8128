import type { Counter } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import type { Logger } from 'pino';
import type {
  Component,
  CreateSettings,
  ExporterFactory,
  ExtensionFactory,
  Host,
  LogsConsumer,
  TracesConsumer,
  MetricsConsumer,
  ProcessorFactory,
  ReceiverFactory,
} from '../component/component.js';
import { LossLog } from '../telemetry/LossLog.js';
import type { SelfTelemetry } from '../telemetry/SelfTelemetry.js';
import { componentKey, type AgentConfig, type ResolvedComponent } from './config.js';
import { fanoutLogs, fanoutMetrics, fanoutTraces } from './fanout.js';

export type ServiceState = 'created' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface ServiceOptions {
  config: AgentConfig;
  logger: Logger;
  telemetry: SelfTelemetry;
  resource: Resource;
  /**
   * Grace period of the whole shutdown, ms, shared by every component in
   * stop order. Default: the config's `service.shutdown_timeout` (10 s).
   */
  shutdownTimeoutMs?: number;
  /** Called once when a component reports a fatal error after start-up. */
  onFatalError?: (id: string, err: Error) => void;
}

interface Started {
  label: string;
  component: Component;
}

/** Whether the pipelines are up; the health_check extension reads this. */
export interface PipelineStatus {
  readonly state: ServiceState;
}

/**
 * Builds the pipelines of a validated config and runs them: exporters first,
 * then processors, then receivers (so no data is produced before it has
 * somewhere to go), and shuts down in the reverse order within one grace
 * period shared by all components (N components must not take N times the
 * grace: a node drain waits for the slowest agent). When the grace period
 * ends, what the unfinished components still hold is counted
 * (`kmesh_otel_service_shutdown_unflushed_items`) and logged with its count,
 * and the service gives up on them. Components used by several pipelines
 * are started once.
 */
export class Service implements Host, PipelineStatus {
  private _state: ServiceState = 'created';
  private readonly extensions: Started[] = [];
  private readonly exporters: Started[] = [];
  private readonly processors: Started[] = [];
  private readonly receivers: Started[] = [];
  private built = false;
  /** Components whose start was called (the one that failed included: it may have half-started). */
  private readonly startCalled = new Set<Component>();
  private fatalReported = false;
  private _shutdownCutShort = false;
  private shutdownPromise: Promise<void> | undefined;
  private readonly unflushedCounter: Counter;
  private readonly losses: LossLog;

  constructor(private readonly opts: ServiceOptions) {
    this.unflushedCounter = opts.telemetry.counter(
      'service_shutdown_unflushed_items',
      'Items components still held (queued, in flight) when the shutdown grace period ended, by component and item kind: lost',
    );
    this.losses = new LossLog(opts.logger, opts.telemetry, { component: 'service' }, ['shutdown_unflushed', 'consumer_refused_batch']);
  }

  /**
   * True when the last shutdown ended with the grace period, some
   * component unfinished: its handles may still be open, so the process
   * should exit instead of waiting for the event loop to empty.
   */
  get shutdownCutShort(): boolean {
    return this._shutdownCutShort;
  }

  get state(): ServiceState {
    return this._state;
  }

  pipelinesRunning(): boolean {
    return this._state === 'running';
  }

  reportFatalError(id: string, err: Error): void {
    this.opts.logger.error({ err, component: id }, 'component reported a fatal error');
    this._state = 'failed';
    if (!this.fatalReported) {
      this.fatalReported = true;
      this.opts.onFatalError?.(id, err);
    }
  }

  /** Starts everything; on a start-up failure, stops what was started and rethrows (fail fast). */
  async start(): Promise<void> {
    if (this._state !== 'created') throw new Error(`service cannot start from state ${this._state}`);
    this._state = 'starting';
    try {
      this.build();
      for (const group of [this.extensions, this.exporters, this.processors, this.receivers]) {
        for (const s of group) {
          this.opts.logger.debug({ component: s.label }, 'starting');
          this.startCalled.add(s.component);
          try {
            await s.component.start(this);
          } catch (err) {
            throw new StartError(s.label, err as Error);
          }
        }
      }
      if (this._state === 'starting') this._state = 'running';
      this.opts.logger.info(
        { pipelines: this.opts.config.pipelines.map((p) => p.name) },
        'all pipelines are running',
      );
    } catch (err) {
      await this.shutdown();
      this._state = 'failed';
      throw err;
    }
  }

  /** Safe before start and when called twice (a second call waits for the first). */
  shutdown(): Promise<void> {
    if (this._state === 'stopped') return Promise.resolve();
    if (this._state === 'stopping' && this.shutdownPromise !== undefined) return this.shutdownPromise;
    this.shutdownPromise = this.doShutdown();
    return this.shutdownPromise;
  }

  private async doShutdown(): Promise<void> {
    const wasFailed = this._state === 'failed';
    this._state = 'stopping';
    const graceMs = this.opts.shutdownTimeoutMs ?? this.opts.config.shutdownTimeoutMs ?? 10_000;
    const deadline = Date.now() + graceMs;
    const unfinished: Started[] = [];
    for (const group of [this.receivers, this.processors, this.exporters, this.extensions]) {
      for (const s of [...group].reverse()) {
        if (!this.startCalled.has(s.component)) continue;
        // Called even past the deadline: shutdown stops timers and servers
        // at once, and a component that finishes quickly is not lost.
        const finished = await settlesWithin(s.component.shutdown(), Math.max(0, deadline - Date.now()), (err) =>
          this.opts.logger.warn({ err, component: s.label }, 'shutdown did not complete cleanly'),
        );
        if (!finished) unfinished.push(s);
      }
    }
    if (unfinished.length > 0) {
      this._shutdownCutShort = true;
      this.reportUnflushed(unfinished, graceMs);
    }
    this.losses.close();
    this._state = wasFailed ? 'failed' : 'stopped';
  }

  /** Counts and logs what components cut short by the grace period still held. */
  private reportUnflushed(unfinished: Started[], graceMs: number): void {
    for (const s of unfinished) {
      const items = s.component.unflushed?.() ?? {};
      const total = Object.values(items).reduce((a, b) => a + b, 0);
      for (const [item, n] of Object.entries(items)) if (n > 0) this.unflushedCounter.add(n, { component: s.label, item });
      this.opts.logger.error(
        { component: s.label, graceMs, unflushed: items, lost: total },
        total > 0
          ? `shutdown grace period of ${graceMs} ms ended: ${total} items not flushed by ${s.label} are lost`
          : `shutdown grace period of ${graceMs} ms ended before ${s.label} finished its shutdown`,
      );
      // Also through the loss log, so data_loss_last_time{cause="shutdown_unflushed"} says so.
      this.losses.record('shutdown_unflushed', total, { component: s.label });
    }
    this.losses.flush();
  }

  private settings(kind: string, c: ResolvedComponent): CreateSettings {
    return {
      id: c.id,
      logger: this.opts.logger.child({ kind, id: c.id.toString() }),
      telemetry: this.opts.telemetry,
      resource: this.opts.resource,
    };
  }

  private component(kind: 'receiver' | 'processor' | 'exporter' | 'extension', id: string): ResolvedComponent {
    const c = this.opts.config.components.get(componentKey(kind, id));
    if (c === undefined) throw new Error(`internal: ${kind} ${id} missing from a validated config`);
    return c;
  }

  private build(): void {
    if (this.built) return;
    this.built = true;
    const { config, telemetry } = this.opts;
    const refused = telemetry.counter('pipeline_refused_batches', 'Batches a consumer threw on during fan-out');
    // Every pipeline's series exists from start-up at 0; refusals are
    // logged through the loss log (the first with its error, then a summary
    // at most once a minute), not one line per batch.
    for (const p of config.pipelines) refused.add(0, { pipeline: p.name });
    const onFanoutError = (pipeline: string) => (err: unknown) => {
      refused.add(1, { pipeline });
      this.losses.record('consumer_refused_batch', 1, { pipeline, err });
    };
    const addOnce = (list: Started[], label: string, component: Component): void => {
      if (!list.some((s) => s.component === component)) list.push({ label, component });
    };

    for (const id of config.extensions) {
      const c = this.component('extension', id);
      const f = c.factory as ExtensionFactory;
      addOnce(this.extensions, `extension/${id}`, f.create(this.settings('extension', c), c.config));
    }

    // Exporters: one instance per (id, signal), shared by every pipeline of that signal.
    const metricsExporters = new Map<string, MetricsConsumer>();
    const logsExporters = new Map<string, LogsConsumer>();
    const tracesExporters = new Map<string, TracesConsumer>();
    const pipelineEntry = new Map<string, MetricsConsumer | LogsConsumer | TracesConsumer>();
    for (const p of config.pipelines) {
      if (p.signal === 'metrics') {
        const exps = p.exporters.map((id) => {
          let e = metricsExporters.get(id);
          if (e === undefined) {
            const c = this.component('exporter', id);
            const inst = (c.factory as ExporterFactory).createMetrics!(this.settings('exporter', c), c.config);
            addOnce(this.exporters, `exporter/${id}`, inst);
            metricsExporters.set(id, inst);
            e = inst;
          }
          return e;
        });
        let next: MetricsConsumer = fanoutMetrics(exps, onFanoutError(p.name));
        for (const id of [...p.processors].reverse()) {
          const c = this.component('processor', id);
          const inst = (c.factory as ProcessorFactory).createMetrics!(this.settings('processor', c), c.config, next);
          addOnce(this.processors, `processor/${id}`, inst);
          next = inst;
        }
        pipelineEntry.set(p.name, next);
      } else if (p.signal === 'logs') {
        const exps = p.exporters.map((id) => {
          let e = logsExporters.get(id);
          if (e === undefined) {
            const c = this.component('exporter', id);
            const inst = (c.factory as ExporterFactory).createLogs!(this.settings('exporter', c), c.config);
            addOnce(this.exporters, `exporter/${id}`, inst);
            logsExporters.set(id, inst);
            e = inst;
          }
          return e;
        });
        let next: LogsConsumer = fanoutLogs(exps, onFanoutError(p.name));
        for (const id of [...p.processors].reverse()) {
          const c = this.component('processor', id);
          const inst = (c.factory as ProcessorFactory).createLogs!(this.settings('processor', c), c.config, next);
          addOnce(this.processors, `processor/${id}`, inst);
          next = inst;
        }
        pipelineEntry.set(p.name, next);
      } else if (p.signal === 'traces') {
        const exps = p.exporters.map((id) => {
          let e = tracesExporters.get(id);
          if (e === undefined) {
            const c = this.component('exporter', id);
            const inst = (c.factory as ExporterFactory).createTraces!(this.settings('exporter', c), c.config);
            addOnce(this.exporters, `exporter/${id}`, inst);
            tracesExporters.set(id, inst);
            e = inst;
          }
          return e;
        });
        let next: TracesConsumer = fanoutTraces(exps, onFanoutError(p.name));
        for (const id of [...p.processors].reverse()) {
          const c = this.component('processor', id);
          const inst = (c.factory as ProcessorFactory).createTraces!(this.settings('processor', c), c.config, next);
          addOnce(this.processors, `processor/${id}`, inst);
          next = inst;
        }
        pipelineEntry.set(p.name, next);
      }
    }

    // Receivers: one create call per (id, signal) with a fan-out over every pipeline it feeds.
    const receiverIds = [...new Set(config.pipelines.flatMap((p) => p.receivers))];
    for (const id of receiverIds) {
      const c = this.component('receiver', id);
      const f = c.factory as ReceiverFactory;
      const settings = this.settings('receiver', c);
      const metricsPipes = config.pipelines.filter((p) => p.signal === 'metrics' && p.receivers.includes(id));
      const logsPipes = config.pipelines.filter((p) => p.signal === 'logs' && p.receivers.includes(id));
      if (metricsPipes.length > 0) {
        const next = fanoutMetrics(
          metricsPipes.map((p) => pipelineEntry.get(p.name) as MetricsConsumer),
          onFanoutError(`receiver/${id}`),
        );
        addOnce(this.receivers, `receiver/${id}`, f.createMetrics!(settings, c.config, next));
      }
      if (logsPipes.length > 0) {
        const next = fanoutLogs(
          logsPipes.map((p) => pipelineEntry.get(p.name) as LogsConsumer),
          onFanoutError(`receiver/${id}`),
        );
        addOnce(this.receivers, `receiver/${id}`, f.createLogs!(settings, c.config, next));
      }
      const tracesPipes = config.pipelines.filter((p) => p.signal === 'traces' && p.receivers.includes(id));
      if (tracesPipes.length > 0) {
        const next = fanoutTraces(
          tracesPipes.map((p) => pipelineEntry.get(p.name) as TracesConsumer),
          onFanoutError(`receiver/${id}`),
        );
        addOnce(this.receivers, `receiver/${id}`, f.createTraces!(settings, c.config, next));
      }
    }
  }
}

/** A component failed to start; names it so the user knows where to look. */
export class StartError extends Error {
  constructor(
    readonly component: string,
    override readonly cause: Error,
  ) {
    super(`${component} failed to start: ${cause.message}`);
    this.name = 'StartError';
  }
}

/**
 * Waits for `p` at most `ms`: true when it settled in time (a rejection is
 * passed to `onError` and counts as finished), false when the time ran out.
 */
async function settlesWithin(p: Promise<void>, ms: number, onError: (err: unknown) => void): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
    timer.unref();
  });
  const settled = p.then(
    () => true as const,
    (err: unknown) => {
      onError(err);
      return true as const;
    },
  );
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
