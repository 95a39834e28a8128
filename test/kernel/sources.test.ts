// test-kind: kernel
/**
 * Every periodic-report source reports the same running totals of
 * long-lived connections between two test "pods" (network namespaces):
 * exact payload bytes while open (idle, busy, half-closed), nothing invented
 * for sockets the probe never saw open, namespaces that come and go, and a
 * namespace that cannot be entered. A source this kernel refuses is skipped
 * with the kernel's reason in the output (sourceSkipReason).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { RecordIsnKnown } from '../../src/receiver/ebpf/layout.js';
import {
  collect,
  INBOUND,
  kernelSkipReason,
  openProbe,
  OUTBOUND,
  readRecords,
  RECORD_OPEN,
  RECORD_REPORT,
  sourceSkipReason,
  withKernelFixture,
  type BpfProbe,
  type RawRecord,
} from '../helpers/kernel.js';
import { deadlineMs } from '../helpers/deadline.js';
import { createPodNetwork } from '../helpers/netns.js';

const skip = kernelSkipReason();
const WALKING = ['sk_storage_iter', 'tcp_iter', 'sock_diag'] as const;
const PER_NAMESPACE = ['tcp_iter', 'sock_diag'] as const;
const ALL = [...WALKING, 'rtt_cb'] as const;
const reasons: Record<string, string | undefined> = Object.fromEntries(
  await Promise.all(ALL.map(async (s) => [s, skip ?? (await sourceSkipReason(s))] as const)),
);

/**
 * A TCP end driven line by line on stdin: `write N` (then prints
 * {"wrote": total}), `end` (FIN, half-close), `stats` (prints {"received"}),
 * `destroy`. As a server it accepts one connection (allowHalfOpen: it never
 * answers a FIN by itself) and prints {"listening": port}; as a client it
 * prints {"connected": localPort}.
 */
const END_SCRIPT = String.raw`
import net from 'node:net';
import readline from 'node:readline';
const cfg = JSON.parse(process.argv[1]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
let sock, received = 0, wrote = 0;
const use = (s) => {
  sock = s;
  s.on('data', (d) => { received += d.length; });
  s.on('end', () => out({ peerEnded: received }));
  s.on('error', (e) => out({ error: e.code }));
};
readline.createInterface({ input: process.stdin }).on('line', (l) => {
  const [cmd, arg] = l.trim().split(' ');
  if (cmd === 'write') { const n = Number(arg); wrote += n; sock.write(Buffer.alloc(n, 0x61), () => out({ wrote })); }
  else if (cmd === 'end') sock.end(() => out({ ended: true }));
  else if (cmd === 'stats') out({ received });
  else if (cmd === 'destroy') { sock.destroy(); process.exit(0); }
});
if (cfg.mode === 'server') {
  const srv = net.createServer({ allowHalfOpen: true }, (s) => { use(s); out({ accepted: s.remotePort }); srv.close(); });
  srv.listen(0, cfg.host, () => out({ listening: srv.address().port }));
} else {
  const c = net.connect({ host: cfg.host, port: cfg.port, allowHalfOpen: true }, () => out({ connected: c.localPort }));
  use(c);
}
`;

