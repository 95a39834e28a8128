import type { ExtensionFactory } from '../../component/component.js';
import { healthCheckConfigSchema, type HealthCheckConfig } from './config.js';
import { HealthCheckExtension } from './HealthCheckExtension.js';

export const healthCheckExtensionFactory: ExtensionFactory<HealthCheckConfig> = {
  kind: 'extension',
  type: 'health_check',
  stability: { extension: 'beta' },
  configSchema: healthCheckConfigSchema,
  createDefaultConfig: () => healthCheckConfigSchema.parse({}),
  create: (settings, config) => new HealthCheckExtension(settings, config),
};
