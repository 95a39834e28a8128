/**
 * The C load generator (bench/lib/loadgen.c): compiled with `cc` into a
 * temporary directory at bench time, run as a child process, 127.0.0.1 only,
 * bounded by time and connection count. Children are tracked so an
 * interrupted run kills them (they also die with their parent: PDEATHSIG).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('./loadgen.c', import.meta.url));
const children = new Set<ChildProcess>();
let compiled: { dir: string; bin: string } | undefined;

/** Kills every load generator still running (run.ts calls it on exit and on signals). */
export function killLoadgens(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      try {
        c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  children.clear();
}

/** Removes the compiled binary's directory. */
export function removeLoadgenBinary(): void {
  if (compiled) rmSync(compiled.dir, { recursive: true, force: true });
  compiled = undefined;
}

/** Compiles loadgen.c once per process (into a fresh temp dir) and returns the binary's path. */
export function loadgenBinary(): string {
  if (compiled) return compiled.bin;
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-bench-'));
  const bin = join(dir, 'loadgen');
  const cc = process.env.CC ?? 'cc';
  try {
    execFileSync(cc, ['-O2', '-Wall', '-pthread', '-o', bin, SOURCE], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`compiling ${SOURCE} with ${cc} failed (needs a C compiler, e.g. apt-get install gcc): ${e.stderr?.toString() ?? e.message}`);
  }
  compiled = { dir, bin };
  // Also when used outside run.ts (e.g. captureRecords from another script).
  process.once('exit', () => {
    killLoadgens();
    removeLoadgenBinary();
  });
  return bin;
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export interface ChurnOptions {
  seconds: number;
  /** Stop after this many completed connections (0: time bound only). */
  maxConnections?: number;
  clients?: number;
  servers?: number;
  ports?: number;
  requestBytes?: number;
  responseBytes?: number;
  /** Total connections/s to pace at (0 or absent: as fast as possible). */
  rate?: number;
}

export interface ChurnResult {
  connections: number;
  seconds: number;
  errors: number;
  ports: number[];
  cpu_user_s: number;
  cpu_sys_s: number;
  /** connections / seconds */
  rate: number;
}

/** Runs one bounded churn (connect, write, read, close) against 127.0.0.1 and returns its counts. */
export function runChurn(opts: ChurnOptions): Promise<ChurnResult> {
  const bin = loadgenBinary();
  const args = [
    'churn',
    String(opts.seconds),
    String(opts.maxConnections ?? 0),
    String(opts.clients ?? 16),
    String(opts.servers ?? 16),
    String(opts.ports ?? 8),
    String(opts.requestBytes ?? 64),
    String(opts.responseBytes ?? 64),
    String(opts.rate ?? 0),
  ];
  return new Promise((resolve, reject) => {
    const child = track(spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    // Hard bound on top of the generator's own: its duration plus 15 s.
    const timer = setTimeout(() => child.kill('SIGKILL'), (opts.seconds + 15) * 1000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`loadgen churn exited with ${code ?? signal}: ${err.trim()}`));
      try {
        const r = JSON.parse(out.trim()) as Omit<ChurnResult, 'rate'>;
        resolve({ ...r, rate: r.connections / r.seconds });
      } catch {
        reject(new Error(`loadgen churn printed no result: ${out} ${err}`));
      }
    });
  });
}

export interface HeldConnections {
  count: number;
  /** Server ports on 127.0.0.1 the held connections go to. */
  ports: number[];
  /** Closes every held connection and waits for the generator to exit. */
  release(): Promise<void>;
}

/**
 * Most connections one hold child opens: both ends live in the child (2 fds
 * each) and RLIMIT_NOFILE's hard limit may not be raisable (no
 * CAP_SYS_RESOURCE in a container): stay under a hard limit of 20,000.
 */
const HOLD_PER_CHILD = 9_000;

