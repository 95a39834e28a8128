// Which periodic-report source the agent's `auto` picks on this kernel, and
// what one walk of it costs over 10,000 tracked sockets. Runs in every leg of
// the kernel matrix (host and guests), under tsx so that it goes through the
// agent's own ladder (choosePeriodicSource, src/receiver/ebpf/periodicSource.ts)
// and the addon (native/index.js) exactly as the receiver does.
//
//   node --import tsx scripts/vm/periodic-source.mjs [CONNECTIONS]   (root)
//
// Prints one JSON line: { kernel, source, skipped: [{source, reason}],
// sockets, walks: [ms...], walkMs (median), reported (own sockets in the last
// walk), namespaces, others: { <source>: the same figures } } — `others` are
// the other walking sources this kernel loads, for comparison on one kernel
// (one probe each, all attached before the connections open, walks rotated). The connections are loopback pairs held by this
// process (both ends tracked: 2 sockets each), opened after the probe is
// attached (a source reports only connections whose open it saw), closed
// before it exits; the whole run is bounded (exits 3 after 180 s).
import { readFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { setTimeout } from 'node:timers';
import { BpfProbe, defaultObjectPath } from '../../native/index.js';
import { choosePeriodicSource } from '../../src/receiver/ebpf/periodicSource.js';
import { RECORD_SIZE, RecordKind, RecordLayout } from '../../src/receiver/ebpf/layout.js';

const CONNECTIONS = Number(process.argv[2] ?? 5_000);
const WALKS = 5;
const CGROUP = process.env.KMESH_TEST_CGROUP ?? '/sys/fs/cgroup/unified';
setTimeout(() => {
  console.error('periodic-source: no result within 180 s');
  process.exit(3);
}, 180_000).unref();

const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
const probes = [];
const server = createServer((s) => s.on('error', () => undefined));
const clients = [];
const result = { kernel, source: 'none', skipped: [], sockets: 0, walks: [], walkMs: null, reported: 0, namespaces: 0, others: {} };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
try {
  // The agent's choice, through its ladder.
  const auto = new BpfProbe(defaultObjectPath, { wakeupBytes: 64 * 1024 });
  probes.push({ kind: 'auto', probe: auto });
  auto.load();
  const choice = choosePeriodicSource(auto, 'auto', {});
  result.source = choice.source;
  result.skipped = choice.skipped;
  // For comparison on the same kernel: every other source with a walk that loads here.
  for (const kind of ['sk_storage_iter', 'tcp_iter', 'sock_diag']) {
    if (kind === choice.source || choice.skipped.some((x) => x.source === kind)) continue;
    const p = new BpfProbe(defaultObjectPath, { wakeupBytes: 64 * 1024 });
    probes.push({ kind, probe: p });
    try {
      p.load();
      p.useSource(kind, {});
    } catch (err) {
      result.others[kind] = { error: err.message.split('\n')[0] };
      probes.pop().probe.close();
    }
  }
  for (const { probe } of probes) probe.attachCgroup(CGROUP);
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  // In batches: a burst of 5,000 SYNs overflows the accept backlog.
  for (let i = 0; i < CONNECTIONS; i += 250) {
    const batch = [];
    for (let j = i; j < Math.min(CONNECTIONS, i + 250); j++) {
      batch.push(
        new Promise((resolve, reject) => {
          const c = connect(port, '127.0.0.1', resolve);
          c.once('error', reject);
          clients.push(c);
        }),
      );
    }
    await Promise.all(batch);
    for (const { probe } of probes) probe.drainNow();
  }
  result.sockets = 2 * CONNECTIONS;
  const ownReports = (buf) => {
    let n = 0;
    for (let o = 0; o + RECORD_SIZE <= buf.length; o += RECORD_SIZE) {
      if (buf[o + RecordLayout.kind.offset] === RecordKind.RECORD_REPORT && buf.readUInt16LE(o + RecordLayout.dst_port.offset) === port) n++;
    }
    return n;
  };
  const walking = probes.filter(({ probe }) => probe.source() !== 'rtt_cb' && probe.source() !== 'none');
  // The accepts may trail the connects: wait (bounded) until a walk sees every socket.
  if (walking.length > 0) {
    for (let i = 0; i < 50 && ownReports(walking[0].probe.iterate()) < result.sockets; i++) await new Promise((r) => setTimeout(r, 100));
  }
  const times = new Map(walking.map((w) => [w, []]));
  const reported = new Map();
  for (let round = 0; round < WALKS; round++) {
    // Rotated, so that no source always walks first.
    for (let k = 0; k < walking.length; k++) {
      const w = walking[(round + k) % walking.length];
      const t0 = process.hrtime.bigint();
      const buf = w.probe.iterate();
      times.get(w).push(Number(process.hrtime.bigint() - t0) / 1e6);
      reported.set(w, ownReports(buf));
    }
  }
  for (const w of walking) {
    const stats = { walkMs: median(times.get(w)), walks: times.get(w), reported: reported.get(w), namespaces: w.probe.lastWalk().namespaces };
    if (w.kind === 'auto') Object.assign(result, stats);
    else result.others[w.kind] = stats;
  }
} catch (err) {
  result.error = err.message.split('\n')[0];
} finally {
  for (const c of clients) c.destroy();
  server.close();
  for (const { probe } of probes) probe.close();
}
console.log(JSON.stringify(result));
process.exit(result.error ? 1 : 0);
