/**
 * The receiver's view of the kernel: a small interface with one real
 * implementation over the native addon (native/index.js, `BpfProbe`, whose
 * declarations in native/index.d.ts are the one description of the addon)
 * and fakes in unit tests. Every Buffer is a packed run of `struct
 * conn_record`.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as Native from '../../../native/index.js';
import { packageRoot } from '../../paths.js';

export type PeriodicSourceKind = Native.PeriodicSourceKind;
export type WalkStats = Native.BpfWalkStats;
export type UseSourceOptions = Native.UseSourceOptions;

/** One walk's records (to process as a whole, like a drained batch) and what it did. */
export interface WalkResult {
  /** Empty when the records went to iterate()'s `onRecords`. */
  records: Uint8Array;
  stats: WalkStats;
}

export interface KernelSource {
  /** Verifies and loads the core (sockops, sk_storage, ringbuf). Throws with the loader's (and verifier's) message. */
  load(): void;
  /**
   * Makes `kind` the periodic-report source by really loading (attaching,
   * walking) it. Throws with the kernel's reason when the kernel refuses it,
   * leaving the source unchanged, so the caller can try the next one.
   */
  useSource(kind: PeriodicSourceKind, options: UseSourceOptions): void;
  /** Attaches the sockops program to a cgroup v2 directory (bpf_link: detached on close or process death). */
  attach(cgroupPath: string): void;
  /**
   * Starts delivering ringbuf batches to `onBatch`: at the latest every
   * `pollTimeoutMs`, earlier past the wake-up threshold. `onBatch` must not throw.
   */
  startDrain(onBatch: (records: Uint8Array) => void, pollTimeoutMs: number): void;
  /** Whatever the ringbuf holds now, after anything drained but not yet delivered (may be empty). */
  drainNow(): Uint8Array;
  /**
   * One walk of the periodic-report source: RECORD_REPORT records with
   * running totals of every established tracked socket. The reports keep the
   * ringbuf's order, so the buffer also holds every other record drained up
   * to the end of the walk (a report never follows the close of its
   * socket): process it as a whole, like a drained batch. The real source
   * walks on a thread of its own and resolves later (no drained batch is
   * delivered meanwhile: they follow the walk's records); fakes may answer
   * at once. Rejects with an Error that carries the walk's `stats`.
   *
   * With `onRecords`, a source may hand the records to it instead, in
   * order, in several calls, each buffer valid only during its call (the
   * real one reuses one 1 MiB buffer for every chunk and walk), and return
   * `records` empty; processing each chunk as it comes is the same as
   * processing the whole.
   */
  iterate(onRecords?: (records: Uint8Array) => void): WalkResult | Promise<WalkResult>;
  /** Records the kernel dropped because the ringbuf was full (cumulative). */
  lostRecords(): bigint;
  /**
   * Reports an iterator could not put into the full ringbuf and returned
   * through its read() buffer instead (cumulative; not lost, but the slow
   * path). Optional: fakes may leave it out.
   */
  iteratorFallbackRecords?(): bigint;
  /** Stops draining, detaches and frees everything. Idempotent. */
  close(): void;
}

export interface KernelSourceOptions {
  objectPath: string;
  wakeupBytes: number;
}

/** Creates (opens, not yet loads) a kernel source. Async: the addon is imported on first use. */
export type KernelSourceFactory = (options: KernelSourceOptions) => Promise<KernelSource>;

/**
 * The addon module. The import happens here rather than at module load so
 * that `kmesh-otel validate` and unit tests work without a built addon; a
 * missing addon becomes a start-up error naming the fix.
 */
export async function loadNative(): Promise<typeof Native> {
  const url = pathToFileURL(join(packageRoot, 'native', 'index.js')).href;
  return (await import(url)) as typeof Native;
}

/** The real kernel, through the addon. */
export const nativeKernelSource: KernelSourceFactory = async (options) => {
  const native = await loadNative();
  const probe = new native.BpfProbe(options.objectPath, { wakeupBytes: options.wakeupBytes });
  let closed = false;
  return {
    load: () => probe.load(),
    useSource: (kind, opts) => probe.useSource(kind, opts),
    attach: (path) => probe.attachCgroup(path),
    startDrain: (onBatch, pollTimeoutMs) => probe.startDrain(onBatch, Math.min(60_000, Math.max(1, Math.round(pollTimeoutMs)))),
    drainNow: () => probe.drainNow(),
    iterate: (onRecords) =>
      new Promise<WalkResult>((resolve, reject) => {
        probe.iterateAsync((err, records, stats) => {
          if (err !== null) reject(Object.assign(err, { stats }));
          else resolve({ records: records ?? new Uint8Array(0), stats });
        }, onRecords);
      }),
    lostRecords: () => probe.lostRecords(),
    iteratorFallbackRecords: () => probe.iterFallbackRecords(),
    close: () => {
      if (closed) return;
      closed = true;
      probe.close();
    },
  };
};
