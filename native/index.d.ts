/**
 * kmesh_bpf: the N-API addon over libbpf that owns bpf/tcp_probe.bpf.o.
 *
 * Record format: every Buffer returned or delivered here is a packed sequence
 * of `struct conn_record` (bpf/include/record.h, 144 bytes each, host byte
 * order) with nothing in between; decode with DataView using offsets checked
 * against the object's BTF.
 *
 * All methods throw an Error with a readable message (errno, what to do,
 * the tail of libbpf's log) on failure; the `errno` property is set when the
 * failure came from a system call.
 */

/** Tunables fixed between open and load. */
export interface BpfProbeTunables {
  /**
   * Ringbuf fill level (bytes) from which a submit wakes the drain thread
   * (BPF_RB_FORCE_WAKEUP); below it records wait for the poll timeout.
   * Default 65536. 0 wakes on every record.
   */
  wakeupBytes: number;
  /** Size of the events ringbuf in bytes: a power of two, >= page size. Default 1 MiB. */
  ringbufBytes?: number;
  /**
   * Turn on the kernel's BPF run-time accounting (BPF_ENABLE_STATS) while the
   * probe is loaded, for programStats(). Default false: it applies to every
   * BPF program on the node and costs two clock reads per program run.
   */
  runTimeStats?: boolean;
}

/**
 * Sources of periodic reports for long-lived connections, best first:
 * - `sk_storage_iter`: iter/bpf_sk_storage_map over the tracked sockets, one walk for every namespace;
 * - `tcp_iter`: iter/tcp, once per network namespace (setns: CAP_SYS_ADMIN);
 * - `sock_diag`: NETLINK_SOCK_DIAG dumps with tcp_info, once per namespace, joined by socket cookie (no BPF);
 * - `rtt_cb`: kmesh_sockops on ACKs with an RTT sample, at most once per interval (senders only).
 */
export type PeriodicSourceKind = 'sk_storage_iter' | 'tcp_iter' | 'sock_diag' | 'rtt_cb';

export interface UseSourceOptions {
  /** Where processes' namespaces are found (`<procPath>/<pid>/ns/net`). Default `/proc`. */
  procPath?: string;
  /** Directories of bind-mounted namespaces (`ip netns`, CNI). Default [`/run/netns`]. */
  netnsDirs?: string[];
  /** `rtt_cb`: the least time between two reports of one socket, ms. Default 5000. */
  rttIntervalMs?: number;
}

/** What one walk did. */
export interface BpfWalkStats {
  source: PeriodicSourceKind | 'none';
  durationMs: number;
  /** Namespaces walked (1 for `sk_storage_iter`, which sees all at once; 0 for `rtt_cb`). */
  namespaces: number;
  /** RECORD_REPORTs the walk produced. */
  reported: number;
  /** Namespaces that could not be entered or read; `first` on a namespace's first failure (log it once). */
  namespaceFailures: Array<{ path: string; reason: string; first: boolean }>;
}

/** A network namespace a per-namespace walk would visit. */
export interface BpfNamespaceRef {
  path: string;
  inode: number;
  /** Found in a netns directory (bind mount) rather than under proc. */
  fromDir: boolean;
}

export interface BpfProgramStats {
  /** Cumulative kernel run time of kmesh_sockops (needs BPF stats enabled; see statsEnabled). */
  runTimeNs: bigint;
  /** Number of kmesh_sockops runs counted while stats were enabled. */
  runCount: bigint;
  /**
   * Whether this probe turned BPF_STATS_RUN_TIME on (tunables.runTimeStats);
   * when false the counters only move if something else on the node has it on.
   */
  statsEnabled: boolean;
}

