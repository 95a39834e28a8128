import type { Factory } from './component/component.js';
import { debugExporterFactory } from './exporters/debug/factory.js';
import { otlpExporterFactory, otlpGrpcExporterFactory, otlpHttpExporterFactory } from './exporters/otlp/factory.js';
import { prometheusExporterFactory } from './exporters/prometheus/factory.js';
import { healthCheckExtensionFactory } from './extension/health_check/factory.js';
import { accessLogFilterProcessorFactory } from './processor/accesslog_filter/factory.js';
import { k8sAttributesProcessorFactory } from './processor/k8s_attributes/factory.js';
import { ebpfReceiverFactory } from './receiver/ebpf/factory.js';

/**
 * Every component this build knows, by kind and type. A new component is one
 * more line here; a new signal is one more `create*` on its factory.
 */
export const builtinFactories: readonly Factory[] = [
  ebpfReceiverFactory,
  k8sAttributesProcessorFactory,
  accessLogFilterProcessorFactory,
  prometheusExporterFactory,
  otlpGrpcExporterFactory,
  otlpExporterFactory,
  otlpHttpExporterFactory,
  debugExporterFactory,
  healthCheckExtensionFactory,
] as Factory[];
