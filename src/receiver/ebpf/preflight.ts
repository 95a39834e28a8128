/**
 * Start-up checks that turn the kernel's terse EPERM/EINVAL into messages that
 * say what is missing and how to fix it. All problems are collected and
 * reported together, so one restart fixes them all.
 */
import { existsSync, readFileSync, statfsSync } from 'node:fs';

/** Filesystem magics from include/uapi/linux/magic.h. */
export const BPF_FS_MAGIC = 0xcafe4a11;
export const CGROUP2_SUPER_MAGIC = 0x63677270;

/** Capability bits from include/uapi/linux/capability.h. */
export const Cap = { NET_ADMIN: 12, SYS_ADMIN: 21, PERFMON: 38, BPF: 39 } as const;

/** What the checks read from the system; a fake in unit tests. */
export interface SystemProbe {
  /** CapEff of this process, or undefined when unreadable. */
  effectiveCapabilities(): bigint | undefined;
  /** statfs f_type of a path, or undefined when the path does not exist. */
  filesystemType(path: string): number | undefined;
  exists(path: string): boolean;
  /** The text of /proc/self/mounts. */
  mounts(): string;
}

export const realSystem: SystemProbe = {
  effectiveCapabilities() {
    try {
      const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
      return m === null ? undefined : BigInt('0x' + m[1]);
    } catch {
      return undefined;
    }
  },
  filesystemType(path) {
    try {
      return statfsSync(path).type;
    } catch {
      return undefined;
    }
  },
  exists: (path) => existsSync(path),
  mounts() {
    try {
      return readFileSync('/proc/self/mounts', 'utf8');
    } catch {
      return '';
    }
  },
};

/** Thrown by start(): the service reports it as a fatal start-up error. */
export class EbpfReceiverStartError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EbpfReceiverStartError';
  }
}

/** /proc/self/mounts escapes space, tab, newline and backslash as octal (`\040`). */
function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** The first cgroup v2 mount point in /proc/self/mounts, if any. */
export function findCgroup2Mount(mountsText: string): string | undefined {
  for (const line of mountsText.split('\n')) {
    const f = line.split(' ');
    if (f.length >= 3 && f[2] === 'cgroup2') return unescapeMount(f[1]!);
  }
  return undefined;
}

const has = (caps: bigint, bit: number): boolean => ((caps >> BigInt(bit)) & 1n) === 1n;

const CGROUP2_HOWTO =
  'mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified` (or boot with systemd.unified_cgroup_hierarchy=1) and set receivers.ebpf.cgroup_path to it';

/**
 * The outcome of one start-up check. `preflight()` reports a failed one as
 * `<detail>: <fix>`; `kmesh-otel doctor` prints each one on a line of its own.
 */
export interface CheckOutcome {
  /** False: the agent cannot start until `fix` is applied. */
  ok: boolean;
  /** What was found (ok), or what is wrong (not ok). */
  detail: string;
  /** How to fix it; set exactly when not ok. */
  fix?: string;
}

const passed = (detail: string): CheckOutcome => ({ ok: true, detail });
const failed = (detail: string, fix: string): CheckOutcome => ({ ok: false, detail, fix });

/**
 * CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (load and attach a sockops program,
 * Linux 5.8+), or CAP_SYS_ADMIN, which covers all three (and is all older
 * kernels know). An unreadable CapEff passes: the load itself is the real test.
 */
export function checkCapabilities(sys: SystemProbe = realSystem): CheckOutcome {
  const caps = sys.effectiveCapabilities();
  if (caps === undefined) return passed('CapEff not readable from /proc/self/status: not checked (the load decides)');
  const admin = has(caps, Cap.SYS_ADMIN);
  if (admin) return passed('CAP_SYS_ADMIN (covers CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)');
  const missing: string[] = [];
  if (!has(caps, Cap.BPF)) missing.push('CAP_BPF');
  if (!has(caps, Cap.PERFMON)) missing.push('CAP_PERFMON');
  if (!has(caps, Cap.NET_ADMIN)) missing.push('CAP_NET_ADMIN');
  if (missing.length > 0) {
    return failed(
      `missing capabilities ${missing.join(', ')} (loading and attaching a sockops program needs them)`,
      'run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (in Kubernetes: securityContext.capabilities.add)',
    );
  }
  // setns() into another network namespace needs CAP_SYS_ADMIN (setns(2)).
  return passed('CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN (no CAP_SYS_ADMIN: tcp_iter and sock_diag cannot enter other network namespaces)');
}

