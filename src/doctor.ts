/**
 * `kmesh-otel doctor`: what this kernel and host allow, checked the way the
 * agent would use it. Every kernel feature is tried for real (feature probes
 * lie: `bpftool feature probe` says "tracing NOT available" where iterators
 * load, and a hardened build can refuse one iterator type while another
 * loads), and every trial is undone: each probe is closed, so its programs,
 * maps and bpf_links are gone; nothing is pinned.
 *
 * Pure logic over injected dependencies ({@link DoctorDeps}); the real ones
 * are the preflight system probe and the native addon.
 */
import type { BpfNamespaceRef } from '../native/index.js';
import { loadNative, type PeriodicSourceKind, type UseSourceOptions } from './receiver/ebpf/KernelSource.js';
import {
  choosePeriodicSource,
  firstLine,
  PERIODIC_SOURCES,
  SOURCE_NEEDS,
  type PeriodicSourceSetting,
} from './receiver/ebpf/periodicSource.js';
import {
  checkBpfObject,
  checkBpffs,
  checkCapabilities,
  checkCgroup,
  realSystem,
  type CheckOutcome,
  type SystemProbe,
} from './receiver/ebpf/preflight.js';

/**
 * `ok`; `warn`: the agent runs, with less (a refused periodic source, no
 * other namespace in view); `fail`: the agent cannot run until fixed;
 * `skip`: not tried because a check it depends on failed.
 */
export type DoctorStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** One requirement: printed as `<status> <check>: <detail>[; <fix>]`. */
export interface DoctorLine {
  status: DoctorStatus;
  check: string;
  /** What was found, or what is wrong (with the kernel's reason). */
  detail: string;
  /** What to do about it (warn and fail lines). */
  fix?: string;
  /** A refused load's whole message (libbpf's and the verifier's log): `--json` only. */
  log?: string;
}

/** What the doctor checks against: the `receivers.ebpf` settings the agent would start with. */
export interface DoctorInput {
  /** Default: auto-detected (first cgroup2 mount). */
  cgroup_path?: string | undefined;
  bpf_object: string;
  /** Default in the receiver config: /proc. */
  proc_path: string;
  /** Default in the receiver config: [/run/netns]. */
  netns_dirs: string[];
  /** Default in the receiver config: auto. */
  periodic_source: PeriodicSourceSetting;
  /** ms; the rtt_cb trial's interval. Default in the receiver config: 5000. */
  report_interval: number;
  /** Ringbuf wake-up threshold for the trial probes. Default in the receiver config: 65536. */
  wakeup_bytes: number;
}

/** The part of the addon's BpfProbe the doctor uses (native/index.d.ts). */
export interface DoctorProbe {
  load(): void;
  useSource(kind: PeriodicSourceKind, options: UseSourceOptions): void;
  attachCgroup(path: string): void;
  programIds?(): { sockops: number; iter: number };
  close(): void;
}

/** The kernel as the doctor sees it: trial probes and the namespace list. */
export interface DoctorKernel {
  /** Opens (not loads) the object, as `new BpfProbe(path, { wakeupBytes })`. Throws when unreadable or stale. */
  open(objectPath: string, wakeupBytes: number): DoctorProbe;
  listNetworkNamespaces(procPath: string, netnsDirs: string[]): BpfNamespaceRef[];
}

export interface DoctorDeps {
  /** capabilities, bpffs, cgroup v2, file existence (preflight's probe). */
  system: SystemProbe;
  /** Effective uid, to say "root"; undefined when unknown. */
  euid: () => number | undefined;
  /** Loads the addon; rejects when it is not built. */
  kernel: () => Promise<DoctorKernel>;
}

/** The real host: /proc, statfs and the native addon. */
export const realDoctorDeps: DoctorDeps = {
  system: realSystem,
  euid: () => process.geteuid?.(),
  kernel: async () => {
    const { BpfProbe } = await loadNative();
    return {
      open: (objectPath, wakeupBytes) => new BpfProbe(objectPath, { wakeupBytes }),
      listNetworkNamespaces: (procPath, netnsDirs) => BpfProbe.listNetworkNamespaces(procPath, netnsDirs),
    };
  },
};

