import { z } from 'zod';
import type {
  ExporterFactory,
  Host,
  LogsConsumer,
  MetricsConsumer,
  ProcessorFactory,
  ReceiverFactory,
} from '../../src/component/component.js';
import { newLogsProcessor, newMetricsProcessor } from '../../src/component/processorhelper.js';
import { SharedComponents } from '../../src/component/sharedComponent.js';
import type { LogsBatch } from '../../src/model/logs.js';
import type { MetricsBatch } from '../../src/model/metrics.js';

/** Lifecycle calls seen by fake components, in order: `start receiver/fake`, ... */
export const lifecycleLog: string[] = [];

const fakeReceiverSchema = z.strictObject({ interval: z.number().default(1000) });
type FakeReceiverConfig = z.infer<typeof fakeReceiverSchema>;

/** A receiver driven by the test: `emitMetrics`/`emitLogs` push a batch down the pipelines. */
export class FakeReceiver {
  metrics: MetricsConsumer | undefined;
  logs: LogsConsumer | undefined;
  started = 0;
  stopped = 0;
  constructor(private readonly id: string) {}
  async start(_host: Host): Promise<void> {
    this.started++;
    lifecycleLog.push(`start receiver/${this.id}`);
  }
  async shutdown(): Promise<void> {
    this.stopped++;
    lifecycleLog.push(`shutdown receiver/${this.id}`);
  }
  emitMetrics(batch: MetricsBatch): void {
    this.metrics?.consumeMetrics(batch);
  }
  emitLogs(batch: LogsBatch): void {
    this.logs?.consumeLogs(batch);
  }
}

export const fakeReceivers = new Map<string, FakeReceiver>();
const shared = new SharedComponents<FakeReceiverConfig, FakeReceiver>();

export const fakeReceiverFactory: ReceiverFactory<FakeReceiverConfig> = {
  kind: 'receiver',
  type: 'fake',
  stability: { metrics: 'development', logs: 'development' },
  configSchema: fakeReceiverSchema,
  createDefaultConfig: () => fakeReceiverSchema.parse({}),
  createMetrics(settings, config, next) {
    const r = shared.getOrCreate(config, () => new FakeReceiver(settings.id.toString()));
    r.metrics = next;
    fakeReceivers.set(settings.id.toString(), r);
    return r;
  },
  createLogs(settings, config, next) {
    const r = shared.getOrCreate(config, () => new FakeReceiver(settings.id.toString()));
    r.logs = next;
    fakeReceivers.set(settings.id.toString(), r);
    return r;
  },
};

const tagSchema = z.strictObject({ key: z.string().default('tagged'), value: z.string().default('yes') });

/** Adds one attribute to every point/entry: a pure body through processorhelper. */
export const tagProcessorFactory: ProcessorFactory<z.infer<typeof tagSchema>> = {
  kind: 'processor',
  type: 'tag',
  stability: { metrics: 'development', logs: 'development' },
  configSchema: tagSchema,
  createDefaultConfig: () => tagSchema.parse({}),
  createMetrics: (settings, config, next) =>
    newMetricsProcessor(settings, next, (batch) => {
      for (const p of batch.points) p.attributes[config.key] = config.value;
      return batch;
    }, undefined, { mutatesData: true }),
  createLogs: (settings, config, next) =>
    newLogsProcessor(settings, next, (batch) => {
      for (const e of batch.entries) e.attributes[config.key] = config.value;
      return batch;
    }, undefined, { mutatesData: true }),
};

const collectSchema = z.strictObject({ endpoint: z.string().default('nowhere:1') });

/** An exporter that keeps what it gets, per id. */
export class CollectExporter {
  metrics: MetricsBatch[] = [];
  logs: LogsBatch[] = [];
  constructor(private readonly id: string) {}
  async start(): Promise<void> {
    lifecycleLog.push(`start exporter/${this.id}`);
  }
  async shutdown(): Promise<void> {
    lifecycleLog.push(`shutdown exporter/${this.id}`);
  }
  consumeMetrics(b: MetricsBatch): void {
    this.metrics.push(b);
  }
  consumeLogs(b: LogsBatch): void {
    this.logs.push(b);
  }
}
export const collectExporters = new Map<string, CollectExporter>();

export const collectExporterFactory: ExporterFactory<z.infer<typeof collectSchema>> = {
  kind: 'exporter',
  type: 'collect',
  stability: { metrics: 'development', logs: 'development' },
  configSchema: collectSchema,
  createDefaultConfig: () => collectSchema.parse({}),
  createMetrics(settings) {
    const e = new CollectExporter(`${settings.id}:metrics`);
    collectExporters.set(`${settings.id}:metrics`, e);
    return e;
  },
  createLogs(settings) {
    const e = new CollectExporter(`${settings.id}:logs`);
    collectExporters.set(`${settings.id}:logs`, e);
    return e;
  },
};

/** Metrics only: referencing it from a logs pipeline is a config error. */
export const metricsOnlyExporterFactory: ExporterFactory<z.infer<typeof collectSchema>> = {
  kind: 'exporter',
  type: 'metricsonly',
  stability: { metrics: 'development' },
  configSchema: collectSchema,
  createDefaultConfig: () => collectSchema.parse({}),
  createMetrics: (settings) => new CollectExporter(settings.id.toString()),
};

export const fakeFactories = [
  fakeReceiverFactory,
  tagProcessorFactory,
  collectExporterFactory,
  metricsOnlyExporterFactory,
] as const;