/** Opens `count` idle established loopback connections (in ceil(count / 9000) children) and holds them until release(). */
export async function holdConnections(count: number, timeoutMs = 60_000): Promise<HeldConnections> {
  const parts: HeldConnections[] = [];
  try {
    for (let left = count; left > 0; left -= HOLD_PER_CHILD) {
      parts.push(await holdInOneChild(Math.min(left, HOLD_PER_CHILD), timeoutMs));
    }
  } catch (err) {
    await Promise.all(parts.map((p) => p.release()));
    throw err;
  }
  return {
    count: parts.reduce((s, p) => s + p.count, 0),
    ports: parts.flatMap((p) => p.ports),
    release: async () => {
      await Promise.all(parts.map((p) => p.release()));
    },
  };
}

/**
 * One `loadgen hold` child holding `count` idle established loopback
 * connections until release(); inside network namespace `netns` (through
 * `ip netns exec`) when given. Tracked like every load generator.
 */
export function holdInOneChild(count: number, timeoutMs: number, netns?: string): Promise<HeldConnections> {
  const bin = loadgenBinary();
  const where = netns === undefined ? '' : ` in ${netns}`;
  return new Promise((resolve, reject) => {
    const child = track(
      netns === undefined
        ? spawn(bin, ['hold', String(count)], { stdio: ['pipe', 'pipe', 'pipe'] })
        : spawn('ip', ['netns', 'exec', netns, bin, 'hold', String(count)], { stdio: ['pipe', 'pipe', 'pipe'] }),
    );
    let out = '';
    let err = '';
    let ready = false;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const release = async (): Promise<void> => {
      child.stdin!.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`loadgen hold ${count}${where}: not ready within ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdin!.on('error', () => {
      // the holder is gone (killed): nothing to close
    });
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (ready || !out.includes('\n')) return;
      ready = true;
      clearTimeout(timer);
      try {
        const r = JSON.parse(out.trim()) as { ready: number; ports: number[] };
        resolve({ count: r.ready, ports: r.ports, release });
      } catch {
        void release();
        reject(new Error(`loadgen hold${where} printed: ${out}`));
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`loadgen hold${where} exited with ${code ?? signal}: ${err.trim()}`));
    });
  });
}

/** A `loadgen sink` child: reads and discards whatever connects to `addr:port`. */
export interface BulkSink {
  port: number;
  /** The sink's pid (in the sink's network namespace: /proc/<pid>/net/dev shows its interfaces). */
  pid: number;
  /** Closes the sink and waits for it to exit. Idempotent. */
  stop(): Promise<void>;
}

/** Spawns `bin args` directly or, with `netns`, through `ip netns exec` (which execs it: same pid). */
function spawnIn(netns: string | undefined, bin: string, args: string[]): ChildProcess {
  return track(
    netns === undefined
      ? spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn('ip', ['netns', 'exec', netns, bin, ...args], { stdio: ['pipe', 'pipe', 'pipe'] }),
  );
}

/** Starts `loadgen sink addr` (inside `netns` when given) and waits for its port. */
export function startSink(addr: string, netns?: string, timeoutMs = 10_000): Promise<BulkSink> {
  const child = spawnIn(netns, loadgenBinary(), ['sink', addr]);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      child.stdin!.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    })());
  child.stdin!.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`loadgen sink ${addr}: no port within ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (!out.includes('\n')) return;
      clearTimeout(timer);
      try {
        resolve({ port: (JSON.parse(out.trim()) as { port: number }).port, pid: child.pid!, stop });
      } catch {
        void stop();
        reject(new Error(`loadgen sink printed: ${out}`));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`loadgen sink ${addr} exited with ${code ?? signal}: ${err.trim()}`));
    });
  });
}

export interface BulkResult {
  bytes: number;
  seconds: number;
  errors: number;
  cpu_user_s: number;
  cpu_sys_s: number;
}

/** Runs `loadgen send`: `streams` connections writing to addr:port for `seconds` (inside `netns` when given). */
export function runSend(addr: string, port: number, seconds: number, streams: number, netns?: string): Promise<BulkResult> {
  const child = spawnIn(netns, loadgenBinary(), ['send', addr, String(port), String(seconds), String(streams)]);
  child.stdin!.end();
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), (seconds + 15) * 1000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`loadgen send exited with ${code ?? signal}: ${err.trim()}`));
      try {
        resolve(JSON.parse(out.trim()) as BulkResult);
      } catch {
        reject(new Error(`loadgen send printed no result: ${out} ${err}`));
      }
    });
  });
}
