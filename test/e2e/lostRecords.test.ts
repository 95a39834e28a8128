// test-kind: e2e
/**
 * Loss is never silent, on the real kernel: the agent (the real CLI) is
 * stopped (SIGSTOP) for a moment while a child churns loopback connections,
 * so the 1 MiB ringbuf overflows and the kernel drops records. Afterwards
 * the lost count the kernel kept (the agent's own lost_records map, read
 * with bpftool), the agent's self-metric and the sum of its log lines must
 * be the same exact number, and the loss series must have existed at 0
 * before anything was lost.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { packageRoot } from '../../src/paths.js';
import { attachedProgramIds, CGROUP_ROOT, kernelSkipReason } from '../helpers/kernel.js';
import { deadlineMs } from '../helpers/deadline.js';
import { freePort, waitFor } from '../helpers/prometheusServer.js';

const MAIN = join(packageRoot, 'dist', 'src', 'main.js');

/** Loopback churn: argv[1] connections, 16 at a time, each writes 10 bytes and is closed; prints {"port"} then {"done"}. */
const CHURN = String.raw`
import net from 'node:net';
const total = Number(process.argv[1]);
const srv = net.createServer((s) => { s.on('data', () => s.end()); s.on('error', () => {}); });
srv.listen(0, '127.0.0.1', () => {
  const port = srv.address().port;
  console.log(JSON.stringify({ port }));
  let started = 0, done = 0;
  const deadline = Date.now() + 60000;
  const one = () => {
    if (started >= total || Date.now() > deadline) { if (done === started) { console.log(JSON.stringify({ done })); process.exit(0); } return; }
    started++;
    const c = net.connect(port, '127.0.0.1', () => c.write('0123456789'));
    c.on('data', () => {});
    c.on('end', () => c.end());
    c.on('error', () => {});
    c.on('close', () => { done++; one(); });
  };
  for (let i = 0; i < 16; i++) one();
});
`;

/** Sum of a metric family's samples in Prometheus text, optionally only those whose labels include `match`. */
function sample(text: string, name: string, match = ''): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    if (match !== '' && !line.includes(match)) continue;
    sum = (sum ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** The kernel's lost_records count of the program `progId` (summed over CPUs), through bpftool. */
function kernelLost(progId: number): number {
  const prog = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show', 'id', String(progId)], { encoding: 'utf8', timeout: 10_000 })) as {
    map_ids?: number[];
  };
  for (const id of prog.map_ids ?? []) {
    const map = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'show', 'id', String(id)], { encoding: 'utf8', timeout: 10_000 })) as { name: string };
    if (map.name !== 'lost_records') continue;
    const out = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'lookup', 'id', String(id), 'key', '0', '0', '0', '0'], { encoding: 'utf8', timeout: 10_000 })) as {
      values?: Array<{ value: number | string[] }>;
      formatted?: { values: Array<{ value: number }> };
    };
    const values = out.formatted?.values ?? out.values ?? [];
    let total = 0;
    for (const v of values) {
      // With BTF bpftool prints the number; without, the value's bytes (little-endian hex).
      total += typeof v.value === 'number' ? v.value : Number(Buffer.from(v.value.map((b) => parseInt(b, 16))).readBigUInt64LE(0));
    }
    return total;
  }
  throw new Error(`program ${progId} has no lost_records map`);
}

