/**
 * The settings every HTTP server of the agent takes (the Prometheus endpoint,
 * the health check), in the Collector's confighttp spelling where it has one,
 * and the server built from them. Why each bound exists: 30,000 idle TCP
 * connections to an unbounded Node server exhausted the agent's file
 * descriptors, `/healthz` and `/metrics` stopped answering and RSS tripled.
 * With these, excess connections are closed at accept (`max_connections`),
 * a connection that sends no complete request head within
 * `read_header_timeout` is dropped, and an idle keep-alive one after
 * `idle_timeout`; each server has its own limits, so flooding `/metrics`
 * does not take `/healthz` down.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { BlockList, isIPv4, isIPv6, type Socket } from 'node:net';
import { z } from 'zod';
import { duration, hostPort } from './types.js';

/** `a.b.c.d/len` or `x::y/len`, or a bare address (a /32 or /128). */
function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address, len, more] = text.split('/');
  if (more !== undefined || address === undefined) return undefined;
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
  if (family === undefined) return undefined;
  const max = family === 'ipv4' ? 32 : 128;
  const prefix = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return undefined;
  return { address, prefix, family };
}

const cidr = z.string().refine((s) => parseCidr(s) !== undefined, { message: 'must be an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8' });

const positiveDuration = duration.pipe(z.number().positive({ message: 'must be greater than 0' }));

/**
 * The keys, for a component's `z.strictObject({...})`. `endpoint` defaults
 * to loopback: a single host's agent is reachable from itself only until the
 * config says otherwise (the DaemonSet binds the node's IP).
 */
export function httpServerKeys(defaultEndpoint: string, defaultMaxConnections: number) {
  return {
    /** host:port to listen on (IPv6 in brackets). */
    endpoint: hostPort.default(defaultEndpoint),
    /** Open connections at most; more are closed at accept. */
    max_connections: z.number().int().positive().max(65_536).default(defaultMaxConnections),
    /** Time a client has to send a complete request head (also bounds a connection that sends nothing). Default 10s. */
    read_header_timeout: positiveDuration.default(10_000),
    /** An idle keep-alive connection is closed after this long. Default 60s. */
    idle_timeout: positiveDuration.default(60_000),
    /**
     * Serve HTTPS: `cert_file` and `key_file` (PEM); with `client_ca_file`,
     * only clients with a certificate that CA signed (mutual TLS). Default: plain HTTP.
     */
    tls: z
      .strictObject({
        cert_file: z.string().min(1),
        key_file: z.string().min(1),
        client_ca_file: z.string().min(1).optional(),
      })
      .optional(),
    /** Client addresses or CIDRs allowed to connect; others get 403. Default: any. */
    allowed_clients: z.array(cidr).min(1).optional(),
  };
}

export interface HttpServerSettings {
  endpoint: string;
  max_connections: number;
  read_header_timeout: number;
  idle_timeout: number;
  tls?: { cert_file: string; key_file: string; client_ca_file?: string | undefined } | undefined;
  allowed_clients?: string[] | undefined;
}

/**
 * An HTTP(S) server with the settings' bounds. TLS files are read here (a
 * missing file is an error at start-up, naming it). `handler` sees only
 * allowed clients.
 */
export function createBoundedServer(settings: HttpServerSettings, handler: (req: IncomingMessage, res: ServerResponse) => void): Server {
  const allowed = allowList(settings.allowed_clients);
  const guarded = (req: IncomingMessage, res: ServerResponse): void => {
    if (allowed !== undefined && !clientAllowed(allowed, req.socket.remoteAddress)) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end('forbidden\n');
      return;
    }
    handler(req, res);
  };
  const options = {
    headersTimeout: settings.read_header_timeout,
    // Must not be below headersTimeout; a scrape's response is streamed, so
    // only the request has to arrive within it.
    requestTimeout: Math.max(settings.read_header_timeout, 30_000),
    keepAliveTimeout: settings.idle_timeout,
    // How often expired request heads are looked for (Node's default is 30 s).
    connectionsCheckingInterval: Math.min(1_000, Math.max(100, Math.floor(settings.read_header_timeout / 2))),
    // TLS: a handshake that never completes is closed as a request head would be.
    handshakeTimeout: settings.read_header_timeout,
  };
  let server: Server;
  if (settings.tls !== undefined) {
    const t = settings.tls;
    const read = (what: string, path: string): Buffer => {
      try {
        return readFileSync(path);
      } catch (err) {
        throw new Error(`tls.${what} ${path}: ${(err as Error).message}`, { cause: err });
      }
    };
    server = createHttps(
      {
        ...options,
        cert: read('cert_file', t.cert_file),
        key: read('key_file', t.key_file),
        ...(t.client_ca_file !== undefined ? { ca: read('client_ca_file', t.client_ca_file), requestCert: true, rejectUnauthorized: true } : {}),
      },
      guarded,
    );
  } else {
    server = createHttp(options, guarded);
  }
  server.maxConnections = settings.max_connections;
  server.timeout = settings.idle_timeout;
  // Node's headersTimeout counts from a request's first byte: a connection
  // that sends nothing at all is never checked (seen: still open after 5 s
  // with a 300 ms timeout). So each connection gets read_header_timeout of
  // inactivity until its first request, then idle_timeout. For TLS the
  // handshake is bounded the same way (handshakeTimeout) and the timer is
  // set on the decrypted socket.
  const armed = (socket: Socket): void => {
    socket.setTimeout(settings.read_header_timeout, () => socket.destroy());
  };
  server.on(settings.tls !== undefined ? 'secureConnection' : 'connection', armed);
  server.on('request', (req: IncomingMessage) => req.socket.setTimeout(settings.idle_timeout));
  return server;
}

function allowList(cidrs: string[] | undefined): BlockList | undefined {
  if (cidrs === undefined) return undefined;
  const list = new BlockList();
  for (const c of cidrs) {
    const p = parseCidr(c)!;
    list.addSubnet(p.address, p.prefix, p.family);
  }
  return list;
}

function clientAllowed(list: BlockList, address: string | undefined): boolean {
  if (address === undefined) return false;
  if (isIPv4(address)) return list.check(address, 'ipv4');
  // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return list.check(mapped[1]!, 'ipv4') || list.check(address, 'ipv6');
  return list.check(address, 'ipv6');
}
