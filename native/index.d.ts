/**
 * kmesh_bpf: the N-API addon over libbpf that owns bpf/tcp_probe.bpf.o.
 *
 * Record format: every Buffer returned or delivered here is a packed sequence
 * of `struct conn_record` (bpf/include/record.h, 136 bytes each, host byte
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
  /**
   * Which iterator program serves iterate(): `sk_storage_map` walks the
   * tracked sockets (conn_state); `task_file` walks every process's open
   * files and reports the tracked TCP sockets among them (for kernels that
   * refuse map-element iterators: EPERM at load on some hardened builds).
   * Default `auto`: the first, else the second.
   */
  iterator?: 'auto' | 'sk_storage_map' | 'task_file';
}

export interface BpfIteratorInfo {
  kind: 'sk_storage_map' | 'task_file';
  /** Why the sk_storage map iterator did not load, when `auto` fell back. */
  mapIteratorError?: string;
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
  /** Verifies and loads programs and maps; enables kernel run-time stats if tunables.runTimeStats. */
  load(): void;
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
   * Runs the conn_state iterator: RECORD_REPORT records for every established
   * tracked socket. The reports travel through the events ringbuf, so the
   * result also holds every other record consumed from it up to the end of
   * the walk (opens, closes, failures), all in ringbuf order: process the
   * Buffer as a whole, like a drained batch. Batches the drain thread
   * consumed earlier and has not delivered yet come first.
   */
  iterate(): Buffer;
  /**
   * The same walk on a thread of its own; `callback(null, records)` (or
   * `callback(error)`) runs on the JS thread afterwards. Until then the drain
   * callback delivers nothing (the records consumed meanwhile follow the
   * walk's, in the result), and drainNow()/iterate()/iterateAsync() throw.
   * close() waits for a walk in flight.
   */
  iterateAsync(callback: (err: Error | null, records?: Buffer) => void): void;
  /** Which iterator program load() settled on (see BpfProbeTunables.iterator). */
  iteratorInfo(): BpfIteratorInfo;
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
  /** Kernel program ids (as shown by `bpftool prog` / `bpftool cgroup show`). */
  programIds(): { sockops: number; iter: number };
  /** Stops draining, detaches, frees maps and programs. Idempotent; the probe is unusable afterwards. */
  close(): void;
}

/** Absolute path of bpf/tcp_probe.bpf.o inside this package. */
export declare const defaultObjectPath: string;
