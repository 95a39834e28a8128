import type { AccessLogEntry, LogsBatch } from '../../model/logs.js';
import { LogAttr } from '../../model/logs.js';
import type { AccessLogFilterConfig } from './config.js';

/** Why an entry was left out; the label of the self-metric that counts it. */
export type FilterReason = 'event' | 'failures_only' | 'namespace' | 'port' | 'sampled';

const TWO_32 = 4294967296;

/**
 * 32-bit mix of a socket cookie (Murmur3's finaliser). Cookies are handed
 * out sequentially by the kernel, so `cookie % N` alone would follow
 * patterns in how connections are opened (e.g. both sockets of a loopback
 * pair have adjacent cookies); the mix spreads them evenly.
 *
 * The cookie is a whole number below 2^53 (see ConnectionEvent.socketCookie);
 * its low and high 32-bit halves are folded together first, so every bit
 * counts and the result equals that of the 64-bit value.
 */
export function mixCookie(cookie: number): number {
  // `>>> 0` is the value modulo 2^32; the division by a power of two is exact.
  let h = (cookie >>> 0) ^ (Math.floor(cookie / TWO_32) >>> 0);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Builds the pure filter body. `count` is told about every entry left out,
 * with the reason, so nothing disappears without a trace.
 */
export function newAccessLogFilter(
  config: AccessLogFilterConfig,
  count: (reason: FilterReason, n: number) => void,
): (batch: LogsBatch) => LogsBatch {
  const events = new Set<string>(config.events);
  const namespaces = new Set(config.exclude.namespaces);
  const ports = new Set(config.exclude.ports);
  const n = config.sample_successful;

  const reasonToDrop = (e: AccessLogEntry): FilterReason | undefined => {
    const ev = e.event;
    if (!events.has(ev.kind)) return 'event';
    const failed = ev.kind === 'fail';
    if (config.failures_only && !failed) return 'failures_only';
    if (namespaces.size > 0) {
      const src = e.attributes[LogAttr.srcNamespace];
      const dst = e.attributes[LogAttr.dstNamespace];
      if ((src !== undefined && namespaces.has(src)) || (dst !== undefined && namespaces.has(dst))) return 'namespace';
    }
    if (ports.size > 0 && (ports.has(ev.dstPort) || (ev.origDstPort !== undefined && ports.has(ev.origDstPort)))) return 'port';
    if (n > 1 && !failed && mixCookie(ev.socketCookie) % n !== 0) return 'sampled';
    return undefined;
  };

  return (batch) => {
    const kept: AccessLogEntry[] = [];
    const dropped = new Map<FilterReason, number>();
    for (const e of batch.entries) {
      const why = reasonToDrop(e);
      if (why === undefined) kept.push(e);
      else dropped.set(why, (dropped.get(why) ?? 0) + 1);
    }
    for (const [why, k] of dropped) count(why, k);
    return kept.length === batch.entries.length ? batch : { entries: kept };
  };
}
