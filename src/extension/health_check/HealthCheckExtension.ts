import type { Server } from 'node:http';
import type { CreateSettings, Extension, Host } from '../../component/component.js';
import { createBoundedServer } from '../../config/httpServer.js';
import { splitHostPort } from '../../config/types.js';
import type { HealthCheckConfig } from './config.js';

/**
 * `GET <path>` answers 200 while every pipeline runs and 503 otherwise
 * (starting, stopping, or after a component's fatal error) — what a
 * Kubernetes liveness/readiness probe needs.
 */
export class HealthCheckExtension implements Extension {
  private server: Server | undefined;
  private host: Host | undefined;

  constructor(
    private readonly settings: CreateSettings,
    private readonly config: HealthCheckConfig,
  ) {}

  /** The bound address, once started (port 0 in tests picks a free one). */
  get address(): { host: string; port: number } | undefined {
    const a = this.server?.address();
    return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : undefined;
  }

  async start(host: Host): Promise<void> {
    if (this.server !== undefined) return;
    this.host = host;
    const { host: bindHost, port } = splitHostPort(this.config.endpoint)!;
    const server = createBoundedServer(this.config, (req, res) => {
      const url = (req.url ?? '').split('?')[0];
      if (url !== this.config.path) {
        res.writeHead(404).end();
        return;
      }
      const ok = this.host?.pipelinesRunning?.() ?? false;
      const body = JSON.stringify({ status: ok ? 'Server available' : 'Server not available' });
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(body);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new Error(`health_check cannot listen on ${this.config.endpoint}: ${err.code ?? err.message}`)),
      );
      server.listen(port, bindHost === '' ? undefined : bindHost, () => resolve());
    });
    server.on('error', (err) => this.settings.logger.error({ err }, 'health_check server error'));
    this.server = server;
  }

  async shutdown(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server === undefined) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
