/**
 * The real agent as a benchmark subject: started through the CLI
 * (`node dist/src/main.js --config <file>` when the build is at least as new
 * as every source file, else `node --import tsx src/main.ts`) with a config
 * written to the module's temp dir, the ebpf receiver at the cgroup-v2 root,
 * k8s_attributes reading a fake API server (KUBECONFIG), the prometheus
 * exporter and the health check on free loopback ports. Used by the
 * freshness and scale modules, whose figures are about the agent process
 * itself (its RSS, its /metrics), not about a component in isolation.
 *
 * Everything is registered with ctx.onCleanup, so a failing or interrupted
 * module still kills the agent; its BPF links die with it (bpf_link), and
 * `stop()` checks that the cgroup root holds no program it did not hold
 * before the agent started.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, request } from 'node:http';
import { join, relative } from 'node:path';
import { attachedProgramIds } from './bpftool.js';
import { cgroupRoot } from './probe.js';
import type { BenchContext } from './types.js';
import { freePort } from '../../test/helpers/freePort.js';

// The agent binds the free ports right after they are picked.
export { freePort };

function newestMtime(dir: string, ext: string): { newest: number; files: string[] } {
  let newest = 0;
  const files: string[] = [];
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(ext)) {
        files.push(p);
        newest = Math.max(newest, statSync(p).mtimeMs);
      }
    }
  };
  walk(dir);
  return { newest, files };
}

/**
 * The Node flags of the `kmesh-otel` command's shebang (#!/usr/bin/env -S
 * node FLAGS; the same as `npm start` and the Dockerfile), so benchmark
 * children that stand for the agent run with them. They matter for RSS:
 * Node 24's default young generation is larger than Node 20's, and without
 * `--max-semi-space-size=2` an agent child measured 60-80 MB more.
 */
export function agentNodeFlags(repoRoot: string): string[] {
  const shebang = /^#!\/usr\/bin\/env -S node (.*)$/m.exec(readFileSync(join(repoRoot, 'src', 'main.ts'), 'utf8').split('\n')[0] ?? '');
  return shebang?.[1]?.split(/\s+/).filter(Boolean) ?? [];
}

/**
 * How to run the agent: the compiled entry point when every `src/**.ts` has a
 * `dist/src/**.js` at least as new (what a node runs: no TypeScript loader in
 * the RSS), else the sources through tsx (the loader's memory is then part of
 * the figure, and the notes say so).
 */
export function agentCommand(repoRoot: string): { args: string[]; how: string } {
  const main = join(repoRoot, 'dist', 'src', 'main.js');
  let fresh = existsSync(main);
  if (fresh) {
    const src = join(repoRoot, 'src');
    for (const f of newestMtime(src, '.ts').files) {
      const out = join(repoRoot, 'dist', 'src', relative(src, f).replace(/\.ts$/, '.js'));
      if (!existsSync(out) || statSync(out).mtimeMs < statSync(f).mtimeMs) {
        fresh = false;
        break;
      }
    }
  }
  const flags = agentNodeFlags(repoRoot);
  const shown = flags.length ? `${flags.join(' ')} ` : '';
  if (fresh) return { args: [...flags, main], how: `compiled (node ${shown}dist/src/main.js)` };
  return {
    args: [...flags, '--import', 'tsx', join(repoRoot, 'src', 'main.ts')],
    how: `from source (node ${shown}--import tsx src/main.ts: dist/ older than src/, TypeScript loader included)`,
  };
}

/**
 * RSS of an empty Node process with and without the tsx loader, MB: what
 * running from source adds before any agent code is loaded (for the notes of
 * an RSS figure measured with tsx).
 */
export function tsxLoaderOverheadMB(repoRoot: string): number {
  const rss = (args: string[]): number => {
    const out = execFileSync(process.execPath, [...args, '-e', 'process.stdout.write(String(process.memoryUsage().rss))'], {
      cwd: repoRoot,
      encoding: 'utf8',
      timeout: 20_000,
    });
    return Number(out) / 2 ** 20;
  };
  return rss(['--import', 'tsx']) - rss([]);
}

