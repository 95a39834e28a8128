/**
 * "Pods" for kernel tests: network namespaces joined by a Linux bridge through
 * veth pairs, each with a pod-like IPv4 (10.244.0.x/24) and IPv6
 * (fd00:10:244::x/64) address, plus small Node TCP peers run inside them with
 * `ip netns exec`.
 *
 * Isolation: the bridge has no address and no uplink, so pods reach only each
 * other; nothing leaves the machine and the host's routes are untouched (two
 * test runs can both use 10.244.0.11 on their own bridges). Names carry the
 * pid so concurrent runs never collide, and every object is recorded the
 * moment it exists so `destroy()` removes exactly what was created, also after
 * a half-finished setup. A process 'exit' hook is the last-resort cleanup.
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { deadlineMs } from './deadline.js';

const IP_TIMEOUT_MS = 10_000;

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', timeout: IP_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
}

function ipQuiet(args: string[]): void {
  try {
    ip(args);
  } catch {
    // cleanup: the object may already be gone (deleting a namespace removes its veth pair)
  }
}

/** One pod: a namespace with eth0 on the bridge. */
export interface Pod {
  /** Network namespace name (for `ip netns exec`). */
  readonly netns: string;
  /** Pod IPv4 address without prefix, e.g. 10.244.0.11. */
  readonly ipv4: string;
  /** Pod IPv6 address without prefix, e.g. fd00:10:244::11. */
  readonly ipv6: string;
  /** Host-side veth name (on the bridge). */
  readonly hostVeth: string;
}

export interface PodNetwork {
  readonly bridge: string;
  readonly pods: readonly Pod[];
  /** Removes every namespace, veth and the bridge this network created. Idempotent, never throws. */
  destroy(): void;
}

let networkCounter = 0;
const liveNetworks = new Set<PodNetwork>();
let exitHookInstalled = false;

/** Prefix of every namespace this helper creates; the pid follows it. */
export const NETNS_PREFIX = 'kmt-';

/**
 * Creates a bridge and one namespace per host number (the last octet of
 * 10.244.0.x and the last group of fd00:10:244::x), all up and addressed.
 * IPv6 addresses use `nodad` so they are usable at once.
 */
export function createPodNetwork(hostNumbers: readonly number[] = [11, 17]): PodNetwork {
  const id = `${process.pid.toString(36)}${(networkCounter++).toString(36)}`;
  const bridge = `kmbr${id}`; // IFNAMSIZ: <= 15 chars (pid in base 36 is at most 5)
  const created = { bridge: false, namespaces: [] as string[], veths: [] as string[] };
  const pods: Pod[] = [];
  let destroyed = false;
  const net: PodNetwork = {
    bridge,
    pods,
    destroy() {
      if (destroyed) return;
      destroyed = true;
      liveNetworks.delete(net);
      for (const ns of created.namespaces) {
        killNamespaceProcesses(ns);
        ipQuiet(['netns', 'delete', ns]);
      }
      for (const v of created.veths) ipQuiet(['link', 'delete', v]);
      if (created.bridge) ipQuiet(['link', 'delete', bridge]);
    },
  };
  liveNetworks.add(net);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const n of [...liveNetworks]) n.destroy();
    });
  }
  try {
    ip(['link', 'add', bridge, 'type', 'bridge']);
    created.bridge = true;
    ip(['link', 'set', bridge, 'up']);
    hostNumbers.forEach((host, i) => {
      if (!Number.isInteger(host) || host < 1 || host > 254) throw new Error(`bad pod host number ${host}`);
      const netns = `${NETNS_PREFIX}${process.pid}-${networkCounter - 1}-${host}`;
      const hostVeth = `kmv${id}-${i}`;
      const podVeth = `kmp${id}-${i}`;
      ip(['netns', 'add', netns]);
      created.namespaces.push(netns);
      ip(['link', 'add', hostVeth, 'type', 'veth', 'peer', 'name', podVeth]);
      created.veths.push(hostVeth);
      ip(['link', 'set', podVeth, 'netns', netns]);
      ip(['link', 'set', hostVeth, 'master', bridge]);
      ip(['link', 'set', hostVeth, 'up']);
      const ipv4 = `10.244.0.${host}`;
      const ipv6 = `fd00:10:244::${host}`;
      const inNs = (args: string[]): string => ip(['-n', netns, ...args]);
      inNs(['link', 'set', podVeth, 'name', 'eth0']);
      inNs(['link', 'set', 'lo', 'up']);
      inNs(['addr', 'add', `${ipv4}/24`, 'dev', 'eth0']);
      inNs(['-6', 'addr', 'add', `${ipv6}/64`, 'dev', 'eth0', 'nodad']);
      inNs(['link', 'set', 'eth0', 'up']);
      pods.push({ netns, ipv4, ipv6, hostVeth });
    });
  } catch (err) {
    net.destroy();
    throw err;
  }
  return net;
}

