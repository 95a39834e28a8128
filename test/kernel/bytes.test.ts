// test-kind: kernel
/**
 * Exact payload bytes and tuples, on both sockets of real connections:
 * loopback and pod namespaces, IPv4 and IPv6. A client writes N bytes, the
 * server reads them and answers M bytes; the OUTBOUND record must say
 * sent=N/received=M and the INBOUND one sent=M/received=N — no SYN or FIN
 * sequence numbers (Kmesh counts them), src = client and dst = server on both.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  byPorts,
  collect,
  INBOUND,
  kernelSkipReason,
  normalizeV6,
  OUTBOUND,
  RECORD_CLOSE,
  RECORD_OPEN,
  ssCounters,
  TCP_CLOSE,
  TCP_ESTABLISHED,
  withKernelFixture,
  type RawRecord,
} from '../helpers/kernel.js';
import { exchange, startPeer } from '../helpers/netns.js';

const skip = kernelSkipReason();

function only(rs: RawRecord[], kind: number, direction: number): RawRecord {
  const m = rs.filter((r) => r.kind === kind && r.direction === direction);
  assert.equal(m.length, 1, `exactly one kind=${kind} direction=${direction} record, got ${JSON.stringify(rs, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
  return m[0]!;
}

/** Checks open+close on both sides of one connection. */
function assertConnection(
  rs: RawRecord[],
  c: { family: number; client: string; server: string; clientPort: number; serverPort: number; clientWrites: number; serverWrites: number },
): void {
  for (const dir of [OUTBOUND, INBOUND]) {
    const label = dir === OUTBOUND ? 'OUTBOUND' : 'INBOUND';
    const open = only(rs, RECORD_OPEN, dir);
    const close = only(rs, RECORD_CLOSE, dir);
    for (const [name, r] of [['open', open], ['close', close]] as const) {
      assert.equal(r.family, c.family, `${label} ${name} family`);
      assert.equal(r.srcAddr, c.client, `${label} ${name} src = client`);
      assert.equal(r.dstAddr, c.server, `${label} ${name} dst = server`);
      assert.equal(r.srcPort, c.clientPort, `${label} ${name} src port`);
      assert.equal(r.dstPort, c.serverPort, `${label} ${name} dst port`);
      assert.equal(r.origDstPort, 0, `${label} ${name} orig dst unknown`);
      assert.notEqual(r.socketCookie, 0n, `${label} ${name} socket cookie`);
      assert.notEqual(r.netnsCookie, 0n, `${label} ${name} netns cookie`);
      assert.equal(r.skErr, 0, `${label} ${name} sk_err`);
    }
    assert.equal(open.socketCookie, close.socketCookie, `${label}: open and close are the same socket`);
    assert.equal(open.state, TCP_ESTABLISHED, `${label} open state`);
    assert.equal(open.sentBytes, 0n, `${label} open: nothing sent yet (SYN not counted)`);
    assert.equal(open.receivedBytes, 0n, `${label} open: nothing received yet`);
    assert.equal(close.state, TCP_CLOSE, `${label} close state`);
    assert.equal(close.startNs, open.startNs, `${label} start time kept`);
    assert.ok(close.eventNs >= close.startNs, `${label} event after start`);
    const [sent, received] = dir === OUTBOUND ? [c.clientWrites, c.serverWrites] : [c.serverWrites, c.clientWrites];
    assert.equal(close.sentBytes, BigInt(sent), `${label} sent bytes exact`);
    assert.equal(close.receivedBytes, BigInt(received), `${label} received bytes exact`);
    assert.ok(close.segsIn > 0 && close.segsOut > 0, `${label} segment counters`);
    assert.ok(close.minRttUs > 0 && close.minRttUs < 1_000_000, `${label} min rtt in microseconds: ${close.minRttUs}`);
    assert.ok(close.srttUs > 0 && close.srttUs < 1_000_000, `${label} srtt in microseconds (>>3): ${close.srttUs}`);
  }
  const out = only(rs, RECORD_CLOSE, OUTBOUND);
  const inb = only(rs, RECORD_CLOSE, INBOUND);
  assert.notEqual(out.socketCookie, inb.socketCookie, 'two sockets, two cookies');
}