export interface AgentOptions {
  /** KUBECONFIG for k8s_attributes (auth_type kubeConfig); omitted: auth_type none. */
  kubeconfig?: string;
  /** Extra lines under `receivers: ebpf:` (indented by the caller's content, e.g. `report_interval: 5s`). */
  ebpf?: Record<string, string>;
  /** Milliseconds to wait for the health check (and with it the initial pod list). Default 60 s. */
  startTimeoutMs?: number;
  /** Also a traces pipeline (ebpf -> k8s_attributes -> otlp) to this OTLP/gRPC endpoint. */
  tracesEndpoint?: string;
}

/** A running agent child. */
export interface AgentProcess {
  readonly pid: number;
  readonly metricsUrl: string;
  /** How it was started (compiled or tsx), for the notes. */
  readonly how: string;
  /** True when started from source through tsx. */
  readonly fromSource: boolean;
  /** Current resident set size, MB (VmRSS from /proc/<pid>/status). */
  rssMB(): number;
  /** Peak resident set size so far, MB (VmHWM). */
  peakRssMB(): number;
  /** One GET /metrics over a kept-alive connection: the body and the time to its last byte. */
  scrape(timeoutMs?: number): Promise<{ ms: number; body: string }>;
  /**
   * SIGTERM, then SIGKILL after 5 s; then checks that none of the BPF
   * programs the agent held is still loaded or attached (`leftover`, and
   * `programs`: how many it held). Safe twice.
   */
  stop(): Promise<{ leftover: number[]; programs: number }>;
  /** The last 4 KB of the agent's stderr (its log). */
  stderrTail(): string;
}

/**
 * Ids of the BPF programs a process holds, from its descriptors' fdinfo
 * (`prog_id:` appears for program and link fds; bpftool's pid column needs a
 * bpftool built with that support, this does not).
 */
export function programsOfPid(pid: number): number[] {
  const ids = new Set<number>();
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return [];
  }
  for (const fd of fds) {
    try {
      const m = /^prog_id:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) ids.add(Number(m[1]));
    } catch {
      // closed meanwhile
    }
  }
  return [...ids];
}

