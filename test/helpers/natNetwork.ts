/**
 * NAT set-ups for kernel tests, all inside namespaces the test creates:
 * - {@link natSkipReason}: why the NAT cases cannot run here (a real load of their rules);
 * - {@link createRoutedNetwork}: client -- router -- server namespaces joined
 *   by veth pairs (10.245.1.0/24 and 10.245.2.0/24), the router forwarding;
 * - {@link nft}: rules applied inside one namespace (they vanish with it).
 * Namespace names carry the NETNS_PREFIX and the pid, so a crashed run's
 * leftovers are removed by removeStaleNamespaces(); `destroy()` removes what
 * was created, also after a half-finished set-up, and never throws.
 */
import { execFileSync } from 'node:child_process';
import { killNamespaceProcesses, NETNS_PREFIX } from './netns.js';

const TIMEOUT_MS = 10_000;

function run(cmd: string, args: string[], input?: string): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: TIMEOUT_MS, input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** What the NAT cases load (isn.test.ts): nat chains, dnat and masquerade. */
const PROBE_RULESET = `table ip kmt_probe {
 chain pre {
  type nat hook prerouting priority -100;
  ip daddr 10.245.1.1 tcp dport 80 dnat to 10.245.2.2:8080
 }
 chain post {
  type nat hook postrouting priority 100;
  oifname "tos" masquerade
 }
}
`;

const why = (err: unknown): string => {
  const e = err as { stderr?: string; message: string };
  return (e.stderr?.trim() || e.message).replace(/\s+/g, ' ');
};

/**
 * Why NAT tests cannot run here, or undefined. Not a feature probe: the
 * rules the tests need are loaded in a throw-away namespace, so a kernel
 * without nf_tables' NAT (or a guest that did not load its modules) is named
 * with the kernel's own answer, as is a missing `nft` binary.
 */
export function natSkipReason(): string | undefined {
  try {
    run('nft', ['--version']);
  } catch (err) {
    return `no usable nft binary (Debian: apt-get install nftables): ${why(err)}`;
  }
  const ns = `${NETNS_PREFIX}${process.pid}-natprobe`;
  try {
    run('ip', ['netns', 'add', ns]);
    run('ip', ['netns', 'exec', ns, 'nft', '-f', '-'], PROBE_RULESET);
    return undefined;
  } catch (err) {
    return `this kernel refuses the NAT rules the tests load (nat chains, dnat, masquerade), in a test namespace: ${why(err)}`;
  } finally {
    try {
      run('ip', ['netns', 'delete', ns]);
    } catch {
      // never created
    }
  }
}

/** Loads an nft ruleset (text) inside namespace `netns`. */
export function nft(netns: string, ruleset: string): void {
  try {
    run('ip', ['netns', 'exec', netns, 'nft', '-f', '-'], ruleset);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`nft in ${netns}: ${e.stderr ?? e.message}`);
  }
}

/** Reads a sysctl inside `netns` (e.g. `net.ipv4.tcp_fastopen`). */
export function getSysctl(netns: string, key: string): string {
  return run('ip', ['netns', 'exec', netns, 'sysctl', '-n', key]).trim();
}

/** Sets a sysctl inside `netns`. */
export function setSysctl(netns: string, key: string, value: string): void {
  run('ip', ['netns', 'exec', netns, 'sysctl', '-q', '-w', `${key}=${value}`]);
}

export interface RoutedNetwork {
  /** Namespaces: the client, the router between the two links, the server. */
  readonly client: string;
  readonly router: string;
  readonly server: string;
  readonly clientAddr: string; // 10.245.1.2
  readonly routerClientSide: string; // 10.245.1.1 (the client's gateway)
  readonly routerServerSide: string; // 10.245.2.1 (the server's gateway)
  readonly serverAddr: string; // 10.245.2.2
  /** Removes the three namespaces (their veths go with them). Idempotent, never throws. */
  destroy(): void;
  /** Namespace names that still exist (for cleanup checks). */
  leftovers(): string[];
}

let counter = 0;

/**
 * client (10.245.1.2) -- (10.245.1.1) router (10.245.2.1) -- (10.245.2.2) server,
 * each side's default route through the router, forwarding on in the router.
 */
export function createRoutedNetwork(): RoutedNetwork {
  const id = `${process.pid}-nat${counter++}`;
  const names = { client: `${NETNS_PREFIX}${id}-c`, router: `${NETNS_PREFIX}${id}-r`, server: `${NETNS_PREFIX}${id}-s` };
  const created: string[] = [];
  let destroyed = false;
  const net: RoutedNetwork = {
    ...names,
    clientAddr: '10.245.1.2',
    routerClientSide: '10.245.1.1',
    routerServerSide: '10.245.2.1',
    serverAddr: '10.245.2.2',
    destroy() {
      if (destroyed) return;
      destroyed = true;
      for (const ns of created) {
        killNamespaceProcesses(ns);
        try {
          run('ip', ['netns', 'delete', ns]);
        } catch {
          // already gone
        }
      }
    },
    leftovers() {
      const list = run('ip', ['netns', 'list']);
      return created.filter((ns) => list.split('\n').some((l) => l.split(' ')[0] === ns));
    },
  };
  const ip = (args: string[]): void => void run('ip', args);
  try {
    for (const ns of [names.client, names.router, names.server]) {
      ip(['netns', 'add', ns]);
      created.push(ns);
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    }
    // veth pairs created inside the router namespace, one end moved out: no host-side names at all.
    ip(['-n', names.router, 'link', 'add', 'toc', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', names.client]);
    ip(['-n', names.router, 'link', 'add', 'tos', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', names.server]);
    ip(['-n', names.router, 'addr', 'add', '10.245.1.1/24', 'dev', 'toc']);
    ip(['-n', names.router, 'addr', 'add', '10.245.2.1/24', 'dev', 'tos']);
    ip(['-n', names.router, 'link', 'set', 'toc', 'up']);
    ip(['-n', names.router, 'link', 'set', 'tos', 'up']);
    ip(['-n', names.client, 'addr', 'add', '10.245.1.2/24', 'dev', 'eth0']);
    ip(['-n', names.client, 'link', 'set', 'eth0', 'up']);
    ip(['-n', names.client, 'route', 'add', 'default', 'via', '10.245.1.1']);
    ip(['-n', names.server, 'addr', 'add', '10.245.2.2/24', 'dev', 'eth0']);
    ip(['-n', names.server, 'link', 'set', 'eth0', 'up']);
    ip(['-n', names.server, 'route', 'add', 'default', 'via', '10.245.2.1']);
    setSysctl(names.router, 'net.ipv4.ip_forward', '1');
  } catch (err) {
    net.destroy();
    throw err;
  }
  return net;
}
