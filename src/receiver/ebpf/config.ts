/**
 * What users write under `receivers: ebpf:`. This schema is the single source
 * of truth for the config's type and defaults; unknown keys are rejected
 * (`z.strictObject`), so `report_intervall` fails validation with
 * `receivers.ebpf.report_intervall: unknown key`.
 */
import { z } from 'zod';
import { duration } from '../../config/types.js';
import { defaultBpfObjectPath as bpfObjectPath } from '../../paths.js';

/** Default `bpf_object`: `<package root>/bpf/tcp_probe.bpf.o` (built by `npm run build`). */
export function defaultBpfObjectPath(): string {
  return bpfObjectPath;
}

/**
 * `periodic_source` values: `auto` tries the sources best first (see
 * periodicSource.ts); a named one is required (start-up fails with the
 * kernel's reason when it does not load); `none` runs on the core alone.
 */
export const PERIODIC_SOURCE_SETTINGS = ['auto', 'sk_storage_iter', 'tcp_iter', 'sock_diag', 'rtt_cb', 'none'] as const;

const DEFAULT_REPORT_INTERVAL_MS = 5_000;

/**
 * `traces`: the connection spans of a `traces` pipeline (one per socket at
 * its close or failed connect; see src/model/traces.ts). Only read when a
 * traces pipeline uses this receiver.
 */
const tracesSchema = z
  .strictObject({
    /**
     * Fraction of established connections whose spans are kept, 0..1,
     * decided from the trace id so that both ends (and both agents) keep or
     * drop the same connection. Failed connects are always kept. Default: 1.
     */
    sampling_ratio: z.number().min(0).max(1).default(1),
    /**
     * Also keep every connection that lived at least this long, whatever
     * the ratio (each end decides on its own duration, so a connection
     * within a few RTTs of the threshold may keep one end only). Default:
     * unset (no such rule).
     */
    keep_longer_than: duration.optional(),
    /**
     * HMAC key for the trace-id derivation. Every agent whose spans must join
     * (the nodes of a cluster) needs the same key; with a key, trace ids do
     * not reveal the connections' initial sequence numbers. Default: empty
     * (unkeyed SHA-256). Use `${env:NAME}` to keep it out of the file.
     */
    trace_id_key: z.string().default(''),
  })
  .prefault({});

export const ebpfReceiverConfigSchema = z
  .strictObject({
    /**
     * cgroup v2 directory the sockops program attaches to. The root of the
     * hierarchy sees every TCP socket of the node (every pod namespace).
     * Default: auto-detected, the first `cgroup2` mount in /proc/self/mounts
     * (e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified).
     */
    cgroup_path: z.string().min(1).optional(),
    /**
     * How often long-lived connections report running totals (one walk of
     * the periodic-report source; for `rtt_cb`, the least time between two
     * reports of one socket). Default: 5s.
     */
    report_interval: duration.default(DEFAULT_REPORT_INTERVAL_MS).pipe(z.number().positive({ message: 'must be greater than 0' })),
    /**
     * Where periodic reports come from. Default `auto`: the first of
     * `sk_storage_iter`, `tcp_iter`, `sock_diag`, `rtt_cb` that this kernel
     * really loads, attaches and walks (start-up logs each one skipped, with
     * the kernel's reason). Naming one requires it: start-up fails when the
     * kernel refuses it. `none`: open, close and failure records only (bytes
     * of long-lived connections appear at their close).
     */
    periodic_source: z.enum(PERIODIC_SOURCE_SETTINGS).default('auto'),
    /**
     * The host's /proc, where the per-namespace sources (`tcp_iter`,
     * `sock_diag`) find every process's network namespace. A container that
     * mounts the host's /proc elsewhere sets it (and runs with hostPID for
     * the processes to be there). Default: /proc.
     */
    proc_path: z.string().min(1).default('/proc'),
    /**
     * Directories of bind-mounted network namespaces (`ip netns`, CNI
     * plugins), also walked by the per-namespace sources. Default: [/run/netns].
     */
    netns_dirs: z.array(z.string().min(1)).default(['/run/netns']),
    /**
     * How often the ringbuf is drained at the latest when it is below the
     * wake-up threshold: the bound on how late a closed connection shows up.
     * Default: 100ms.
     */
    drain_interval: duration.default(100).pipe(z.number().positive({ message: 'must be greater than 0' })),
    /**
     * Bytes waiting in the ringbuf before the kernel wakes the reader early
     * (records are submitted without a wake-up below it). Default: 65536.
     */
    wakeup_bytes: z.number().int().positive().default(65_536),
    /**
     * The compiled BPF object. Default: `bpf/tcp_probe.bpf.o` in the package
     * root (built by `npm run build`).
     */
    bpf_object: z.string().min(1).default(defaultBpfObjectPath),
    /**
     * A tracked connection not seen for this long is forgotten (its CLOSE
     * record was lost). Must exceed `report_interval`, since live connections
     * are refreshed by every report. Default: 3 × report_interval (15s).
     */
    connection_ttl: duration.pipe(z.number().positive({ message: 'must be greater than 0' })).optional(),
    /**
     * Upper bound on tracked connections; past it the least recently seen one
     * is evicted (counted in kmesh_otel_ebpf_connection_evictions_total).
     * Default: 262144.
     */
    max_connections: z.number().int().positive().default(262_144),
    /**
     * Also write an access-log record for each periodic report of a
     * long-lived connection (closes and failures always get one, opens never).
     * Default: true.
     */
    log_periodic_reports: z.boolean().default(true),
    traces: tracesSchema,
  })
  .superRefine((c, ctx) => {
    if (c.connection_ttl !== undefined && c.connection_ttl <= c.report_interval) {
      ctx.addIssue({
        code: 'custom',
        path: ['connection_ttl'],
        message: `must be longer than report_interval (${c.report_interval}ms), or live connections expire between reports`,
      });
    }
  })
  .transform((c) => ({ ...c, connection_ttl: c.connection_ttl ?? 3 * c.report_interval }));

/** The validated config: durations in milliseconds, every default filled in. */
export type EbpfReceiverConfig = z.output<typeof ebpfReceiverConfigSchema>;

export function createDefaultEbpfReceiverConfig(): EbpfReceiverConfig {
  return ebpfReceiverConfigSchema.parse({});
}