/** SIGKILLs every process in namespace `ns` (`ip netns pids`). */
export function killNamespaceProcesses(ns: string): void {
  let pids: string[] = [];
  try {
    pids = ip(['netns', 'pids', ns]).split(/\s+/).filter(Boolean);
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
 * Removes namespaces left by earlier runs of this helper whose process is
 * dead (a test runner killed with SIGKILL cannot clean up after itself).
 * Touches only names with this helper's prefix.
 */
export function removeStaleNamespaces(): string[] {
  const removed: string[] = [];
  let list = '';
  try {
    list = ip(['netns', 'list']);
  } catch {
    return removed;
  }
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${NETNS_PREFIX}(\\d+)-`).exec(name);
    if (m === null) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isAlive(pid)) continue;
    killNamespaceProcesses(name);
    ipQuiet(['netns', 'delete', name]);
    removed.push(name);
  }
  return removed;
}

/** Whether process `pid` exists (EPERM: it does, owned by someone else). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ---------------------------------------------------------------------------
// TCP peers
// ---------------------------------------------------------------------------

/**
 * The peer program, run with `node --input-type=module -e`. Protocol: one JSON
 * object per stdout line. Byte counts are exact by construction:
 * - server: accepts `connections` connections; on each reads until
 *   `expectRead` bytes arrived, then writes `write` bytes and ends (FIN);
 *   reports {event:'served', received, sent, remotePort} on socket close;
 *   with `hold`, waits for a line "release" on stdin before writing.
 * - client: connects, reports {event:'connected', localPort, localAddress},
 *   writes `write` bytes, reads until the server's FIN, then ends and
 *   reports {event:'done', sent, received}; with `hold`, reports
 *   {event:'holding'} after writing and waits for "release" on stdin before
 *   telling the server to proceed (the server holds too).
 * - refused: connects to a port nobody listens on; reports {event:'error', code}.
 */
const PEER_SCRIPT = String.raw`
import net from 'node:net';
import readline from 'node:readline';
const cfg = JSON.parse(process.argv[1]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const released = new Promise((resolve) => {
  if (!cfg.hold) return resolve();
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', (l) => { if (l.trim() === 'release') { rl.close(); resolve(); } });
});
const fail = (e) => { out({ event: 'error', code: e.code ?? String(e) }); process.exit(cfg.mode === 'refused' ? 0 : 1); };
if (cfg.mode === 'server') {
  let served = 0;
  const srv = net.createServer((s) => {
    let received = 0, wrote = false;
    const remotePort = s.remotePort;
    const maybeWrite = () => {
      if (wrote || received < cfg.expectRead) return;
      wrote = true;
      released.then(() => s.end(Buffer.alloc(cfg.write, 0x61)));
    };
    s.on('data', (d) => { received += d.length; maybeWrite(); });
    s.on('error', fail);
    s.on('close', () => {
      out({ event: 'served', received, sent: cfg.write, remotePort });
      if (++served >= cfg.connections) srv.close(() => process.exit(0));
    });
    maybeWrite();
  });
  srv.on('error', fail);
  srv.listen({ host: cfg.host, port: cfg.port ?? 0 }, () => out({ event: 'listening', port: srv.address().port }));
} else if (cfg.mode === 'client') {
  let received = 0;
  const c = net.connect({ host: cfg.host, port: cfg.port, localAddress: cfg.localAddress }, () => {
    out({ event: 'connected', localPort: c.localPort, localAddress: c.localAddress });
    c.write(Buffer.alloc(cfg.write, 0x62), () => { if (cfg.hold) out({ event: 'holding' }); });
  });
  c.on('data', (d) => { received += d.length; });
  c.on('end', () => c.end());
  c.on('error', fail);
  c.on('close', () => { out({ event: 'done', sent: cfg.write, received }); process.exit(0); });
} else if (cfg.mode === 'refused') {
  const c = net.connect({ host: cfg.host, port: cfg.port });
  c.on('connect', () => { out({ event: 'connected' }); c.destroy(); process.exit(1); });
  c.on('error', fail);
}
`;

export interface PeerConfig {
  mode: 'server' | 'client' | 'refused';
  host: string;
  port?: number;
  localAddress?: string;
  /** Bytes this peer writes. */
  write?: number;
  /** Server: bytes to read before answering. */
  expectRead?: number;
  /** Server: connections to serve before exiting (default 1). */
  connections?: number;
  /** Wait for release() before the server answers / after the client wrote. */
  hold?: boolean;
}

export type PeerEvent = { event: string } & Record<string, unknown>;

/** A running peer: its JSON events, bounded waits and a kill that always works. */
export class Peer {
  readonly events: PeerEvent[] = [];
  readonly stderr: string[] = [];
  private readonly waiters = new Set<() => void>();
  private exitCode: number | null | undefined = undefined;

  constructor(private readonly child: ChildProcessWithoutNullStreams, readonly label: string) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        this.events.push(JSON.parse(line) as PeerEvent);
      } catch {
        this.stderr.push(`(stdout) ${line}`);
      }
      this.wake();
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => this.stderr.push(d));
    // 'close', not 'exit': a peer's last lines (`done`) can still be in its
    // stdout pipe when 'exit' fires, and a waitFor() would then see the exit
    // without the event (seen once in the kernel matrix: "exited (0) before
    // 'done'"). 'close' comes after the pipes are read to their end.
    child.on('close', (code) => {
      this.exitCode = code;
      this.wake();
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get exited(): boolean {
    return this.exitCode !== undefined;
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  /** Resolves with the first event named `name`; rejects on timeout or on exit without it. */
  waitFor(name: string, timeoutMs = deadlineMs(10_000)): Promise<PeerEvent> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const e = this.events.find((x) => x.event === name);
        if (e !== undefined) {
          done();
          resolve(e);
          return true;
        }
        if (this.exited) {
          done();
          reject(new Error(`${this.label}: exited (${this.exitCode}) before '${name}'; events ${JSON.stringify(this.events)}; stderr ${this.stderr.join('')}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: no '${name}' within ${timeoutMs} ms; events ${JSON.stringify(this.events)}; stderr ${this.stderr.join('')}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(listener);
      };
      const listener = (): void => void check();
      this.waiters.add(listener);
      check();
    });
  }

  /** Lets a `hold` peer continue. */
  release(): void {
    this.child.stdin.write('release\n');
  }

  /** Waits for the process to exit (bounded); kills it on timeout. */
  async exit(timeoutMs = deadlineMs(10_000)): Promise<number | null> {
    if (!this.exited) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.kill();
          resolve();
        }, timeoutMs);
        this.child.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.exitCode ?? null;
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

