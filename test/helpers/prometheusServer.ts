import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './freePort.js';
import { DEADLINE_SCALE, deadlineMs } from './deadline.js';

export { freePort };

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}

/**
 * A real Prometheus server (Debian's `prometheus` package) on loopback with
 * its own config and data directory, scraping the given targets every
 * `scrapeIntervalMs`. `stop()` kills it and removes the directory.
 */
export class PrometheusServer {
  private proc: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-prom-'));
  private output = '';
  port = 0;

  constructor(
    private readonly targets: string[],
    private readonly scrapeIntervalMs = 1000,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.port = await freePort();
    // Under CPU emulation a scrape can take over a second: the interval (and
    // with it the timeout) stretches like the waits do (DEADLINE_SCALE).
    const interval = `${Math.max(1, Math.round((this.scrapeIntervalMs * DEADLINE_SCALE) / 1000))}s`;
    const config = [
      'global:',
      `  scrape_interval: ${interval}`,
      `  scrape_timeout: ${interval}`,
      'scrape_configs:',
      '  - job_name: kmesh-otel',
      '    static_configs:',
      `      - targets: [${this.targets.map((t) => JSON.stringify(t)).join(', ')}]`,
    ].join('\n');
    writeFileSync(join(this.dir, 'prometheus.yml'), config + '\n');
    this.proc = spawn(
      '/usr/bin/prometheus',
      [
        `--config.file=${join(this.dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(this.dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${this.port}`,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc.stdout?.on('data', (d: Buffer) => (this.output = (this.output + d.toString()).slice(-20_000)));
    this.proc.stderr?.on('data', (d: Buffer) => (this.output = (this.output + d.toString()).slice(-20_000)));
    const deadline = Date.now() + deadlineMs(30_000);
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`prometheus exited: ${this.output}`);
      try {
        const r = await fetch(`${this.url}/-/ready`);
        if (r.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`prometheus did not become ready in 30 s: ${this.output}`);
  }

  /** Instant PromQL query; returns the vector result. */
  async query(promql: string): Promise<PromSample[]> {
    const r = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await r.json()) as { status: string; data?: { resultType: string; result: PromSample[] }; error?: string };
    if (body.status !== 'success') throw new Error(`PromQL ${promql}: ${body.error}`);
    return body.data!.result;
  }

  /** Health of the scrape targets as Prometheus sees them. */
  async targetHealth(): Promise<string[]> {
    const r = await fetch(`${this.url}/api/v1/targets`);
    const body = (await r.json()) as { data: { activeTargets: Array<{ health: string; lastError: string }> } };
    return body.data.activeTargets.map((t) => (t.lastError ? `${t.health}: ${t.lastError}` : t.health));
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (p !== undefined && p.exitCode === null) {
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `check` until it returns a value (not undefined) or the time (stretched under emulation, deadline.ts) runs out. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000, everyMs = 250): Promise<T> {
  const deadline = Date.now() + deadlineMs(timeoutMs);
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${deadlineMs(timeoutMs)} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
}
