/**
 * The kernel -> JS record paths on their own, only counting (the physical
 * limit the receiver's decode + table is compared against):
 *
 * - ringbuf, drain thread (the agent's path): a 32 MiB ringbuf is filled by
 *   real connection churn while nobody reads it, then startDrain() delivers it
 *   to a JS callback that only counts records; records/s from startDrain() to
 *   the callback;
 * - ringbuf, synchronous: the same with drainNow();
 * - iterator: iterate() over K idle established loopback connections
 *   (2K tracked sockets) for K = 2k, 20k, 30k, 50k: ms per walk and
 *   records/s (the walk must be linear in tracked sockets).
 *
 * Also exports captureRecords(n): real records captured from the kernel,
 * replicated to n, for other benchmarks (the receiver's decode + table rate on
 * the same records).
 *
 * Run: npm run bench -- drain   (root; BENCH_QUICK=1 for a smoke run)
 */
import { RECORD_SIZE, RecordKind, RecordLayout as L } from '../src/receiver/ebpf/layout.js';
import { holdConnections, runChurn } from './lib/loadgen.js';
import { closeProbe, kernelUnavailable, openProbe, type BpfProbe } from './lib/probe.js';
import { figure, median, sleep, SkipBenchmark, type BenchContext, type Figure } from './lib/types.js';

export const title = 'Kernel to JS drain: the raw record paths';

/** Keys this module sets in ctx.shared for later modules. */
export const SHARED_RAW_DRAIN_RATE = 'drain.rawRecordsPerSec';
export const SHARED_RECORDS = 'drain.records';

const RING_BYTES = 32 * 1024 * 1024;
/** Slot size of one record in the ringbuf: 8-byte header + record, 8-aligned. */
const SLOT = 8 + RECORD_SIZE;

const fmtN = (n: number): string => n.toLocaleString('en-US');

/** RECORD_REPORTs in a packed buffer (iterate() also returns the events drained with the walk). */
function countReports(buf: Buffer): number {
  let n = 0;
  for (let off = 0; off + RECORD_SIZE <= buf.length; off += RECORD_SIZE) if (buf.readUInt8(off + L.kind.offset) === RecordKind.RECORD_REPORT) n++;
  return n;
}

/** Records in `buf` whose destination port is one of `ports`. */
function filterByDstPort(buf: Buffer, ports: ReadonlySet<number>): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off + RECORD_SIZE <= buf.length; off += RECORD_SIZE) {
    if (ports.has(buf.readUInt16LE(off + L.dst_port.offset))) out.push(buf.subarray(off, off + RECORD_SIZE));
  }
  return out;
}

export interface CaptureOptions {
  /** Real loopback connections to capture (each gives open + close on both sockets). Default 1000. */
  connections?: number;
  /** Idle connections reported once by the iterator (RECORD_REPORT). Default 100. */
  idle?: number;
}

/**
 * Real records from the kernel (root): a bounded loopback churn (write 200 B,
 * read 1000 B, close) plus one iterator walk over idle connections, captured
 * through the agent's probe and filtered to the benchmark's own ports, then
 * replicated to `n` records: copy k gets distinct socket cookies (+k << 32),
 * client ports and times, so every copy is a distinct set of connections
 * (opens before closes, pairs consistent). Returns n * RECORD_SIZE bytes.
 */
export async function captureRecords(n: number, opts: CaptureOptions = {}): Promise<Buffer> {
  const why = kernelUnavailable();
  if (why) throw new Error(`captureRecords: ${why}`);
  const probe = await openProbe({ ringbufBytes: 8 * 1024 * 1024 });
  let base: Buffer[];
  try {
    const churn = await runChurn({
      seconds: 10,
      maxConnections: opts.connections ?? 1000,
      clients: 4,
      servers: 4,
      ports: 4,
      requestBytes: 200,
      responseBytes: 1000,
    });
    await sleep(50);
    base = filterByDstPort(probe.drainNow(), new Set(churn.ports));
    const held = await holdConnections(opts.idle ?? 100);
    try {
      // iterate() also returns the opens of the held connections (drained with the walk): keep the reports.
      base.push(...filterByDstPort(probe.iterate(), new Set(held.ports)).filter((r) => r.readUInt8(L.kind.offset) === RecordKind.RECORD_REPORT));
    } finally {
      await held.release();
    }
    if (Number(probe.lostRecords()) !== 0) throw new Error('captureRecords: records were lost while capturing');
  } finally {
    closeProbe(probe);
  }
  if (base.length === 0) throw new Error('captureRecords: no records captured');
  let minNs = BigInt.asUintN(64, -1n);
  let maxNs = 0n;
  for (const r of base) {
    const s = r.readBigUInt64LE(L.start_ns.offset);
    const e = r.readBigUInt64LE(L.event_ns.offset);
    if (s > 0n && s < minNs) minNs = s;
    if (e > maxNs) maxNs = e;
  }
  const span = maxNs > minNs ? maxNs - minNs + 1n : 1_000_000n;
  const out = Buffer.allocUnsafe(n * RECORD_SIZE);
  for (let i = 0; i < n; i++) {
    const off = i * RECORD_SIZE;
    base[i % base.length]!.copy(out, off);
    const k = Math.floor(i / base.length);
    if (k === 0) continue;
    const kb = BigInt(k);
    out.writeBigUInt64LE(BigInt.asUintN(64, out.readBigUInt64LE(off + L.socket_cookie.offset) + (kb << 32n)), off + L.socket_cookie.offset);
    for (const f of [L.start_ns.offset, L.event_ns.offset]) {
      const t = out.readBigUInt64LE(off + f);
      if (t !== 0n) out.writeBigUInt64LE(t + kb * span, off + f);
    }
    // The client's (ephemeral) port, the same in every record of a connection.
    const p = out.readUInt16LE(off + L.src_port.offset);
    out.writeUInt16LE(1024 + ((p - 1024 + k * 7919) % 64511 + 64511) % 64511, off + L.src_port.offset);
  }
  return out;
}

