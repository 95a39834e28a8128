import type { AccessLogEntry } from '../../model/logs.js';
import { LogAttr } from '../../model/logs.js';
import { RawAttr } from '../../model/metrics.js';

/**
 * Pure formatters of one access-log entry: the Kmesh console line, the JSON
 * line, and the attribute set the OTLP LogRecord carries. One module, so the
 * debug exporter and the OTLP body can never drift apart.
 */

/** What Kmesh prints for a value that cannot be known. */
export const UNKNOWN = '-';

/** `ip:port`, IPv6 in brackets (RFC 3986 §3.2.2 host form). */
export function formatAddr(addr: string, port: number): string {
  return addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** The date/time prefix of the last second formatted: access-log records arrive in time order, so most share it. */
let lastSecond: bigint | undefined;
let lastSecondPrefix = '';

/** `2024-09-14 08:19:26.552709932 +0000 UTC`: Go's `time.Time.String()` for a UTC time, 9-digit ns. */
export function formatKmeshTime(unixNano: bigint): string {
  let sec = unixNano / 1_000_000_000n;
  let ns = Number(unixNano - sec * 1_000_000_000n);
  if (ns < 0) {
    ns += 1_000_000_000;
    sec -= 1n;
  }
  if (sec !== lastSecond) {
    const iso = new Date(Number(sec) * 1000).toISOString(); // 2024-09-14T08:19:26.000Z
    lastSecondPrefix = `${iso.slice(0, 10)} ${iso.slice(11, 19)}.`;
    lastSecond = sec;
  }
  return `${lastSecondPrefix}${String(ns).padStart(9, '0')} +0000 UTC`;
}

/** RFC 3339 with 9-digit ns (`2024-09-14T08:19:26.552709932Z`), for the JSON format. */
export function formatRfc3339Nano(unixNano: bigint): string {
  const t = formatKmeshTime(unixNano);
  return `${t.slice(0, 10)}T${t.slice(11, 29)}Z`;
}

const POW10 = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000];

/** A non-negative integer amount of `unit` scaled by 10^-digits, as a plain decimal (no exponent, trailing zeros trimmed). */
function plainDecimal(amount: number, digits: number): string {
  const n = Math.max(0, Math.round(amount));
  const scale = POW10[digits];
  // Number arithmetic is exact below 2^53 (the BigInt path stays for the rest).
  if (scale === undefined || n > Number.MAX_SAFE_INTEGER) return plainDecimalBig(n, digits);
  const whole = Math.floor(n / scale);
  let frac = n - whole * scale;
  if (frac === 0) return String(whole);
  let width = digits;
  while (frac % 10 === 0) {
    frac /= 10;
    width--;
  }
  return `${whole}.${String(frac).padStart(width, '0')}`;
}

function plainDecimalBig(amount: number, digits: number): string {
  const n = BigInt(amount);
  const scale = 10n ** BigInt(digits);
  const whole = n / scale;
  const frac = (n % scale).toString().padStart(digits, '0').replace(/0+$/, '');
  return frac === '' ? whole.toString() : `${whole}.${frac}`;
}

/** Nanoseconds as milliseconds, plain decimal: 2733902 -> `2.733902`. */
export function nsToMsString(ns: number): string {
  return plainDecimal(ns, 6);
}

/** Microseconds as milliseconds, plain decimal: 250 -> `0.25`. */
export function usToMsString(us: number): string {
  return plainDecimal(us, 3);
}

function attr(entry: AccessLogEntry, key: string): string {
  const v = entry.attributes[key];
  return v === undefined || v === '' ? UNKNOWN : v;
}

export interface KmeshLineOptions {
  /** Append state, retransmissions, srtt, min_rtt (and failure_reason on failures) after `duration`. Default true. */
  extraFields?: boolean;
}

/**
 * The Kmesh access-log line, field for field:
 * `accesslog: <time> src.addr=…, src.workload=…, src.namespace=…, dst.addr=…, dst.service=…, dst.workload=…, dst.namespace=…, direction=…, sent_bytes=…, received_bytes=…, duration=…ms`
 * then, optionally, `, state=…, retransmissions=…, srtt=…ms, min_rtt=…ms[, failure_reason=…]`.
 * Bytes are this socket's own (the reporter's view, as in Kmesh).
 */
