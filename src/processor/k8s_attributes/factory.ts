import type { CreateSettings, ProcessorFactory } from '../../component/component.js';
import { newLogsProcessor, newMetricsProcessor, newTracesProcessor } from '../../component/processorhelper.js';
import { SharedComponents } from '../../component/sharedComponent.js';
import { createDefaultConfig, k8sAttributesConfigSchema, type K8sAttributesConfig } from './config.js';
import { K8sMetadata, type K8sMetadataDeps } from './K8sMetadata.js';
import { processLogs, processMetrics, processTraces } from './processor.js';

/**
 * Builds the factory; `deps` are test seams (client config loader, watch
 * timing, clock). Each factory keeps one Kubernetes watch and index per
 * config object, whichever signals use it.
 */
export function newK8sAttributesProcessorFactory(deps: K8sMetadataDeps = {}): ProcessorFactory<K8sAttributesConfig> {
  const shared = new SharedComponents<K8sAttributesConfig, K8sMetadata>();
  const metadataFor = (settings: CreateSettings, config: K8sAttributesConfig): K8sMetadata =>
    shared.getOrCreate(config, () => new K8sMetadata(settings, config, deps));
  return {
    kind: 'processor',
    type: 'k8s_attributes',
    stability: { metrics: 'alpha', logs: 'alpha', traces: 'development' },
    configSchema: k8sAttributesConfigSchema,
    createDefaultConfig,
    createMetrics(settings, config, next) {
      const md = metadataFor(settings, config);
      const shareBlocks = next.mutatesData !== true;
      return newMetricsProcessor(settings, next, (batch) => processMetrics(batch, md.index, md.options, undefined, shareBlocks), md.handle());
    },
    createLogs(settings, config, next) {
      const md = metadataFor(settings, config);
      return newLogsProcessor(settings, next, (batch) => processLogs(batch, md.index, md.options), md.handle());
    },
    createTraces(settings, config, next) {
      const md = metadataFor(settings, config);
      return newTracesProcessor(settings, next, (batch) => processTraces(batch, md.index, md.options), md.handle());
    },
  };
}

/**
 * `k8s_attributes`: maps connection addresses onto Kubernetes identities
 * and the Istio label set (metrics), and adds identities to access logs and
 * connection spans.
 */
export const k8sAttributesProcessorFactory: ProcessorFactory<K8sAttributesConfig> = newK8sAttributesProcessorFactory();
