/**
 * One walk of each periodic-report source, side by side in one run: what a
 * report tick costs with sk_storage_iter, tcp_iter and sock_diag
 * (src/receiver/ebpf/periodicSource.ts), over many tracked sockets in one
 * namespace and over many namespaces.
 *
 * One probe per source the kernel loads (load -> useSource -> attach at the
 * cgroup-v2 root -> drain thread with the agent's interval), all attached
 * before any of the bench's connections exist: the sources report only
 * connections whose open the probe saw. A source the kernel refuses is
 * reported with the kernel's reason; rtt_cb has no walk (its reports come
 * from the sockops program on ACKs), so there is nothing to time.
 *
 * Scenarios, in this order (each builds on the previous one's sockets):
 *   baseline       nothing of the bench's held: the node as it is;
 *   netns_empty    + 100 namespaces (`ip netns add`, lo up), nothing in them;
 *   netns          + 10 idle loopback connections inside each (one
 *                    `loadgen hold` per namespace via `ip netns exec`);
 *   netns_and_host + 50,000 idle loopback connections in the host namespace
 *                    (100,000 tracked sockets; bench/lib/loadgen holdConnections);
 *   host           the namespaces deleted: 100,000 tracked sockets in the
 *                    host namespace only.
 * In each, every source walks once as a warm-up, then WALKS rounds of one
 * iterate() per source, the order rotated each round. Per walk: the time of
 * the iterate() call, the reports of the bench's own sockets in its result
 * (must equal the bench's tracked sockets: a mismatch is logged and marks the
 * figure's target NOT met), and the addon's lastWalk() (all reports, namespaces,
 * failures).
 *
 * Run: npm run bench -- walk   (root; BENCH_QUICK=1: 5,000 host connections,
 * 10 namespaces of 5, 3 walks)
 */
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { RECORD_SIZE, RecordKind, RecordLayout as L, AF_INET } from '../src/receiver/ebpf/layout.js';
import { PERIODIC_SOURCES, firstLine } from '../src/receiver/ebpf/periodicSource.js';
import type { PeriodicSourceKind } from '../native/index.js';
import { attachedProgramIds, bpffsEntries } from './lib/bpftool.js';
import { holdConnections, type HeldConnections } from './lib/loadgen.js';
import { createNamespaces, netnsUnavailable, removeStaleNamespaces, type BenchNamespaces } from './lib/netns.js';
import { AGENT_DRAIN_INTERVAL_MS, cgroupRoot, closeProbe, kernelUnavailable, openProbe, type BpfProbe } from './lib/probe.js';
import { figure, median, sleep, SkipBenchmark, type BenchContext, type Figure } from './lib/types.js';

export const title = 'Periodic-report walk: each source side by side';
export const budgetSeconds = 180;

/** Namespace names: `kmbw-<pid>-<i>` (stale ones, whose pid is dead, are removed at start). */
const NETNS_PREFIX = 'kmbw-';

const fmtN = (n: number): string => n.toLocaleString('en-US');
const nsCount = (n: number): string => `${n} namespace${n === 1 ? '' : 's'}`;
const fmtMs = (n: number): string => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));

interface Sizes {
  hostConnections: number;
  namespaces: number;
  perNamespace: number;
  /** Measured walks per source and scenario, after one warm-up walk. */
  walks: number;
}

const FULL: Sizes = { hostConnections: 50_000, namespaces: 100, perNamespace: 10, walks: 9 };
const QUICK: Sizes = { hostConnections: 5_000, namespaces: 10, perNamespace: 5, walks: 3 };

interface Source {
  kind: PeriodicSourceKind;
  probe: BpfProbe;
}

/** What the bench knows it holds, to check each walk's reports against. */
interface Expected {
  /** Server ports of the bench's held connections (dst_port of both ends' records). */
  ports: Set<number>;
  /** Tracked sockets the bench holds (2 per connection). */
  sockets: number;
  /** Distinct namespaces those sockets live in. */
  namespaces: number;
}

interface SourceRuns {
  ms: number[];
  addonMs: number[];
  reported: number[];
  mine: number[];
  namespaces: number[];
  cookieSets: number[];
  failures: number;
  firstFailure?: string;
  fallback: number;
  lost: number;
}

interface ScenarioResult {
  key: string;
  title: string;
  description: string;
  expected: Expected;
  runs: Map<PeriodicSourceKind, SourceRuns>;
  /** Per walk and source, the bench's reports differed from the bench's tracked sockets. */
  mismatches: string[];
}

