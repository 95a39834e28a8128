/**
 * The pair of initial sequence numbers (client ISN, server ISN) in every
 * record: what joins the two ends of a connection into one trace without any
 * header. For N sequential connections per case, the client socket's records
 * and the server socket's records must carry the same pair, connection by
 * connection, and that pair must be what was on the wire (the SYN's and the
 * SYN-ACK's sequence numbers, captured with AF_PACKET in the client's
 * namespace). Cases: loopback IPv4 and IPv6, pod to pod, data on the third
 * ACK (TCP_DEFER_ACCEPT on either side), TCP Fast Open, SYN cookies, a DNAT in
 * the client's OUTPUT chain and a router doing DNAT + masquerade (the two
 * ends then see different tuples). A failed connect carries the client's ISN
 * alone.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { RecordIsnKnown } from '../../src/receiver/ebpf/layout.js';
import {
  collect,
  ECONNREFUSED,
  INBOUND,
  kernelSkipReason,
  normalizeV6,
  OUTBOUND,
  RECORD_CLOSE,
  RECORD_FAIL,
  RECORD_OPEN,
  withKernelFixture,
  type RawRecord,
} from '../helpers/kernel.js';
import { failedConnects, runHandshakes, type HandshakeOptions, type HandshakeRun } from '../helpers/handshakePeer.js';
import { createRoutedNetwork, getSysctl, natSkipReason, nft, setSysctl, type RoutedNetwork } from '../helpers/natNetwork.js';

const skip = kernelSkipReason();
const natSkip = skip ?? natSkipReason();
const N = 20;
const BOTH = RecordIsnKnown.ISN_CLIENT_KNOWN | RecordIsnKnown.ISN_SERVER_KNOWN;

const u32 = (n: number): string => `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
const addr = (a: string): string => (a.includes(':') ? normalizeV6(a) : a);

/** How to pick out one case's records: the client's view of the server, and the server's own address. */
interface Sides {
  /** What the client connected to (a NAT front address may differ from the server's). */
  frontHost: string;
  frontPort: number;
  serverHost: string;
  serverPort: number;
}

/**
 * Collects the OPEN and CLOSE records of both ends of `run`'s connections and
 * checks the property: per connection (in start order, the connections were
 * sequential), the client's pair equals the server's pair and the wire's; every
 * record of a socket carries its open's pair; the N pairs are distinct.
 */
async function assertPairs(probe: Parameters<typeof collect>[0], run: HandshakeRun, s: Sides, label: string): Promise<void> {
  const clientPorts = new Set(run.clientPorts);
  assert.equal(clientPorts.size, N, `${label}: ${N} connections made`);
  const isClient = (r: RawRecord): boolean =>
    r.direction === OUTBOUND && clientPorts.has(r.srcPort) && r.dstPort === s.frontPort && r.dstAddr === addr(s.frontHost);
  const isServer = (r: RawRecord): boolean => r.direction === INBOUND && r.dstPort === s.serverPort && r.dstAddr === addr(s.serverHost);
  const rs = await collect(
    probe,
    (r) => isClient(r) || isServer(r),
    (got) => got.filter((r) => r.kind === RECORD_CLOSE).length >= 2 * N,
    10_000,
  );
  const side = (pick: (r: RawRecord) => boolean, name: string): RawRecord[] => {
    const opens = rs.filter((r) => pick(r) && r.kind === RECORD_OPEN).sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0));
    assert.equal(opens.length, N, `${label}: ${N} ${name} OPEN records`);
    for (const o of opens) {
      assert.equal(o.isnKnown, BOTH, `${label}: ${name} port ${o.srcPort}: both ISNs known`);
      const closes = rs.filter((r) => pick(r) && r.kind === RECORD_CLOSE && r.socketCookie === o.socketCookie);
      assert.equal(closes.length, 1, `${label}: ${name} socket ${o.socketCookie}: one CLOSE`);
      assert.equal(closes[0]!.isnClient, o.isnClient, `${label}: ${name} CLOSE keeps the client ISN`);
      assert.equal(closes[0]!.isnServer, o.isnServer, `${label}: ${name} CLOSE keeps the server ISN`);
      assert.equal(closes[0]!.isnKnown, BOTH, `${label}: ${name} CLOSE isn_known`);
    }
    return opens;
  };
  const clients = side(isClient, 'client');
  const servers = side(isServer, 'server');
  assert.deepEqual(
    clients.map((r) => r.srcPort),
    run.clientPorts,
    `${label}: client records in connection order`,
  );
  for (let i = 0; i < N; i++) {
    const c = clients[i]!;
    const sv = servers[i]!;
    const what = `${label}: connection ${i} (client port ${c.srcPort})`;
    assert.equal(u32(c.isnClient), u32(run.syn[i]!), `${what}: client record's client ISN = the SYN's sequence number on the wire`);
    assert.equal(u32(c.isnServer), u32(run.synAck[i]!), `${what}: client record's server ISN = the SYN-ACK's sequence number on the wire`);
    assert.equal(u32(sv.isnClient), u32(c.isnClient), `${what}: server record's client ISN = client record's`);
    assert.equal(u32(sv.isnServer), u32(c.isnServer), `${what}: server record's server ISN = client record's`);
  }
  const distinct = new Set(clients.map((c) => `${c.isnClient}/${c.isnServer}`));
  assert.equal(distinct.size, N, `${label}: ${N} different pairs`);
}

