/**
 * Kernel-test helpers: the real BPF object through the native addon, a
 * minimal raw reader for `struct conn_record` (offsets from
 * src/receiver/ebpf/layout.ts, which layout.test.ts checks against the
 * object's BTF — so this is not a second copy of the layout), bounded
 * collection of records, and `bpftool` views of what is attached.
 *
 * The program sees every TCP socket on the machine; tests must pick out their
 * own connections by port and address (see `records.filter(...)`).
 * `withKernelFixture()` is the before/after pair of a kernel suite: probe,
 * pods, and a cleanup that is checked.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RECORD_SIZE, RecordLayout } from '../../src/receiver/ebpf/layout.js';
import { defaultBpfObjectPath } from '../../src/paths.js';
import { choosePeriodicSource, type PeriodicSourceSetting } from '../../src/receiver/ebpf/periodicSource.js';
import { deadlineMs } from './deadline.js';
import { createPodNetwork, killAllPeers, removeStaleNamespaces, type PodNetwork } from './netns.js';

export const CGROUP_ROOT = process.env.KMESH_TEST_CGROUP ?? '/sys/fs/cgroup/unified';
/** The product's BPF object, from the one place its path is built. */
export const BPF_OBJECT = defaultBpfObjectPath;
export const ADDON = fileURLToPath(new URL('../../native/build/Release/kmesh_bpf.node', import.meta.url));
export const NATIVE_INDEX = fileURLToPath(new URL('../../native/index.js', import.meta.url));

export const RECORD_OPEN = 1;
export const RECORD_CLOSE = 2;
export const RECORD_FAIL = 3;
export const RECORD_REPORT = 4;
export const OUTBOUND = 1;
export const INBOUND = 2;
export const TCP_ESTABLISHED = 1;
export const TCP_CLOSE = 7;
export const ECONNREFUSED = 111;

/**
 * Why kernel tests cannot run here, or undefined. Not being root is a skip
 * (a developer's unit run); missing build outputs are not: they fail loudly
 * in `openProbe` with the addon's own message.
 */
export function kernelSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'kernel tests need root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, netns)';
  return undefined;
}

/** The addon's BpfProbe, typed (native/index.d.ts). */
export type BpfProbe = import('../../native/index.js').BpfProbe;
type BpfProbeTunables = import('../../native/index.js').BpfProbeTunables;
type PeriodicSourceKind = import('../../native/index.js').PeriodicSourceKind;

/**
 * Loads bpf/tcp_probe.bpf.o, settles its periodic-report source (default
 * `auto`: the agent's ladder) and attaches it at the cgroup-v2 root. A pinned
 * source the kernel refuses throws the agent's PinnedSourceError (see
 * {@link sourceOrSkip} for tests of one source).
 */
export async function openProbe(
  opts: {
    wakeupBytes?: number;
    ringbufBytes?: number;
    runTimeStats?: boolean;
    attach?: boolean;
    source?: PeriodicSourceSetting;
    rttIntervalMs?: number;
  } = {},
): Promise<BpfProbe> {
  if (!existsSync(BPF_OBJECT)) throw new Error(`${BPF_OBJECT} missing: run npm run build:bpf`);
  const { BpfProbe } = await import('../../native/index.js');
  const tunables: BpfProbeTunables = { wakeupBytes: opts.wakeupBytes ?? 64 * 1024 };
  if (opts.ringbufBytes !== undefined) tunables.ringbufBytes = opts.ringbufBytes;
  if (opts.runTimeStats !== undefined) tunables.runTimeStats = opts.runTimeStats;
  const probe = new BpfProbe(BPF_OBJECT, tunables);
  try {
    probe.load();
    choosePeriodicSource(probe, opts.source ?? 'auto', { rttIntervalMs: opts.rttIntervalMs ?? 5_000 });
    if (opts.attach !== false) probe.attachCgroup(CGROUP_ROOT);
  } catch (err) {
    probe.close();
    throw err;
  }
  return probe;
}

