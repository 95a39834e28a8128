import { z } from 'zod';

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Parses a Go-style duration (`5s`, `250ms`, `1m30s`), the form collector
 * configs use, into milliseconds. Returns undefined when malformed.
 */
export function parseDurationMs(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let matched = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text)) !== null) {
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== text.length) return undefined;
  return total;
}

/**
 * The longest duration a config may hold: Node's timers take at most
 * 2^31 - 1 ms (about 24.8 days) and fire after 1 ms for anything longer
 * (`report_interval: 1000h` ran the report tick every millisecond).
 */
export const MAX_DURATION_MS = 2 ** 31 - 1;

/** A duration config value (`"5s"`); a bare number is taken as milliseconds. Output: ms. */
export const duration = z.unknown().transform((s, ctx) => {
  let ms: number | undefined;
  if (typeof s === 'number' && s >= 0) ms = s;
  else if (typeof s !== 'string') {
    ctx.addIssue({ code: 'custom', message: 'expected a duration such as 500ms, 5s or 1m' });
    return z.NEVER;
  } else {
    ms = parseDurationMs(s.trim());
    if (ms === undefined) {
      ctx.addIssue({ code: 'custom', message: `invalid duration "${s}" (use e.g. 500ms, 5s, 1m)` });
      return z.NEVER;
    }
  }
  if (ms > MAX_DURATION_MS) {
    ctx.addIssue({ code: 'custom', message: `must be at most 596h31m23.647s (${MAX_DURATION_MS} ms, the longest a timer can wait)` });
    return z.NEVER;
  }
  return ms;
});

/** `host:port` (IPv6 hosts in brackets). Output: the same string, validated. */
export const hostPort = z.string().refine((s) => splitHostPort(s) !== undefined, {
  message: 'must be host:port, e.g. 0.0.0.0:15020 or [::1]:4317',
});

export function splitHostPort(s: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2] ?? '', port };
}