/** Reports of the bench's own sockets in a walk's result: IPv4 loopback to one of its server ports. */
function countMine(buf: Buffer, ports: ReadonlySet<number>): { mine: number; cookies: Set<bigint> } {
  let mine = 0;
  const cookies = new Set<bigint>();
  for (let off = 0; off + RECORD_SIZE <= buf.length; off += RECORD_SIZE) {
    if (buf.readUInt8(off + L.kind.offset) !== RecordKind.RECORD_REPORT) continue;
    if (buf.readUInt16LE(off + L.family.offset) !== AF_INET) continue;
    if (!ports.has(buf.readUInt16LE(off + L.dst_port.offset))) continue;
    if (buf.readUInt32BE(off + L.dst_addr.offset) !== 0x7f000001) continue;
    mine++;
    cookies.add(buf.readBigUInt64LE(off + L.netns_cookie.offset));
  }
  return { mine, cookies };
}

async function measure(
  ctx: BenchContext,
  sources: readonly Source[],
  walks: number,
  s: Omit<ScenarioResult, 'runs' | 'mismatches'>,
): Promise<ScenarioResult> {
  const result: ScenarioResult = { ...s, runs: new Map(), mismatches: [] };
  const base = new Map<PeriodicSourceKind, { fallback: bigint; lost: bigint }>();
  for (const src of sources) {
    result.runs.set(src.kind, { ms: [], addonMs: [], reported: [], mine: [], namespaces: [], cookieSets: [], failures: 0, fallback: 0, lost: 0 });
    base.set(src.kind, { fallback: src.probe.iterFallbackRecords(), lost: src.probe.lostRecords() });
  }
  await sleep(2 * AGENT_DRAIN_INTERVAL_MS); // the drain threads catch up with the scenario's opens
  for (let round = 0; round <= walks; round++) {
    if (round > 1 && Date.now() > ctx.deadline - 15_000) {
      ctx.log(`${s.key}: time budget: ${round - 1} walks per source instead of ${walks}`);
      break;
    }
    for (let k = 0; k < sources.length; k++) {
      const src = sources[(round + k) % sources.length]!;
      const r = result.runs.get(src.kind)!;
      const t0 = process.hrtime.bigint();
      const buf = src.probe.iterate();
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const stats = src.probe.lastWalk();
      const { mine, cookies } = countMine(buf, s.expected.ports);
      if (stats.namespaceFailures.length) {
        r.failures += stats.namespaceFailures.length;
        r.firstFailure ??= `${stats.namespaceFailures[0]!.path}: ${stats.namespaceFailures[0]!.reason}`;
      }
      if (round === 0) {
        ctx.log(`${s.key}: ${src.kind} warm-up walk ${fmtMs(ms)} ms, ${fmtN(stats.reported)} reports (${fmtN(mine)} of the bench's), ${stats.namespaces} namespaces`);
        continue; // warm-up: not counted, not checked
      }
      r.ms.push(ms);
      r.addonMs.push(stats.durationMs);
      r.reported.push(stats.reported);
      r.mine.push(mine);
      r.namespaces.push(stats.namespaces);
      r.cookieSets.push(cookies.size);
      if (mine !== s.expected.sockets || (s.expected.sockets > 0 && cookies.size !== s.expected.namespaces)) {
        const m =
          `${src.kind} walk ${round}: ${fmtN(mine)} reports of the bench's sockets in ${cookies.size} namespaces, ` +
          `expected ${fmtN(s.expected.sockets)} in ${s.expected.namespaces}`;
        result.mismatches.push(m);
        ctx.log(`${s.key}: !!! MISMATCH: ${m}`);
      }
    }
    await sleep(10); // let the drain callbacks run between rounds
  }
  for (const src of sources) {
    const r = result.runs.get(src.kind)!;
    const b = base.get(src.kind)!;
    r.fallback = Number(src.probe.iterFallbackRecords() - b.fallback);
    r.lost = Number(src.probe.lostRecords() - b.lost);
    ctx.log(
      `${s.key}: ${src.kind} median ${fmtMs(median(r.ms))} ms (addon ${fmtMs(median(r.addonMs))} ms) over ${r.ms.length} walks, ` +
        `${fmtN(median(r.reported))} reports (${fmtN(median(r.mine))} of the bench's, expected ${fmtN(s.expected.sockets)}), ` +
        `${median(r.namespaces)} namespaces, ${r.failures} namespace failures, ${r.fallback} fallback, ${r.lost} lost`,
    );
  }
  return result;
}

