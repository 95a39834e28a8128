/**
 * Long-lived connections: the conn_state iterator reports running totals for
 * idle established connections (no traffic, no ringbuf record), on both
 * sockets, in any namespace; and the drain thread delivers packed batches.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  byPorts,
  collect,
  INBOUND,
  kernelSkipReason,
  openProbe,
  OUTBOUND,
  readRecords,
  RECORD_CLOSE,
  RECORD_OPEN,
  RECORD_REPORT,
  TCP_ESTABLISHED,
  type BpfProbe,
  type RawRecord,
} from '../helpers/kernel.js';
import { createPodNetwork, killAllPeers, removeStaleNamespaces, startPeer, type PodNetwork } from '../helpers/netns.js';

const skip = kernelSkipReason();

describe('kernel: periodic reports and draining', { skip }, () => {
  let probe: BpfProbe | undefined;
  let pods: PodNetwork | undefined;

  before(async () => {
    removeStaleNamespaces();
    probe = await openProbe();
    pods = createPodNetwork([11, 17]);
  });

  after(() => {
    killAllPeers();
    pods?.destroy();
    probe?.close();
  });

  it('iterate() reports an idle pod-to-pod connection with current totals, then not after close', async () => {
    const [serverPod, clientPod] = pods!.pods;
    const server = startPeer(serverPod!.netns, { mode: 'server', host: serverPod!.ipv4, write: 300, expectRead: 1000, hold: true });
    let client: ReturnType<typeof startPeer> | undefined;
    try {
      const port = (await server.waitFor('listening')).port as number;
      client = startPeer(clientPod!.netns, { mode: 'client', host: serverPod!.ipv4, port, write: 1000, hold: true });
      const clientPort = (await client.waitFor('connected')).localPort as number;
      await client.waitFor('holding');
      const mine = byPorts(port, clientPort);

      // Both sides established and idle. Bytes are acked asynchronously, so
      // allow a few iterations for the client's 1000 to be acked.
      let reports: RawRecord[] = [];
      for (let i = 0; i < 50; i++) {
        reports = readRecords(probe!.iterate()).filter(mine);
        const out = reports.find((r) => r.direction === OUTBOUND);
        if (reports.length === 2 && out?.sentBytes === 1000n) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(reports.length, 2, `one report per socket: ${reports.length}`);
      for (const r of reports) {
        assert.equal(r.kind, RECORD_REPORT);
        assert.equal(r.state, TCP_ESTABLISHED);
        assert.equal(r.srcAddr, clientPod!.ipv4, 'src = client');
        assert.equal(r.dstAddr, serverPod!.ipv4, 'dst = server');
        assert.ok(r.startNs > 0n && r.eventNs > r.startNs);
      }
      const out = reports.find((r) => r.direction === OUTBOUND)!;
      const inb = reports.find((r) => r.direction === INBOUND)!;
      assert.equal(out.sentBytes, 1000n, 'client sent so far');
      assert.equal(out.receivedBytes, 0n);
      assert.equal(inb.receivedBytes, 1000n, 'server received so far');
      assert.equal(inb.sentBytes, 0n);

      // A second walk reports the same sockets again (idle: same totals).
      const again = readRecords(probe!.iterate()).filter(mine);
      assert.equal(again.length, 2, 'reported on every walk');
      assert.deepEqual(again.map((r) => r.sentBytes).sort(), reports.map((r) => r.sentBytes).sort());

      server.release();
      await client.waitFor('done');
      const closes = await collect(probe!, mine, (got) => got.filter((r) => r.kind === RECORD_CLOSE).length >= 2);
      assert.equal(closes.filter((r) => r.kind === RECORD_CLOSE).length, 2, 'both sockets closed');
      // Closed sockets leave conn_state (storage deleted at TCP_CLOSE).
      let left: RawRecord[] = [];
      for (let i = 0; i < 50; i++) {
        left = readRecords(probe!.iterate()).filter(mine);
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(left.length, 0, 'closed connections are not reported');
    } finally {
      client?.kill();
      server.kill();
    }
  });

  it('startDrain delivers whole records in batches without drainNow', async () => {
    const drained = await openProbe({ wakeupBytes: 1 << 20 }); // never reached: only the timer drains
    const batches: Buffer[] = [];
    try {
      drained.startDrain((b) => batches.push(b), 50);
      const server = startPeer(undefined, { mode: 'server', host: '127.0.0.1', write: 10, expectRead: 20, connections: 3 });
      const port = (await server.waitFor('listening')).port as number;
      for (let i = 0; i < 3; i++) {
        const c = startPeer(undefined, { mode: 'client', host: '127.0.0.1', port, write: 20 });
        await c.waitFor('done');
      }
      await server.exit();
      const mine = (r: RawRecord): boolean => r.dstPort === port;
      let got: RawRecord[] = [];
      for (let i = 0; i < 100; i++) {
        got = batches.flatMap((b) => readRecords(b)).filter(mine);
        if (got.length >= 12) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(got.filter((r) => r.kind === RECORD_OPEN).length, 6, 'open on both sides of 3 connections');
      assert.equal(got.filter((r) => r.kind === RECORD_CLOSE).length, 6, 'close on both sides of 3 connections');
      assert.ok(batches.length < got.length, `batched, not one call per record (${batches.length} batches)`);
      assert.equal(drained.lostRecords(), 0n, 'nothing lost');
      const stats = drained.programStats();
      assert.ok(stats.runCount > 0n, 'program ran and stats are on');
    } finally {
      drained.close();
    }
  });
});
