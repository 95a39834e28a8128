import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OtlpHttpReceiver, OtlpReceiver, waitFor } from '../helpers/otlpReceiver.js';

// Issue 15: many nodes into one backend. Two agents (two processes, the real
// CLI) with different identities send equal label sets to one OTLP
// receiver (OTLP/gRPC and OTLP/HTTP); the resource keeps their series and
// their log streams apart.
describe('two agents into one OTLP backend', () => {
  let receiver: OtlpReceiver;
  let httpReceiver: OtlpHttpReceiver;
  let dir: string;
  const children: ChildProcess[] = [];

  before(async () => {
    receiver = await OtlpReceiver.start();
    httpReceiver = await OtlpHttpReceiver.start();
    dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-identity-'));
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await receiver.stop();
    await httpReceiver.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts one agent; resolves with its exit code after SIGTERM once it has emitted. */
  async function runAgent(name: string, env: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
    const config = join(dir, `${name}.yaml`);
    writeFileSync(
      config,
      `receivers: { fake: {} }
exporters:
  otlp:
    endpoint: ${receiver.endpoint}
    tls: { insecure: true }
    export_interval: 60s
  otlp_http:
    endpoint: ${httpReceiver.endpoint}
    export_interval: 60s
service:
  pipelines:
    metrics: { receivers: [fake], exporters: [otlp, otlp_http] }
    logs: { receivers: [fake], exporters: [otlp, otlp_http] }
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'identityAgent.ts'), config], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // Only what the test sets: no OTEL_* from the runner's environment.
      env: { PATH: process.env.PATH ?? '', ...env },
    });
    children.push(child);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    await Promise.race([waitFor(() => out.includes('emitted'), 30_000, `${name} to start and emit`), exited]);
    // Shutdown exports once more (metrics) and flushes the log batch.
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await exited;
    clearTimeout(timer);
    return { code, out, err };
  }

  it('keeps their series and log streams apart by service.instance.id and pod identity', { timeout: 90_000 }, async () => {
    const agents = [
      { name: 'a', env: { POD_UID: '11111111-1111-4111-8111-111111111111', POD_NAME: 'kmesh-otel-aaaaa', POD_NAMESPACE: 'kmesh-otel', NODE_NAME: 'node-a' } },
      { name: 'b', env: { POD_UID: '22222222-2222-4222-8222-222222222222', POD_NAME: 'kmesh-otel-bbbbb', POD_NAMESPACE: 'kmesh-otel', NODE_NAME: 'node-b' } },
    ];
    const results = await Promise.all(agents.map((a) => runAgent(a.name, a.env)));
    results.forEach((r, i) => assert.equal(r.code, 0, `agent ${agents[i]!.name} exit code\nstdout:\n${r.out}\nstderr:\n${r.err}`));

    for (const [protocol, rx] of [['grpc', receiver], ['http', httpReceiver]] as const) {
      const series = rx.points().filter((p) => p.metric === 'kmesh_tcp_workload_sent_bytes_total');
      for (const a of agents) {
        const own = series.filter((p) => p.resource['service.instance.id'] === a.env.POD_UID);
        assert.ok(own.length >= 1, `${protocol}: agent ${a.name}: no sent-bytes series with its service.instance.id`);
        for (const p of own) {
          assert.equal(p.value, 1000, `${protocol}: agent ${a.name}: its own cumulative total, not the sum of both`);
          assert.equal(p.resource['k8s.pod.name'], a.env.POD_NAME);
          assert.equal(p.resource['k8s.pod.uid'], a.env.POD_UID);
          assert.equal(p.resource['k8s.namespace.name'], 'kmesh-otel');
          assert.equal(p.resource['k8s.node.name'], a.env.NODE_NAME);
          assert.equal(p.resource['service.name'], 'kmesh-otel');
        }
      }
      // The label sets are equal: only the resource tells the two apart.
      const labelSets = new Set(series.map((p) => JSON.stringify(Object.entries(p.attributes).sort())));
      assert.equal(labelSets.size, 1, `${protocol}: both agents report the same label set`);

      const logs = rx.logs();
      assert.equal(logs.length, 2, `${protocol}: one access-log record per agent`);
      assert.deepEqual(
        logs.map((l) => l.resource['service.instance.id']).sort(),
        agents.map((a) => a.env.POD_UID).sort(),
        `${protocol}: each log record carries its agent (Loki makes service.instance.id a stream label)`,
      );
      assert.deepEqual(logs[0]!.attributes['src.workload'], logs[1]!.attributes['src.workload']);
    }
  });
});