/**
 * Why this kernel refuses periodic-report `source`, or undefined when it
 * loads: a real trial load on a probe of its own (closed again), for a
 * test's `skip` option, so that the skip prints the kernel's reason.
 */
export async function sourceSkipReason(source: PeriodicSourceKind): Promise<string | undefined> {
  const root = kernelSkipReason();
  if (root !== undefined) return root;
  const { BpfProbe } = await import('../../native/index.js');
  const probe = new BpfProbe(BPF_OBJECT, { wakeupBytes: 64 * 1024 });
  try {
    probe.load();
    probe.useSource(source, {});
    return undefined;
  } catch (err) {
    return `this kernel (${kernelRelease()}) refuses ${source}: ${(err as Error).message.split('\n')[0]}`;
  } finally {
    probe.close();
  }
}

/** `uname -r`, for skip messages and figures. */
export function kernelRelease(): string {
  try {
    return readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  } catch {
    return 'unknown kernel';
  }
}

/** One record, raw (numbers as the kernel wrote them, addresses as text). */
export interface RawRecord {
  socketCookie: bigint;
  netnsCookie: bigint;
  startNs: bigint;
  eventNs: bigint;
  sentBytes: bigint;
  receivedBytes: bigint;
  srcAddr: string;
  dstAddr: string;
  origDstAddr: string;
  srttUs: number;
  minRttUs: number;
  totalRetrans: number;
  lostOut: number;
  segsIn: number;
  segsOut: number;
  skErr: number;
  /** The connection's initial sequence numbers and which of them are known (ISN_*_KNOWN bits). */
  isnClient: number;
  isnServer: number;
  isnKnown: number;
  srcPort: number;
  dstPort: number;
  origDstPort: number;
  family: number;
  kind: number;
  direction: number;
  state: number;
}

