/**
 * What users write under `receivers: ebpf:`. This schema is the single source
 * of truth for the config's type and defaults; unknown keys are rejected
 * (`z.strictObject`), so `report_intervall` fails validation with
 * `receivers.ebpf.report_intervall: unknown key`.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { duration } from '../../config/types.js';

/**
 * The repository (or installed package) root: the nearest ancestor of this
 * module holding `bpf/include/record.h`. Works from `src/receiver/ebpf/` (tsx)
 * and from `dist/src/receiver/ebpf/` (tsc output mirrors the root; `dist/`
 * itself has no `bpf/`), and in an installed package (`files` ships `bpf/`).
 */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'bpf', 'include', 'record.h'))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  // Not found (a partial install): the source layout's answer, so the
  // start-up check can name a concrete missing path.
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

/** Default `bpf_object`: `<package root>/bpf/tcp_probe.bpf.o` (built by `npm run build`). */
export function defaultBpfObjectPath(): string {
  return join(packageRoot(), 'bpf', 'tcp_probe.bpf.o');
}

const DEFAULT_REPORT_INTERVAL_MS = 5_000;

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
     * How often long-lived connections report running totals (the
     * sk_storage iterator walk). Default: 5s.
     */
    report_interval: duration.default(DEFAULT_REPORT_INTERVAL_MS).pipe(z.number().positive({ message: 'must be greater than 0' })),
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