export interface DoctorReport {
  /** One line per requirement, in a fixed order. */
  lines: DoctorLine[];
  /** The agent can start here with this config: no `fail` line. */
  ok: boolean;
  /** The source `periodic_source: auto` settles on; undefined when the core does not load. */
  autoSource: PeriodicSourceKind | 'none' | undefined;
  /**
   * The source the configured `periodic_source` settles on (equal to
   * autoSource under `auto`); undefined when the core does not load or a
   * pinned source is refused.
   */
  configuredSource: PeriodicSourceKind | 'none' | undefined;
  periodicSetting: PeriodicSourceSetting;
  /** The `periodic reports:` line. */
  periodic: string;
  /** Kernel ids of every program the trials loaded (all closed again before the report). */
  trialProgramIds: number[];
}

/** Kernel BTF: CO-RE relocations of the core (BPF_CORE_READ, bpf_skc_to_tcp_sock) resolve against it. */
export const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';

/** The core's parts, by the names libbpf's log uses for them (bpf/tcp_probe.bpf.c). */
const CORE_PARTS = [
  { check: 'sockops', kind: 'prog', name: 'kmesh_sockops', what: 'BPF_PROG_TYPE_SOCK_OPS program kmesh_sockops' },
  { check: 'sk_storage', kind: 'map', name: 'conn_state', what: 'BPF_MAP_TYPE_SK_STORAGE map conn_state' },
  { check: 'ringbuf', kind: 'map', name: 'events', what: 'BPF_MAP_TYPE_RINGBUF map events' },
] as const;
type CorePart = (typeof CORE_PARTS)[number]['check'];

const CORE_FIX: Record<CorePart, string> = {
  sockops:
    'needs a kernel with sockops and the helpers kmesh_sockops calls (Linux 5.10+; the verifier log in `kmesh-otel doctor --json` says which instruction), or a rebuilt object (`npm run build:bpf`)',
  sk_storage: 'needs BPF_MAP_TYPE_SK_STORAGE with BTF (Linux 5.2+, CONFIG_DEBUG_INFO_BTF=y)',
  ringbuf: "needs BPF_MAP_TYPE_RINGBUF (Linux 5.8+); as root on a kernel before 5.11, also a raised memlock limit (`ulimit -l unlimited`, or CAP_SYS_RESOURCE)",
};

/**
 * Which part of the core a failed load names: libbpf says `map 'conn_state':
 * failed to create: ...` or `prog 'kmesh_sockops': BPF program load failed:
 * ...` (libbpf.c, bpf_object__create_maps / bpf_object_load_prog). The first
 * such line wins: libbpf stops at the first failure, maps before programs.
 */
export function attributeCoreFailure(message: string): { part: CorePart | undefined; name: string | undefined; logLine: string | undefined } {
  for (const raw of message.split('\n')) {
    const line = raw.replace(/^(libbpf:\s*)+/, '').trim();
    const m = /\b(map|prog) '([^']+)'/.exec(line) ?? /bpf_create_map_xattr\(([^)]+)\)/.exec(line);
    if (m === null) continue;
    const kind = m.length === 3 ? m[1] : 'map';
    const name = m.length === 3 ? m[2]! : m[1]!;
    const part = CORE_PARTS.find((p) => p.kind === kind && p.name === name)?.check;
    return { part, name: `${kind} '${name}'`, logLine: line };
  }
  return { part: undefined, name: undefined, logLine: undefined };
}

/** What a successful trial of each source did (BpfProbe.useSource). */
const TRIAL_OK: Record<PeriodicSourceKind, string> = {
  sk_storage_iter: 'loads, attaches and walks (one trial walk)',
  tcp_iter: 'loads, attaches and walks (one trial walk per namespace in view)',
  sock_diag: 'answers (one trial INET_DIAG dump per namespace in view)',
  rtt_cb: `loads; ${SOURCE_NEEDS.rtt_cb}`,
};

function fromOutcome(check: string, o: CheckOutcome): DoctorLine {
  return o.ok ? { status: 'ok', check, detail: o.detail } : { status: 'fail', check, detail: o.detail, fix: o.fix! };
}

