import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { formatProblems, zodProblems } from '../../src/config/errors.js';
import { createBoundedServer, httpServerKeys, type HttpServerSettings } from '../../src/config/httpServer.js';
import { makeTestCa } from '../helpers/testCa.js';

const schema = z.strictObject(httpServerKeys('127.0.0.1:1', 8));
const settings = (extra: Record<string, unknown> = {}): HttpServerSettings => schema.parse({ endpoint: '127.0.0.1:0', ...extra });

function problems(input: unknown): string {
  const r = schema.safeParse(input);
  assert.equal(r.success, false, 'expected a validation error');
  return formatProblems(zodProblems(['exporters', 'prometheus'], r.error!));
}

async function listen(s: HttpServerSettings): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createBoundedServer(s, (_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Resolves with the ms until the peer closes a connection that sends nothing. */
function idleUntilClosed(port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const s = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`still open after ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

describe('HTTP server settings', () => {
  it('parse with defaults and name bad keys by path', () => {
    const d = schema.parse({});
    assert.deepEqual(d, { endpoint: '127.0.0.1:1', max_connections: 8, read_header_timeout: 10_000, idle_timeout: 60_000 });
    assert.equal(problems({ allowed_clients: ['10.0.0.0/33'] }), 'exporters.prometheus.allowed_clients[0]: must be an IP address or CIDR, e.g. 10.0.0.0/8 or fd00::/8');
    assert.equal(problems({ allowed_clients: [] }).split(':')[0], 'exporters.prometheus.allowed_clients');
    assert.equal(problems({ max_connections: 0 }).split(':')[0], 'exporters.prometheus.max_connections');
    assert.equal(problems({ read_header_timeout: '0s' }), 'exporters.prometheus.read_header_timeout: must be greater than 0');
    assert.equal(problems({ tls: { cert_file: 'c.pem' } }).split(':')[0], 'exporters.prometheus.tls.key_file');
    assert.equal(problems({ tls: { cert_file: 'c', key_file: 'k', ca: 'x' } }), 'exporters.prometheus.tls.ca: unknown key');
  });

  it('allowed_clients: others get 403, listed addresses and CIDRs are served', async () => {
    const denied = await listen(settings({ allowed_clients: ['10.0.0.0/8', 'fd00::/8'] }));
    const allowed = await listen(settings({ allowed_clients: ['10.0.0.0/8', '127.0.0.0/8'] }));
    const single = await listen(settings({ allowed_clients: ['127.0.0.1'] }));
    try {
      const d = await fetch(`http://127.0.0.1:${denied.port}/`);
      assert.deepEqual([d.status, await d.text()], [403, 'forbidden\n']);
      for (const s of [allowed, single]) {
        const r = await fetch(`http://127.0.0.1:${s.port}/`);
        assert.deepEqual([r.status, await r.text()], [200, 'ok']);
      }
    } finally {
      await Promise.all([denied.close(), allowed.close(), single.close()]);
    }
  });

  it('a connection that sends nothing is closed after read_header_timeout; excess connections at accept', async () => {
    const s = await listen(settings({ read_header_timeout: '300ms', max_connections: 2 }));
    const held: Socket[] = [];
    try {
      const ms = await idleUntilClosed(s.port, 5_000);
      assert.ok(ms >= 250 && ms < 2_000, `closed after ${ms} ms (timeout 300 ms, checked every 150 ms)`);
      // Two held, the third is closed at once.
      for (let i = 0; i < 2; i++) {
        const c = connect(s.port, '127.0.0.1');
        c.on('error', () => undefined);
        held.push(c);
        await new Promise((r) => c.once('connect', r));
      }
      const third = await idleUntilClosed(s.port, 5_000);
      assert.ok(third < 250, `the connection past max_connections is closed at accept: ${third} ms`);
    } finally {
      for (const c of held) c.destroy();
      await s.close();
    }
  });

  it('tls: serves HTTPS, and with client_ca_file only clients with a certificate of that CA', async (t) => {
    const ca = makeTestCa();
    t.after(() => ca.remove());
    const plain = await listen(settings({ tls: { cert_file: ca.serverCertFile, key_file: ca.serverKeyFile } }));
    const mutual = await listen(settings({ tls: { cert_file: ca.serverCertFile, key_file: ca.serverKeyFile, client_ca_file: ca.caFile } }));
    const get = (port: number, withCert: boolean): Promise<number> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port,
            path: '/',
            servername: ca.serverName,
            ca: ca.read(ca.caFile),
            ...(withCert ? { cert: ca.read(ca.clientCertFile), key: ca.read(ca.clientKeyFile) } : {}),
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end();
      });
    try {
      assert.equal(await get(plain.port, false), 200, 'HTTPS');
      assert.equal(await get(mutual.port, true), 200, 'mutual TLS with a client certificate');
      await assert.rejects(get(mutual.port, false), 'mutual TLS refuses a client without one');
    } finally {
      await Promise.all([plain.close(), mutual.close()]);
    }
  });

  it('a missing TLS file is an error naming the key and the path', () => {
    assert.throws(
      () => createBoundedServer(settings({ tls: { cert_file: '/nonexistent/c.pem', key_file: '/nonexistent/k.pem' } }), () => undefined),
      /^Error: tls\.cert_file \/nonexistent\/c\.pem: ENOENT/,
    );
  });
});

