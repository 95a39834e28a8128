import { PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import type { Resource } from '@opentelemetry/resources';
import type { ResourceMetrics } from '@opentelemetry/sdk-metrics';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { pipeline, type Writable } from 'node:stream';
import { constants as zlibConstants, createGzip } from 'node:zlib';
import type { CreateSettings, Host, MetricsExporter } from '../../component/component.js';
import { createBoundedServer } from '../../config/httpServer.js';
import { splitHostPort } from '../../config/types.js';
import type { MetricsBatch } from '../../model/metrics.js';
import { labelPairs } from '../../metrics/labelText.js';
import { schemaByName } from '../../metrics/schemas/registry.js';
import type { SeriesStore } from '../../metrics/SeriesStore.js';
import { exporterSeriesStore } from '../common/seriesStore.js';
import type { PrometheusConfig } from './config.js';
import { EXPOSITION_CONTENT_TYPE, writeExposition } from './exposition.js';

/** The SDK's serializer, with its `target_info` rendering (protected there) made callable. */
class SdkSerializer extends PrometheusSerializer {
  constructor(withTargetInfo: boolean, prefix?: string) {
    // No timestamps, no resource labels on samples (added as attributes, see
    // extraLabels), no otel_scope_* labels.
    super(prefix, false, undefined, !withTargetInfo, true);
  }
  targetInfo(resource: Resource): string {
    return this._serializeResource(resource);
  }
}

/** How long shutdown lets an in-flight scrape finish before closing its connection. */
const SHUTDOWN_GRACE_MS = 2_000;

/**
 * Serves `/metrics` in the Prometheus text format. The TCP families come
 * from a {@link SeriesStore} (updated synchronously by consumeMetrics, so a
 * consumed point is visible on the very next scrape), written by our own
 * exposition writer from cached label text (see exposition.ts: the SDK's
 * serializer rebuilt every ~800-byte line on every scrape). The agent's
 * self-metrics (`settings.telemetry.producer`, a few dozen series) and
 * `target_info` (from the resource) are still rendered by the SDK's
 * PrometheusSerializer and served beside them.
 *
 * Each scrape collects the self-metrics, then takes one synchronous snapshot
 * of the store and streams it with backpressure (gzip when the scraper sends
 * `Accept-Encoding: gzip`, as Prometheus does), so concurrent scrapes each
 * see one consistent state and hold only a snapshot of numbers and one
 * chunk buffer.
 */
export class PrometheusMetricsExporter implements MetricsExporter {
  /** Its label sets' wire form: their escaped label pairs (exposition.ts). */
  readonly store: SeriesStore<string>;
  private readonly server: Server;
  /** Writes `target_info`. */
  private readonly targetInfo = new SdkSerializer(true);
  /** Writes the self-metrics (target_info comes once, from {@link targetInfo}). */
  private readonly serializer: SdkSerializer;
  /** `namespace` + `_`, or ''. */
  private readonly prefix: string;
  /** Labels every series gets: `const_labels` and, when converted, the resource attributes. */
  private readonly extraLabels: Record<string, string>;
  /** {@link extraLabels} as exposition text, escaped once. */
  private readonly extraPairs: string;
  private readonly host: string;
  private readonly port: number;
  private started = false;
  private startPromise: Promise<void> | undefined;
  private shutdownPromise: Promise<void> | undefined;

  constructor(
    private readonly settings: CreateSettings,
    config: PrometheusConfig,
  ) {
    const hp = splitHostPort(config.endpoint);
    if (hp === undefined) throw new Error(`invalid endpoint ${config.endpoint}`);
    this.host = hp.host === '' ? '0.0.0.0' : hp.host;
    this.port = hp.port;
    this.prefix = config.namespace !== undefined ? `${config.namespace}_` : '';
    this.serializer = new SdkSerializer(false, config.namespace);
    this.extraLabels = extraLabels(config, settings.resource);
    const names = Object.keys(this.extraLabels).sort();
    this.extraPairs = labelPairs(names, names.map((n) => this.extraLabels[n]!));
    this.store = exporterSeriesStore<string>(settings, config);
    // Not keeping the process alive by itself (the pipeline does), like the SDK's exporter.
    this.server = createBoundedServer(config, (req, res) => this.handle(req, res)).unref();
  }

  start(_host: Host): Promise<void> {
    if (this.shutdownPromise !== undefined) return Promise.reject(new Error('prometheus exporter: start after shutdown'));
    this.startPromise ??= new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const why = err.code === 'EADDRINUSE' ? 'address already in use' : String(err.message ?? err);
        reject(new Error(`prometheus exporter ${this.settings.id.toString()}: cannot listen on ${this.host}:${this.port}: ${why}`, { cause: err }));
      };
      this.server.once('error', onError);
      this.server.listen({ host: this.host, port: this.port }, () => {
        this.server.off('error', onError);
        // After start-up a server error must not crash the agent.
        this.server.on('error', (err) => this.settings.logger.warn({ err }, 'prometheus endpoint error'));
        this.started = true;
        this.settings.logger.info({ endpoint: `${this.host}:${this.port}` }, 'prometheus endpoint listening on /metrics');
        resolve();
      });
    });
    return this.startPromise;
  }

  consumeMetrics(batch: MetricsBatch): void {
    this.store.consume(batch);
  }

  shutdown(): Promise<void> {
    this.shutdownPromise ??= (async () => {
      if (this.server.listening) {
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => this.server.closeAllConnections(), SHUTDOWN_GRACE_MS).unref();
          this.server.close(() => {
            clearTimeout(force);
            resolve();
          });
          // Idle keep-alive sockets would hold close() open until their timeout.
          this.server.closeIdleConnections();
        });
      }
      this.store.close();
      this.started = false;
    })();
    return this.shutdownPromise;
  }

  /** True between a successful start and shutdown. */
  get listening(): boolean {
    return this.started;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      res.statusCode = 400;
      res.end('Bad Request');
      return;
    }
    if (pathname !== '/metrics') {
      res.statusCode = 404;
      res.end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.statusCode = 405;
      res.setHeader('Allow', 'GET, HEAD');
      res.end();
      return;
    }
    this.serve(req, res).catch((err: unknown) => {
      // Headers sent: all we can do is cut the response, so the scraper sees a failed scrape, not a short one.
      if (res.headersSent) res.destroy();
      else {
        res.statusCode = 500;
        res.end(`# failed to export metrics: ${String(err)}\n`);
      }
    });
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const tail = await this.selfMetrics();
    if (res.destroyed) return;
    res.statusCode = 200;
    res.setHeader('Content-Type', EXPOSITION_CONTENT_TYPE);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    // Synchronously after the last await: one consistent state per scrape.
    const snap = this.store.snapshot();
    const head = this.targetInfo.targetInfo(this.settings.resource);
    let out: Writable = res;
    if (acceptsGzip(req.headers['accept-encoding'])) {
      res.setHeader('Content-Encoding', 'gzip');
      res.setHeader('Vary', 'Accept-Encoding');
      // Fastest level: label text is so repetitive that level 1 already shrinks it ~10x, at a fraction of level 6's CPU.
      const gz = createGzip({ level: zlibConstants.Z_BEST_SPEED });
      // Destroys the gzip stream too when the client goes away, so the writer stops.
      pipeline(gz, res, () => undefined);
      out = gz;
    } else {
      res.setHeader('Vary', 'Accept-Encoding');
    }
    // An HTTP response and a gzip stream are done with a chunk's bytes when its write completes.
    await writeExposition(out, snap, head, tail, true, { prefix: this.prefix, extraPairs: this.extraPairs });
    out.end();
  }

  /** The self-metrics in the text format (SDK serializer); empty when they cannot be collected. */
  private async selfMetrics(): Promise<string> {
    try {
      const { resourceMetrics } = await this.settings.telemetry.producer.collect();
      let scopeMetrics = resourceMetrics.scopeMetrics;
      if (Object.keys(this.extraLabels).length > 0) {
        // A few dozen points: copying them with the extra labels is cheap.
        scopeMetrics = scopeMetrics.map((sm) => ({
          ...sm,
          metrics: sm.metrics.map(
            (m) => ({ ...m, dataPoints: m.dataPoints.map((dp) => ({ ...dp, attributes: { ...dp.attributes, ...this.extraLabels } })) }) as typeof m,
          ),
        }));
      }
      const rm: ResourceMetrics = { resource: this.settings.resource, scopeMetrics };
      if (rm.scopeMetrics.every((s) => s.metrics.length === 0)) return '';
      return this.serializer.serialize(rm);
    } catch (err) {
      this.settings.logger.warn({ err }, 'prometheus exporter: self-metrics collection failed');
      return '';
    }
  }
}

