/**
 * Per-packet cost (issue 18 item 4): a bulk TCP transfer with no probe, with
 * the agent's probe, and with a bench-only probe of Kmesh's design
 * (bench/lib/kmesh_design.bpf.c: sockops + cgroup_skb ingress/egress adding
 * each packet's length to the socket's storage), side by side in one run.
 *
 * Two paths, each in namespaces this module creates:
 *   - loopback: sender and receiver in one namespace, to 127.0.0.1 (lo,
 *     MTU 65536: few, large packets);
 *   - veth: sender in one namespace, receiver in another, over a veth pair
 *     with MTU 1500.
 * One `loadgen send` (a single stream, 128 KiB writes) runs continuously
 * per path while the treatment changes every WINDOW_MS in cycles of
 * none, agent, kmesh, kmesh, agent, none (ABBA: drift within a cycle
 * cancels). Each window's throughput is the receiving interface's rx bytes
 * (/proc/<receiver pid>/net/dev: the receiver's namespace) over the window;
 * each window's CPU is the machine's busy time from /proc/stat (user, nice,
 * system, irq, softirq). Per cycle: each probe's mean throughput over its
 * two windows / the no-probe windows' mean (the figure's runs), and CPU
 * seconds per GiB received per treatment.
 *
 * The agent's probe is the real object through the addon, loaded once with
 * the agent's drain settings and attached/detached as in bench/kernel.ts;
 * the Kmesh-design probe is loaded once in a bench/lib/cgprobe.c child and
 * attached/detached there (bpf_link per program). If this kernel refuses
 * cgroup_skb, its figures are left out and the notes give the kernel's
 * reason.
 *
 * Run: npm run bench -- perpacket   (root)
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { RECORD_SIZE } from '../src/receiver/ebpf/layout.js';
import { attachedProgramIds } from './lib/bpftool.js';
import { startCgProbe, type CgProbe } from './lib/cgprobe.js';
import { runSend, startSink, type BulkResult } from './lib/loadgen.js';
import { createNamespaces, linkNamespaces, netnsUnavailable, removeStaleNamespaces } from './lib/netns.js';
import { AGENT_DRAIN_INTERVAL_MS, cgroupRoot, closeProbe, kernelUnavailable, kmeshDesignObject, openProbe, type BpfProbe } from './lib/probe.js';
import { figure, median, sleep, SkipBenchmark, type BenchContext, type Figure } from './lib/types.js';

export const title = "Per-packet cost: bulk transfer with no probe, the agent's probe and a probe of Kmesh's design";
export const budgetSeconds = 60;

const NS_PREFIX = 'kpp';
const WINDOW_MS = 300;
const CYCLE = ['none', 'agent', 'kmesh', 'kmesh', 'agent', 'none'] as const;
type Treatment = (typeof CYCLE)[number];
const VETH_MTU = 1500;
/** The stats phase at the end of each path: windows per probe, and their length. */
const STATS_WINDOWS = 2;
const STATS_WINDOW_MS = 400;
const STATS_PHASE_S = (2 * STATS_WINDOWS * (STATS_WINDOW_MS + 50)) / 1000 + 0.5;
const AGENT_TARGET = 0.99;

/** rx bytes of `iface` in the namespace of process `pid`. */
function rxBytes(pid: number, iface: string): number {
  for (const line of readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n')) {
    const [name, rest] = line.split(':');
    if (name?.trim() === iface && rest !== undefined) return Number(rest.trim().split(/\s+/)[0]);
  }
  throw new Error(`no interface ${iface} in /proc/${pid}/net/dev`);
}

/** Busy CPU seconds of the whole machine so far (/proc/stat: user nice system idle iowait irq softirq ...). */
function busySeconds(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = f;
  return (user + nice + system + irq + softirq) / 100; // USER_HZ
}

interface Path {
  name: 'loopback' | 'veth';
  label: string;
  sendNs: string;
  sinkNs: string;
  addr: string;
  /** The receiving interface (in sinkNs). */
  iface: string;
}

interface Window {
  t: Treatment;
  bytesPerSec: number;
  cpuSeconds: number;
  bytes: number;
}

interface PathRun {
  path: Path;
  windows: Window[];
  /** Per cycle: probe throughput / no-probe throughput. */
  ratio: Record<'agent' | 'kmesh', number[]>;
  /** Per cycle: CPU seconds per GiB, per treatment. */
  cpuPerGiB: Record<Treatment, number[]>;
  send: BulkResult;
  kmeshPackets: number;
  kmeshBytes: number;
  /** Stats phase, per window: ms of the probe's own BPF run time per GiB received. */
  probeMsPerGiB: Record<'agent' | 'kmesh', number[]>;
  /** Stats phase: program runs per GiB, ns per run (Kmesh design). */
  kmeshRunsPerGiB: number;
  kmeshNsPerRun: number;
  agentRuns: number;
}

