// test-kind: kernel
/**
 * Long-lived connections: the conn_state iterator reports running totals for
 * idle established connections (no traffic, no ringbuf record), on both
 * sockets, in any namespace, through the events ringbuf (and through read()
 * when the ringbuf is full); the reports keep the kernel's order relative to
 * the closes; and the drain thread delivers packed batches.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
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
  sourceSkipReason,
  TCP_ESTABLISHED,
  withKernelFixture,
  type RawRecord,
} from '../helpers/kernel.js';
import { startPeer } from '../helpers/netns.js';

const skip = kernelSkipReason();

/** The sources that walk (rtt_cb reports from sockops itself: see sources.test.ts). */
const WALKING_SOURCES = ['sk_storage_iter', 'tcp_iter', 'sock_diag'] as const;
/** Why this kernel refuses each source (printed as the skip reason), or undefined. */
const sourceSkip: Record<string, string | undefined> = Object.fromEntries(
  await Promise.all(WALKING_SOURCES.map(async (s) => [s, skip ?? (await sourceSkipReason(s))] as const)),
);

/**
 * Loopback churn for argv[1] ms: 16 clients in a loop, each connection held
 * 5-24 ms before the client writes 10 bytes; the server answers 5 and ends.
 * (Long enough that walks catch connections before they close even when a
 * walk takes tens of ms on a loaded machine: the check that some reported
 * connection closes afterwards must hold.)
 * Prints {"port"} at start and {"done"} (connections completed) at the end.
 */
const CHURN_SCRIPT = String.raw`
import net from 'node:net';
const ms = Number(process.argv[1]);
const srv = net.createServer((s) => { s.on('data', () => s.end('hello')); s.on('error', () => {}); });
srv.listen(0, '127.0.0.1', () => {
  const port = srv.address().port;
  console.log(JSON.stringify({ port }));
  const until = Date.now() + ms;
  let inflight = 0, done = 0;
  const one = () => {
    if (Date.now() > until) {
      if (inflight === 0) { console.log(JSON.stringify({ done })); process.exit(0); }
      return;
    }
    inflight++;
    const c = net.connect(port, '127.0.0.1', () => setTimeout(() => c.write('0123456789'), 5 + Math.floor(Math.random() * 20)));
    c.on('data', () => {});
    c.on('end', () => c.end());
    c.on('error', () => {});
    c.on('close', () => { inflight--; done++; one(); });
  };
  for (let i = 0; i < 16; i++) one();
});
`;

