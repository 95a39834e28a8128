import type { Counter } from '@opentelemetry/api';
import type { LogsBatch } from '../model/logs.js';
import type { MetricsBatch } from '../model/metrics.js';
import { LossLog } from '../telemetry/LossLog.js';
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
 * The processor body: a pure function of the batch. Returning `undefined` or
 * an empty batch drops it (counted as dropped, not refused).
 */
export type ProcessMetricsFunc = (batch: MetricsBatch) => MetricsBatch | undefined;
export type ProcessLogsFunc = (batch: LogsBatch) => LogsBatch | undefined;

interface ProcessorCounters {
  accepted: Counter;
  refused: Counter;
  dropped: Counter;
}

function counters(settings: CreateSettings, unit: 'points' | 'log_records'): ProcessorCounters {
  const t = settings.telemetry;
  const c = {
    accepted: t.counter(`processor_accepted_${unit}`, `Items the processor accepted (${unit})`),
    refused: t.counter(`processor_refused_${unit}`, `Items the processor or its next consumer refused (${unit})`),
    dropped: t.counter(`processor_dropped_${unit}`, `Items the processor dropped on purpose (${unit})`),
  };
  // Refusals are losses: their series exists from start-up at 0.
  c.refused.add(0, { processor: settings.id.toString() });
  return c;
}

/** Refused batches are logged through a LossLog: the first at once with its error, then a summary at most once a minute. */
function lossLog(settings: CreateSettings, signal: 'metrics' | 'logs'): LossLog {
  return new LossLog(settings.logger, settings.telemetry, { processor: settings.id.toString(), signal }, ['processor_failed']);
}

export interface ProcessorOptions {
  /** The body changes the batch it is given in place (see MetricsConsumer.mutatesData). Default false. */
  mutatesData?: boolean;
}

/**
 * Builds a metrics processor from a pure body: counts what goes in, hands the
 * result to `next`, and turns a throw (a bug, never expected) into a counted
 * refusal so one bad batch cannot stop the pipeline. Lifecycle is delegated
 * to `lifecycle` (e.g. the shared Kubernetes watch), which may be shared.
 */
export function newMetricsProcessor(
  settings: CreateSettings,
  next: MetricsConsumer,
  body: ProcessMetricsFunc,
  lifecycle?: Component,
  options: ProcessorOptions = {},
): MetricsProcessor {
  const c = counters(settings, 'points');
  const attrs = { processor: settings.id.toString() };
  const losses = lossLog(settings, 'metrics');
  return {
    mutatesData: options.mutatesData === true,
    start: (host: Host) => lifecycle?.start(host) ?? Promise.resolve(),
    shutdown: () => {
      losses.close();
      return lifecycle?.shutdown() ?? Promise.resolve();
    },
    consumeMetrics(batch: MetricsBatch): void {
      const n = batch.points.length;
      let out: MetricsBatch | undefined;
      try {
        out = body(batch);
      } catch (err) {
        c.refused.add(n, attrs);
        losses.record('processor_failed', n, { err });
        return;
      }
      c.accepted.add(n, attrs);
      if (out === undefined || out.points.length === 0) {
        if (n > 0) c.dropped.add(n, attrs);
        return;
      }
      next.consumeMetrics(out);
    },
  };
}

/** The logs counterpart of {@link newMetricsProcessor}. */
export function newLogsProcessor(
  settings: CreateSettings,
  next: LogsConsumer,
  body: ProcessLogsFunc,
  lifecycle?: Component,
  options: ProcessorOptions = {},
): LogsProcessor {
  const c = counters(settings, 'log_records');
  const attrs = { processor: settings.id.toString() };
  const losses = lossLog(settings, 'logs');
  return {
    mutatesData: options.mutatesData === true,
    start: (host: Host) => lifecycle?.start(host) ?? Promise.resolve(),
    shutdown: () => {
      losses.close();
      return lifecycle?.shutdown() ?? Promise.resolve();
    },
    consumeLogs(batch: LogsBatch): void {
      const n = batch.entries.length;
      let out: LogsBatch | undefined;
      try {
        out = body(batch);
      } catch (err) {
        c.refused.add(n, attrs);
        losses.record('processor_failed', n, { err });
        return;
      }
      c.accepted.add(n, attrs);
      const kept = out?.entries.length ?? 0;
      if (kept < n) c.dropped.add(n - kept, attrs);
      if (out !== undefined && kept > 0) next.consumeLogs(out);
    },
  };
}
