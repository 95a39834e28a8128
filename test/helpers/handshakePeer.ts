/**
 * Runs test/helpers/handshakePeer.c: N sequential connections with handshake
 * variants Node's net module cannot make (TCP_DEFER_ACCEPT, TCP Fast Open).
 * The C source is compiled once per process into a temporary directory that
 * an exit hook removes; both peers are bounded (30 s alarm in the program,
 * timeouts here) and killed on any failure.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('./handshakePeer.c', import.meta.url));
let compiled: { dir: string; bin: string } | undefined;

/** The compiled peer (compiled on first use). Throws with the compiler's message. */
export function handshakePeerBinary(): string {
  if (compiled) return compiled.bin;
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-test-'));
  const bin = join(dir, 'handshake-peer');
  const cc = process.env.CC ?? 'cc';
  try {
    execFileSync(cc, ['-O2', '-Wall', '-Werror', '-o', bin, SOURCE], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`compiling ${SOURCE} with ${cc} failed: ${e.stderr?.toString() ?? e.message}`);
  }
  compiled = { dir, bin };
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return bin;
}

/** The handshake variant of both peers. */
export interface HandshakeOptions {
  /** TCP_DEFER_ACCEPT on the listener: the handshake completes with the first data. */
  serverDefer?: boolean;
  /** TCP_DEFER_ACCEPT on the client: its third ACK waits for (and carries) data. */
  clientDefer?: boolean;
  /** TCP Fast Open on both sides (the namespaces' net.ipv4.tcp_fastopen must allow it). */
  tfo?: boolean;
}

export interface HandshakeRun {
  serverPort: number;
  /** The client's local port of each connection, in order. */
  clientPorts: number[];
  /** Connections whose SYN data the server acknowledged (TCPI_OPT_SYN_DATA). */
  synDataAcked: number;
  /** With `capture`: each connection's SYN and SYN-ACK sequence numbers as seen on the wire (-1: not seen). */
  syn: number[];
  synAck: number[];
  /** With `fail`: the errno name of the failed connects (e.g. ECONNREFUSED). */
  errno: string;
}

function inNs(netns: string | undefined, argv: string[]): [string, string[]] {
  return netns === undefined ? [argv[0]!, argv.slice(1)] : ['ip', ['netns', 'exec', netns, ...argv]];
}

/**
 * `count` connections from `clientNs` to `connectHost`:`connectPort ?? the
 * server's port` (a NAT address may stand in for the server's), the server
 * listening on `serverHost` in `serverNs`; each connection carries `req`
 * bytes out and `resp` back.
 */
export async function runHandshakes(opts: {
  serverNs?: string;
  clientNs?: string;
  serverHost: string;
  connectHost?: string;
  /** Port to connect to given the server's real port (e.g. a DNAT's front port). */
  connectPort?: (serverPort: number) => number;
  /** Called with the server's port before the client starts (to install NAT rules). */
  beforeConnect?: (serverPort: number) => void;
  count: number;
  req: number;
  resp: number;
  handshake?: HandshakeOptions;
  /** Capture the SYN / SYN-ACK sequence numbers on the client's wire (AF_PACKET in its namespace). */
  capture?: boolean;
  timeoutMs?: number;
}): Promise<HandshakeRun> {
  const bin = handshakePeerBinary();
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const h = opts.handshake ?? {};
  const serverFlags = [...(h.serverDefer ? ['defer'] : []), ...(h.tfo ? ['tfo'] : [])];
  const clientFlags = [...(h.clientDefer ? ['defer'] : []), ...(h.tfo ? ['tfo'] : []), ...(opts.capture ? ['capture'] : [])];
  const [cmd, args] = inNs(opts.serverNs, [bin, 'serve', opts.serverHost, String(opts.count), String(opts.req), String(opts.resp), ...serverFlags]);
  const server = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  server.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const lines: string[] = [];
  const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
  try {
    const serverPort = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`handshake server: no port within ${timeoutMs} ms; stderr ${stderr}`)), timeoutMs);
      createInterface({ input: server.stdout }).on('line', (line) => {
        lines.push(line);
        const m = /^\{"port":(\d+)\}$/.exec(line);
        if (m !== null) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        } else if (line.includes('"error"')) {
          clearTimeout(timer);
          reject(new Error(`handshake server: ${line}`));
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`handshake server exited (${code}) before listening: ${lines.join(' ')} ${stderr}`));
      });
    });
    opts.beforeConnect?.(serverPort);
    const port = opts.connectPort?.(serverPort) ?? serverPort;
    const result = runClient(opts.clientNs, [bin, 'connect', opts.connectHost ?? opts.serverHost, String(port), String(opts.count), String(opts.req), String(opts.resp), ...clientFlags], timeoutMs);
    const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), timeoutMs))]);
    if (code !== 0) throw new Error(`handshake server ended with ${code}: ${lines.join(' ')} ${stderr}`);
    return { ...result, serverPort };
  } finally {
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
}

function runClient(netns: string | undefined, argv: string[], timeoutMs: number): Omit<HandshakeRun, 'serverPort'> {
  const [cmd, args] = inNs(netns, argv);
  let out: string;
  try {
    out = execFileSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`handshake client failed: ${e.stdout ?? ''} ${e.stderr ?? e.message}`);
  }
  const r = JSON.parse(out.trim()) as { ports: number[]; syn_data_acked: number; errno: string; syn: number[]; synack: number[] };
  return { clientPorts: r.ports, synDataAcked: r.syn_data_acked, errno: r.errno, syn: r.syn, synAck: r.synack };
}

/**
 * `count` connects from `clientNs` to `host`:`port` where nobody listens,
 * each expected to fail; with `capture`, the SYNs' sequence numbers too.
 */
export function failedConnects(opts: { clientNs?: string; host: string; port: number; count: number; capture?: boolean; timeoutMs?: number }): Omit<HandshakeRun, 'serverPort'> {
  const argv = [handshakePeerBinary(), 'connect', opts.host, String(opts.port), String(opts.count), '1', '0', 'fail', ...(opts.capture ? ['capture'] : [])];
  return runClient(opts.clientNs, argv, opts.timeoutMs ?? 20_000);
}
