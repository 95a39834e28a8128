// test-kind: e2e
/**
 * Endpoints that hold: 30,000 idle TCP connections to the agent's metrics
 * port (the real CLI, the real kernel probe) used to exhaust its file
 * descriptors, stop /healthz and /metrics and triple its RSS. With the
 * HTTP server bounds (src/config/httpServer.ts): /healthz keeps answering
 * during the flood (limits of its own), the agent's descriptors and memory
 * stay bounded, and /metrics answers again once the idle connections have
 * timed out. Loopback only; every child and the agent are killed in `after`.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { packageRoot } from '../../src/paths.js';
import { CGROUP_ROOT, kernelSkipReason } from '../helpers/kernel.js';
import { deadlineMs } from '../helpers/deadline.js';
import { freePort, waitFor } from '../helpers/prometheusServer.js';

const MAIN = join(packageRoot, 'dist', 'src', 'main.js');
/**
 * Under CPU emulation (the kernel matrix's TCG guests set
 * KMESH_TEST_EMULATED=1) 30,000 connects take minutes: the flood is 6,000
 * there, which still dwarfs every limit under test (64 and 16 connections).
 */
const EMULATED = process.env.KMESH_TEST_EMULATED === '1';
const PER_CHILD = EMULATED ? 3_000 : 15_000;
const FLOOD_WAIT_MS = EMULATED ? 150_000 : 30_000;

/**
 * Opens argv[1] connections to 127.0.0.1:argv[2] from source address argv[3]
 * and holds whatever stays open; prints {"opened","closedByPeer"} once every
 * attempt settled (or after argv[4] ms), then waits to be killed.
 */
const FLOOD = String.raw`
import net from 'node:net';
const [n, port, local, waitMs] = [Number(process.argv[1]), Number(process.argv[2]), process.argv[3], Number(process.argv[4])];
let opened = 0, closed = 0, failed = 0, settled = 0;
const held = [];
const report = () => console.log(JSON.stringify({ opened, closedByPeer: closed, failed }));
const timer = setTimeout(report, waitMs);
const one = () => {
  const s = net.connect({ port, host: '127.0.0.1', localAddress: local });
  held.push(s);
  let done = false;
  const settle = () => { if (!done) { done = true; if (++settled === n) { clearTimeout(timer); report(); } } };
  s.on('connect', () => { opened++; settle(); });
  s.on('error', () => { failed++; settle(); });
  s.on('close', () => { closed++; });
};
// In waves, so the listen backlog is not the bottleneck of the test itself.
let started = 0;
const wave = () => { for (let i = 0; i < 500 && started < n; i++, started++) one(); if (started < n) setTimeout(wave, 5); };
wave();
`;

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssMB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