/** Opens, runs `body` on and always closes one trial probe; returns the error, if any. */
function trial(kernel: DoctorKernel, input: DoctorInput, ids: number[], body: (probe: DoctorProbe) => void): unknown {
  let probe: DoctorProbe | undefined;
  try {
    probe = kernel.open(input.bpf_object, input.wakeup_bytes);
    body(probe);
    return undefined;
  } catch (err) {
    return err ?? new Error('unknown error');
  } finally {
    if (probe !== undefined) {
      try {
        const p = probe.programIds?.();
        if (p !== undefined) ids.push(...[p.sockops, p.iter].filter((id) => id > 0));
      } catch {
        // Not loaded: no ids.
      }
      try {
        probe.close();
      } catch {
        // close() is idempotent and does not fail in practice; the report is what matters.
      }
    }
  }
}

/** errno values from include/uapi/asm-generic/errno-base.h. */
const EPERM = 1;
const EACCES = 13;

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));
const isPerNamespace = (s: PeriodicSourceKind | 'none' | undefined): boolean => s === 'tcp_iter' || s === 'sock_diag';

/**
 * Runs every check, in the order printed: root or capabilities, bpffs, cgroup
 * v2, BTF, the BPF object, the addon, the core (sockops, sk_storage,
 * ringbuf: one real load), a trial attach to the cgroup (a bpf_link, gone on
 * close), each periodic source (a fresh probe each: load, useSource, close),
 * namespace visibility. Never throws for what it finds.
 */