export declare class BpfProbe {
  /** Opens the object and sets tunables (no kernel state yet). */
  constructor(objPath: string, tunables: BpfProbeTunables);
  /**
   * Verifies and loads the core: kmesh_sockops with every map (sk_storage,
   * ringbuf, counters). Enables kernel run-time stats if tunables.runTimeStats.
   */
  load(): void;
  /**
   * Makes `kind` the periodic-report source by really loading, attaching and
   * walking it once (the walk's records, none before attachCgroup(), wait for
   * the next drain). Throws an Error with the kernel's reason and `errno` set
   * when the kernel refuses it; the probe is then unchanged, so the next
   * source can be tried. Once per probe.
   */
  useSource(kind: PeriodicSourceKind, options?: UseSourceOptions): void;
  /** The periodic-report source in use, `none` until useSource() succeeds. */
  source(): PeriodicSourceKind | 'none';
  /** The network namespaces a per-namespace walk visits now (this thread's own first). */
  static listNetworkNamespaces(procPath?: string, netnsDirs?: string[]): BpfNamespaceRef[];
  /**
   * Attaches kmesh_sockops to a cgroup-v2 directory with a bpf_link (multi-attach,
   * never pinned: detached by close() or when the process dies).
   */
  attachCgroup(path: string): void;
  /**
   * Destroys every cgroup link of this probe (returns how many); everything
   * else stays loaded and draining, and attachCgroup() may attach again.
   */
  detachCgroups(): number;
  /**
   * Starts the drain thread: records are handed to `onBatch` as one packed
   * Buffer per batch, at the latest every `pollTimeoutMs` (1..60000) and
   * earlier when the ringbuf fill passes `wakeupBytes`. Keeps the event loop
   * alive until stopDrain()/close(). Records reach `onBatch`, drainNow() and
   * iterate() in ringbuf order, each exactly once.
   */
  startDrain(onBatch: (records: Buffer) => void, pollTimeoutMs: number): void;
  /** Stops and joins the drain thread (within one poll timeout). Idempotent. */
  stopDrain(): void;
  /**
   * Synchronously consumes whatever the ringbuf holds now, together with
   * batches the drain thread consumed but has not delivered yet (may be empty).
   */
  drainNow(): Buffer;
  /**
   * One walk of the periodic-report source: RECORD_REPORT records for the
   * established tracked sockets (for `rtt_cb` and `none`, a drain). The
   * reports share the events ringbuf's order, so the result also holds every
   * other record consumed up to the end of the walk (opens, closes,
   * failures), all in order: process the Buffer as a whole, like a drained
   * batch. Batches the drain thread consumed earlier and has not delivered
   * yet come first. Runs on a thread of its own and waits for it.
   */
  iterate(): Buffer;
  /**
   * The same walk, `callback(null, records, stats)` (or `callback(error,
   * undefined, stats)`) on the JS thread afterwards. Until then the drain
   * callback delivers nothing (the records consumed meanwhile follow the
   * walk's, in the result), and drainNow()/iterate()/iterateAsync() throw.
   * close() waits for a walk in flight.
   *
   * With `onRecords`, the records go to it instead, in order, in views of at
   * most 1 MiB (whole records) of one ArrayBuffer the probe reuses for every
   * chunk and walk: a view is valid only during its call (process or copy it
   * there). Chunks are delivered while the walk runs (whenever a chunk's
   * worth has been consumed) and the rest right before `callback(null,
   * undefined, stats)`; reports read() returned because the ring was full
   * come last, minus those of sockets whose close was delivered already. The
   * agent walks this way, so a walk neither accumulates in the addon nor
   * leaves a walk-sized Buffer (14 MB at 100k tracked sockets) waiting for a
   * major GC.
   */
  iterateAsync(
    callback: (err: Error | null, records: Buffer | undefined, stats: BpfWalkStats) => void,
    onRecords?: (records: Uint8Array) => void,
  ): void;
  /** What the last walk (or useSource's trial walk) did. */
  lastWalk(): BpfWalkStats;
  /** Records dropped because the ringbuf was full (sum over CPUs). */
  lostRecords(): bigint;
  /**
   * Reports the iterator returned through read() because the ringbuf was full
   * (sum over CPUs): not lost, but the slow path (each read() of the
   * kernel's 8-page seq buffer restarts the walk of a bucket).
   */
  iterFallbackRecords(): bigint;
  /** Kernel-side cost of kmesh_sockops. */
  programStats(): BpfProgramStats;
  /** Kernel program ids (as shown by `bpftool prog` / `bpftool cgroup show`); `iter` is 0 without an iterator source. */
  programIds(): { sockops: number; iter: number };
  /** Stops draining, detaches, frees maps and programs. Idempotent; the probe is unusable afterwards. */
  close(): void;
}

/** Absolute path of bpf/tcp_probe.bpf.o inside this package. */
export declare const defaultObjectPath: string;