describe('endpoints hold under an idle-connection flood (e2e)', { skip: kernelSkipReason(), timeout: EMULATED ? 400_000 : 120_000 }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'kmesh-otel-flood-'));
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  });

  it(`${2 * PER_CHILD} idle connections to /metrics: /healthz answers, fds and RSS bounded, /metrics recovers`, async (t) => {
    assert.ok(existsSync(MAIN), `${MAIN} is missing: run npm run build`);
    const metricsPort = await freePort();
    const healthPort = await freePort();
    const config = join(tmp, 'config.yaml');
    writeFileSync(
      config,
      [
        'receivers:',
        `  ebpf: { cgroup_path: ${CGROUP_ROOT} }`,
        'processors:',
        '  k8s_attributes: { auth_type: none }',
        'exporters:',
        `  prometheus: { endpoint: "127.0.0.1:${metricsPort}", read_header_timeout: 2s }`,
        'extensions:',
        `  health_check: { endpoint: "127.0.0.1:${healthPort}" }`,
        'service:',
        '  extensions: [health_check]',
        '  pipelines:',
        '    metrics: { receivers: [ebpf], processors: [k8s_attributes], exporters: [prometheus] }',
        '',
      ].join('\n'),
    );
    const agent = spawn(process.execPath, [MAIN, '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(agent);
    let stderr = '';
    agent.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    // A liveness probe's patience: 2 s; 10 s under emulation, where one host
    // thread emulates the agent, both flooders and this test (one check of
    // 62 got no answer within 2 s there in CI; the slowest in local guest
    // runs was 613 ms).
    const health = async (): Promise<number> =>
      (await fetch(`http://127.0.0.1:${healthPort}/healthz`, { signal: AbortSignal.timeout(deadlineMs(2_000)) })).status;
    await waitFor('the agent healthy', async () => ((await health().catch(() => 0)) === 200 ? true : undefined), 30_000);
    const metrics = async (): Promise<number> => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(deadlineMs(2_000)) })).status;
    assert.equal(await metrics(), 200);
    const rssBefore = rssMB(agent.pid!);

    // Two children (RLIMIT_NOFILE is capped at 20,000 here), each from its own
    // loopback source address (one address has ~28,000 ephemeral ports).
    const reports: Array<Promise<{ opened: number; closedByPeer: number; failed: number }>> = [];
    for (const local of ['127.0.0.2', '127.0.0.3']) {
      const c = spawn(process.execPath, ['--input-type=module', '-e', FLOOD, String(PER_CHILD), String(metricsPort), local, String(FLOOD_WAIT_MS)], { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(c);
      reports.push(
        new Promise((resolve) => createInterface({ input: c.stdout! }).once('line', (l) => resolve(JSON.parse(l) as { opened: number; closedByPeer: number; failed: number }))),
      );
    }
    // During the flood: the health check answers, every time.
    let maxFds = 0;
    let maxRss = 0;
    // Each check's outcome: its status, or why it got none (the fetch error's cause), and how long it took.
    const healthDuring: Array<{ status: number; ms: number; error?: string }> = [];
    const check = async (): Promise<void> => {
      const t0 = performance.now();
      try {
        healthDuring.push({ status: await health(), ms: performance.now() - t0 });
      } catch (err) {
        const e = err as Error & { cause?: { code?: string; message?: string } };
        healthDuring.push({ status: 0, ms: performance.now() - t0, error: `${e.name}: ${e.cause?.code ?? e.cause?.message ?? e.message}` });
      }
    };
    const flooded = Promise.all(reports);
    let floodDone = false;
    void flooded.then(() => (floodDone = true));
    for (let i = 0; i < FLOOD_WAIT_MS / 100 + 10 && !floodDone; i++) {
      await check();
      maxFds = Math.max(maxFds, fdCount(agent.pid!));
      maxRss = Math.max(maxRss, rssMB(agent.pid!));
      await new Promise((r) => setTimeout(r, 100));
    }
    const results = await flooded;
    await check();
    maxFds = Math.max(maxFds, fdCount(agent.pid!));
    maxRss = Math.max(maxRss, rssMB(agent.pid!));
    const opened = results.reduce((s, r) => s + r.opened, 0);
    t.diagnostic(
      `flood: ${opened} connected (${results.map((r) => `${r.opened} opened, ${r.closedByPeer} closed by the agent, ${r.failed} failed`).join('; ')}); ` +
        `agent fds at most ${maxFds}, RSS ${rssBefore.toFixed(0)} -> at most ${maxRss.toFixed(0)} MB; ` +
        `health during: ${healthDuring.length} checks, slowest ${Math.max(...healthDuring.map((h) => h.ms)).toFixed(0)} ms`,
    );
    assert.ok(opened >= 1.66 * PER_CHILD, `the flood reached the agent: ${opened} of ${2 * PER_CHILD} connections`);
    assert.deepEqual(
      healthDuring.filter((h) => h.status !== 200).map((h) => `${h.status} after ${h.ms.toFixed(0)} ms${h.error ? ` (${h.error})` : ''}`),
      [],
      '/healthz answered 200 throughout',
    );
    assert.ok(maxFds < 64 + 16 + 200, `the agent's descriptors stay bounded by max_connections: at most ${maxFds}`);
    assert.ok(maxRss < rssBefore + 60, `RSS bounded: ${rssBefore.toFixed(0)} -> ${maxRss.toFixed(0)} MB`);

    // The idle connections it accepted time out (read_header_timeout 2s): /metrics answers again,
    // with the flooders still holding whatever they think is open.
    const recovered = await waitFor('/metrics to answer again', async () => ((await metrics().catch(() => 0)) === 200 ? Date.now() : undefined), 15_000, 200);
    assert.ok(recovered > 0);
    assert.equal(agent.exitCode, null, `the agent is still running: ${stderr}`);
    agent.kill('SIGTERM');
    await new Promise((r) => agent.once('exit', r));
  });
});