export async function runDoctor(input: DoctorInput, deps: DoctorDeps = realDoctorDeps): Promise<DoctorReport> {
  const lines: DoctorLine[] = [];
  const ids: number[] = [];
  const sys = deps.system;

  const caps = fromOutcome('capabilities', checkCapabilities(sys));
  if (caps.status === 'ok' && deps.euid() === 0) caps.detail = `root (uid 0): ${caps.detail}`;
  lines.push(caps);
  lines.push(fromOutcome('bpffs', checkBpffs(sys)));
  const cgroup = checkCgroup(input.cgroup_path, sys);
  lines.push(fromOutcome('cgroup v2', cgroup));
  const btfIndex = lines.push({ status: 'ok', check: 'BTF', detail: VMLINUX_BTF }) - 1;
  const btf = sys.exists(VMLINUX_BTF);
  const object = checkBpfObject(input.bpf_object, sys);
  lines.push(fromOutcome('bpf object', object));

  let kernel: DoctorKernel | undefined;
  if (!object.ok) {
    lines.push({ status: 'skip', check: 'native addon', detail: 'not tried: no BPF object to load' });
  } else {
    try {
      kernel = await deps.kernel();
      lines.push({ status: 'ok', check: 'native addon', detail: 'kmesh_bpf loaded' });
    } catch (err) {
      lines.push({ status: 'fail', check: 'native addon', detail: `cannot load it: ${firstLine(err)}`, fix: 'build it with `npm run build:native`' });
    }
  }

  // The core: one real load, then a trial attach with a bpf_link.
  let coreLoads = false;
  if (kernel === undefined) {
    for (const p of CORE_PARTS) lines.push({ status: 'skip', check: p.check, detail: 'not tried: the BPF object or the addon is missing' });
    lines.push({ status: 'skip', check: 'cgroup attach', detail: 'not tried: the BPF object or the addon is missing' });
  } else {
    let attachErr: unknown;
    let attached = false;
    let sockopsId = 0;
    const loadErr = trial(kernel, input, ids, (probe) => {
      probe.load();
      coreLoads = true;
      if (cgroup.cgroupPath === undefined) return;
      try {
        probe.attachCgroup(cgroup.cgroupPath);
        attached = true;
        sockopsId = probe.programIds?.().sockops ?? 0;
      } catch (err) {
        attachErr = err;
      }
    });
    if (coreLoads) {
      for (const p of CORE_PARTS) lines.push({ status: 'ok', check: p.check, detail: `${p.what} ${p.kind === 'map' ? 'created' : 'loaded'}` });
    } else {
      const reason = firstLine(loadErr);
      const { part, name, logLine } = attributeCoreFailure(message(loadErr));
      const blamed = part ?? 'sockops';
      // EPERM/EACCES without the capabilities: the fix is the privileges, whatever part the kernel stopped at.
      const errno = (loadErr as { errno?: unknown } | undefined)?.errno;
      const unprivileged = caps.status === 'fail' && (errno === EPERM || errno === EACCES);
      for (const p of CORE_PARTS) {
        if (p.check === blamed) {
          const where = part !== undefined ? `${p.what} refused` : name !== undefined ? `the core load failed at ${name}` : 'the core did not load';
          lines.push({
            status: 'fail',
            check: p.check,
            detail: `${where}: ${reason}${logLine !== undefined && logLine !== reason ? ` (libbpf: ${logLine})` : ''}`,
            fix: unprivileged ? `not privileged: ${caps.fix!}` : CORE_FIX[p.check],
            log: message(loadErr),
          });
        } else {
          lines.push({
            status: 'skip',
            check: p.check,
            detail: part !== undefined ? `not confirmed: the core load stopped at ${blamed}` : 'not confirmed: the core did not load',
          });
        }
      }
    }
    if (!coreLoads) {
      lines.push({ status: 'skip', check: 'cgroup attach', detail: 'not tried: the core does not load' });
    } else if (cgroup.cgroupPath === undefined) {
      lines.push({ status: 'skip', check: 'cgroup attach', detail: 'not tried: no cgroup v2 directory' });
    } else if (attached) {
      lines.push({
        status: 'ok',
        check: 'cgroup attach',
        detail: `kmesh_sockops${sockopsId > 0 ? ` (prog id ${sockopsId})` : ''} attached to ${cgroup.cgroupPath} by a bpf_link, then closed`,
      });
    } else {
      lines.push({
        status: 'fail',
        check: 'cgroup attach',
        detail: `attaching to ${cgroup.cgroupPath} failed: ${firstLine(attachErr)}`,
        fix: 'set receivers.ebpf.cgroup_path to a cgroup v2 directory (the root of the hierarchy sees every pod); attaching needs CAP_NET_ADMIN and CAP_BPF',
      });
    }
  }

  // BTF: libbpf also finds kernel BTF outside sysfs, so the load has the last word.
  if (btf) lines[btfIndex] = { status: 'ok', check: 'BTF', detail: `${VMLINUX_BTF} present` };
  else if (coreLoads) lines[btfIndex] = { status: 'warn', check: 'BTF', detail: `${VMLINUX_BTF} missing, but libbpf found kernel BTF elsewhere: the core loads` };
  else {
    lines[btfIndex] = {
      status: 'fail',
      check: 'BTF',
      detail: `${VMLINUX_BTF} missing (the core's CO-RE reads need kernel BTF)`,
      fix: 'run a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu, Fedora and RHEL kernels are)',
    };
  }

  // Each periodic source on a fresh probe: load, useSource (load, attach, one walk), close.
  const options: UseSourceOptions = { procPath: input.proc_path, netnsDirs: input.netns_dirs, rttIntervalMs: input.report_interval };
  const refused = new Map<PeriodicSourceKind, string>();
  let autoSource: DoctorReport['autoSource'];
  let configuredSource: DoctorReport['configuredSource'];
  let periodic: string;
  const setting = input.periodic_source;
  if (kernel === undefined || !coreLoads) {
    for (const s of PERIODIC_SOURCES) lines.push({ status: 'skip', check: s, detail: 'not tried: the core does not load' });
    periodic = 'unknown: the core does not load';
  } else {
    const k = kernel;
    const sourceLines: DoctorLine[] = [];
    for (const s of PERIODIC_SOURCES) {
      const err = trial(k, input, ids, (probe) => {
        probe.load();
        probe.useSource(s, options);
      });
      if (err === undefined) sourceLines.push({ status: 'ok', check: s, detail: TRIAL_OK[s] });
      else {
        refused.set(s, firstLine(err));
        sourceLines.push({
          status: setting === s ? 'fail' : 'warn',
          check: s,
          detail: `refused: ${firstLine(err)}`,
          fix: setting === s ? `receivers.ebpf.periodic_source pins it: set it to auto, or give the kernel what it needs: ${SOURCE_NEEDS[s]}` : `needs ${SOURCE_NEEDS[s]}`,
          log: message(err),
        });
      }
    }
    lines.push(...sourceLines);
    // The agent's own ladder, replayed over the trials' outcomes.
    const replay = {
      useSource: (s: PeriodicSourceKind) => {
        const reason = refused.get(s);
        if (reason !== undefined) throw new Error(reason);
      },
    };
    autoSource = choosePeriodicSource(replay, 'auto', options).source;
    // A pinned source that is refused is a start-up error in the agent (PinnedSourceError).
    configuredSource = setting === 'auto' ? autoSource : setting !== 'none' && refused.has(setting) ? undefined : choosePeriodicSource(replay, setting, options).source;
    const skipped = PERIODIC_SOURCES.slice(0, autoSource === 'none' ? PERIODIC_SOURCES.length : PERIODIC_SOURCES.indexOf(autoSource));
    periodic =
      autoSource === 'none'
        ? 'auto would use none: every source is refused, so open, close and failure records only (bytes of long-lived connections appear at their close)'
        : `auto would use ${autoSource}${skipped.length > 0 ? ` (refused: ${skipped.join(', ')})` : ''}`;
    if (setting === 'none') periodic += '; receivers.ebpf.periodic_source is none: no periodic reports';
    else if (setting !== 'auto') {
      periodic += configuredSource === undefined ? `; receivers.ebpf.periodic_source pins ${setting}, which this kernel refuses` : `; receivers.ebpf.periodic_source pins ${setting}, which loads`;
    }
  }

  // Namespace visibility: what tcp_iter and sock_diag would walk.
  const effective = setting === 'auto' ? autoSource : setting === 'none' ? 'none' : setting;
  if (kernel === undefined) {
    lines.push({ status: 'skip', check: 'namespaces', detail: 'not tried: the addon is missing' });
  } else {
    const dirs = input.netns_dirs.join(', ') || 'no netns_dirs';
    try {
      const list = kernel.listNetworkNamespaces(input.proc_path, input.netns_dirs);
      const viaDirs = list.filter((n) => n.fromDir).length;
      const viaProc = list.length - viaDirs;
      const counts = `${list.length} network namespace${list.length === 1 ? '' : 's'} in view: ${viaProc} via ${input.proc_path}, ${viaDirs} via ${dirs}`;
      if (list.length > 1) lines.push({ status: 'ok', check: 'namespaces', detail: counts });
      else if (effective !== undefined && !isPerNamespace(effective)) {
        lines.push({ status: 'ok', check: 'namespaces', detail: `${counts} (only the agent's own; not needed: periodic reports use ${effective})` });
      } else {
        lines.push({
          status: 'warn',
          check: 'namespaces',
          detail: `${counts}: only the agent's own, so tcp_iter and sock_diag report no pod's connections`,
          fix: "run the agent with hostPID: true, or mount the host's /run/netns read-only into it (a directory in receivers.ebpf.netns_dirs)",
        });
      }
    } catch (err) {
      lines.push({
        status: isPerNamespace(effective) ? 'warn' : 'ok',
        check: 'namespaces',
        detail: `cannot list network namespaces under ${input.proc_path} and ${dirs}: ${firstLine(err)}`,
        fix: 'check receivers.ebpf.proc_path and netns_dirs',
      });
    }
  }

  return {
    lines,
    ok: lines.every((l) => l.status !== 'fail'),
    autoSource,
    configuredSource,
    periodicSetting: setting,
    periodic,
    trialProgramIds: ids,
  };
}

const STATUS_TEXT: Record<DoctorStatus, string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL', skip: 'skip' };

/** One line per check, then `periodic reports: ...` and the verdict. */
export function formatDoctorReport(report: DoctorReport): string {
  const out = report.lines.map((l) => `${STATUS_TEXT[l.status]} ${l.check}: ${l.detail}${l.fix !== undefined ? `; ${l.fix}` : ''}`);
  out.push(`periodic reports: ${report.periodic}`);
  out.push(report.ok ? 'verdict: kmesh-otel can run here' : 'verdict: kmesh-otel cannot run here: fix the FAIL lines above');
  return out.join('\n') + '\n';
}