describe('lost kernel records are counted exactly and logged (e2e)', { skip: kernelSkipReason(), timeout: deadlineMs(120_000) }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'kmesh-otel-lost-'));
  let agent: ChildProcess | undefined;
  let churn: ReturnType<typeof spawn> | undefined;
  after(() => {
    if (agent !== undefined && agent.exitCode === null) {
      agent.kill('SIGCONT');
      agent.kill('SIGKILL');
    }
    churn?.kill('SIGKILL');
    rmSync(tmp, { recursive: true, force: true });
  });

  it('kernel count == self-metric == sum of the log lines, and the series existed at 0 before', async (t) => {
    assert.ok(existsSync(MAIN), `${MAIN} is missing: run npm run build`);
    const port = await freePort();
    const config = join(tmp, 'config.yaml');
    writeFileSync(
      config,
      [
        'receivers:',
        '  ebpf:',
        `    cgroup_path: ${CGROUP_ROOT}`,
        '    report_interval: 500ms',
        'processors:',
        '  k8s_attributes: { auth_type: none }',
        'exporters:',
        `  prometheus: { endpoint: "127.0.0.1:${port}" }`,
        'service:',
        '  pipelines:',
        '    metrics: { receivers: [ebpf], processors: [k8s_attributes], exporters: [prometheus] }',
        '',
      ].join('\n'),
    );
    const before = new Set(attachedProgramIds());
    const child = spawn(process.execPath, [MAIN, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
    agent = child;
    const logs: Array<Record<string, unknown>> = [];
    createInterface({ input: child.stderr }).on('line', (l) => {
      try {
        logs.push(JSON.parse(l) as Record<string, unknown>);
      } catch {
        // the CLI's plain-text error lines
      }
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const scrape = async (): Promise<string> => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    await waitFor('the agent serving its self-metrics', async () => ((await scrape().catch(() => '')).includes('kmesh_otel_ebpf_kernel_lost_records_total') ? true : undefined));
    const first = await scrape();
    assert.equal(sample(first, 'kmesh_otel_ebpf_kernel_lost_records_total'), 0, 'the lost series exists at 0 before any loss');
    assert.equal(sample(first, 'kmesh_otel_data_loss_last_time', 'cause="kernel_ringbuf_full"'), 0, '"data incomplete since" is 0');
    const progId = attachedProgramIds().find((id) => !before.has(id));
    assert.ok(progId !== undefined, 'the agent attached its sockops program');

    // Stop the agent, churn, let it go on.
    const CONNECTIONS = 6000;
    child.kill('SIGSTOP');
    churn = spawn(process.execPath, ['--input-type=module', '-e', CHURN, String(CONNECTIONS)], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines: string[] = [];
    createInterface({ input: churn.stdout! }).on('line', (l) => lines.push(l));
    const churned = new Promise<void>((resolve) => churn!.once('exit', () => resolve()));
    await churned;
    child.kill('SIGCONT');
    const done = (JSON.parse(lines.at(-1) ?? '{"done":0}') as { done?: number }).done ?? 0;
    assert.equal(done, CONNECTIONS, `the churn completed: ${lines.join(' ')}`);

    // The kernel's count, then the agent's (read at its next report tick).
    const lostInKernel = kernelLost(progId);
    assert.ok(lostInKernel > 0, `6000 connections (24,000 records) overflow a 1 MiB ringbuf: ${lostInKernel} lost`);
    await waitFor(
      `the self-metric to reach the kernel count ${lostInKernel}`,
      async () => (sample(await scrape(), 'kmesh_otel_ebpf_kernel_lost_records_total') === lostInKernel ? true : undefined),
      10_000,
    );
    const text = await scrape();
    assert.equal(sample(text, 'kmesh_otel_ebpf_kernel_lost_records_total'), lostInKernel);
    assert.ok((sample(text, 'kmesh_otel_data_loss_last_time', 'cause="kernel_ringbuf_full"') ?? 0) > 0, 'data incomplete since: set');

    child.kill('SIGTERM');
    assert.equal(await exited, 0, 'clean exit');
    const lossLines = logs.filter((l) => l.cause === 'kernel_ringbuf_full');
    assert.ok(lossLines.length >= 1, 'at least the first occurrence is logged');
    assert.equal(lossLines[0]!.level, 40, 'a warning');
    const logged = lossLines.reduce((s, l) => s + Number(l.lost), 0);
    t.diagnostic(`${CONNECTIONS} connections while stopped: ${lostInKernel} records lost, logged in ${lossLines.length} line(s)`);
    assert.equal(logged, lostInKernel, `log lines sum to the kernel count: ${lossLines.map((l) => l.lost).join(' + ')}`);
  });
});
