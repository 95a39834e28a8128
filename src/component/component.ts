import type { Resource } from '@opentelemetry/resources';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { LogsBatch } from '../model/logs.js';
import type { MetricsBatch } from '../model/metrics.js';
import type { TracesBatch } from '../model/traces.js';
import type { SelfTelemetry } from '../telemetry/SelfTelemetry.js';

/** The kinds of component a config can define, as in the collector. */
export type Kind = 'receiver' | 'processor' | 'exporter' | 'extension';

/** Signals a pipeline can carry. */
export type Signal = 'metrics' | 'logs' | 'traces';

/** `type` or `type/name`, e.g. `otlp/loki`. */
export interface ComponentId {
  type: string;
  name: string;
  /** The id exactly as written in the config. */
  toString(): string;
}

/**
 * What the service gives a component while it runs. Components report fatal
 * errors here instead of throwing after start-up; the service then shuts down.
 */
export interface Host {
  reportFatalError(id: string, err: Error): void;
  /** True while every pipeline runs (after start-up, before shutdown or a fatal error). */
  pipelinesRunning?(): boolean;
}

/**
 * Lifecycle of every component. `shutdown` must be safe before `start` and
 * when called twice (the collector's rule), and must release every handle so
 * the process can exit on its own.
 */
export interface Component {
  start(host: Host): Promise<void>;
  shutdown(): Promise<void>;
  /**
   * Optional: items the component still holds that have not been delivered
   * (queued, in flight, waiting to be retried), by item kind, e.g.
   * `{ log_records: 12 }`. The service asks when the shutdown grace period
   * ends before this component's shutdown finished: that is what is lost.
   */
  unflushed?(): Record<string, number>;
}

/**
 * Consumers are synchronous: hand-off between components never waits on I/O.
 * A consumer that cannot take a batch throws; the caller's helper counts the
 * batch as refused. Exporters that do I/O queue internally (bounded).
 */
/**
 * Ownership of batches (the collector's `MutatesData` capability): a
 * consumer must not modify a batch it is given, nor anything it references
 * (attribute objects may be shared, e.g. k8s_attributes' cached label
 * blocks), unless it declares `mutatesData: true`. Then the service
 * hands it its own copy wherever the batch also goes elsewhere, and the
 * component before it gives it objects it may change.
 */
export interface MetricsConsumer {
  readonly mutatesData?: boolean;
  consumeMetrics(batch: MetricsBatch): void;
}

export interface LogsConsumer {
  readonly mutatesData?: boolean;
  consumeLogs(batch: LogsBatch): void;
}

export interface TracesConsumer {
  readonly mutatesData?: boolean;
  consumeTraces(batch: TracesBatch): void;
}

/** Passed to every factory `create*` call. */
export interface CreateSettings {
  id: ComponentId;
  /** Child logger carrying `{ kind, id }`; never log per item. */
  logger: Logger;
  /** The agent's own metrics (kmesh_otel_*). */
  telemetry: SelfTelemetry;
  /** Resource describing this agent (service.name, service.version, host/k8s node). */
  resource: Resource;
}

export type Receiver = Component;
export type MetricsProcessor = Component & MetricsConsumer;
export type LogsProcessor = Component & LogsConsumer;
export type MetricsExporter = Component & MetricsConsumer;
export type LogsExporter = Component & LogsConsumer;
export type TracesProcessor = Component & TracesConsumer;
export type TracesExporter = Component & TracesConsumer;
export type Extension = Component;

interface FactoryBase<C> {
  /** The config `type` this factory builds (the part before `/` in an id). */
  readonly type: string;
  /** Stability per signal, for the README tables. */
  readonly stability: Partial<Record<Signal | 'extension', 'development' | 'alpha' | 'beta' | 'stable'>>;
  /**
   * The single source of truth for the config: types, defaults (via zod
   * `.default()`), unknown keys rejected (`z.strictObject`).
   */
  readonly configSchema: z.ZodType<C>;
  /** The config used when the YAML gives `type:` with no body. */
  createDefaultConfig(): C;
}

export interface ReceiverFactory<C = unknown> extends FactoryBase<C> {
  readonly kind: 'receiver';
  createMetrics?(settings: CreateSettings, config: C, next: MetricsConsumer): Receiver;
  createLogs?(settings: CreateSettings, config: C, next: LogsConsumer): Receiver;
  createTraces?(settings: CreateSettings, config: C, next: TracesConsumer): Receiver;
}

export interface ProcessorFactory<C = unknown> extends FactoryBase<C> {
  readonly kind: 'processor';
  createMetrics?(settings: CreateSettings, config: C, next: MetricsConsumer): MetricsProcessor;
  createLogs?(settings: CreateSettings, config: C, next: LogsConsumer): LogsProcessor;
  createTraces?(settings: CreateSettings, config: C, next: TracesConsumer): TracesProcessor;
}

export interface ExporterFactory<C = unknown> extends FactoryBase<C> {
  readonly kind: 'exporter';
  createMetrics?(settings: CreateSettings, config: C): MetricsExporter;
  createLogs?(settings: CreateSettings, config: C): LogsExporter;
  createTraces?(settings: CreateSettings, config: C): TracesExporter;
}

export interface ExtensionFactory<C = unknown> extends FactoryBase<C> {
  readonly kind: 'extension';
  create(settings: CreateSettings, config: C): Extension;
}

export type Factory = ReceiverFactory | ProcessorFactory | ExporterFactory | ExtensionFactory;

/** Parses `type` or `type/name`. */
export function parseComponentId(text: string): ComponentId | undefined {
  const m = /^([a-z][a-z0-9_]*)(?:\/([^/\s]+))?$/.exec(text);
  if (m === null) return undefined;
  const type = m[1]!;
  const name = m[2] ?? '';
  return { type, name, toString: () => text };
}
