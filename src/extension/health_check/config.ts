import { z } from 'zod';
import { hostPort } from '../../config/types.js';

export const healthCheckConfigSchema = z.strictObject({
  /** Where to listen. Default `0.0.0.0:13133` (the collector's port). */
  endpoint: hostPort.default('0.0.0.0:13133'),
  /** Request path. Default `/healthz`. */
  path: z.string().startsWith('/').default('/healthz'),
});

export type HealthCheckConfig = z.infer<typeof healthCheckConfigSchema>;
