import type { Counter } from '@opentelemetry/api';
import type { LogsBatch } from '../model/logs.js';
import type { MetricsBatch } from '../model/metrics.js';
import type { TracesBatch } from '../model/traces.js';
import { LossLog } from '../telemetry/LossLog.js';
import type {
  Component,
  CreateSettings,
  Host,
  LogsConsumer,
  LogsProcessor,
  MetricsConsumer,
  MetricsProcessor,
  TracesConsumer,
  TracesProcessor,
} from './component.js';

/**
 * The processor body: a pure function of the batch. It may return fewer
 * items than it got (a filter, or points merged because their label sets
 * became equal); `undefined` or an empty batch hands nothing on.
 */
export type ProcessFunc<B> = (batch: B) => B | undefined;
export type ProcessMetricsFunc = ProcessFunc<MetricsBatch>;
export type ProcessLogsFunc = ProcessFunc<LogsBatch>;
export type ProcessTracesFunc = ProcessFunc<TracesBatch>;

/** What the helper needs to know of a signal: how its items are counted and handed on. */
interface SignalOps<B, C> {
  /** Unit of the self-metrics (`points`, `log_records`, `spans`). */
  readonly unit: string;
  /** The signal's name in loss logs. */
  readonly signal: 'metrics' | 'logs' | 'traces';
  count(batch: B): number;
  consume(next: C, batch: B): void;
}

const METRICS: SignalOps<MetricsBatch, MetricsConsumer> = {
  unit: 'points',
  signal: 'metrics',
  count: (b) => b.points.length,
  consume: (next, b) => next.consumeMetrics(b),
};

const LOGS: SignalOps<LogsBatch, LogsConsumer> = {
  unit: 'log_records',
  signal: 'logs',
  count: (b) => b.entries.length,
  consume: (next, b) => next.consumeLogs(b),
};

const TRACES: SignalOps<TracesBatch, TracesConsumer> = {
  unit: 'spans',
  signal: 'traces',
  count: (b) => b.spans.length,
  consume: (next, b) => next.consumeTraces(b),
};

export interface ProcessorOptions {
  /** The body changes the batch it is given in place (see MetricsConsumer.mutatesData). Default false. */
  mutatesData?: boolean;
}

/** The processor a signal's wrapper returns, before it is typed as that signal's processor. */
interface WrappedProcessor<B> extends Component {
  readonly mutatesData: boolean;
  consume(batch: B): void;
}

/**
 * The one wrapper around a body, whatever the signal. Counting rule, per
 * batch: its items are `accepted` (incoming); the items the body hands on are
 * `outgoing`; incoming minus outgoing is what the body left out (a filter's
 * drops, or a metrics processor's merged points) — partial batches included,
 * so no drop goes uncounted. A throw (a bug, never expected) refuses the
 * whole batch, counted, so one bad batch cannot stop the pipeline. Lifecycle
 * is delegated to `lifecycle` (e.g. the shared Kubernetes watch), which may be shared.
 */
function wrap<B, C>(
  ops: SignalOps<B, C>,
  settings: CreateSettings,
  next: C,
  body: ProcessFunc<B>,
  lifecycle: Component | undefined,
  options: ProcessorOptions,
): WrappedProcessor<B> {
  const t = settings.telemetry;
  const accepted: Counter = t.counter(`processor_accepted_${ops.unit}`, `Items the processor accepted (${ops.unit})`);
  const refused: Counter = t.counter(`processor_refused_${ops.unit}`, `Items the processor or its next consumer refused (${ops.unit})`);
  const outgoing: Counter = t.counter(
    `processor_outgoing_${ops.unit}`,
    `Items the processor handed on (${ops.unit}); accepted minus outgoing is what it filtered out or merged`,
  );
  const attrs = { processor: settings.id.toString() };
  // Refusals are losses: their series exists from start-up at 0.
  refused.add(0, attrs);
  // Refused batches go through a LossLog: the first at once with its error, then a summary at most once a minute.
  const losses = new LossLog(settings.logger, settings.telemetry, { ...attrs, signal: ops.signal }, ['processor_failed']);
  return {
    mutatesData: options.mutatesData === true,
    start: (host: Host) => lifecycle?.start(host) ?? Promise.resolve(),
    shutdown: () => {
      losses.close();
      return lifecycle?.shutdown() ?? Promise.resolve();
    },
    consume(batch: B): void {
      const n = ops.count(batch);
      let out: B | undefined;
      try {
        out = body(batch);
      } catch (err) {
        refused.add(n, attrs);
        losses.record('processor_failed', n, { err });
        return;
      }
      accepted.add(n, attrs);
      const kept = out === undefined ? 0 : ops.count(out);
      if (kept > 0) outgoing.add(kept, attrs);
      if (out !== undefined && kept > 0) ops.consume(next, out);
    },
  };
}

/** A metrics processor from a pure body (see {@link wrap} for what is counted). */
export function newMetricsProcessor(
  settings: CreateSettings,
  next: MetricsConsumer,
  body: ProcessMetricsFunc,
  lifecycle?: Component,
  options: ProcessorOptions = {},
): MetricsProcessor {
  const p = wrap(METRICS, settings, next, body, lifecycle, options);
  return { mutatesData: p.mutatesData, start: p.start, shutdown: p.shutdown, consumeMetrics: p.consume };
}

/** A logs processor from a pure body (see {@link wrap} for what is counted). */
export function newLogsProcessor(
  settings: CreateSettings,
  next: LogsConsumer,
  body: ProcessLogsFunc,
  lifecycle?: Component,
  options: ProcessorOptions = {},
): LogsProcessor {
  const p = wrap(LOGS, settings, next, body, lifecycle, options);
  return { mutatesData: p.mutatesData, start: p.start, shutdown: p.shutdown, consumeLogs: p.consume };
}

/** A traces processor from a pure body (see {@link wrap} for what is counted). */
export function newTracesProcessor(
  settings: CreateSettings,
  next: TracesConsumer,
  body: ProcessTracesFunc,
  lifecycle?: Component,
  options: ProcessorOptions = {},
): TracesProcessor {
  const p = wrap(TRACES, settings, next, body, lifecycle, options);
  return { mutatesData: p.mutatesData, start: p.start, shutdown: p.shutdown, consumeTraces: p.consume };
}
