import type { LogsConsumer, MetricsConsumer } from '../component/component.js';
import type { LogsBatch } from '../model/logs.js';
import type { MetricsBatch } from '../model/metrics.js';

/**
 * Hands one batch to several consumers. Processors may rewrite a batch in
 * place, so every consumer but the last gets its own copy (the collector's
 * fanout does the same for mutating consumers). A consumer that throws does
 * not keep the batch from the others; the error is passed to `onError`.
 */
export function fanoutMetrics(consumers: MetricsConsumer[], onError: (err: unknown) => void): MetricsConsumer {
  if (consumers.length === 1) return consumers[0]!;
  return {
    consumeMetrics(batch: MetricsBatch): void {
      consumers.forEach((c, i) => {
        const copy = i === consumers.length - 1 ? batch : structuredClone(batch);
        try {
          c.consumeMetrics(copy);
        } catch (err) {
          onError(err);
        }
      });
    },
  };
}

export function fanoutLogs(consumers: LogsConsumer[], onError: (err: unknown) => void): LogsConsumer {
  if (consumers.length === 1) return consumers[0]!;
  return {
    consumeLogs(batch: LogsBatch): void {
      consumers.forEach((c, i) => {
        const copy = i === consumers.length - 1 ? batch : structuredClone(batch);
        try {
          c.consumeLogs(copy);
        } catch (err) {
          onError(err);
        }
      });
    },
  };
}
