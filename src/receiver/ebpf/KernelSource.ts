/**
 * The receiver's view of the kernel: a small interface with one real
 * implementation over the native addon (native/index.js, `BpfProbe`) and
 * fakes in unit tests. Every Buffer is a packed run of `struct conn_record`.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from './config.js';

export interface KernelSource {
  /** Verifies and loads the BPF object. Throws with the loader's (and verifier's) message. */
  load(): void;
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
   * One walk of the kernel's connection iterator: RECORD_REPORT records with
   * running totals of every established tracked socket. The reports share
   * the ringbuf with the events, so the buffer also holds every other record
   * drained up to the end of the walk, in the kernel's order (a report never
   * follows the close of its socket): process it as a whole, like a drained
   * batch. The real source walks on a thread of its own and resolves later
   * (no drained batch is delivered meanwhile: they follow the walk's records);
   * fakes may answer at once.
   */
  iterate(): Uint8Array | Promise<Uint8Array>;
  /** Records the kernel dropped because the ringbuf was full (cumulative). */
  lostRecords(): bigint;
  /**
   * Reports the iterator could not put into the full ringbuf and returned
   * through its read() buffer instead (cumulative; not lost, but the slow
   * path). Optional: fakes may leave it out.
   */
  iteratorFallbackRecords?(): bigint;
  /**
   * Which iterator program load() settled on: `sk_storage_map` walks the
   * tracked sockets; `task_file` (kernels that refuse map-element iterators)
   * walks every process's open files. Optional: fakes may leave it out.
   */
  iteratorInfo?(): IteratorInfo;
  /** Stops draining, detaches and frees everything. Idempotent. */
  close(): void;
}

export interface IteratorInfo {
  kind: 'sk_storage_map' | 'task_file';
  /** Why the sk_storage map iterator did not load, when load() fell back. */
  mapIteratorError?: string;
}

export interface KernelSourceOptions {
  objectPath: string;
  wakeupBytes: number;
}

/** Creates (opens, not yet loads) a kernel source. Async: the addon is imported on first use. */
export type KernelSourceFactory = (options: KernelSourceOptions) => Promise<KernelSource>;

/** The subset of native/index.d.ts this adapter uses (kept structural so src/ compiles without the addon). */
interface NativeProbe {
  load(): void;
  attachCgroup(path: string): void;
  startDrain(onBatch: (records: Buffer) => void, pollTimeoutMs: number): void;
  stopDrain(): void;
  drainNow(): Buffer;
  iterateAsync(callback: (err: Error | null, records?: Buffer) => void): void;
  lostRecords(): bigint;
  iterFallbackRecords(): bigint;
  iteratorInfo(): IteratorInfo;
  close(): void;
}
interface NativeModule {
  BpfProbe: new (objPath: string, tunables: { wakeupBytes: number }) => NativeProbe;
}

/**
 * The real kernel, through the addon. The import happens here rather than at
 * module load so that `kmesh-otel validate` and unit tests work without a
 * built addon; a missing addon becomes a start-up error naming the fix.
 */
export const nativeKernelSource: KernelSourceFactory = async (options) => {
  const url = pathToFileURL(join(packageRoot(), 'native', 'index.js')).href;
  const native = (await import(url)) as NativeModule;
  const probe = new native.BpfProbe(options.objectPath, { wakeupBytes: options.wakeupBytes });
  let closed = false;
  return {
    load: () => probe.load(),
    attach: (path) => probe.attachCgroup(path),
    startDrain: (onBatch, pollTimeoutMs) => probe.startDrain(onBatch, Math.min(60_000, Math.max(1, Math.round(pollTimeoutMs)))),
    drainNow: () => probe.drainNow(),
    iterate: () =>
      new Promise<Uint8Array>((resolve, reject) => {
        probe.iterateAsync((err, records) => (err ? reject(err) : resolve(records ?? Buffer.alloc(0))));
      }),
    lostRecords: () => probe.lostRecords(),
    iteratorFallbackRecords: () => probe.iterFallbackRecords(),
    iteratorInfo: () => probe.iteratorInfo(),
    close: () => {
      if (closed) return;
      closed = true;
      probe.close();
    },
  };
};