describe('kernel: periodic reports and draining', { skip }, () => {
  const k = withKernelFixture();

  it('iterate() reports an idle pod-to-pod connection with current totals, then not after close', async () => {
    const [serverPod, clientPod] = k.pods.pods;
    const server = startPeer(serverPod!.netns, { mode: 'server', host: serverPod!.ipv4, write: 300, expectRead: 1000, hold: true });
    let client: ReturnType<typeof startPeer> | undefined;
    try {
      const port = (await server.waitFor('listening')).port as number;
      client = startPeer(clientPod!.netns, { mode: 'client', host: serverPod!.ipv4, port, write: 1000, hold: true });
      const clientPort = (await client.waitFor('connected')).localPort as number;
      await client.waitFor('holding');
      const mine = byPorts(port, clientPort);
      const myReports = (r: RawRecord): boolean => mine(r) && r.kind === RECORD_REPORT;

      // Both sides established and idle. Bytes are acked asynchronously, so
      // allow a few iterations for the client's 1000 to be acked.
      let reports: RawRecord[] = [];
      for (let i = 0; i < 50; i++) {
        // iterate() also returns the opens still in the ringbuf: keep the reports.
        reports = readRecords(k.probe.iterate()).filter(myReports);
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
      const again = readRecords(k.probe.iterate()).filter(myReports);
      assert.equal(again.length, 2, 'reported on every walk');
      assert.deepEqual(again.map((r) => r.sentBytes).sort(), reports.map((r) => r.sentBytes).sort());

      server.release();
      await client.waitFor('done');
      const closes = await collect(k.probe, mine, (got) => got.filter((r) => r.kind === RECORD_CLOSE).length >= 2);
      assert.equal(closes.filter((r) => r.kind === RECORD_CLOSE).length, 2, 'both sockets closed');
      // Closed sockets leave conn_state (storage deleted at TCP_CLOSE).
      let left: RawRecord[] = [];
      for (let i = 0; i < 50; i++) {
        left = readRecords(k.probe.iterate()).filter(myReports);
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(left.length, 0, 'closed connections are not reported');
    } finally {
      client?.kill();
      server.kill();
    }
  });

  for (const source of ['sk_storage_iter', 'tcp_iter'] as const) {
  it(`a walk over more sockets than a one-page ringbuf holds: every socket, exact totals, through read() when the ring is full (${source})`, { skip: sourceSkip[source] }, async () => {
    // 4 KiB ring: 28 records. The walk must spill into the read() buffer
    // (iter_fallback_records) and still hand over every socket.
    const small = await openProbe({ ringbufBytes: 4096, source });
    const server = createServer((s) => {
      let got = 0;
      s.on('data', (d) => {
        got += d.length;
        if (got === 100) s.write(Buffer.alloc(7, 0x61));
      });
      s.on('error', () => undefined);
    });
    const clients: Socket[] = [];
    const N = 300;
    try {
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
      const port = (server.address() as AddressInfo).port;
      await Promise.all(
        Array.from(
          { length: N },
          () =>
            new Promise<void>((resolve, reject) => {
              const c = connect(port, '127.0.0.1', () => c.write(Buffer.alloc(100, 0x62)));
              clients.push(c);
              let got = 0;
              c.on('data', (d) => {
                got += d.length;
                if (got === 7) resolve();
              });
              c.on('error', reject);
            }),
        ),
      );
      const fallbackBefore = small.iterFallbackRecords();
      const exact = (r: RawRecord): boolean =>
        r.direction === OUTBOUND ? r.sentBytes === 100n && r.receivedBytes === 7n : r.sentBytes === 7n && r.receivedBytes === 100n;
      // The server's 7 bytes may wait for a delayed ACK: walk until every socket is exact.
      let reports: RawRecord[] = [];
      let cookies = new Set<bigint>();
      for (let i = 0; i < 50; i++) {
        reports = readRecords(small.iterate()).filter((r) => r.kind === RECORD_REPORT && r.dstPort === port);
        cookies = new Set(reports.map((r) => r.socketCookie));
        if (cookies.size === 2 * N && reports.every(exact)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(cookies.size, 2 * N, `every socket reported: ${cookies.size} of ${2 * N}`);
      for (const r of reports) {
        assert.ok(exact(r), `exact totals on socket ${r.socketCookie}: sent ${r.sentBytes}, received ${r.receivedBytes}, direction ${r.direction}`);
        assert.equal(r.state, TCP_ESTABLISHED, `state of socket ${r.socketCookie}`);
      }
      // A walk resumed after a full read() buffer can show an element twice
      // when other sockets on the node were created meanwhile (the kernel
      // resumes by position in the bucket); never with different totals.
      const byCookie = new Map<bigint, RawRecord>();
      for (const r of reports) {
        const seen = byCookie.get(r.socketCookie);
        if (seen !== undefined) assert.equal(seen.sentBytes, r.sentBytes, `duplicate of socket ${r.socketCookie} agrees`);
        byCookie.set(r.socketCookie, r);
      }
      assert.ok(reports.length - cookies.size <= N / 10, `few duplicates: ${reports.length - cookies.size}`);
      assert.ok(small.iterFallbackRecords() > fallbackBefore, 'the read() fallback was used');
    } finally {
      for (const c of clients) c.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      small.close();
    }
  });
  }

  for (const source of WALKING_SOURCES)
  for (const mode of ['iterate() + drainNow()', 'iterateAsync() + drain thread'] as const) {
  it(`a report never follows the close of its socket (concurrent churn while walking, ${source}, ${mode})`, { skip: sourceSkip[source] }, async () => {
    // A child churns short loopback connections (each held a few ms) while
    // this process walks and drains in a loop; the records are checked in
    // the order the addon returned them. With iterateAsync() the drain
    // thread keeps consuming during the walk and its callback must hold the
    // records back until the walk's result is delivered.
    const asyncMode = mode.startsWith('iterateAsync');
    const probe = await openProbe({ source });
    const churn = spawn(process.execPath, ['--input-type=module', '-e', CHURN_SCRIPT, '1500'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    createInterface({ input: churn.stdout }).on('line', (l) => lines.push(l));
    const exited = new Promise<void>((resolve) => churn.once('exit', () => resolve()));
    let running = true;
    void exited.then(() => (running = false));
    try {
      const stream: RawRecord[] = [];
      const lostBefore = probe.lostRecords();
      while (lines.length === 0 && running) await new Promise((r) => setTimeout(r, 10));
      assert.ok(lines.length > 0, 'churn child started');
      const port = (JSON.parse(lines[0]!) as { port: number }).port;
      const ours = (r: RawRecord): boolean => r.dstPort === port;
      if (asyncMode) probe.startDrain((b) => stream.push(...readRecords(b).filter(ours)), 20);
      for (let i = 0; running && i < 10_000; i++) {
        if (asyncMode) {
          const walked = await new Promise<Buffer>((resolve, reject) => probe.iterateAsync((err, b) => (err ? reject(err) : resolve(b!))));
          stream.push(...readRecords(walked).filter(ours));
        } else {
          stream.push(...readRecords(probe.iterate()).filter(ours));
          stream.push(...readRecords(probe.drainNow()).filter(ours));
        }
        await new Promise((r) => setImmediate(r));
      }
      await exited;
      if (asyncMode) probe.stopDrain();
      // The last closes (bounded wait).
      const opened = (): Set<bigint> => new Set(stream.filter((r) => r.kind === RECORD_OPEN).map((r) => r.socketCookie));
      const closed = (): Set<bigint> => new Set(stream.filter((r) => r.kind === RECORD_CLOSE).map((r) => r.socketCookie));
      const unclosed = (): boolean => {
        const c = closed();
        return [...opened()].some((o) => !c.has(o));
      };
      for (let i = 0; i < 100 && unclosed(); i++) {
        stream.push(...readRecords(probe.drainNow()).filter(ours));
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(probe.lostRecords(), lostBefore, 'no record lost (else the order check proves nothing)');
      const done = (JSON.parse(lines[1] ?? '{"done":0}') as { done: number }).done;
      // Under CPU emulation (the kernel matrix's TCG guests set
      // KMESH_TEST_EMULATED=1, scripts/kernel-matrix.mjs) wall-clock rates
      // say nothing about the code: 27-43 connections in 1.5 s there. Only
      // this rate threshold is relaxed; the checks below still need walks
      // that overlapped connections' lives.
      const minChurn = process.env.KMESH_TEST_EMULATED === '1' ? 10 : 50;
      assert.ok(done > minChurn, `the child churned connections: ${done}`);
      assert.equal(closed().size, opened().size, 'every opened socket closed');

      const closeOf = new Map<bigint, RawRecord>();
      let reportedThenClosed = 0;
      for (const r of stream) {
        const c = closeOf.get(r.socketCookie);
        if (r.kind === RECORD_REPORT) {
          assert.equal(c, undefined, `report of socket ${r.socketCookie} after its close`);
        } else if (r.kind === RECORD_OPEN) {
          // Records consumed before a walk started must not reach JS after
          // newer ones (the async front end holds drained batches back).
          assert.equal(c, undefined, `open of socket ${r.socketCookie} after its close`);
        } else if (r.kind === RECORD_CLOSE) {
          assert.equal(c, undefined, `one close per socket ${r.socketCookie}`);
          closeOf.set(r.socketCookie, r);
        }
      }
      for (const r of stream) {
        if (r.kind !== RECORD_REPORT) continue;
        const c = closeOf.get(r.socketCookie);
        if (c === undefined) continue;
        reportedThenClosed++;
        // Up to 1 byte over: an iterator reads the socket without its lock,
        // and tcp_data_queue() counts a received FIN in bytes_received
        // (tcp_rcv_nxt_update) just before tcp_fin() sets SOCK_DONE, which
        // payload_totals() corrects by; a report read in between counts the
        // FIN (likewise for the ACK of our FIN: bytes_acked is updated before
        // snd_una in tcp_snd_una_update). Known, see the receiver README.
        assert.ok(
          r.sentBytes <= c.sentBytes + 1n && r.receivedBytes <= c.receivedBytes + 1n,
          `report of ${r.socketCookie} within its final totals: report ${r.sentBytes}/${r.receivedBytes} state ${r.state}, close ${c.sentBytes}/${c.receivedBytes}, direction ${r.direction}`,
        );
      }
      // Otherwise the walks never overlapped a connection's life and the check above proves nothing.
      assert.ok(reportedThenClosed > 0, 'some connections were reported and then closed');
    } finally {
      churn.kill('SIGKILL');
      probe.close();
    }
  });
  }

  it('startDrain delivers whole records in batches without drainNow', async () => {
    // wakeupBytes never reached: only the timer drains.
    const drained = await openProbe({ wakeupBytes: 1 << 20, runTimeStats: true });
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
      assert.ok(stats.statsEnabled, 'run-time stats on when asked for');
      assert.ok(stats.runCount > 0n, 'program ran and stats are on');
    } finally {
      drained.close();
    }
  });
});
