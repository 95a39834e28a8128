// test-kind: kernel
/**
 * Failed active opens: SYN_SENT -> CLOSE is seen because the state callback
 * is enabled at TCP_CONNECT_CB, and sk_err carries the reason.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import {
  collect,
  ECONNREFUSED,
  kernelSkipReason,
  normalizeV6,
  OUTBOUND,
  RECORD_FAIL,
  TCP_CLOSE,
  withKernelFixture,
  type RawRecord,
} from '../helpers/kernel.js';
import { startPeer } from '../helpers/netns.js';

const skip = kernelSkipReason();

/** A loopback port nobody listens on: bind, read the port, close. */
async function closedLoopbackPort(host: string): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, host, resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

describe('kernel: failed connects', { skip }, () => {
  const k = withKernelFixture();

  async function refused(netns: string | undefined, host: string, port: number): Promise<RawRecord> {
    const peer = startPeer(netns, { mode: 'refused', host, port });
    try {
      const e = await peer.waitFor('error');
      assert.equal(e.code, 'ECONNREFUSED', 'the application saw a refused connect');
    } finally {
      peer.kill();
    }
    const rs = await collect(k.probe, (r) => r.dstPort === port, (got) => got.some((r) => r.kind === RECORD_FAIL));
    const fails = rs.filter((r) => r.kind === RECORD_FAIL);
    assert.equal(fails.length, 1, `one RECORD_FAIL for port ${port}: ${rs.length} records of ours`);
    assert.equal(rs.length, 1, 'no open/close records for a connection that never established');
    const f = fails[0]!;
    assert.equal(f.skErr, ECONNREFUSED, 'sk_err = ECONNREFUSED');
    assert.equal(f.direction, OUTBOUND);
    assert.equal(f.state, TCP_CLOSE);
    assert.equal(f.sentBytes, 0n);
    assert.equal(f.receivedBytes, 0n);
    assert.ok(f.startNs > 0n && f.eventNs >= f.startNs, 'start = connect time');
    assert.notEqual(f.srcPort, 0, 'source port bound at connect');
    return f;
  }

  it('loopback IPv4 closed port -> RECORD_FAIL with ECONNREFUSED (111)', async () => {
    const port = await closedLoopbackPort('127.0.0.1');
    const f = await refused(undefined, '127.0.0.1', port);
    assert.equal(f.family, 2);
    assert.equal(f.srcAddr, '127.0.0.1');
    assert.equal(f.dstAddr, '127.0.0.1');
  });

  it('loopback IPv6 closed port -> RECORD_FAIL with ECONNREFUSED', async () => {
    const port = await closedLoopbackPort('::1');
    const f = await refused(undefined, '::1', port);
    assert.equal(f.family, 10);
    assert.equal(f.dstAddr, normalizeV6('::1'));
  });

  it('pod to pod closed port -> RECORD_FAIL with the pod tuple', async () => {
    const [server, client] = k.pods.pods;
    // Nothing listens in the server pod's fresh namespace; any port is closed.
    const port = 40000 + (process.pid % 20000);
    const f = await refused(client!.netns, server!.ipv4, port);
    assert.equal(f.srcAddr, client!.ipv4);
    assert.equal(f.dstAddr, server!.ipv4);
    assert.equal(f.dstPort, port);
  });
});
