/**
 * Network namespaces for benchmarks: `ip netns add <prefix><pid>-<i>` with
 * `lo` up, and idle loopback connections held inside them by the C load
 * generator (bench/lib/loadgen.c `hold`) started with `ip netns exec`.
 *
 * Names carry the pid, so concurrent runs never collide and a later run can
 * tell a namespace left by a killed run (its pid is dead) from a live one.
 * Everything created is recorded the moment it exists; destroy() kills the
 * holders and deletes exactly those namespaces, and a process 'exit' hook
 * does the same synchronously as a last resort (the holders also die with
 * this process: loadgen sets PR_SET_PDEATHSIG, and `ip netns exec` execs it
 * without forking).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { loadgenBinary, type HeldConnections } from './loadgen.js';

const IP_TIMEOUT_MS = 20_000;

function ip(args: string[], input?: string): string {
  return execFileSync('ip', args, {
    encoding: 'utf8',
    timeout: IP_TIMEOUT_MS,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    ...(input === undefined ? {} : { input }),
  });
}

/** Why namespaces cannot be created here, or undefined. */
export function netnsUnavailable(): string | undefined {
  try {
    ip(['-V']);
  } catch {
    return '`ip` (iproute2) not found: apt-get install iproute2';
  }
  return undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function listNamespaces(): string[] {
  try {
    return ip(['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter(Boolean);
  } catch {
    return [];
  }
}

/** Deletes namespaces by name in one `ip` process (-force: one already gone does not stop the rest). Never throws. */
function deleteQuietly(names: readonly string[]): void {
  if (names.length === 0) return;
  try {
    ip(['-force', '-batch', '-'], names.map((n) => `netns delete ${n}\n`).join(''));
  } catch {
    // some were already gone: -force went on with the others
  }
}

function killNamespaceProcesses(name: string): void {
  let pids: string[] = [];
  try {
    pids = ip(['netns', 'pids', name]).split(/\s+/).filter(Boolean);
  } catch {
    return;
  }
  for (const pid of pids) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * Removes namespaces named `<prefix><pid>-<i>` whose pid is dead (a run killed
 * with SIGKILL cannot clean up after itself), with the processes still in
 * them. Touches no other name. Returns what it removed.
 */
export function removeStaleNamespaces(prefix: string): string[] {
  const re = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(\\d+)-\\d+$`);
  const stale = listNamespaces().filter((name) => {
    const m = re.exec(name);
    if (m === null) return false;
    const pid = Number(m[1]);
    return pid !== process.pid && !isAlive(pid);
  });
  for (const name of stale) killNamespaceProcesses(name);
  deleteQuietly(stale);
  return stale;
}

/** A set of namespaces this process created, and the holders running in them. */
export interface BenchNamespaces {
  readonly names: readonly string[];
  /**
   * Holds `count` idle established loopback connections inside namespace
   * `name` (one `loadgen hold` child; both ends in the namespace) until
   * release() or destroy().
   */
  hold(name: string, count: number, timeoutMs?: number): Promise<HeldConnections>;
  /** Kills every holder and deletes every namespace of this set. Idempotent, synchronous, never throws. */
  destroy(): void;
}

const live = new Set<BenchNamespaces>();
let exitHook = false;

/**
 * Creates `count` namespaces `<prefix><pid>-<i>` with `lo` up. On failure
 * the ones already made are deleted before the error is thrown.
 */
export function createNamespaces(prefix: string, count: number): BenchNamespaces {
  const names: string[] = [];
  const children = new Set<ChildProcess>();
  let destroyed = false;
  const set: BenchNamespaces = {
    names,
    hold: (name, n, timeoutMs = 30_000) => holdIn(name, n, timeoutMs, children),
    destroy() {
      if (destroyed) return;
      destroyed = true;
      live.delete(set);
      for (const c of children) {
        if (c.exitCode === null && c.signalCode === null) {
          try {
            c.kill('SIGKILL');
          } catch {
            // already gone
          }
        }
      }
      children.clear();
      // A namespace stays alive while a socket or process holds it; deleting
      // the name (the bind mount under /run/netns) is what frees it once the
      // killed holders are gone.
      deleteQuietly(names);
    },
  };
  live.add(set);
  if (!exitHook) {
    exitHook = true;
    process.on('exit', () => {
      for (const s of [...live]) s.destroy();
    });
  }
  try {
    for (let i = 0; i < count; i++) {
      const name = `${prefix}${process.pid}-${i}`;
      ip(['netns', 'add', name]);
      names.push(name);
      ip(['-n', name, 'link', 'set', 'lo', 'up']);
    }
  } catch (err) {
    set.destroy();
    throw err;
  }
  return set;
}

function holdIn(name: string, count: number, timeoutMs: number, children: Set<ChildProcess>): Promise<HeldConnections> {
  const bin = loadgenBinary();
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', name, bin, 'hold', String(count)], { stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let err = '';
    let ready = false;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.once('exit', () => children.delete(child));
    const release = async (): Promise<void> => {
      child.stdin!.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`loadgen hold ${count} in ${name}: not ready within ${timeoutMs} ms`));
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
        reject(new Error(`loadgen hold in ${name} printed: ${out}`));
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`loadgen hold in ${name} exited with ${code ?? signal}: ${err.trim()}`));
    });
  });
}