/** Fills the ringbuf of `probe` (not draining) with real records from `connections` loopback connections. */
async function fill(probe: BpfProbe, connections: number): Promise<void> {
  await runChurn({ seconds: 20, maxConnections: connections, clients: 16, servers: 16, ports: 8 });
  await sleep(20);
  const lost = Number(probe.lostRecords());
  if (lost) throw new Error(`ringbuf overflowed while filling (${lost} lost): fill fewer connections`);
}

export async function run(ctx: BenchContext): Promise<Figure[]> {
  const why = kernelUnavailable();
  if (why) throw new SkipBenchmark(why);
  const runs = ctx.quick ? 2 : 5;
  // 4 records per connection; stay under ~70% of the ring (other traffic on the node adds some).
  const fillConns = ctx.quick ? 10_000 : Math.floor((RING_BYTES * 0.7) / SLOT / 4);
  const cmd = ctx.command;

  // 1. + 2. The ringbuf: drain thread -> JS callback, and drainNow().
  const threadRates: number[] = [];
  const syncRates: number[] = [];
  const batchRecords: number[] = [];
  for (let i = 0; i < runs && Date.now() < ctx.deadline; i++) {
    for (const mode of i % 2 === 0 ? ['thread', 'sync'] : ['sync', 'thread']) {
      // The agent's wake-up threshold: the fill passes it, so the ring's epoll fd is
      // ready when the drain thread starts (records below it raise no epoll event).
      const probe = await openProbe({ ringbufBytes: RING_BYTES });
      try {
        await fill(probe, fillConns);
        if (mode === 'sync') {
          const t0 = process.hrtime.bigint();
          const buf = probe.drainNow();
          const t1 = process.hrtime.bigint();
          const n = buf.length / RECORD_SIZE;
          syncRates.push(n / (Number(t1 - t0) / 1e9));
          ctx.log(`drainNow: ${n} records in ${(Number(t1 - t0) / 1e6).toFixed(1)} ms`);
        } else {
          let n = 0;
          let t1 = 0n;
          const t0 = process.hrtime.bigint();
          const first = new Promise<void>((resolve) => {
            probe.startDrain((buf) => {
              if (n === 0) {
                n = buf.length / RECORD_SIZE;
                t1 = process.hrtime.bigint();
                resolve();
              }
            }, 50);
          });
          const timeout = sleep(10_000).then(() => {
            throw new Error('drain thread delivered nothing within 10 s');
          });
          await Promise.race([first, timeout]);
          probe.stopDrain();
          threadRates.push(n / (Number(t1 - t0) / 1e9));
          batchRecords.push(n);
          ctx.log(`drain thread: ${n} records in ${(Number(t1 - t0) / 1e6).toFixed(1)} ms`);
        }
      } finally {
        closeProbe(probe);
      }
    }
  }

  // 3. The iterator over idle connections, at several sizes: its walk time
  // must grow linearly with the tracked sockets (see kmesh_conn_iter).
  const sizes = ctx.quick ? [2_000, 10_000] : [2_000, 20_000, 30_000, 50_000];
  const walks: Array<{ connections: number; ms: number[]; rates: number[]; walked: number; fallback: number }> = [];
  let iterNote = '';
  for (const count of sizes) {
    if (Date.now() > ctx.deadline) {
      ctx.log(`time budget reached: no iterator walk over ${count} connections`);
      break;
    }
    const ms: number[] = [];
    const rates: number[] = [];
    let walked = 0;
    let fallback = 0;
    const probe = await openProbe();
    try {
      iterNote = `Periodic-report source: ${probe.source()} (the agent's auto choice on this kernel).`;
      const held = await holdConnections(count);
      try {
        const f0 = probe.iterFallbackRecords();
        for (let i = 0; i < runs + 1 && Date.now() < ctx.deadline; i++) {
          const t0 = process.hrtime.bigint();
          const buf = probe.iterate();
          const t1 = process.hrtime.bigint();
          walked = countReports(buf);
          // The first walk is a warm-up (it also takes the opens of the held connections).
          if (i === 0) continue;
          ms.push(Number(t1 - t0) / 1e6);
          rates.push(walked / (Number(t1 - t0) / 1e9));
        }
        fallback = Number(probe.iterFallbackRecords() - f0);
      } finally {
        await held.release();
      }
    } finally {
      closeProbe(probe);
    }
    ctx.log(`iterator, ${count} connections: ${walked} reports per walk, median ${median(ms).toFixed(1)} ms, ${fallback} through read()`);
    walks.push({ connections: count, ms, rates, walked, fallback });
  }
  const smallWalk = walks[0];
  const bigWalk = walks[walks.length - 1];

  const raw = median(threadRates);
  ctx.shared.set(SHARED_RAW_DRAIN_RATE, raw);
  const fillNote =
    `A ${RING_BYTES >> 20} MiB ringbuf is filled by real loopback churn (${fillConns.toLocaleString('en-US')} connections, ` +
    `about ${Math.round(median(batchRecords.length ? batchRecords : [fillConns * 4])).toLocaleString('en-US')} records) while nobody reads it, then drained at once; ` +
    `${runs} runs of each path, alternating.`;
  return [
    figure({
      id: 'drain.ringbuf_thread',
      title: 'Raw ringbuf drain, drain thread to a counting JS callback (the agent’s path)',
      unit: 'records/s',
      command: cmd,
      runs: threadRates,
      notes:
        `${fillNote} Timed from startDrain() to the JS callback holding the batch: ring_buffer__consume into one ` +
        `packed batch, the thread-safe-function hop and the copy into a Buffer. This is the physical limit of the ` +
        `kernel -> JS path that the receiver's decode + table rate is compared against (shared as ${SHARED_RAW_DRAIN_RATE}).`,
    }),
    figure({
      id: 'drain.ringbuf_sync',
      title: 'Raw ringbuf drain, drainNow() on the JS thread',
      unit: 'records/s',
      command: cmd,
      runs: syncRates,
      notes: `${fillNote} The same consume and copy without the thread hop.`,
    }),
    ...(bigWalk === undefined || smallWalk === undefined
      ? []
      : [
          figure({
            id: 'drain.iterator',
            title: 'Iterator walk (periodic reports of long-lived connections) to JS',
            unit: 'records/s',
            command: cmd,
            runs: bigWalk.rates,
            comparison: { title: `the same walk over ${fmtN(smallWalk.walked)} sockets`, runs: smallWalk.rates },
            notes:
              `iterate() over ${fmtN(bigWalk.connections)} idle established loopback connections ` +
              `(${fmtN(bigWalk.walked)} tracked sockets reported per walk, both ends of each connection), after one warm-up walk; ` +
              `one walk costs (tracked sockets / this rate) of one core, every report_interval. A ratio near 1 against the ` +
              `small walk means the walk is linear in tracked sockets. ${iterNote}`,
          }),
        ]),
    ...walks.map((w) =>
      figure({
        id: `drain.iterator_walk_${Math.round(w.walked / 1000)}k`,
        title: `Iterator walk time over ${fmtN(w.walked)} tracked sockets`,
        unit: 'ms',
        command: cmd,
        runs: w.ms,
        ...(w.walked >= 100_000 ? { target: '< 1000 ms per walk of 100,000 sockets', check: (f: { median: number }) => f.median < 1000 } : {}),
        notes:
          `One iterate() (the receiver's report tick) over ${fmtN(w.connections)} idle established loopback connections, ` +
          `${runs} walks after a warm-up. Reports go through the events ringbuf (a helper thread consumes it during the ` +
          `walk), so one read() does the whole walk; ${w.fallback} reports over these walks came back through ` +
          `read() because the ringbuf was full. (Writing reports with bpf_seq_write instead made the walk quadratic: ` +
          `each read() returns ~240 records and the next one re-walks its hash bucket from the head, ` +
          `net/core/bpf_sk_storage.c bpf_sk_storage_map_seq_find_next; this bench no longer measures that path.) ${iterNote}`,
      }),
    ),
  ];
}
