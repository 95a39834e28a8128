import type { Attributes, Counter, Histogram, Meter, ObservableGauge, UpDownCounter } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import {
  AggregationTemporality,
  MeterProvider,
  MetricReader,
  type CollectionResult,
  type MetricProducer,
} from '@opentelemetry/sdk-metrics';

/** All of the agent's own metrics start with this, so they never collide with the TCP families. */
export const SELF_METRIC_PREFIX = 'kmesh_otel_';

/**
 * A reader that never exports by itself: exporters pull from it through
 * {@link SelfTelemetry.producer} and merge the result into what they export.
 */
class PullReader extends MetricReader {
  constructor() {
    super({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  }
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/**
 * The agent's own metrics (items received, dropped, export results, queue
 * sizes), recorded through the OpenTelemetry SDK. Every metrics exporter adds
 * {@link producer} to its reader's `metricProducers`, so self-metrics appear
 * on the Prometheus endpoint and go out over OTLP beside the TCP families.
 */
export class SelfTelemetry {
  readonly meter: Meter;
  readonly producer: MetricProducer;
  private readonly provider: MeterProvider;
  private readonly counters = new Map<string, Counter>();
  private readonly upDowns = new Map<string, UpDownCounter>();

  constructor(resource: Resource) {
    const reader = new PullReader();
    this.provider = new MeterProvider({ resource, readers: [reader] });
    this.meter = this.provider.getMeter('kmesh-otel');
    this.producer = {
      collect: (options): Promise<CollectionResult> => reader.collect(options),
    };
  }

  /** A monotonic counter named `kmesh_otel_<name>` (created once, reused). */
  counter(name: string, description: string, unit = '1'): Counter {
    const full = SELF_METRIC_PREFIX + name;
    let c = this.counters.get(full);
    if (c === undefined) {
      c = this.meter.createCounter(full, { description, unit });
      this.counters.set(full, c);
    }
    return c;
  }

  /** An up-down counter named `kmesh_otel_<name>` (queue sizes, tracked connections). */
  upDownCounter(name: string, description: string, unit = '1'): UpDownCounter {
    const full = SELF_METRIC_PREFIX + name;
    let c = this.upDowns.get(full);
    if (c === undefined) {
      c = this.meter.createUpDownCounter(full, { description, unit });
      this.upDowns.set(full, c);
    }
    return c;
  }

  /** A histogram named `kmesh_otel_<name>` with explicit bucket boundaries (in `unit`). */
  histogram(name: string, description: string, unit: string, boundaries: number[]): Histogram {
    return this.meter.createHistogram(SELF_METRIC_PREFIX + name, { description, unit, advice: { explicitBucketBoundaries: boundaries } });
  }

  /** An observable gauge named `kmesh_otel_<name>` read at collection time. */
  gauge(name: string, description: string, read: () => Array<[number, Attributes]>, unit = '1'): ObservableGauge {
    const g = this.meter.createObservableGauge(SELF_METRIC_PREFIX + name, { description, unit });
    g.addCallback((result) => {
      for (const [value, attrs] of read()) result.observe(value, attrs);
    });
    return g;
  }

  async shutdown(): Promise<void> {
    await this.provider.shutdown().catch(() => undefined);
  }
}