describe('kernel: exact payload bytes and tuples', { skip }, () => {
  const k = withKernelFixture();

  async function run(opts: { serverNs?: string; clientNs?: string; serverHost: string; clientWrites: number; serverWrites: number }) {
    const x = await exchange(opts);
    const rs = await collect(k.probe, byPorts(x.serverPort, x.clientPort), (got) => got.filter((r) => r.kind === RECORD_CLOSE).length >= 2);
    assert.equal(x.client.sent, opts.clientWrites, 'client peer wrote');
    assert.equal(x.client.received, opts.serverWrites, 'client peer read');
    return { x, rs };
  }

  it('loopback IPv4: 1000 bytes out, 300 back', async () => {
    const { x, rs } = await run({ serverHost: '127.0.0.1', clientWrites: 1000, serverWrites: 300 });
    assertConnection(rs, { family: 2, client: '127.0.0.1', server: '127.0.0.1', clientPort: x.clientPort, serverPort: x.serverPort, clientWrites: 1000, serverWrites: 300 });
  });

  it('loopback IPv6: 1000 bytes out, 300 back', async () => {
    const { x, rs } = await run({ serverHost: '::1', clientWrites: 1000, serverWrites: 300 });
    assertConnection(rs, { family: 10, client: normalizeV6('::1'), server: normalizeV6('::1'), clientPort: x.clientPort, serverPort: x.serverPort, clientWrites: 1000, serverWrites: 300 });
  });

  it('pod to pod IPv4 (10.244.0.17 -> 10.244.0.11)', async () => {
    const [server, client] = k.pods.pods;
    const { x, rs } = await run({ serverNs: server!.netns, clientNs: client!.netns, serverHost: server!.ipv4, clientWrites: 1000, serverWrites: 300 });
    assertConnection(rs, { family: 2, client: client!.ipv4, server: server!.ipv4, clientPort: x.clientPort, serverPort: x.serverPort, clientWrites: 1000, serverWrites: 300 });
    const out = rs.find((r) => r.direction === OUTBOUND)!;
    const inb = rs.find((r) => r.direction === INBOUND)!;
    assert.notEqual(out.netnsCookie, inb.netnsCookie, 'client and server live in different namespaces');
  });

  it('pod to pod IPv6 (fd00:10:244::17 -> ::11)', async () => {
    const [server, client] = k.pods.pods;
    const { x, rs } = await run({ serverNs: server!.netns, clientNs: client!.netns, serverHost: server!.ipv6, clientWrites: 1000, serverWrites: 300 });
    assertConnection(rs, { family: 10, client: normalizeV6(client!.ipv6), server: normalizeV6(server!.ipv6), clientPort: x.clientPort, serverPort: x.serverPort, clientWrites: 1000, serverWrites: 300 });
  });

  it('pod to pod, many segments: 5,000,000 bytes out, 1,234,567 back', async () => {
    const [server, client] = k.pods.pods;
    const { x, rs } = await run({ serverNs: server!.netns, clientNs: client!.netns, serverHost: server!.ipv4, clientWrites: 5_000_000, serverWrites: 1_234_567 });
    assertConnection(rs, { family: 2, client: client!.ipv4, server: server!.ipv4, clientPort: x.clientPort, serverPort: x.serverPort, clientWrites: 5_000_000, serverWrites: 1_234_567 });
  });

  it('zero payload: connect and close', async () => {
    const { x, rs } = await run({ serverHost: '127.0.0.1', clientWrites: 0, serverWrites: 0 });
    assertConnection(rs, { family: 2, client: '127.0.0.1', server: '127.0.0.1', clientPort: x.clientPort, serverPort: x.serverPort, clientWrites: 0, serverWrites: 0 });
  });

  /*
   * Documents the kernel behaviour the correction in payload_totals()
   * (bpf/tcp_probe.bpf.c) relies on, so a kernel that changes it fails here
   * first: the client's bytes_acked counts its SYN, the server's does not;
   * an acked FIN adds 1 to bytes_acked, a received FIN 1 to bytes_received.
   */
  it('kernel counters (ss) include SYN and FIN sequence bytes; the records do not', async () => {
    const server = startPeer(undefined, { mode: 'server', host: '127.0.0.1', write: 300, expectRead: 1000, hold: true });
    const listening = await server.waitFor('listening');
    const port = listening.port as number;
    const client = startPeer(undefined, { mode: 'client', host: '127.0.0.1', port, write: 1000, hold: true });
    try {
      const connected = await client.waitFor('connected');
      await client.waitFor('holding');
      // Established, client data delivered and acked; nobody has sent FIN.
      let rows: ReturnType<typeof ssCounters> = [];
      for (let i = 0; i < 50; i++) {
        rows = ssCounters(undefined, port).filter((r) => r.state === 'ESTAB');
        const srv = rows.find((r) => r.local.endsWith(`:${port}`));
        if (srv !== undefined && srv.bytesReceived === 1000 && rows.find((r) => r.peer.endsWith(`:${port}`))?.bytesAcked === 1001) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const cli = rows.find((r) => r.peer.endsWith(`:${port}`));
      const srv = rows.find((r) => r.local.endsWith(`:${port}`));
      assert.ok(cli && srv, `both sockets in ss: ${JSON.stringify(rows)}`);
      assert.equal(cli.bytesAcked, 1001, 'client bytes_acked = 1000 payload + 1 for its SYN');
      assert.equal(srv.bytesAcked, 0, 'server bytes_acked does not count its SYN-ACK');
      assert.equal(srv.bytesReceived, 1000, 'bytes_received does not count the SYN');
      server.release();
      const done = await client.waitFor('done');
      assert.equal(done.received, 300);
      const rs = await collect(k.probe, byPorts(port, connected.localPort as number), (got) => got.filter((r) => r.kind === RECORD_CLOSE).length >= 2);
      assert.equal(only(rs, RECORD_CLOSE, OUTBOUND).sentBytes, 1000n, 'record corrected for SYN and FIN');
      assert.equal(only(rs, RECORD_CLOSE, INBOUND).receivedBytes, 1000n, 'record corrected for FIN');
    } finally {
      client.kill();
      server.kill();
    }
  });
});