/** One END_SCRIPT process, in a namespace. */
class End {
  private readonly lines: Array<Record<string, unknown>> = [];
  private readonly child: ChildProcessWithoutNullStreams;
  constructor(netns: string, cfg: Record<string, unknown>) {
    this.child = spawn('ip', ['netns', 'exec', netns, process.execPath, '--input-type=module', '-e', END_SCRIPT, JSON.stringify(cfg)], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    createInterface({ input: this.child.stdout }).on('line', (l) => this.lines.push(JSON.parse(l) as Record<string, unknown>));
    live.add(this);
  }
  /** The first line (after `from`) carrying `key`; bounded wait. */
  async wait(key: string, from = 0, timeoutMs = deadlineMs(10_000)): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; i < timeoutMs / 10 + 1; i++) {
      const hit = this.lines.slice(from).find((l) => key in l);
      if (hit !== undefined) return hit;
      if (Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no "${key}" within ${timeoutMs} ms: ${JSON.stringify(this.lines)}`);
  }
  /** Sends a command and waits for the reply line carrying `key`. */
  async ask(command: string, key: string): Promise<Record<string, unknown>> {
    const from = this.lines.length;
    this.child.stdin.write(command + '\n');
    return this.wait(key, from);
  }
  kill(): void {
    this.child.kill('SIGKILL');
    live.delete(this);
  }
}
const live = new Set<End>();
after(() => {
  for (const e of live) e.kill();
});

/** A connection from pod `client` to pod `server` (both namespaces of `pods`). */
async function connectPods(pods: ReturnType<typeof createPodNetwork>): Promise<{ server: End; client: End; port: number; clientPort: number }> {
  const [serverPod, clientPod] = pods.pods;
  const server = new End(serverPod!.netns, { mode: 'server', host: serverPod!.ipv4 });
  const port = (await server.wait('listening')).listening as number;
  const client = new End(clientPod!.netns, { mode: 'client', host: serverPod!.ipv4, port });
  const clientPort = (await client.wait('connected')).connected as number;
  await server.wait('accepted');
  return { server, client, port, clientPort };
}

/**
 * Walks until `done` holds for this connection's reports (the last ACK may
 * lag a little), at most 100 walks; returns the last walk's reports.
 */
async function walkUntil(probe: BpfProbe, port: number, done: (rs: RawRecord[]) => boolean): Promise<RawRecord[]> {
  let reports: RawRecord[] = [];
  for (let i = 0; i < 100; i++) {
    reports = readRecords(probe.iterate()).filter((r) => r.kind === RECORD_REPORT && r.dstPort === port);
    if (done(reports)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return reports;
}

/**
 * The two OPEN records of a fresh connection on `port` (drained from the
 * test's own probe right after connecting, before any walk: a probe nobody
 * drains fills up with the machine's other connections).
 */
async function opensOf(probe: BpfProbe, port: number): Promise<RawRecord[]> {
  const opens = await collect(probe, (r) => r.kind === RECORD_OPEN && r.dstPort === port, (got) => got.length >= 2);
  assert.equal(opens.length, 2, `an OPEN record per socket: got ${opens.length}, lost ${probe.lostRecords()}`);
  return opens;
}

/**
 * Every report carries the ISN pair of its socket's OPEN record, and both
 * sockets' OPENs the same pair: the pair lives in the per-socket state,
 * whichever source reports.
 */
function assertIsnsKept(opens: RawRecord[], reports: RawRecord[]): void {
  const pair = (r: RawRecord): string => `${r.isnKnown}:${r.isnClient}/${r.isnServer}`;
  assert.equal(pair(opens[0]!), pair(opens[1]!), 'both sockets opened with the same ISN pair');
  assert.equal(opens[0]!.isnKnown, RecordIsnKnown.ISN_CLIENT_KNOWN | RecordIsnKnown.ISN_SERVER_KNOWN, 'both ISNs known');
  for (const r of reports) assert.equal(pair(r), pair(opens[0]!), `${r.direction === OUTBOUND ? 'client' : 'server'} report carries the pair`);
}

const side = (rs: RawRecord[], dir: number): RawRecord | undefined => rs.find((r) => r.direction === dir);
const totals = (r: RawRecord | undefined): string => (r === undefined ? 'none' : `${r.sentBytes}/${r.receivedBytes}`);

describe('kernel: every periodic-report source reports the same totals', { skip }, () => {
  const k = withKernelFixture({ pods: [31, 32] });

  for (const source of WALKING) {
    it(`${source}: an idle pod-to-pod connection, exact bytes on both sockets while it is open, every walk`, { skip: reasons[source] }, async () => {
      const probe = await openProbe({ source });
      let c: Awaited<ReturnType<typeof connectPods>> | undefined;
      try {
        assert.equal(probe.source(), source);
        c = await connectPods(k.pods);
        const opens = await opensOf(probe, c.port);
        await c.client.ask('write 1000', 'wrote');
        await c.server.ask('write 300', 'wrote');
        const exact = (rs: RawRecord[]): boolean =>
          rs.length === 2 && totals(side(rs, OUTBOUND)) === '1000/300' && totals(side(rs, INBOUND)) === '300/1000';
        const reports = await walkUntil(probe, c.port, exact);
        assert.equal(reports.length, 2, `one report per socket: ${reports.length}`);
        assert.equal(totals(side(reports, OUTBOUND)), '1000/300', 'client: sent 1000, received 300');
        assert.equal(totals(side(reports, INBOUND)), '300/1000', 'server: sent 300, received 1000');
        for (const r of reports) {
          assert.equal(r.srcAddr, k.pods.pods[1]!.ipv4, 'src = client');
          assert.equal(r.dstAddr, k.pods.pods[0]!.ipv4, 'dst = server');
          assert.equal(r.srcPort, c.clientPort);
          assert.ok(r.startNs > 0n && r.eventNs > r.startNs, 'times of an established connection');
        }
        assertIsnsKept(opens, reports);
        // Idle: the next walk reports the same totals again.
        const again = await walkUntil(probe, c.port, exact);
        assert.ok(exact(again), `second walk: ${totals(side(again, OUTBOUND))} ${totals(side(again, INBOUND))}`);
        const stats = probe.lastWalk();
        assert.equal(stats.source, source);
        assert.ok(stats.reported >= 2, `the walk counts its reports: ${stats.reported}`);
        assert.ok(stats.namespaces >= 1, `namespaces walked: ${stats.namespaces}`);
      } finally {
        c?.client.kill();
        c?.server.kill();
        probe.close();
      }
    });

    it(`${source}: a busy connection, reports never ahead of what was written, exact once the writer pauses`, { skip: reasons[source] }, async () => {
      const probe = await openProbe({ source });
      let c: Awaited<ReturnType<typeof connectPods>> | undefined;
      try {
        c = await connectPods(k.pods);
        let written = 0;
        let last = 0n;
        for (let i = 0; i < 20; i++) {
          // Not waiting for the write callback: the walk races the transfer.
          const wrote = c.client.ask('write 65536', 'wrote');
          written += 65_536;
          const out = side(readRecords(probe.iterate()).filter((r) => r.kind === RECORD_REPORT && r.dstPort === c!.port), OUTBOUND);
          if (out !== undefined) {
            assert.ok(out.sentBytes <= BigInt(written), `report ${i}: ${out.sentBytes} sent of ${written} written`);
            assert.ok(out.sentBytes >= last, `report ${i}: monotonic (${out.sentBytes} after ${last})`);
            last = out.sentBytes;
          }
          await wrote;
        }
        const total = BigInt(written);
        const reports = await walkUntil(
          probe,
          c.port,
          (rs) => side(rs, OUTBOUND)?.sentBytes === total && side(rs, INBOUND)?.receivedBytes === total,
        );
        assert.equal(side(reports, OUTBOUND)?.sentBytes, total, 'client: every byte acked');
        assert.equal(side(reports, INBOUND)?.receivedBytes, total, 'server: every byte received');
        assert.equal(side(reports, INBOUND)?.sentBytes, 0n);
      } finally {
        c?.client.kill();
        c?.server.kill();
        probe.close();
      }
    });

    it(`${source}: a half-closed connection (FIN_WAIT2 / CLOSE_WAIT) reports payload only, no FIN byte`, { skip: reasons[source] }, async () => {
      const probe = await openProbe({ source });
      let c: Awaited<ReturnType<typeof connectPods>> | undefined;
      try {
        c = await connectPods(k.pods);
        await c.client.ask('write 777', 'wrote');
        await c.server.ask('write 55', 'wrote');
        await c.client.ask('end', 'ended');
        assert.equal((await c.server.wait('peerEnded')).peerEnded, 777);
        // Once the client's FIN is acked (FIN_WAIT2: our FIN counted in
        // bytes_acked) and the server has it (CLOSE_WAIT: the FIN counted in
        // bytes_received), both FIN corrections apply. Before the ACK the
        // client is in FIN_WAIT1 with the same payload totals.
        const reports = await walkUntil(
          probe,
          c.port,
          (rs) =>
            rs.length === 2 &&
            side(rs, OUTBOUND)?.state === 5 &&
            side(rs, INBOUND)?.state === 8 &&
            totals(side(rs, OUTBOUND)) === '777/55' &&
            totals(side(rs, INBOUND)) === '55/777',
        );
        assert.equal(totals(side(reports, OUTBOUND)), '777/55', `client in FIN_WAIT2 (state ${side(reports, OUTBOUND)?.state})`);
        assert.equal(totals(side(reports, INBOUND)), '55/777', `server in CLOSE_WAIT (state ${side(reports, INBOUND)?.state})`);
        assert.equal(side(reports, OUTBOUND)?.state, 5, 'TCP_FIN_WAIT2');
        assert.equal(side(reports, INBOUND)?.state, 8, 'TCP_CLOSE_WAIT');
      } finally {
        c?.client.kill();
        c?.server.kill();
        probe.close();
      }
    });

    it(`${source}: a connection opened before the probe is never reported (nothing invented)`, { skip: reasons[source] }, async () => {
      const c = await connectPods(k.pods);
      const probe = await openProbe({ source });
      try {
        await c.client.ask('write 10', 'wrote');
        const tracked = await openProbe({ source });
        try {
          // A later probe sees later connections of the same pods: proves the walk reaches them.
          const d = await connectPods(k.pods);
          try {
            await d.client.ask('write 10', 'wrote');
            const seen = await walkUntil(tracked, d.port, (rs) => rs.length === 2);
            assert.equal(seen.length, 2, 'the later connection is reported');
          } finally {
            d.client.kill();
            d.server.kill();
          }
        } finally {
          tracked.close();
        }
        const reports = readRecords(probe.iterate()).filter((r) => r.kind === RECORD_REPORT && r.dstPort === c.port);
        assert.deepEqual(reports, [], 'established before the probe: no state, no report');
      } finally {
        c.client.kill();
        c.server.kill();
        probe.close();
      }
    });
  }

  it('rtt_cb: the sending socket reports while open, at most once per interval; a socket that only receives does not', { skip: reasons.rtt_cb }, async () => {
    const probe = await openProbe({ source: 'rtt_cb', rttIntervalMs: 50 });
    let c: Awaited<ReturnType<typeof connectPods>> | undefined;
    try {
      c = await connectPods(k.pods);
      const opens = await opensOf(probe, c.port);
      const got: RawRecord[] = [];
      for (let i = 0; i < 10; i++) {
        await c.client.ask('write 1000', 'wrote');
        await new Promise((r) => setTimeout(r, 60));
        got.push(...readRecords(probe.drainNow()).filter((r) => r.kind === RECORD_REPORT && r.dstPort === c!.port));
      }
      await new Promise((r) => setTimeout(r, 100));
      got.push(...readRecords(probe.drainNow()).filter((r) => r.kind === RECORD_REPORT && r.dstPort === c!.port));
      const sender = got.filter((r) => r.direction === OUTBOUND);
      assert.ok(sender.length >= 3, `the sender reported while open: ${sender.length} reports`);
      assertIsnsKept(opens, sender);
      assert.equal(got.filter((r) => r.direction === INBOUND).length, 0, 'the pure receiver got no RTT sample, no report');
      for (let i = 1; i < sender.length; i++) {
        assert.ok(sender[i]!.eventNs - sender[i - 1]!.eventNs >= 50_000_000n, `report ${i} at least 50 ms after the previous`);
        assert.ok(sender[i]!.sentBytes >= sender[i - 1]!.sentBytes, `report ${i} monotonic`);
      }
      // Every report's total is a whole number of acked writes, and one is exact.
      for (const r of sender) assert.equal(r.sentBytes % 1000n, 0n, `report of ${r.sentBytes}: whole writes (an RTT sample acks a write)`);
      assert.ok(sender.some((r) => r.sentBytes >= 5000n), `later reports carry later totals: ${sender.map((r) => r.sentBytes).join(', ')}`);
      assert.equal(probe.lastWalk().namespaces, 0, 'no walk: the tick only drains');
    } finally {
      c?.client.kill();
      c?.server.kill();
      probe.close();
    }
  });

  for (const source of PER_NAMESPACE) {
    it(`${source}: namespaces created during the run are walked; a deleted one is released (no fd keeps it alive)`, { skip: reasons[source] }, async () => {
      const probe = await openProbe({ source });
      const late = createPodNetwork([41, 42]);
      let destroyed = false;
      try {
        const before = probe.lastWalk().namespaces;
        const c = await connectPods(late);
        try {
          await c.client.ask('write 4321', 'wrote');
          const reports = await walkUntil(probe, c.port, (rs) => totals(side(rs, OUTBOUND)) === '4321/0');
          assert.equal(totals(side(reports, OUTBOUND)), '4321/0', 'a connection in a namespace made after start is reported');
          assert.ok(probe.lastWalk().namespaces >= before + 2, `the new namespaces are walked: ${before} -> ${probe.lastWalk().namespaces}`);
        } finally {
          c.client.kill();
          c.server.kill();
        }
        // Delete one pod's namespace: its veth pair dies with the namespace,
        // so the host end on the bridge disappears unless something (an fd,
        // a socket made inside) keeps the namespace alive.
        const gone = late.pods[0]!;
        probe.iterate();
        execFileSync('ip', ['netns', 'delete', gone.netns], { timeout: 10_000 });
        probe.iterate();
        assert.deepEqual(
          probe.lastWalk().namespaceFailures.filter((f) => f.path.includes(gone.netns)),
          [],
          'a vanished namespace is not a failure',
        );
        let vethLeft = true;
        for (let i = 0; i < 100 && vethLeft; i++) {
          try {
            execFileSync('ip', ['link', 'show', 'dev', gone.hostVeth], { stdio: 'ignore', timeout: 10_000 });
            await new Promise((r) => setTimeout(r, 20));
          } catch {
            vethLeft = false;
          }
        }
        assert.equal(vethLeft, false, `namespace ${gone.netns} released after delete (its veth ${gone.hostVeth} is gone)`);
        late.destroy();
        destroyed = true;
      } finally {
        if (!destroyed) late.destroy();
        probe.close();
      }
    });

    it(`${source}: a namespace that cannot be entered is reported once, and the walk goes on`, { skip: reasons[source] }, async () => {
      // A file in a netns directory that is an nsfs bind mount, but of a UTS
      // namespace: it passes discovery (nsfs) and setns(CLONE_NEWNET) refuses it.
      const dir = mkdtempSync(join(tmpdir(), 'kmesh-netns-'));
      const bogus = join(dir, 'not-a-netns');
      writeFileSync(bogus, '');
      let mounted = false;
      const { BpfProbe } = await import('../../native/index.js');
      const probe = new BpfProbe(new URL('../../bpf/tcp_probe.bpf.o', import.meta.url).pathname, { wakeupBytes: 65536 });
      try {
        execFileSync('mount', ['--bind', '/proc/self/ns/uts', bogus], { timeout: 10_000 });
        mounted = true;
        probe.load();
        probe.useSource(source, { netnsDirs: [dir, '/run/netns'] });
        const first = probe.lastWalk();
        const mine = first.namespaceFailures.filter((f) => f.path === bogus);
        assert.equal(mine.length, 1, `failure reported: ${JSON.stringify(first.namespaceFailures)}`);
        assert.equal(mine[0]!.first, true);
        assert.match(mine[0]!.reason, /^setns: Invalid argument \(errno 22\)$/);
        assert.ok(first.namespaces >= 3, `the other namespaces were walked: ${first.namespaces}`);
        probe.iterate();
        const second = probe.lastWalk().namespaceFailures.filter((f) => f.path === bogus);
        assert.deepEqual(second.map((f) => f.first), [false], 'counted again, but not the first time: logged once');
      } finally {
        probe.close();
        if (mounted) execFileSync('umount', [bogus], { timeout: 10_000 });
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