const livePeers = new Set<Peer>();

/** Starts a peer in `netns` (or in the current namespace when undefined). */
export function startPeer(netns: string | undefined, cfg: PeerConfig, label = `${cfg.mode}@${netns ?? 'host'}`): Peer {
  const full = { write: 0, expectRead: 0, connections: 1, hold: false, ...cfg };
  const nodeArgs = ['--input-type=module', '-e', PEER_SCRIPT, JSON.stringify(full)];
  const child =
    netns === undefined
      ? spawn(process.execPath, nodeArgs, { stdio: ['pipe', 'pipe', 'pipe'] })
      : spawn('ip', ['netns', 'exec', netns, process.execPath, ...nodeArgs], { stdio: ['pipe', 'pipe', 'pipe'] });
  const peer = new Peer(child, label);
  livePeers.add(peer);
  child.on('exit', () => livePeers.delete(peer));
  return peer;
}

/** Kills every peer still running (for `after` hooks). */
export function killAllPeers(): void {
  for (const p of livePeers) p.kill();
}

process.on('exit', killAllPeers);

/**
 * Runs one complete exchange: a server in `serverNs` and a client in
 * `clientNs`, the client writing `clientWrites` and the server answering
 * with `serverWrites` after reading all of it. Resolves with the client's
 * local port once both sides have closed.
 */
export async function exchange(opts: {
  serverNs?: string;
  clientNs?: string;
  serverHost: string;
  clientWrites: number;
  serverWrites: number;
  timeoutMs?: number;
}): Promise<{ serverPort: number; clientPort: number; client: PeerEvent; server: PeerEvent }> {
  const timeoutMs = opts.timeoutMs ?? deadlineMs(15_000);
  const server = startPeer(opts.serverNs, {
    mode: 'server',
    host: opts.serverHost,
    write: opts.serverWrites,
    expectRead: opts.clientWrites,
  });
  let client: Peer | undefined;
  try {
    const listening = await server.waitFor('listening', timeoutMs);
    const serverPort = listening.port as number;
    client = startPeer(opts.clientNs, { mode: 'client', host: opts.serverHost, port: serverPort, write: opts.clientWrites });
    const connected = await client.waitFor('connected', timeoutMs);
    const done = await client.waitFor('done', timeoutMs);
    const served = await server.waitFor('served', timeoutMs);
    return { serverPort, clientPort: connected.localPort as number, client: done, server: served };
  } finally {
    client?.kill();
    server.kill();
  }
}
