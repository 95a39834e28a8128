import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import type { CreateSettings, Host, MetricsExporter } from '../../component/component.js';
import { splitHostPort } from '../../config/types.js';
import type { MetricsBatch } from '../../model/metrics.js';
import { schemaByName } from '../../metrics/schema.js';
import { SeriesStore } from '../../metrics/SeriesStore.js';
import type { PrometheusConfig } from './config.js';

/**
 * Serves `/metrics` through the SDK's PrometheusExporter. The TCP families
 * come from a {@link SeriesStore} (updated synchronously by consumeMetrics,
 * so a consumed point is visible on the very next scrape) and the agent's
 * self-metrics from `settings.telemetry.producer`; the exporter's own
 * MeterProvider has no instruments and exists to bind the reader and to
 * carry the resource that becomes `target_info`.
 */
export class PrometheusMetricsExporter implements MetricsExporter {
  readonly store: SeriesStore;
  private readonly exporter: PrometheusExporter;
  private readonly provider: MeterProvider;
  private readonly host: string;
  private readonly port: number;
  private started = false;
  private shutdownPromise: Promise<void> | undefined;

  constructor(
    private readonly settings: CreateSettings,
    config: PrometheusConfig,
  ) {
    const hp = splitHostPort(config.endpoint);
    if (hp === undefined) throw new Error(`invalid endpoint ${config.endpoint}`);
    this.host = hp.host === '' ? '0.0.0.0' : hp.host;
    this.port = hp.port;
    this.store = new SeriesStore({
      schema: schemaByName(config.schema),
      resource: settings.resource,
      temporality: 'cumulative',
      maxSeriesPerFamily: config.max_series_per_family,
      seriesTtlMs: config.series_ttl,
      telemetry: settings.telemetry,
      telemetryAttributes: { exporter: settings.id.toString() },
    });
    this.exporter = new PrometheusExporter({
      host: this.host,
      port: this.port,
      endpoint: '/metrics',
      preventServerStart: true,
      // Kmesh's series carry exactly their 23 labels: no otel_scope_* labels.
      withoutScopeInfo: true,
      metricProducers: [this.store, settings.telemetry.producer],
    });
    this.provider = new MeterProvider({ resource: settings.resource, readers: [this.exporter] });
  }

  async start(_host: Host): Promise<void> {
    if (this.shutdownPromise !== undefined) throw new Error('prometheus exporter: start after shutdown');
    try {
      await this.exporter.startServer();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'EADDRINUSE' ? 'address already in use' : String((err as Error).message ?? err);
      throw new Error(`prometheus exporter ${this.settings.id.toString()}: cannot listen on ${this.host}:${this.port}: ${why}`, { cause: err });
    }
    this.started = true;
    this.settings.logger.info({ endpoint: `${this.host}:${this.port}` }, 'prometheus endpoint listening on /metrics');
  }

  consumeMetrics(batch: MetricsBatch): void {
    this.store.consume(batch);
  }

  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      // Closes the HTTP server (idle keep-alive sockets too) when it was started.
      await this.provider.shutdown().catch((err: unknown) => {
        this.settings.logger.warn({ err }, 'prometheus exporter shutdown');
      });
      this.store.close();
      this.started = false;
    })();
    return this.shutdownPromise;
  }

  /** True between a successful start and shutdown. */
  get listening(): boolean {
    return this.started;
  }
}
