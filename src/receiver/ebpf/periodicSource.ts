/**
 * The ladder of periodic-report sources. Only the core (sockops, sk_storage,
 * ringbuf: open, close and failure records) is required; reports of
 * long-lived connections come from the best source this kernel really loads,
 * attaches and walks. Feature probes are not trusted: `bpftool feature probe`
 * says "tracing NOT available" on kernels where iterators load, and a
 * hardened build can refuse one iterator type (EPERM before the verifier)
 * while another loads (see shared/KERNELS.md).
 *
 * Order, best first:
 *   1. `sk_storage_iter`: one walk over the tracked sockets only, every
 *      namespace at once.
 *   2. `tcp_iter`: the kernel's TCP table, once per network namespace
 *      (setns: CAP_SYS_ADMIN, and the namespaces visible: hostPID or
 *      /run/netns); about 75 ms per 100k sockets on the walk of the
 *      namespace that holds them.
 *   3. `sock_diag`: INET_DIAG dumps with tcp_info, once per namespace,
 *      joined to the connections by socket cookie; no BPF program at all.
 *   4. `rtt_cb`: reports from the sockops program on ACKs with an RTT sample,
 *      at most once per interval: needs nothing more than the core, but a
 *      socket that only receives data is reported only at its close.
 */
import type { KernelSource, PeriodicSourceKind, UseSourceOptions } from './KernelSource.js';

export const PERIODIC_SOURCES: readonly PeriodicSourceKind[] = ['sk_storage_iter', 'tcp_iter', 'sock_diag', 'rtt_cb'];

/** What each source needs beyond the core, for logs, `doctor` and docs. */
export const SOURCE_NEEDS: Readonly<Record<PeriodicSourceKind, string>> = {
  sk_storage_iter: 'iter/bpf_sk_storage_map programs (Linux 5.10+; refused by some hardened builds)',
  tcp_iter: 'iter/tcp programs, CAP_SYS_ADMIN (setns) and the namespaces in view (hostPID or /run/netns)',
  sock_diag: 'NETLINK_SOCK_DIAG, CAP_SYS_ADMIN (setns) and the namespaces in view (hostPID or /run/netns)',
  rtt_cb: 'nothing beyond the core; reports senders only (a socket that only receives is reported at its close)',
};

export type PeriodicSourceSetting = 'auto' | PeriodicSourceKind | 'none';

export interface SourceChoice {
  /** The source in use. */
  source: PeriodicSourceKind | 'none';
  /** Sources tried before it (or all of them, for `none` under `auto`), with the kernel's reason. */
  skipped: Array<{ source: PeriodicSourceKind; reason: string }>;
}

/** Thrown when a source named in the config is refused. */
export class PinnedSourceError extends Error {
  constructor(
    readonly source: PeriodicSourceKind,
    readonly reason: string,
  ) {
    super(`receivers.ebpf.periodic_source: ${source} was requested, but this kernel refuses it: ${reason}`);
    this.name = 'PinnedSourceError';
  }
}

/** The first line of an error's message (the addon appends libbpf's log below it). */
export function firstLine(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  const nl = m.indexOf('\n');
  return nl < 0 ? m : m.slice(0, nl);
}

/**
 * Settles the kernel's periodic-report source by trying, in ladder order,
 * until one loads (`auto`), or only the named one. Throws
 * {@link PinnedSourceError} when a named source is refused; never throws for
 * `auto` (nothing left is `none`).
 */
export function choosePeriodicSource(
  kernel: Pick<KernelSource, 'useSource'>,
  setting: PeriodicSourceSetting,
  options: UseSourceOptions,
): SourceChoice {
  if (setting === 'none') return { source: 'none', skipped: [] };
  const candidates = setting === 'auto' ? PERIODIC_SOURCES : [setting];
  const skipped: SourceChoice['skipped'] = [];
  for (const source of candidates) {
    try {
      kernel.useSource(source, options);
      return { source, skipped };
    } catch (err) {
      if (setting !== 'auto') throw new PinnedSourceError(source, firstLine(err));
      skipped.push({ source, reason: firstLine(err) });
    }
  }
  return { source: 'none', skipped };
}
