// test-kind: kernel
/**
 * The receiver against the real kernel: the BPF object and the native addon,
 * attached at the cgroup v2 root. Loopback traffic only; the test picks out its
 * own connections by the servers' ephemeral ports (everything else the
 * machine does is seen too and ignored). Needs root (CI runs as root), so it
 * is skipped, visibly, for anyone else.
 */
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { Host, Receiver } from '../../../src/component/component.js';
import type { ConnectionEvent } from '../../../src/model/connection.js';
import type { FlowPoint } from '../../../src/model/metrics.js';
import { RawAttr } from '../../../src/model/metrics.js';
import { ebpfReceiverFactory } from '../../../src/receiver/ebpf/factory.js';
import { testSettings } from '../../helpers/settings.js';

const isRoot = process.getuid?.() === 0;
const host: Host = { reportFatalError: (id, err) => assert.fail(`${id}: ${err.message}`) };

const events: ConnectionEvent[] = [];
const points: FlowPoint[] = [];
const servers: Server[] = [];
const sockets: Socket[] = [];
let receiver: Receiver | undefined;

async function listen(hostAddr: string, onConn: (s: Socket) => void): Promise<number> {
  const srv = createServer(onConn);
  servers.push(srv);
  await new Promise<void>((res, rej) => srv.once('error', rej).listen(0, hostAddr, () => res()));
  return (srv.address() as AddressInfo).port;
}

/** Server that reads `expect` bytes, answers `reply` bytes and waits for the client to close. */
async function echoServer(hostAddr: string, expect: number, reply: number): Promise<number> {
  return listen(hostAddr, (s) => {
    let got = 0;
    s.on('data', (d) => {
      got += d.length;
      if (got === expect) s.write(Buffer.alloc(reply, 0x61));
    });
    s.on('end', () => s.end());
    s.on('error', () => undefined);
  });
}

/** Client: connect, send `send` bytes, read `expect` bytes, close. */
async function exchange(hostAddr: string, port: number, send: number, expect: number): Promise<void> {
  await new Promise<void>((res, rej) => {
    const c = connect(port, hostAddr, () => c.write(Buffer.alloc(send, 0x62)));
    let got = 0;
    c.on('data', (d) => {
      got += d.length;
      if (got === expect) c.end();
    });
    c.on('close', () => res());
    c.on('error', rej);
  });
}

