import type { LogsConsumer, MetricsConsumer, TracesConsumer } from '../component/component.js';
import type { LogsBatch } from '../model/logs.js';
import type { MetricsBatch } from '../model/metrics.js';
import type { TracesBatch } from '../model/traces.js';

/**
 * Hands one batch to several consumers. As in the collector's fanout, only
 * consumers that declare `mutatesData` get their own copy; the others share
 * the batch, which nobody changes (copying 50,000 points per flush for two
 * exporters that only read them would cost more than the exporters do, and
 * would defeat their caches keyed by attribute objects). A consumer that
 * throws does not keep the batch from the others; the error is passed to
 * `onError`.
 */
function fanout<B>(consumers: readonly C<B>[], onError: (err: unknown) => void): (batch: B) => void {
  const mutating = consumers.map((c) => c.mutatesData === true);
  return (batch) => {
    for (let i = 0; i < consumers.length; i++) {
      try {
        consumers[i]!.consume(mutating[i] ? structuredClone(batch) : batch);
      } catch (err) {
        onError(err);
      }
    }
  };
}

interface C<B> {
  mutatesData?: boolean;
  consume(batch: B): void;
}

export function fanoutMetrics(consumers: MetricsConsumer[], onError: (err: unknown) => void): MetricsConsumer {
  if (consumers.length === 1) return consumers[0]!;
  const send = fanout<MetricsBatch>(
    consumers.map((c) => ({ mutatesData: c.mutatesData, consume: (b) => c.consumeMetrics(b) })),
    onError,
  );
  return { consumeMetrics: send };
}

export function fanoutLogs(consumers: LogsConsumer[], onError: (err: unknown) => void): LogsConsumer {
  if (consumers.length === 1) return consumers[0]!;
  const send = fanout<LogsBatch>(
    consumers.map((c) => ({ mutatesData: c.mutatesData, consume: (b) => c.consumeLogs(b) })),
    onError,
  );
  return { consumeLogs: send };
}

export function fanoutTraces(consumers: TracesConsumer[], onError: (err: unknown) => void): TracesConsumer {
  if (consumers.length === 1) return consumers[0]!;
  const send = fanout<TracesBatch>(
    consumers.map((c) => ({ mutatesData: c.mutatesData, consume: (b) => c.consumeTraces(b) })),
    onError,
  );
  return { consumeTraces: send };
}