/** bpffs at /sys/fs/bpf (the agent pins nothing, but libbpf and the deployment expect it). */
export function checkBpffs(sys: SystemProbe = realSystem): CheckOutcome {
  if (sys.filesystemType('/sys/fs/bpf') === BPF_FS_MAGIC) return passed('/sys/fs/bpf is a bpf filesystem');
  return failed('/sys/fs/bpf is not a bpf filesystem', 'mount it with `mount -t bpf bpf /sys/fs/bpf` (in Kubernetes: a hostPath volume of /sys/fs/bpf)');
}

/**
 * The cgroup v2 directory to attach to: `receivers.ebpf.cgroup_path` when
 * set (it must be cgroup v2), else the first cgroup2 mount. `cgroupPath` is
 * set exactly when ok.
 */
export function checkCgroup(cgroupPath: string | undefined, sys: SystemProbe = realSystem): CheckOutcome & { cgroupPath?: string } {
  if (cgroupPath === undefined) {
    const found = findCgroup2Mount(sys.mounts());
    if (found === undefined) return failed('no cgroup v2 mount found in /proc/self/mounts (receivers.ebpf.cgroup_path not set)', CGROUP2_HOWTO);
    return { ...passed(`${found} (auto-detected: the first cgroup2 mount in /proc/self/mounts)`), cgroupPath: found };
  }
  const type = sys.filesystemType(cgroupPath);
  if (type === undefined) return failed(`receivers.ebpf.cgroup_path ${cgroupPath} does not exist`, CGROUP2_HOWTO);
  if (type !== CGROUP2_SUPER_MAGIC) {
    const found = findCgroup2Mount(sys.mounts());
    return failed(
      `receivers.ebpf.cgroup_path ${cgroupPath} is not a cgroup v2 hierarchy (cgroup v1 or another filesystem)`,
      found !== undefined ? `this machine has cgroup v2 at ${found}; set cgroup_path to it or leave it unset to auto-detect` : CGROUP2_HOWTO,
    );
  }
  return { ...passed(`${cgroupPath} (receivers.ebpf.cgroup_path) is a cgroup v2 hierarchy`), cgroupPath };
}

/** The compiled BPF object exists. */
export function checkBpfObject(objectPath: string, sys: SystemProbe = realSystem): CheckOutcome {
  if (sys.exists(objectPath)) return passed(objectPath);
  return failed(`BPF object ${objectPath} not found`, 'build it with `npm run build` (or `make -C bpf`), or set receivers.ebpf.bpf_object');
}

export interface PreflightInput {
  cgroup_path?: string | undefined;
  bpf_object: string;
}

/**
 * Runs every check; returns the cgroup path to attach to, or throws one
 * {@link EbpfReceiverStartError} listing each problem with its fix.
 */
export function preflight(config: PreflightInput, sys: SystemProbe = realSystem): { cgroupPath: string } {
  const cgroup = checkCgroup(config.cgroup_path, sys);
  const problems = [checkCapabilities(sys), checkBpffs(sys), cgroup, checkBpfObject(config.bpf_object, sys)]
    .filter((c) => !c.ok)
    .map((c) => `${c.detail}: ${c.fix}`);
  if (problems.length > 0) {
    throw new EbpfReceiverStartError(`ebpf receiver cannot start:\n  - ${problems.join('\n  - ')}`);
  }
  return { cgroupPath: cgroup.cgroupPath! };
}

/**
 * The message for a failed load of the core: the addon's error already names
 * the errno, what usually causes it and libbpf's (and the verifier's) log;
 * this adds only where to look next.
 */
export function loadFailureMessage(objectPath: string, err: unknown): string {
  const detail = err instanceof Error ? err.message : String(err);
  return (
    `loading BPF object ${objectPath} failed: ${detail}\n` +
    '  The core needs BTF (/sys/kernel/btf/vmlinux), sockops, BPF_MAP_TYPE_SK_STORAGE and ringbuf (Linux 5.10+). ' +
    '`kmesh-otel doctor` checks each; `npm run build` rebuilds a stale object.'
  );
}
