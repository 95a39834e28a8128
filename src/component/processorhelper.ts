import type { Counter } from '@opentelemetry/api';
import type { LogsBatch } from '../model/logs.js';
import type { MetricsBatch } from '../model/metrics.js';
import type {
  Component,
  CreateSettings,
  Host,
  LogsConsumer,
  LogsProcessor,
  MetricsConsumer,
  MetricsProcessor,
} from './component.js';

/**
 * The processor body: a pure function of the batch. It may return fewer
 * items than it got (a filter, or points merged because their label sets
 * became equal); `undefined` or an empty batch hands nothing on.
 */
export type ProcessFunc<B> = (batch: B) => B | undefined;
export type ProcessMetricsFunc = ProcessFunc<MetricsBatch>;
export type ProcessLogsFunc = ProcessFunc<LogsBatch>;

/** What the helper needs to know of a signal: how its items are counted and handed on. */
interface SignalOps<B, C> {
  /** Unit of the self-metrics (`points`, `log_records`). */
  readonly unit: string;
  count(batch: B): number;
  consume(next: C, batch: B): void;
}

const METRICS: SignalOps<MetricsBatch, MetricsConsumer> = {
  unit: 'points',
  count: (b) => b.points.length,
  consume: (next, b) => next.consumeMetrics(b),
};

const LOGS: SignalOps<LogsBatch, LogsConsumer> = {
  unit: 'log_records',
  count: (b) => b.entries.length,
  consume: (next, b) => next.consumeLogs(b),
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
  return {
    mutatesData: options.mutatesData === true,
    start: (host: Host) => lifecycle?.start(host) ?? Promise.resolve(),
    shutdown: () => lifecycle?.shutdown() ?? Promise.resolve(),
    consume(batch: B): void {
      const n = ops.count(batch);
      let out: B | undefined;
      try {
        out = body(batch);
      } catch (err) {
        refused.add(n, attrs);
        settings.logger.error({ err }, 'processor failed on a batch; batch refused');
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
