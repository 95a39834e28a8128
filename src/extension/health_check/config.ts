import { z } from 'zod';
import { httpServerKeys } from '../../config/httpServer.js';

export const healthCheckConfigSchema = z.strictObject({
  /**
   * The HTTP server (src/config/httpServer.ts): `endpoint` (default
   * `127.0.0.1:13133`, the Collector's port on loopback; a kubelet probes the
   * pod's, i.e. with hostNetwork the node's, address), `max_connections`
   * (default 16: limits of its own, so a flood of the metrics port leaves it
   * answering), `read_header_timeout`, `idle_timeout`, `tls`, `allowed_clients`.
   */
  ...httpServerKeys('127.0.0.1:13133', 16),
  /** Request path. Default `/healthz`. */
  path: z.string().startsWith('/').default('/healthz'),
});

export type HealthCheckConfig = z.infer<typeof healthCheckConfigSchema>;