export async function run(ctx: BenchContext): Promise<Figure[]> {
  const why = kernelUnavailable() ?? netnsUnavailable();
  if (why !== undefined) throw new SkipBenchmark(why);
  const cgroup = cgroupRoot();
  const othersAttached = attachedProgramIds(cgroup);
  removeStaleNamespaces(NS_PREFIX);
  const ns = createNamespaces(NS_PREFIX, 3);
  ctx.onCleanup(() => ns.destroy());
  const [lo, left, right] = ns.names as [string, string, string];
  const { ifB } = linkNamespaces(left, right, `${NS_PREFIX}${process.pid % 100_000}`, '10.213.0.1', '10.213.0.2', VETH_MTU);
  const paths: Path[] = [
    { name: 'loopback', label: 'loopback (127.0.0.1, MTU 65536)', sendNs: lo, sinkNs: lo, addr: '127.0.0.1', iface: 'lo' },
    { name: 'veth', label: `two namespaces over veth (MTU ${VETH_MTU})`, sendNs: left, sinkNs: right, addr: '10.213.0.2', iface: ifB },
  ];

  // The agent's probe, loaded and drained as the agent does; attached only in its windows.
  const agent: BpfProbe = await openProbe({ attach: false });
  ctx.onCleanup(() => closeProbe(agent));
  const agentStats = (): { runs: number; ns: number } => {
    const st = agent.programStats();
    return { runs: Number(st.runCount), ns: Number(st.runTimeNs) };
  };
  let agentRecords = 0;
  agent.startDrain((b) => (agentRecords += b.length / RECORD_SIZE), AGENT_DRAIN_INTERVAL_MS);

  // The Kmesh-design probe: a real load decides whether this kernel takes cgroup_skb.
  let kmesh: CgProbe | undefined;
  let kmeshRefused: string | undefined;
  try {
    kmesh = await startCgProbe(kmeshDesignObject(), cgroup);
    ctx.onCleanup(() => kmesh?.close());
  } catch (err) {
    kmeshRefused = (err as Error).message;
    ctx.log(`Kmesh-design probe not loaded: ${kmeshRefused}`);
  }

  let current: Treatment = 'none';
  const set = async (t: Treatment): Promise<void> => {
    if (t === current) return;
    if (current === 'agent') agent.detachCgroups();
    if (current === 'kmesh') await kmesh!.detach();
    if (t === 'agent') agent.attachCgroup(cgroup);
    if (t === 'kmesh') await kmesh!.attach();
    current = t;
  };
  const cycle: readonly Treatment[] = kmesh ? CYCLE : CYCLE.filter((t) => t !== 'kmesh');
  const seconds = ctx.quick ? 6 : 12;

  const runs: PathRun[] = [];
  for (const path of paths) {
    const sink = await startSink(path.addr, path.sinkNs);
    ctx.onCleanup(() => sink.stop());
    const sending = runSend(path.addr, sink.port, seconds, 1, path.sendNs);
    sending.catch(() => undefined); // awaited below
    const windows: Window[] = [];
    const probeMsPerGiB: PathRun['probeMsPerGiB'] = { agent: [], kmesh: [] };
    let statRuns = 0;
    let statNs = 0;
    let statGiB = 0;
    let agentRuns = 0;
    const packets0 = kmesh ? await kmesh.count() : 0;
    let kmeshBytes = 0;
    try {
      await sleep(500); // slow start over, the stream at full rate
      const end = Date.now() + (seconds - 1.2 - (kmesh ? STATS_PHASE_S : 0)) * 1000;
      while (Date.now() + cycle.length * WINDOW_MS < end) {
        for (const t of cycle) {
          await set(t);
          const b0 = rxBytes(sink.pid, path.iface);
          const c0 = busySeconds();
          const h0 = process.hrtime.bigint();
          await sleep(WINDOW_MS);
          const b1 = rxBytes(sink.pid, path.iface);
          const c1 = busySeconds();
          const secs = Number(process.hrtime.bigint() - h0) / 1e9;
          windows.push({ t, bytesPerSec: (b1 - b0) / secs, cpuSeconds: c1 - c0, bytes: b1 - b0 });
          if (t === 'kmesh') kmeshBytes += b1 - b0;
        }
      }
      if (kmesh) {
        // The probes' own kernel time under the same stream: BPF run-time
        // stats on for this phase only (two clock reads per program run, which
        // would weigh on the throughput windows above), one window per probe,
        // alternating. Machine-wide while on, so the agent's sockops counts too.
        await kmesh.statsOn();
        try {
          for (let i = 0; i < STATS_WINDOWS; i++) {
            for (const t of ['agent', 'kmesh'] as const) {
              await set(t);
              const b0 = rxBytes(sink.pid, path.iface);
              const s0 = t === 'agent' ? agentStats() : await kmesh.stats();
              await sleep(STATS_WINDOW_MS);
              const s1 = t === 'agent' ? agentStats() : await kmesh.stats();
              const gib = (rxBytes(sink.pid, path.iface) - b0) / 2 ** 30;
              probeMsPerGiB[t].push((s1.ns - s0.ns) / 1e6 / gib);
              if (t === 'kmesh') {
                statRuns += s1.runs - s0.runs;
                statNs += s1.ns - s0.ns;
                statGiB += gib;
              } else {
                agentRuns += s1.runs - s0.runs;
              }
              await set('none');
            }
          }
        } finally {
          await kmesh.statsOff();
        }
      }
    } finally {
      await set('none');
    }
    const send = await sending;
    await sink.stop();
    if (send.errors > 0) throw new Error(`loadgen send over ${path.name}: ${send.errors} stream errors`);
    const kmeshPackets = kmesh ? (await kmesh.count()) - packets0 : 0;
    if (kmesh && kmeshPackets === 0) throw new Error(`the Kmesh-design probe counted no packet over ${path.name}: it measured nothing`);

    const ratio: PathRun['ratio'] = { agent: [], kmesh: [] };
    const cpuPerGiB: PathRun['cpuPerGiB'] = { none: [], agent: [], kmesh: [] };
    for (let i = 0; i + cycle.length <= windows.length; i += cycle.length) {
      const c = windows.slice(i, i + cycle.length);
      const rate = (t: Treatment): number => {
        const w = c.filter((x) => x.t === t);
        return w.reduce((s, x) => s + x.bytesPerSec, 0) / w.length;
      };
      for (const t of ['agent', 'kmesh'] as const) if (cycle.includes(t)) ratio[t].push(rate(t) / rate('none'));
      for (const t of ['none', 'agent', 'kmesh'] as const) {
        const w = c.filter((x) => x.t === t);
        const bytes = w.reduce((s, x) => s + x.bytes, 0);
        if (w.length > 0 && bytes > 0) cpuPerGiB[t].push(w.reduce((s, x) => s + x.cpuSeconds, 0) / (bytes / 2 ** 30));
      }
    }
    const gibps = (t: Treatment): string => (median(windows.filter((w) => w.t === t).map((w) => w.bytesPerSec)) / 2 ** 30).toFixed(2);
    ctx.log(
      `${path.name}: ${windows.length / cycle.length} cycles; GiB/s none ${gibps('none')}, agent ${gibps('agent')}` +
        (kmesh ? `, kmesh ${gibps('kmesh')}` : '') +
        `; ratio agent ${median(ratio.agent).toFixed(3)}` +
        (kmesh ? `, kmesh ${median(ratio.kmesh).toFixed(3)}; ${kmeshPackets} packets counted by the Kmesh-design probe` : ''),
    );
    runs.push({
      path, windows, ratio, cpuPerGiB, send, kmeshPackets, kmeshBytes, probeMsPerGiB,
      kmeshRunsPerGiB: statRuns / statGiB, kmeshNsPerRun: statNs / statRuns, agentRuns,
    });
  }
  await kmesh?.close();
  const { sockops } = agent.programIds();
  closeProbe(agent);
  const leftover = attachedProgramIds(cgroup).filter((id) => id === sockops || !othersAttached.includes(id));
  if (leftover.length) ctx.log(`note: programs attached at ${cgroup} now and not before: ${leftover.join(', ')} (other processes may attach meanwhile)`);

  const load = loadavg()[0]!;
  const method =
    `One single-stream bulk transfer (bench/lib/loadgen.c send, 128 KiB writes, ${seconds} s) per path; the treatment ` +
    `changes every ${WINDOW_MS} ms in cycles of ${cycle.join(', ')} under it (probes loaded once, attached with bpf_link ` +
    `and detached between windows); throughput = the receiving interface's rx bytes per window; runs = per cycle, ` +
    `the probe's mean over its two windows / the no-probe windows' mean. Agent's probe: bpf/tcp_probe.bpf.o through ` +
    `the addon with the agent's drain settings (its sockops program runs at connection events only; it has no ` +
    `per-packet hook and the periodic walk is not part of the data path). Kmesh-design probe: bench/lib/kmesh_design.bpf.c ` +
    `(sockops creating the socket's storage at establishment, cgroup_skb egress and ingress programs finding it for ` +
    `every packet and adding skb->len, creating it on a packet when missing since the stream predates the ` +
    `attachment, plus one per-CPU packet counter). 1-min load average at the end: ${load.toFixed(2)} (shared machine: ` +
    `only the side-by-side ratios within a cycle mean anything).`;
  const kmeshNote = kmeshRefused ? ` This kernel refused the Kmesh-design probe (cgroup_skb): ${kmeshRefused}.` : '';

  const figs: Figure[] = [];
  for (const r of runs) {
    const perGiB = (n: number): string => Math.round(n / (r.kmeshBytes / 2 ** 30)).toLocaleString('en-US');
    const rateNote =
      `Median throughput per window: ${(['none', 'agent', 'kmesh'] as const)
        .filter((t) => cycle.includes(t))
        .map((t) => `${t} ${(median(r.windows.filter((w) => w.t === t).map((w) => w.bytesPerSec)) / 2 ** 30).toFixed(2)} GiB/s`)
        .join(', ')}; ${r.windows.length / cycle.length} cycles; the sender moved ${(r.send.bytes / 2 ** 30).toFixed(1)} GiB in ` +
      `${r.send.seconds.toFixed(1)} s.` +
      (kmesh ? ` The Kmesh-design probe ran on ${r.kmeshPackets.toLocaleString('en-US')} packets (both directions, ~${perGiB(r.kmeshPackets)} per GiB received: GSO/GRO keep packets larger than the MTU).` : '');
    figs.push(
      figure({
        id: `perpacket.${r.path.name}_agent`,
        title: `Bulk throughput over ${r.path.label}, the agent's probe attached / no probe`,
        unit: '× no probe',
        runs: r.ratio.agent,
        ...(kmesh ? { comparison: { title: "Kmesh-design probe (sockops + cgroup_skb) / no probe, same cycles", runs: r.ratio.kmesh } } : {}),
        target: `>= ${AGENT_TARGET} × no probe`,
        check: (f) => f.median >= AGENT_TARGET,
        notes: `${method} ${rateNote}${kmeshNote} Agent records drained during the module: ${agentRecords} (connection events only).`,
      }),
    );
    if (kmesh) {
      figs.push(
        figure({
          id: `perpacket.${r.path.name}_kmesh`,
          title: `Bulk throughput over ${r.path.label}, a probe of Kmesh's design (sockops + cgroup_skb) attached / no probe`,
          unit: '× no probe',
          runs: r.ratio.kmesh,
          comparison: { title: "the agent's probe / no probe, same cycles", runs: r.ratio.agent },
          notes: `${method} ${rateNote}`,
        }),
      );
    }
    if (kmesh) {
      figs.push(
        figure({
          id: `perpacket.${r.path.name}_kmesh_probe_cpu`,
          title: `Kernel time in a Kmesh-design probe's own programs per GiB received over ${r.path.label}`,
          unit: 'ms/GiB',
          runs: r.probeMsPerGiB.kmesh,
          notes:
            `BPF run-time stats (run_time_ns of the probe's programs, BPF_ENABLE_STATS on for this phase only) over ` +
            `${STATS_WINDOWS} windows of ${STATS_WINDOW_MS} ms at the end of the path's stream, alternating with the agent's probe: ` +
            `${Math.round(r.kmeshRunsPerGiB).toLocaleString('en-US')} program runs per GiB (sockops + both cgroup_skb ` +
            `programs), ${Math.round(r.kmeshNsPerRun)} ns per run (the stats' own two clock reads included). The agent's ` +
            `probe in its windows of the same phase: ${r.agentRuns} runs of its sockops program ` +
            `(${median(r.probeMsPerGiB.agent).toFixed(3)} ms/GiB if charged to the stream): at the cgroup root it runs on ` +
            `the connection events of every TCP socket of this shared node, other processes' included, and never per ` +
            `packet (the stream's sockets have only the state callback on). This is the kernel CPU the design adds ` +
            `per GiB, free of the machine's noise that the throughput ratios carry.`,
        }),
      );
    }
    for (const t of ['agent', 'kmesh'] as const) {
      if (!cycle.includes(t)) continue;
      figs.push(
        figure({
          id: `perpacket.${r.path.name}_${t}_cpu`,
          title: `CPU per GiB received over ${r.path.label}, ${t === 'agent' ? "the agent's probe" : "a probe of Kmesh's design"} attached`,
          unit: 'CPU s/GiB',
          runs: r.cpuPerGiB[t],
          comparison: { title: 'no probe, same cycles', runs: r.cpuPerGiB.none },
          notes:
            `Busy CPU time of the whole machine (/proc/stat user + nice + system + irq + softirq, both cores, ` +
            `10 ms ticks) in the treatment's windows of each cycle / GiB received in them; sender, receiver and the ` +
            `kernel's packet path all count, and so does anything else running on this shared machine meanwhile ` +
            `(the same for every treatment of a cycle). ${method}`,
        }),
      );
    }
  }
  return figs;
}