export function formatKmeshLine(entry: AccessLogEntry, opts: KmeshLineOptions = {}): string {
  const e = entry.event;
  let line =
    `accesslog: ${formatKmeshTime(e.timeUnixNano)} ` +
    `src.addr=${formatAddr(e.srcAddr, e.srcPort)}, ` +
    `src.workload=${attr(entry, LogAttr.srcWorkload)}, ` +
    `src.namespace=${attr(entry, LogAttr.srcNamespace)}, ` +
    `dst.addr=${formatAddr(e.dstAddr, e.dstPort)}, ` +
    `dst.service=${attr(entry, LogAttr.dstService)}, ` +
    `dst.workload=${attr(entry, LogAttr.dstWorkload)}, ` +
    `dst.namespace=${attr(entry, LogAttr.dstNamespace)}, ` +
    `direction=${e.direction}, ` +
    `sent_bytes=${e.sentBytes}, ` +
    `received_bytes=${e.receivedBytes}, ` +
    `duration=${nsToMsString(e.durationNs)}ms`;
  if (opts.extraFields !== false) {
    line +=
      `, state=${e.state || UNKNOWN}, retransmissions=${e.retransmits}` +
      `, srtt=${e.srttUs > 0 ? usToMsString(e.srttUs) + 'ms' : UNKNOWN}` +
      `, min_rtt=${e.minRttUs > 0 ? usToMsString(e.minRttUs) + 'ms' : UNKNOWN}`;
    if (e.kind === 'fail') line += `, failure_reason=${e.failure ?? 'other'}`;
  }
  return line;
}

/** Attribute value types an access-log record carries. */
export type AccessLogAttributes = Record<string, string | number>;

/**
 * The structured attributes of an access-log record (OTLP LogRecord, JSON
 * line): the Kmesh fields under their Kmesh names (`duration`, `srtt`,
 * `min_rtt` in ms as numbers), the semantic-convention forms
 * (`source.address`, `network.transport`…), and every identity attribute the
 * processors set. Unknown values are absent, the OpenTelemetry convention.
 */
export function accessLogAttributes(entry: AccessLogEntry): AccessLogAttributes {
  const e = entry.event;
  const out: AccessLogAttributes = {};
  for (const [k, v] of Object.entries(entry.attributes)) if (v !== '') out[k] = v;
  out['src.addr'] = formatAddr(e.srcAddr, e.srcPort);
  out['dst.addr'] = formatAddr(e.dstAddr, e.dstPort);
  out['direction'] = e.direction;
  out['event'] = e.kind;
  out['sent_bytes'] = e.sentBytes;
  out['received_bytes'] = e.receivedBytes;
  out['duration'] = e.durationNs / 1e6;
  if (e.state !== '') out['state'] = e.state;
  out['retransmissions'] = e.retransmits;
  out['lost_packets'] = e.lostPackets;
  if (e.srttUs > 0) out['srtt'] = e.srttUs / 1000;
  if (e.minRttUs > 0) out['min_rtt'] = e.minRttUs / 1000;
  if (e.kind === 'fail') out[RawAttr.failureReason] = e.failure ?? 'other';
  out['source.address'] = e.srcAddr;
  out['source.port'] = e.srcPort;
  out['destination.address'] = e.dstAddr;
  out['destination.port'] = e.dstPort;
  if (e.origDstAddr !== undefined) out['original_destination.address'] = e.origDstAddr;
  if (e.origDstPort !== undefined) out['original_destination.port'] = e.origDstPort;
  out['network.transport'] = 'tcp';
  out['network.type'] = e.family === 6 ? 'ipv6' : 'ipv4';
  return out;
}

/** Severity of an access-log record: WARN for failed connects, else INFO. */
export function accessLogSeverity(entry: AccessLogEntry): 'INFO' | 'WARN' {
  return entry.event.kind === 'fail' ? 'WARN' : 'INFO';
}

/** One JSON object (no newline): `time`, `severity`, `body` aside, the {@link accessLogAttributes}. */
export function formatJsonLine(entry: AccessLogEntry): string {
  return JSON.stringify({
    time: formatRfc3339Nano(entry.event.timeUnixNano),
    observed_time: formatRfc3339Nano(entry.observedUnixNano),
    severity: accessLogSeverity(entry),
    ...accessLogAttributes(entry),
  });
}
