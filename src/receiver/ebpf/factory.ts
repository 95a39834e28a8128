/**
 * `ebpf` receiver factory. One receiver instance per config serves both the
 * metrics and the logs pipeline (the kernel is attached once), as the
 * collector's sharedcomponent does, and the traces pipeline too.
 */
import type { CreateSettings, ReceiverFactory } from '../../component/component.js';
import { SharedComponents } from '../../component/sharedComponent.js';
import { createDefaultEbpfReceiverConfig, ebpfReceiverConfigSchema, type EbpfReceiverConfig } from './config.js';
import { EbpfReceiver, type EbpfReceiverDeps } from './receiver.js';

export const EBPF_RECEIVER_TYPE = 'ebpf';

/** Builds the factory; tests pass fakes for the kernel and the start-up checks. */
export function createEbpfReceiverFactory(deps: Partial<EbpfReceiverDeps> = {}): ReceiverFactory<EbpfReceiverConfig> {
  const shared = new SharedComponents<EbpfReceiverConfig, EbpfReceiver>();
  const instance = (settings: CreateSettings, config: EbpfReceiverConfig): EbpfReceiver =>
    shared.getOrCreate(config, () => new EbpfReceiver(settings, config, deps));
  return {
    kind: 'receiver',
    type: EBPF_RECEIVER_TYPE,
    stability: { metrics: 'alpha', logs: 'alpha', traces: 'development' },
    configSchema: ebpfReceiverConfigSchema,
    createDefaultConfig: createDefaultEbpfReceiverConfig,
    createMetrics(settings, config, next) {
      const r = instance(settings, config);
      r.setMetricsConsumer(next);
      return r;
    },
    createLogs(settings, config, next) {
      const r = instance(settings, config);
      r.setLogsConsumer(next);
      return r;
    },
    createTraces(settings, config, next) {
      const r = instance(settings, config);
      r.setTracesConsumer(next);
      return r;
    },
  };
}

/** The `ebpf` receiver factory the service registers. */
export const ebpfReceiverFactory: ReceiverFactory<EbpfReceiverConfig> = createEbpfReceiverFactory();