/** Which of these program ids still exist (loaded anywhere); [] without bpftool. */
function stillLoaded(ids: readonly number[]): number[] {
  return ids.filter((id) => {
    try {
      execFileSync('bpftool', ['prog', 'show', 'id', String(id)], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });
}

function statusField(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Starts the agent (metrics pipeline ebpf -> k8s_attributes -> prometheus) and waits until it is healthy. */
export async function startAgent(ctx: Pick<BenchContext, 'repoRoot' | 'tmpDir' | 'onCleanup' | 'log'>, opts: AgentOptions = {}): Promise<AgentProcess> {
  const promPort = await freePort();
  const healthPort = await freePort();
  // The cgroup-v2 root (on this machine /sys/fs/cgroup/unified): every TCP socket of the node.
  const cgroup = cgroupRoot();
  const ebpf = { cgroup_path: cgroup, ...opts.ebpf };
  const ebpfLines = Object.entries(ebpf)
    .map(([k, v]) => `    ${k}: ${v}`)
    .join('\n');
  const k8s = opts.kubeconfig !== undefined ? 'auth_type: kubeConfig\n    wait_for_metadata: true' : 'auth_type: none';
  // Metrics pipeline only: the figures are about /metrics and the agent's
  // memory; an access-log pipeline (debug exporter on stdout) would add its
  // own cost, measured in bench/logs.ts.
  const config = `receivers:
  ebpf:
${ebpfLines}
processors:
  k8s_attributes:
    ${k8s}
    cluster_name: Kubernetes
exporters:
  prometheus:
    endpoint: 127.0.0.1:${promPort}
${opts.tracesEndpoint === undefined ? '' : `  otlp:\n    endpoint: ${opts.tracesEndpoint}\n    tls: { insecure: true }\n`}extensions:
  health_check:
    endpoint: 127.0.0.1:${healthPort}
service:
  extensions: [health_check]
  telemetry:
    logs:
      level: warn
  pipelines:
    metrics: { receivers: [ebpf], processors: [k8s_attributes], exporters: [prometheus] }
${opts.tracesEndpoint === undefined ? '' : '    traces: { receivers: [ebpf], processors: [k8s_attributes], exporters: [otlp] }\n'}`;
  const configPath = join(ctx.tmpDir, `agent-${promPort}.yaml`);
  writeFileSync(configPath, config);
  const cmd = agentCommand(ctx.repoRoot);
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (opts.kubeconfig !== undefined) env.KUBECONFIG = opts.kubeconfig;
  else delete env.KUBECONFIG;
  const child: ChildProcess = spawn(process.execPath, [...cmd.args, '--config', configPath], {
    cwd: ctx.repoRoot,
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-4096)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: 1 });

  // Other processes (other benchmarks, tests) may attach their own programs
  // meanwhile, so the check is about the agent's own program ids.
  let ownPrograms: number[] = [];
  let stopping: Promise<{ leftover: number[]; programs: number }> | undefined;
  const stop = (): Promise<{ leftover: number[]; programs: number }> => {
    stopping ??= (async () => {
      httpAgent.destroy();
      if (alive()) {
        ownPrograms = programsOfPid(child.pid!);
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(t);
      }
      // bpf_link: the program is detached when the last fd closes (process exit).
      const attached = new Set(attachedProgramIds(cgroup));
      const leftover = [...new Set([...ownPrograms.filter((id) => attached.has(id)), ...stillLoaded(ownPrograms)])];
      if (leftover.length > 0) ctx.log(`WARNING: the agent's BPF programs ${leftover.join(', ')} are still loaded or attached at ${cgroup} after it exited`);
      return { leftover, programs: ownPrograms.length };
    })();
    return stopping;
  };
  ctx.onCleanup(async () => {
    await stop();
  });

  const scrape = (timeoutMs = 30_000): Promise<{ ms: number; body: string }> =>
    new Promise((resolve, reject) => {
      const t0 = process.hrtime.bigint();
      const req = request({ host: '127.0.0.1', port: promPort, path: '/metrics', agent: httpAgent, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          if (res.statusCode !== 200) reject(new Error(`/metrics answered ${res.statusCode}`));
          else resolve({ ms, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`/metrics: no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });

  const deadline = Date.now() + (opts.startTimeoutMs ?? 60_000);
  for (;;) {
    if (!alive()) throw new Error(`agent exited (${child.exitCode ?? child.signalCode}) during start-up: ${stderr}`);
    const ok = await fetch(`http://127.0.0.1:${healthPort}/healthz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`agent not healthy within ${opts.startTimeoutMs ?? 60_000} ms: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // The health check can answer before the prometheus endpoint listens.
  for (;;) {
    try {
      await scrape(5_000);
      break;
    } catch (err) {
      if (Date.now() > deadline || !alive()) {
        await stop();
        throw new Error(`agent /metrics not answering: ${(err as Error).message}: ${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    pid: child.pid!,
    metricsUrl: `http://127.0.0.1:${promPort}/metrics`,
    how: cmd.how,
    fromSource: cmd.args.includes('--import'),
    rssMB: () => statusField(child.pid!, 'VmRSS'),
    peakRssMB: () => statusField(child.pid!, 'VmHWM'),
    scrape,
    stop,
    stderrTail: () => stderr,
  };
}

/**
 * Sum of the samples of one metric whose label set contains every given
 * label (`name{...} value` lines of the Prometheus text format).
 */
export function sumSeries(body: string, name: string, labels: Record<string, string>): number {
  const needles = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let total = 0;
  let found = false;
  let from = 0;
  const prefix = `\n${name}{`;
  for (;;) {
    const i = body.indexOf(prefix, from);
    if (i < 0) break;
    const end = body.indexOf('\n', i + 1);
    const line = body.slice(i + 1, end < 0 ? undefined : end);
    from = i + 1;
    const close = line.lastIndexOf('}');
    const labelText = line.slice(name.length + 1, close);
    if (needles.every((n) => labelText.includes(n))) {
      total += Number(line.slice(close + 1).trim().split(' ')[0]);
      found = true;
    }
  }
  return found ? total : NaN;
}

/** Number of sample lines whose metric name starts with `prefix` (e.g. `kmesh_tcp_`), overflow series included. */
export function countSeries(body: string, prefix: string): number {
  let n = 0;
  let from = 0;
  const needle = `\n${prefix}`;
  for (;;) {
    const i = body.indexOf(needle, from);
    if (i < 0) break;
    n++;
    from = i + 1;
  }
  return n + (body.startsWith(prefix) ? 1 : 0);
}

/** The value of an unlabelled or first-labelled sample of `name` (self-metrics), NaN when absent. */
export function sampleValue(body: string, name: string): number {
  const re = new RegExp(`^${name}(?:\\{[^}]*\\})? ([^ \\n]+)`, 'm');
  const m = re.exec(body);
  return m ? Number(m[1]) : NaN;
}
