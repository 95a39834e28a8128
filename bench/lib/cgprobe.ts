/**
 * bench/lib/cgprobe.c as a benchmark helper: loads a BPF object the agent's
 * addon does not load (every program, e.g. sockops + cgroup_skb) in a child
 * process and attaches / detaches all of it at a cgroup-v2 directory on
 * command. The child holds the only bpf_links (never pinned), so a killed
 * benchmark leaves nothing attached; it also dies with this process
 * (PDEATHSIG) and every child is killed by killCgProbes() (run.ts cleanup
 * through ctx.onCleanup).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('./cgprobe.c', import.meta.url));
let compiled: { dir: string; bin: string } | undefined;

/** Compiles cgprobe.c (cc, -lbpf: Debian's libbpf-dev, which the addon builds against too) once per process. */
function cgprobeBinary(): string {
  if (compiled) return compiled.bin;
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-cgprobe-'));
  const bin = join(dir, 'cgprobe');
  const cc = process.env.CC ?? 'cc';
  try {
    execFileSync(cc, ['-O2', '-Wall', '-o', bin, SOURCE, '-lbpf'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`compiling ${SOURCE} with ${cc} failed (needs libbpf-dev): ${e.stderr?.toString() ?? e.message}`);
  }
  compiled = { dir, bin };
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return bin;
}

export interface CgProbe {
  attach(): Promise<void>;
  detach(): Promise<void>;
  /** Sum over CPUs of the object's per-CPU `skb_counted` (0 if it has none). */
  count(): Promise<number>;
  /** Kernel BPF run-time stats on / off (machine-wide while on: every program's run_cnt and run_time_ns count). */
  statsOn(): Promise<void>;
  statsOff(): Promise<void>;
  /** run_cnt and run_time_ns summed over the object's programs (they grow only while stats are on). */
  stats(): Promise<{ runs: number; ns: number }>;
  /** Detaches everything and waits for the child to exit. Idempotent. */
  close(): Promise<void>;
}

/**
 * Loads `objectPath` in a cgprobe child. Resolves once every program is
 * loaded; rejects with the kernel's (libbpf's, the verifier's) reason when
 * the load fails, so a caller can skip with it.
 */
export function startCgProbe(objectPath: string, cgroup: string, timeoutMs = 20_000): Promise<CgProbe> {
  const child: ChildProcess = spawn(cgprobeBinary(), [objectPath, cgroup], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<(line: string) => void> = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  child.stdin!.on('error', () => undefined);
  lines.on('line', (l) => waiting.shift()?.(l));
  const next = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`cgprobe: no answer within ${timeoutMs} ms: ${stderr}`)), timeoutMs);
      const done = (l: string): void => {
        clearTimeout(t);
        resolve(l);
      };
      waiting.push(done);
      void exited.then(() => {
        clearTimeout(t);
        reject(new Error(`cgprobe exited (${child.exitCode ?? child.signalCode}): ${stderr}`));
      });
    });
  const ask = async (cmd: string, want?: string): Promise<string> => {
    const answer = next();
    child.stdin!.write(`${cmd}\n`);
    const l = await answer;
    if (l.startsWith('error') || (want !== undefined && l !== want)) throw new Error(`cgprobe ${cmd}: ${l}`);
    return l;
  };
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      child.stdin!.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    })());
  return next().then(
    async (first) => {
      if (first !== 'loaded') {
        await close();
        throw new Error(first.replace(/^error /, ''));
      }
      return {
        attach: async () => void (await ask('attach', 'attached')),
        detach: async () => void (await ask('detach', 'detached')),
        count: async () => Number(await ask('count')),
        statsOn: async () => void (await ask('stats-on', 'stats on')),
        statsOff: async () => void (await ask('stats-off', 'stats off')),
        stats: async () => {
          const [runs, ns] = (await ask('stats')).split(' ').map(Number);
          return { runs: runs ?? NaN, ns: ns ?? NaN };
        },
        close,
      };
    },
    async (err: unknown) => {
      await close();
      throw err;
    },
  );
}