async function waitFor<T>(what: string, find: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = find();
    if (v !== undefined) return v;
    if (Date.now() > deadline) return assert.fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const mine = (port: number, kind: ConnectionEvent['kind'], direction: ConnectionEvent['direction']) => (): ConnectionEvent | undefined =>
  events.find((e) => e.dstPort === port && e.kind === kind && e.direction === direction);

function sumPoints(port: number, direction: string): Omit<FlowPoint, 'attributes' | 'durationsSec' | 'rttsSec'> & { durations: number; rtts: number } {
  const out = { opened: 0, closed: 0, failed: 0, sentBytes: 0, receivedBytes: 0, retransmits: 0, lostPackets: 0, durations: 0, rtts: 0 };
  for (const p of points) {
    if (p.attributes[RawAttr.destinationPort] !== String(port) || p.attributes[RawAttr.direction] !== direction) continue;
    out.opened += p.opened;
    out.closed += p.closed;
    out.failed += p.failed;
    out.sentBytes += p.sentBytes;
    out.receivedBytes += p.receivedBytes;
    out.retransmits += p.retransmits;
    out.lostPackets += p.lostPackets;
    out.durations += p.durationsSec.length;
    out.rtts += p.rttsSec.length;
  }
  return out;
}

describe('ebpf receiver on the real kernel', { skip: isRoot ? false : 'needs root (CAP_BPF, CAP_NET_ADMIN): run as root' }, () => {
  before(async () => {
    const config = ebpfReceiverFactory.configSchema.parse({ report_interval: '300ms', drain_interval: '20ms' });
    const settings = testSettings('ebpf');
    const r = ebpfReceiverFactory.createMetrics!(settings, config, { consumeMetrics: (b) => void points.push(...b.points) });
    ebpfReceiverFactory.createLogs!(settings, config, { consumeLogs: (b) => void events.push(...b.entries.map((e) => e.event)) });
    receiver = r;
    await r.start(host);
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
    await receiver?.shutdown();
  });

  it('sees a short IPv4 connection from both sides with exact payload bytes, closed within a drain interval', async () => {
    const port = await echoServer('127.0.0.1', 1000, 300);
    const t0 = BigInt(Date.now()) * 1_000_000n;
    await exchange('127.0.0.1', port, 1000, 300);
    const client = await waitFor('the client close', mine(port, 'close', 'OUTBOUND'));
    const server = await waitFor('the server close', mine(port, 'close', 'INBOUND'));
    assert.equal(client.sentBytes, 1000);
    assert.equal(client.receivedBytes, 300);
    assert.equal(server.sentBytes, 300);
    assert.equal(server.receivedBytes, 1000);
    for (const e of [client, server]) {
      assert.equal(e.family, 4, `${e.direction} family`);
      assert.equal(e.srcAddr, '127.0.0.1', `${e.direction} src`);
      assert.equal(e.dstAddr, '127.0.0.1', `${e.direction} dst`);
      assert.equal(e.srcPort, client.srcPort, `${e.direction}: src is the client port on both sides`);
      assert.equal(e.state, 'CLOSE', `${e.direction} state`);
      assert.ok(e.durationNs > 0, `${e.direction} duration ${e.durationNs}`);
      assert.ok(e.timeUnixNano >= t0 - 5_000_000n && e.timeUnixNano <= BigInt(Date.now() + 5) * 1_000_000n, `${e.direction} timestamp is now-ish`);
      assert.equal(e.failure, undefined);
    }
    const out = sumPoints(port, 'OUTBOUND');
    assert.deepEqual({ ...out, retransmits: 0, lostPackets: 0 }, { opened: 1, closed: 1, failed: 0, sentBytes: 1000, receivedBytes: 300, retransmits: 0, lostPackets: 0, durations: 1, rtts: out.rtts });
    const inb = sumPoints(port, 'INBOUND');
    assert.equal(inb.opened, 1);
    assert.equal(inb.closed, 1);
    assert.equal(inb.sentBytes, 300);
    assert.equal(inb.receivedBytes, 1000);
  });

  it('reports a refused connect as a failure, not an open', async () => {
    const port = await listen('127.0.0.1', () => undefined);
    await new Promise<void>((res) => servers.pop()!.close(() => res()));
    await new Promise<void>((res) => {
      const c = connect(port, '127.0.0.1');
      c.on('error', () => res());
    });
    const fail = await waitFor('the failed connect', mine(port, 'fail', 'OUTBOUND'));
    assert.equal(fail.failure, 'refused');
    assert.equal(fail.durationNs, 0);
    const out = sumPoints(port, 'OUTBOUND');
    assert.equal(out.failed, 1);
    assert.equal(out.opened, 0);
    const p = points.find((pt) => pt.attributes[RawAttr.destinationPort] === String(port) && pt.failed > 0)!;
    assert.equal(p.attributes[RawAttr.failureReason], 'refused');
  });

  it('reports a long-lived connection periodically and counts each byte once', async () => {
    const port = await listen('127.0.0.1', (s) => {
      s.on('data', () => undefined);
      s.on('end', () => s.end());
    });
    const c = connect(port, '127.0.0.1');
    sockets.push(c);
    await new Promise<void>((res) => c.once('connect', () => res()));
    c.write(Buffer.alloc(500));
    const report = await waitFor('a periodic report with the 500 bytes', () =>
      events.find((e) => e.dstPort === port && e.kind === 'report' && e.direction === 'OUTBOUND' && e.sentBytes === 500),
    );
    assert.equal(report.state, 'ESTABLISHED');
    c.write(Buffer.alloc(250));
    await sleep(50);
    await new Promise<void>((res) => c.end(() => res()));
    const close = await waitFor('the close', mine(port, 'close', 'OUTBOUND'));
    assert.equal(close.sentBytes, 750);
    assert.equal(sumPoints(port, 'OUTBOUND').sentBytes, 750, 'reports and close add up to the total, no double count');
    assert.equal(sumPoints(port, 'INBOUND').receivedBytes, 750);
  });

  it('sees IPv6 loopback as ::1 with family 6', async () => {
    const port = await echoServer('::1', 10, 20);
    await exchange('::1', port, 10, 20);
    const client = await waitFor('the IPv6 close', mine(port, 'close', 'OUTBOUND'));
    assert.equal(client.family, 6);
    assert.equal(client.srcAddr, '::1');
    assert.equal(client.dstAddr, '::1');
    assert.equal(client.sentBytes, 10);
    assert.equal(client.receivedBytes, 20);
  });

  it('normalises IPv4 on a dual-stack (AF_INET6) server socket to IPv4', async () => {
    const port = await echoServer('::', 7, 9);
    await exchange('127.0.0.1', port, 7, 9);
    const server = await waitFor('the dual-stack server close', mine(port, 'close', 'INBOUND'));
    assert.equal(server.family, 4);
    assert.equal(server.srcAddr, '127.0.0.1');
    assert.equal(server.dstAddr, '127.0.0.1');
    assert.equal(server.receivedBytes, 7);
    assert.equal(server.sentBytes, 9);
  });
});