function addrText(buf: Buffer, off: number, family: number): string {
  if (family === 2) return `${buf[off]}.${buf[off + 1]}.${buf[off + 2]}.${buf[off + 3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(buf.readUInt16BE(off + i).toString(16));
  // Plain, uncompressed lower-case form; see normalizeV6 for comparisons.
  return groups.join(':');
}

/** Expands an IPv6 text address to the 8-group form addrText produces. */
export function normalizeV6(a: string): string {
  const [head, tail] = a.includes('::') ? a.split('::') : [a, undefined];
  const h = head === '' ? [] : head!.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : new Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16).toString(16)).join(':');
}

/** Splits a packed batch; throws if its length is not whole records (the addon must never cut one). */
export function readRecords(buf: Buffer): RawRecord[] {
  if (buf.length % RECORD_SIZE !== 0) throw new Error(`batch of ${buf.length} bytes is not a multiple of ${RECORD_SIZE}`);
  const L = RecordLayout;
  const out: RawRecord[] = [];
  for (let o = 0; o < buf.length; o += RECORD_SIZE) {
    const family = buf.readUInt16LE(o + L.family.offset);
    out.push({
      socketCookie: buf.readBigUInt64LE(o + L.socket_cookie.offset),
      netnsCookie: buf.readBigUInt64LE(o + L.netns_cookie.offset),
      startNs: buf.readBigUInt64LE(o + L.start_ns.offset),
      eventNs: buf.readBigUInt64LE(o + L.event_ns.offset),
      sentBytes: buf.readBigUInt64LE(o + L.sent_bytes.offset),
      receivedBytes: buf.readBigUInt64LE(o + L.received_bytes.offset),
      srcAddr: addrText(buf, o + L.src_addr.offset, family),
      dstAddr: addrText(buf, o + L.dst_addr.offset, family),
      origDstAddr: addrText(buf, o + L.orig_dst_addr.offset, family),
      srttUs: buf.readUInt32LE(o + L.srtt_us.offset),
      minRttUs: buf.readUInt32LE(o + L.min_rtt_us.offset),
      totalRetrans: buf.readUInt32LE(o + L.total_retrans.offset),
      lostOut: buf.readUInt32LE(o + L.lost_out.offset),
      segsIn: buf.readUInt32LE(o + L.segs_in.offset),
      segsOut: buf.readUInt32LE(o + L.segs_out.offset),
      skErr: buf.readUInt32LE(o + L.sk_err.offset),
      isnClient: buf.readUInt32LE(o + L.isn_client.offset),
      isnServer: buf.readUInt32LE(o + L.isn_server.offset),
      isnKnown: buf.readUInt8(o + L.isn_known.offset),
      srcPort: buf.readUInt16LE(o + L.src_port.offset),
      dstPort: buf.readUInt16LE(o + L.dst_port.offset),
      origDstPort: buf.readUInt16LE(o + L.orig_dst_port.offset),
      family,
      kind: buf.readUInt8(o + L.kind.offset),
      direction: buf.readUInt8(o + L.direction.offset),
      state: buf.readUInt8(o + L.state.offset),
    });
  }
  return out;
}

/**
 * Drains the probe every `intervalMs` until `done(records)` holds for the
 * records matching `mine`, or `timeoutMs` passes (then returns what it has;
 * the test's asserts say what is missing).
 */
export async function collect(
  probe: BpfProbe,
  mine: (r: RawRecord) => boolean,
  done: (rs: RawRecord[]) => boolean,
  timeoutMs = 5_000,
  intervalMs = 20,
): Promise<RawRecord[]> {
  const got: RawRecord[] = [];
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < Math.ceil(timeoutMs / intervalMs) + 1; i++) {
    got.push(...readRecords(probe.drainNow()).filter(mine));
    if (done(got) || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return got;
}

/** Records of one connection identified by its server port and client port. */
export function byPorts(serverPort: number, clientPort?: number): (r: RawRecord) => boolean {
  return (r) => r.dstPort === serverPort && (clientPort === undefined || r.srcPort === clientPort);
}

/** Program ids attached at a cgroup, from `bpftool -j cgroup show` (all attach types). */
export function attachedProgramIds(cgroup = CGROUP_ROOT): number[] {
  const out = execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8', timeout: 10_000 });
  const list = (out.trim() === '' ? [] : JSON.parse(out)) as Array<{ id: number; name?: string }>;
  return list.map((p) => p.id);
}

/** Whether a program id still exists in the kernel at all. */
export function programExists(id: number): boolean {
  try {
    execFileSync('bpftool', ['prog', 'show', 'id', String(id)], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** Entries under bpffs (the agent must never pin anything). */
export function bpffsEntries(root = '/sys/fs/bpf'): string[] {
  try {
    return readdirSync(root).sort();
  } catch {
    return [];
  }
}

/** Polls `cond` every `intervalMs` for at most `timeoutMs`; returns its last value. */
export async function eventually(cond: () => boolean, timeoutMs = deadlineMs(5_000), intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < Math.ceil(timeoutMs / intervalMs) + 1; i++) {
    if (cond()) return true;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return cond();
}

/** `ss` view of a socket's raw RFC 4898 counters (bytes_acked, bytes_received) by local/peer port. */
export function ssCounters(netns: string | undefined, port: number): Array<{ state: string; local: string; peer: string; bytesAcked: number; bytesReceived: number }> {
  const args = ['-tinaH', `( sport = :${port} or dport = :${port} )`];
  const cmd = netns === undefined ? ['ss', ...args] : ['ip', 'netns', 'exec', netns, 'ss', ...args];
  const text = execFileSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', timeout: 10_000 });
  const rows: Array<{ state: string; local: string; peer: string; bytesAcked: number; bytesReceived: number }> = [];
  // ss prints each socket on one line followed by an indented info line.
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const head = lines[i]!.trim().split(/\s+/);
    if (head.length < 5 || head[0] === 'LISTEN' || /^\s/.test(lines[i]!)) continue;
    const info = lines[i + 1] ?? '';
    const acked = /bytes_acked:(\d+)/.exec(info);
    const received = /bytes_received:(\d+)/.exec(info);
    rows.push({
      state: head[0]!,
      local: head[3]!,
      peer: head[4]!,
      bytesAcked: acked ? Number(acked[1]) : 0,
      bytesReceived: received ? Number(received[1]) : 0,
    });
  }
  return rows;
}

/** What {@link withKernelFixture} sets up for a describe() block. */
export interface KernelFixture {
  /** The probe, loaded and attached at the cgroup-v2 root. */
  readonly probe: BpfProbe;
  /** Pod namespaces on their own bridge (see test/helpers/netns.ts). */
  readonly pods: PodNetwork;
}

export interface KernelFixtureOptions {
  /** Host numbers of the pods (10.244.0.x, fd00:10:244::x). Default [11, 17]. */
  pods?: readonly number[];
  /** Passed to {@link openProbe}. */
  probe?: Parameters<typeof openProbe>[0];
}

/**
 * Registers before/after hooks in the calling describe(): a probe attached
 * at the cgroup-v2 root plus a pod network, and their removal. Returns the
 * fixture (its properties throw if read outside the suite's tests).
 *
 * Cleanup runs every step even if one fails or setup stopped half-way
 * (peers killed, pods and bridge deleted, probe closed), then checks that
 * nothing is left — the program not attached or loaded, no new bpffs entry,
 * no namespace or bridge of this network — and fails the suite if anything is.
 */
export function withKernelFixture(opts: KernelFixtureOptions = {}): KernelFixture {
  let probe: BpfProbe | undefined;
  let pods: PodNetwork | undefined;
  let pinnedBefore: string[] = [];
  let sockopsId = 0;

  before(async () => {
    removeStaleNamespaces();
    pinnedBefore = bpffsEntries();
    probe = await openProbe(opts.probe);
    sockopsId = probe.programIds().sockops;
    pods = createPodNetwork(opts.pods ?? [11, 17]);
  });

  after(async () => {
    const errors: string[] = [];
    const step = (what: string, fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        errors.push(`${what}: ${(err as Error).message}`);
      }
    };
    step('kill peers', killAllPeers);
    step('destroy pods', () => pods?.destroy());
    step('close probe', () => probe?.close());

    if (sockopsId !== 0) {
      if (attachedProgramIds().includes(sockopsId)) errors.push(`sockops program ${sockopsId} still attached at ${CGROUP_ROOT}`);
      // Freed asynchronously once the last reference (link, fd) is gone.
      if (!(await eventually(() => !programExists(sockopsId)))) errors.push(`sockops program ${sockopsId} still loaded`);
    }
    const pinned = bpffsEntries().filter((e) => !pinnedBefore.includes(e));
    if (pinned.length > 0) errors.push(`left in /sys/fs/bpf: ${pinned.join(', ')}`);
    if (pods !== undefined) {
      const names = netnsNames();
      const left = pods.pods.map((p) => p.netns).filter((n) => names.includes(n));
      if (left.length > 0) errors.push(`namespaces left: ${left.join(', ')}`);
      if (linkExists(pods.bridge)) errors.push(`bridge ${pods.bridge} left`);
    }
    if (errors.length > 0) throw new Error(`kernel fixture cleanup: ${errors.join('; ')}`);
  });

  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`kernel fixture: ${what} is only available inside the suite's tests (setup failed or not run)`);
    return v;
  };
  return {
    get probe() {
      return need(probe, 'probe');
    },
    get pods() {
      return need(pods, 'pods');
    },
  };
}

function netnsNames(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 })
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter(Boolean);
  } catch {
    return [];
  }
}

function linkExists(name: string): boolean {
  try {
    execFileSync('ip', ['link', 'show', 'dev', name], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}
