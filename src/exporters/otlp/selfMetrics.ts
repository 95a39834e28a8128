/**
 * Self-metric instruments that the logs and the metrics side of an OTLP
 * exporter both register (told apart by `signal`). They must be declared
 * identically: the SDK keeps a second, conflicting descriptor of one name
 * as a second metric, which a Prometheus exposition would show as a
 * duplicate family.
 */
export const QUEUE_SIZE_GAUGE = {
  name: 'exporter_queue_size',
  description: 'Items queued, in flight or waiting to be retried in the exporter (log records; metric data points), by signal',
} as const;

export const QUEUE_CAPACITY_GAUGE = {
  name: 'exporter_queue_capacity',
  description: 'Capacity of the exporter queue in items (log records; metric data points), by signal',
} as const;