describe('kernel: the ISN pair joins both ends of a connection', { skip }, () => {
  const k = withKernelFixture();

  async function pairs(
    label: string,
    o: { serverNs?: string; clientNs?: string; serverHost: string; handshake?: HandshakeOptions; req?: number; resp?: number },
  ): Promise<HandshakeRun> {
    const run = await runHandshakes({ ...o, count: N, req: o.req ?? 100, resp: o.resp ?? 300, capture: true });
    await assertPairs(k.probe, run, { frontHost: o.serverHost, frontPort: run.serverPort, serverHost: o.serverHost, serverPort: run.serverPort }, label);
    return run;
  }

  it(`loopback IPv4: ${N} connections`, async () => {
    await pairs('lo4', { serverHost: '127.0.0.1' });
  });

  it(`loopback IPv6: ${N} connections`, async () => {
    await pairs('lo6', { serverHost: '::1' });
  });

  it(`pod to pod IPv4 and IPv6: ${N} connections each`, async () => {
    const [server, client] = k.pods.pods;
    await pairs('pod4', { serverNs: server!.netns, clientNs: client!.netns, serverHost: server!.ipv4 });
    await pairs('pod6', { serverNs: server!.netns, clientNs: client!.netns, serverHost: server!.ipv6 });
  });

  it('data on the third ACK: TCP_DEFER_ACCEPT on the server, then on the client', async () => {
    const [server, client] = k.pods.pods;
    await pairs('defer-server', { serverNs: server!.netns, clientNs: client!.netns, serverHost: server!.ipv4, handshake: { serverDefer: true } });
    await pairs('defer-client', { serverNs: server!.netns, clientNs: client!.netns, serverHost: server!.ipv4, handshake: { clientDefer: true } });
  });

  it('TCP Fast Open (data in the SYN; net.ipv4.tcp_fastopen=3 in both pods)', async () => {
    const [server, client] = k.pods.pods;
    const saved = [server!, client!].map((p) => [p.netns, getSysctl(p.netns, 'net.ipv4.tcp_fastopen')] as const);
    try {
      for (const [ns] of saved) setSysctl(ns, 'net.ipv4.tcp_fastopen', '3');
      const run = await pairs('tfo', { serverNs: server!.netns, clientNs: client!.netns, serverHost: server!.ipv4, handshake: { tfo: true } });
      // The first connect fetches the cookie; every later SYN carries the request.
      assert.equal(run.synDataAcked, N - 1, 'every connection after the first had its SYN data accepted');
    } finally {
      for (const [ns, value] of saved) setSysctl(ns, 'net.ipv4.tcp_fastopen', value);
    }
  });

  it('SYN cookies on every SYN (net.ipv4.tcp_syncookies=2 in the server pod), IPv4 and IPv6', async () => {
    const [server, client] = k.pods.pods;
    const before = getSysctl(server!.netns, 'net.ipv4.tcp_syncookies');
    try {
      setSysctl(server!.netns, 'net.ipv4.tcp_syncookies', '2');
      await pairs('cookies4', { serverNs: server!.netns, clientNs: client!.netns, serverHost: server!.ipv4 });
      await pairs('cookies6', { serverNs: server!.netns, clientNs: client!.netns, serverHost: server!.ipv6 });
    } finally {
      setSysctl(server!.netns, 'net.ipv4.tcp_syncookies', before);
    }
  });

  it('a refused connect carries the client ISN alone (IPv4 pod, IPv6 loopback)', async () => {
    const [server, client] = k.pods.pods;
    for (const c of [
      { label: 'pod4', clientNs: client!.netns, host: server!.ipv4 },
      { label: 'lo6', clientNs: undefined, host: '::1' },
    ]) {
      // Port 9 (discard): nothing listens on it in the pod or on this machine's loopback in the tests.
      const run = failedConnects({ clientNs: c.clientNs, host: c.host, port: 9, count: 5, capture: true });
      assert.equal(run.errno, 'ECONNREFUSED', `${c.label}: refused`);
      const ports = new Set(run.clientPorts);
      const rs = await collect(
        k.probe,
        (r) => r.kind === RECORD_FAIL && r.direction === OUTBOUND && r.dstPort === 9 && ports.has(r.srcPort) && r.dstAddr === addr(c.host),
        (got) => got.length >= 5,
      );
      assert.equal(rs.length, 5, `${c.label}: 5 FAIL records`);
      // A refused connect leaves no TIME_WAIT, so the next one may reuse its source port
      // (seen on loopback): each record is matched to a connect of its port not matched yet.
      const unmatched = new Set(run.clientPorts.keys());
      for (const r of rs) {
        assert.equal(r.skErr, ECONNREFUSED, `${c.label} port ${r.srcPort}: sk_err`);
        assert.equal(r.isnKnown, RecordIsnKnown.ISN_CLIENT_KNOWN, `${c.label} port ${r.srcPort}: only the client ISN is known`);
        const i = [...unmatched].find((j) => run.clientPorts[j] === r.srcPort && u32(run.syn[j]!) === u32(r.isnClient));
        const synsOfPort = run.clientPorts.flatMap((p, j) => (p === r.srcPort ? [u32(run.syn[j]!)] : []));
        assert.ok(i !== undefined, `${c.label} port ${r.srcPort}: client ISN ${u32(r.isnClient)} = the sequence number of a SYN from that port not matched yet (${synsOfPort.join(', ')})`);
        unmatched.delete(i);
        assert.equal(r.isnServer, 0, `${c.label} port ${r.srcPort}: no server ISN`);
      }
    }
  });
});