/** Starts `count` holders of `perNs` connections, one per namespace, at most `parallel` starting at once. */
async function holdInNamespaces(ns: BenchNamespaces, perNs: number, parallel: number): Promise<HeldConnections[]> {
  const held: HeldConnections[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < ns.names.length) {
      const name = ns.names[next++]!;
      held.push(await ns.hold(name, perNs));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return held;
}

export async function run(ctx: BenchContext): Promise<Figure[]> {
  const why = kernelUnavailable() ?? netnsUnavailable();
  if (why) throw new SkipBenchmark(why);
  const sizes = ctx.quick ? QUICK : FULL;
  const kernel = ctx.machine.kernel;
  const t0 = Date.now();
  const loadBefore = loadavg()[0]!;

  const stale = removeStaleNamespaces(NETNS_PREFIX);
  if (stale.length) ctx.log(`removed ${stale.length} stale namespaces of dead runs (${stale.slice(0, 3).join(', ')}${stale.length > 3 ? ', ...' : ''})`);
  const cgroup = cgroupRoot();
  const bpffsBefore = new Set(bpffsEntries());

  // One probe per source, in the ladder's order; each attached before any connection exists.
  const sources: Source[] = [];
  const refused: Array<{ kind: PeriodicSourceKind; reason: string }> = [];
  const sockopsIds: number[] = [];
  let nsSet: BenchNamespaces | undefined;
  let nsHeld: HeldConnections[] = [];
  let hostHeld: HeldConnections | undefined;
  const releaseNamespaces = async (): Promise<void> => {
    const h = nsHeld;
    nsHeld = [];
    await Promise.all(h.map((x) => x.release()));
    nsSet?.destroy();
    nsSet = undefined;
  };
  const closeSources = (): void => {
    for (const s of sources.splice(0)) closeProbe(s.probe);
  };
  ctx.onCleanup(async () => {
    await hostHeld?.release();
    hostHeld = undefined;
    await releaseNamespaces();
    closeSources();
  });

  const scenarios: ScenarioResult[] = [];
  try {
    for (const kind of PERIODIC_SOURCES) {
      if (kind === 'rtt_cb') continue; // no walk: reports come from sockops on ACKs
      const probe = await openProbe({ attach: false, source: 'none' });
      try {
        probe.useSource(kind, {}); // the agent's defaults: /proc and /run/netns
      } catch (err) {
        closeProbe(probe);
        refused.push({ kind, reason: firstLine(err) });
        ctx.log(`${kind}: refused by this kernel: ${firstLine(err)}`);
        continue;
      }
      sources.push({ kind, probe });
      probe.attachCgroup(cgroup); // a failure here is the bench's, not a refusal: it fails the module
      sockopsIds.push(probe.programIds().sockops);
      // The agent's drain thread; the records between walks are not needed here.
      probe.startDrain(() => undefined, AGENT_DRAIN_INTERVAL_MS);
    }
    if (sources.length === 0) throw new Error(`no periodic-report source loads here: ${refused.map((r) => `${r.kind}: ${r.reason}`).join('; ')}`);
    ctx.log(`sources: ${sources.map((s) => s.kind).join(', ')}; refused: ${refused.map((r) => r.kind).join(', ') || 'none'}`);

    const none: Expected = { ports: new Set(), sockets: 0, namespaces: 0 };
    scenarios.push(
      await measure(ctx, sources, sizes.walks, {
        key: 'baseline',
        title: 'the node as it is (nothing of the bench’s)',
        description: 'No connection or namespace of the bench: the node as it is (its own few sockets and namespaces).',
        expected: none,
      }),
    );

    const tNs = Date.now();
    nsSet = createNamespaces(NETNS_PREFIX, sizes.namespaces);
    ctx.log(`${sizes.namespaces} namespaces created in ${Date.now() - tNs} ms`);
    scenarios.push(
      await measure(ctx, sources, sizes.walks, {
        key: 'netns_empty',
        title: `${sizes.namespaces} empty namespaces`,
        description: `${sizes.namespaces} extra network namespaces (\`ip netns add\`, lo up) with nothing in them.`,
        expected: none,
      }),
    );

    const tHold = Date.now();
    nsHeld = await holdInNamespaces(nsSet, sizes.perNamespace, 8);
    const nsPorts = new Set(nsHeld.flatMap((h) => h.ports));
    const nsSockets = 2 * nsHeld.reduce((n, h) => n + h.count, 0);
    ctx.log(`${fmtN(nsSockets / 2)} connections held in ${nsHeld.length} namespaces in ${Date.now() - tHold} ms`);
    scenarios.push(
      await measure(ctx, sources, sizes.walks, {
        key: 'netns',
        title: `${sizes.namespaces} namespaces × ${sizes.perNamespace} connections`,
        description:
          `${sizes.namespaces} namespaces, each holding ${sizes.perNamespace} idle established loopback connections ` +
          `(one \`loadgen hold\` per namespace via \`ip netns exec\`): ${fmtN(nsSockets)} tracked sockets.`,
        expected: { ports: nsPorts, sockets: nsSockets, namespaces: nsHeld.length },
      }),
    );

    const tHost = Date.now();
    hostHeld = await holdConnections(sizes.hostConnections);
    const hostSockets = 2 * hostHeld.count;
    ctx.log(`${fmtN(hostHeld.count)} host connections held in ${Date.now() - tHost} ms`);
    if (hostHeld.count < sizes.hostConnections) ctx.log(`!!! only ${fmtN(hostHeld.count)} of ${fmtN(sizes.hostConnections)} host connections`);
    const hostPorts = new Set(hostHeld.ports);
    scenarios.push(
      await measure(ctx, sources, sizes.walks, {
        key: 'netns_and_host',
        title: `${sizes.namespaces} namespaces × ${sizes.perNamespace} connections + ${fmtN(hostSockets)} host sockets`,
        description:
          `The ${sizes.namespaces} namespaces of ${sizes.perNamespace} connections, plus ${fmtN(hostHeld.count)} idle established ` +
          `loopback connections in the host namespace: ${fmtN(nsSockets + hostSockets)} tracked sockets.`,
        expected: { ports: new Set([...nsPorts, ...hostPorts]), sockets: nsSockets + hostSockets, namespaces: nsHeld.length + 1 },
      }),
    );

    await releaseNamespaces();
    await sleep(1000); // the kernel frees the namespaces (cleanup_net) and the drains take their closes
    scenarios.push(
      await measure(ctx, sources, sizes.walks, {
        key: 'host',
        title: `${fmtN(hostSockets)} host sockets`,
        description:
          `${fmtN(hostHeld.count)} idle established loopback connections (both ends tracked: ${fmtN(hostSockets)} sockets) ` +
          `in the host namespace, held by bench/lib/loadgen's holdConnections (several \`loadgen hold\` children: ` +
          `RLIMIT_NOFILE is capped at 20,000 here); the bench's namespaces deleted.`,
        expected: { ports: hostPorts, sockets: hostSockets, namespaces: 1 },
      }),
    );
    await hostHeld.release();
    hostHeld = undefined;
  } finally {
    await hostHeld?.release();
    hostHeld = undefined;
    await releaseNamespaces();
    closeSources();
  }

  // Nothing left behind: no probe of ours attached, nothing pinned, no namespace of ours.
  const stillAttached = attachedProgramIds(cgroup).filter((id) => sockopsIds.includes(id));
  if (stillAttached.length) throw new Error(`sockops programs ${stillAttached.join(', ')} still attached after close()`);
  const leftPins = bpffsEntries().filter((p) => !bpffsBefore.has(p));
  if (leftPins.length) throw new Error(`bpffs entries left behind: ${leftPins.join(', ')}`);
  const leftNs = removeStaleNamespaces(NETNS_PREFIX);
  if (leftNs.length) throw new Error(`namespaces left behind: ${leftNs.join(', ')}`);
  ctx.log(`done in ${((Date.now() - t0) / 1000).toFixed(0)} s; nothing attached, pinned or left in /run/netns`);

  const load = `1-minute load average ${loadBefore.toFixed(2)} at the start, ${loadavg()[0]!.toFixed(2)} at the end`;
  return buildFigures(ctx, sizes, scenarios, refused, kernel, load);
}

function buildFigures(
  ctx: BenchContext,
  sizes: Sizes,
  scenarios: readonly ScenarioResult[],
  refused: ReadonlyArray<{ kind: PeriodicSourceKind; reason: string }>,
  kernel: string,
  load: string,
): Figure[] {
  const figures: Figure[] = [];
  const refusedNote = refused.length ? `Refused by this kernel: ${refused.map((r) => `${r.kind} (${r.reason})`).join('; ')}. ` : '';
  const common =
    `${refusedNote}rtt_cb has no walk (its reports come from the sockops program on ACKs) and is not timed. ` +
    `Kernel ${kernel} (uname -r). One probe per source, all attached at the cgroup-v2 root before the bench's ` +
    `connections were opened, each with the agent's drain thread (${AGENT_DRAIN_INTERVAL_MS} ms) and default 1 MiB ringbuf; ` +
    `time of one iterate() (a thread of the addon; the agent runs the same walk with iterateAsync off its event loop), ` +
    `${sizes.walks} walks per source after one warm-up, the sources' order rotated each round. ` +
    `${ctx.machine.cores} cores, ${load}: other work on the node (tests run concurrently) competes for them, and ` +
    `its sockets and namespaces are walked too.`;
  const baseline = scenarios.find((s) => s.key === 'baseline');
  const host = scenarios.find((s) => s.key === 'host');
  let childEhash = 'unknown';
  try {
    childEhash = readFileSync('/proc/sys/net/ipv4/tcp_child_ehash_entries', 'utf8').trim();
  } catch {
    // older kernel: no per-namespace tables at all
  }
  for (const s of scenarios) {
    const medians = [...s.runs.entries()].map(([kind, r]) => ({ kind, m: median(r.ms) })).filter((x) => Number.isFinite(x.m));
    const best = medians.reduce<{ kind: PeriodicSourceKind; m: number } | undefined>((b, x) => (b === undefined || x.m < b.m ? x : b), undefined);
    for (const [kind, r] of s.runs) {
      const ok = s.mismatches.filter((m) => m.startsWith(`${kind} `)).length === 0;
      let perNs = '';
      if (s.key === 'netns_empty' && baseline) {
        const b = median(baseline.runs.get(kind)?.ms ?? []);
        perNs = ` Against the baseline (${fmtMs(b)} ms): ${fmtMs((median(r.ms) - b) / sizes.namespaces)} ms per extra empty namespace.`;
      }
      if (s.key === 'netns_and_host' && host) {
        const h = median(host.runs.get(kind)?.ms ?? []);
        perNs =
          ` Against the same host sockets without the namespaces (walk.${kind}_host, ${fmtMs(h)} ms): ` +
          `${fmtMs((median(r.ms) - h) / sizes.namespaces)} ms per extra namespace: each namespace's walk goes over the ` +
          `node's whole TCP hash table, which the namespaces share (net.ipv4.tcp_child_ehash_entries = ${childEhash} here).`;
      }
      const bestRuns = best ? s.runs.get(best.kind)!.ms : r.ms;
      figures.push(
        figure({
          id: `walk.${kind}_${s.key}`,
          title: `${kind}: one walk, ${s.title}`,
          unit: 'ms',
          command: ctx.command,
          runs: r.ms,
          comparison: { title: `the fastest source here (${best?.kind ?? kind})`, runs: bestRuns },
          target: `${fmtN(s.expected.sockets)} reports of the bench's sockets per walk`,
          check: () => ok && r.mine.length > 0,
          notes:
            `${s.description} Reports per walk: ${fmtN(median(r.mine))} of the bench's sockets ` +
            `(expected ${fmtN(s.expected.sockets)}${s.expected.sockets ? ` in ${nsCount(s.expected.namespaces)}, seen in ${median(r.cookieSets)}` : ''}; ` +
            `${ok ? 'equal in every walk' : `**MISMATCH**: ${s.mismatches.filter((m) => m.startsWith(`${kind} `)).join('; ')}`}), ` +
            `${fmtN(median(r.reported))} in all (the node's other tracked sockets too). ` +
            `Namespaces walked: ${median(r.namespaces)} (the addon's count, the node's own included)` +
            `${r.failures ? `, ${r.failures} namespace failures (first: ${r.firstFailure})` : ''}. ` +
            `The addon's own walk time (lastWalk().durationMs): median ${fmtMs(median(r.addonMs))} ms. ` +
            `Reports through read() because the ringbuf was full: ${fmtN(r.fallback)}; records lost: ${fmtN(r.lost)}.${perNs} ${common}`,
        }),
      );
    }
  }
  for (const r of refused) {
    figures.push(
      figure({
        id: `walk.${r.kind}`,
        title: `${r.kind}: refused by this kernel (not measured)`,
        unit: 'ms',
        command: ctx.command,
        runs: [],
        notes: `useSource('${r.kind}') failed: ${r.reason}. Kernel ${kernel} (uname -r).`,
      }),
    );
  }
  return figures;
}
