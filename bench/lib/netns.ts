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
import { execFileSync } from 'node:child_process';
import { holdInOneChild, type HeldConnections } from './loadgen.js';
import { isAlive, killNamespaceProcesses } from '../../test/helpers/netns.js';

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
 * Joins two namespaces of a set with a veth pair (`<prefix>a` in `a`,
 * `<prefix>b` in `b`; names must fit IFNAMSIZ), addresses `addrA/24` and
 * `addrB/24`, MTU `mtu`, both up. The pair goes away with either namespace
 * (destroy()).
 */
export function linkNamespaces(a: string, b: string, ifPrefix: string, addrA: string, addrB: string, mtu: number): { ifA: string; ifB: string } {
  const ifA = `${ifPrefix}a`;
  const ifB = `${ifPrefix}b`;
  ip(['-n', a, 'link', 'add', ifA, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', ifB, 'netns', b, 'mtu', String(mtu)]);
  ip(['-n', a, 'addr', 'add', `${addrA}/24`, 'dev', ifA]);
  ip(['-n', b, 'addr', 'add', `${addrB}/24`, 'dev', ifB]);
  ip(['-n', a, 'link', 'set', ifA, 'up']);
  ip(['-n', b, 'link', 'set', ifB, 'up']);
  return { ifA, ifB };
}

/**
 * Creates `count` namespaces `<prefix><pid>-<i>` with `lo` up. On failure
 * the ones already made are deleted before the error is thrown.
 */
export function createNamespaces(prefix: string, count: number): BenchNamespaces {
  const names: string[] = [];
  let destroyed = false;
  const set: BenchNamespaces = {
    names,
    hold: (name, n, timeoutMs = 30_000) => holdInOneChild(n, timeoutMs, name),
    destroy() {
      if (destroyed) return;
      destroyed = true;
      live.delete(set);
      // The holders (`ip netns exec` execs into loadgen) live in the namespaces.
      for (const name of names) killNamespaceProcesses(name);
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