describe('kernel: the ISN pair through NAT (tuples differ on the two ends)', { skip: natSkip }, () => {
  const k = withKernelFixture({ pods: [11, 17] });
  let routed: RoutedNetwork | undefined;

  after(() => {
    routed?.destroy();
    const left = routed?.leftovers() ?? [];
    if (left.length > 0) throw new Error(`namespaces left: ${left.join(', ')}`);
  });

  it(`DNAT in the client's OUTPUT chain (10.96.0.10:80 -> server pod): ${N} connections`, async () => {
    const [server, client] = k.pods.pods;
    const front = '10.96.0.10';
    const run = await runHandshakes({
      serverNs: server!.netns,
      clientNs: client!.netns,
      serverHost: server!.ipv4,
      connectHost: front,
      connectPort: () => 80,
      beforeConnect: (port) => {
        // A route for the front address: the first route lookup happens before NAT.
        execFileSync('ip', ['-n', client!.netns, 'route', 'add', '10.96.0.0/16', 'dev', 'eth0'], { timeout: 10_000 });
        nft(client!.netns, `table ip kmt_dnat {\n chain out {\n  type nat hook output priority -100;\n  ip daddr ${front} tcp dport 80 dnat to ${server!.ipv4}:${port}\n }\n}\n`);
      },
      count: N,
      req: 100,
      resp: 300,
      capture: true,
    });
    await assertPairs(k.probe, run, { frontHost: front, frontPort: 80, serverHost: server!.ipv4, serverPort: run.serverPort }, 'dnat-output');
  });

  it(`a router namespace doing DNAT + masquerade: ${N} connections`, async () => {
    routed = createRoutedNetwork();
    const r = routed;
    const run = await runHandshakes({
      serverNs: r.server,
      clientNs: r.client,
      serverHost: r.serverAddr,
      connectHost: r.routerClientSide,
      connectPort: () => 80,
      beforeConnect: (port) => {
        nft(
          r.router,
          `table ip kmt_router {\n chain pre {\n  type nat hook prerouting priority -100;\n  ip daddr ${r.routerClientSide} tcp dport 80 dnat to ${r.serverAddr}:${port}\n }\n chain post {\n  type nat hook postrouting priority 100;\n  oifname "tos" masquerade\n }\n}\n`,
        );
      },
      count: N,
      req: 100,
      resp: 300,
      capture: true,
    });
    await assertPairs(k.probe, run, { frontHost: r.routerClientSide, frontPort: 80, serverHost: r.serverAddr, serverPort: run.serverPort }, 'router-nat');
  });
});