/**
 * The labels every series gets: with `resource_to_telemetry_conversion`, each
 * resource attribute under its Prometheus name (characters outside
 * `[a-zA-Z0-9_]` become `_`, as the SDK's serializer and the Collector
 * sanitize them), then `const_labels` over them. Names the schema's own
 * labels use are left out (a series cannot carry a label twice).
 */
export function extraLabels(config: PrometheusConfig, resource: Resource): Record<string, string> {
  const reserved = new Set(schemaByName(config.schema).families.flatMap((f) => f.labels));
  reserved.add('le');
  const out: Record<string, string> = {};
  if (config.resource_to_telemetry_conversion.enabled) {
    for (const [k, v] of Object.entries(resource.attributes)) {
      if (v === undefined || v === null) continue;
      let name = k.replace(/[^a-zA-Z0-9_]/g, '_');
      if (/^[0-9]/.test(name)) name = `_${name}`;
      if (reserved.has(name) || name.startsWith('__')) continue;
      out[name] = Array.isArray(v) ? JSON.stringify(v) : String(v);
    }
  }
  for (const [k, v] of Object.entries(config.const_labels)) out[k] = v;
  return out;
}

/**
 * True when an `Accept-Encoding` header admits gzip (RFC 9110 §12.5.3): a
 * `gzip` (or `x-gzip`, or `*`) coding whose q value is not 0.
 */
export function acceptsGzip(header: string | string[] | undefined): boolean {
  if (header === undefined) return false;
  const text = Array.isArray(header) ? header.join(',') : header;
  let star = false;
  for (const part of text.split(',')) {
    const [coding, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    let q = 1;
    for (const p of params) if (p.startsWith('q=')) q = Number(p.slice(2));
    const admitted = q > 0;
    if (coding === 'gzip' || coding === 'x-gzip') return admitted;
    if (coding === '*') star = admitted;
  }
  return star;
}
