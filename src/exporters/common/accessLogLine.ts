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

/**
 * The last second formatted, as its ns since the epoch (a multiple of 10^9),
 * and its date/time prefix: access-log records arrive in time order, so most
 * share it, and one BigInt subtraction tells a hit (a division per call was
 * most of this function's cost).
 */
let lastSecondNs = 0n;
let lastSecondPrefix = '1970-01-01 00:00:00.';

/** `2024-09-14 08:19:26.552709932 +0000 UTC`: Go's `time.Time.String()` for a UTC time, 9-digit ns. */
export function formatKmeshTime(unixNano: bigint): string {
  let ns = Number(unixNano - lastSecondNs);
  if (!(ns >= 0 && ns < 1_000_000_000)) {
    let sec = unixNano / 1_000_000_000n;
    ns = Number(unixNano - sec * 1_000_000_000n);
    if (ns < 0) {
      ns += 1_000_000_000;
      sec -= 1n;
    }
    const iso = new Date(Number(sec) * 1000).toISOString(); // 2024-09-14T08:19:26.000Z
    lastSecondPrefix = `${iso.slice(0, 10)} ${iso.slice(11, 19)}.`;
    lastSecondNs = sec * 1_000_000_000n;
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

function attr(attributes: Record<string, string>, key: string): string {
  const v = attributes[key];
  return v === undefined || v === '' ? UNKNOWN : v;
}

/**
 * `s`, flat. A string built by `+` or a template literal is a tree of cons
 * strings (one node per piece, ~45 for a Kmesh line); the tree lives as long
 * as the record does (queued until exported), so each scavenge copied it
 * again, which made up most of the cost of a line. Reading a character
 * flattens it into one sequential string (V8; the gRPC serializer would flatten
 * it at export anyway), and the pieces die young.
 */
function flat(s: string): string {
  s.charCodeAt(0);
  return s;
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
  return kmeshLine(entry, formatAddr(e.srcAddr, e.srcPort), formatAddr(e.dstAddr, e.dstPort), opts.extraFields !== false);
}

/** {@link formatKmeshLine} with the addresses already formatted (the LogRecord shares them with its attributes). */
function kmeshLine(entry: AccessLogEntry, srcAddr: string, dstAddr: string, extraFields: boolean): string {
  const e = entry.event;
  const a = entry.attributes;
  let line =
    `accesslog: ${formatKmeshTime(e.timeUnixNano)} ` +
    `src.addr=${srcAddr}, ` +
    `src.workload=${attr(a, LogAttr.srcWorkload)}, ` +
    `src.namespace=${attr(a, LogAttr.srcNamespace)}, ` +
    `dst.addr=${dstAddr}, ` +
    `dst.service=${attr(a, LogAttr.dstService)}, ` +
    `dst.workload=${attr(a, LogAttr.dstWorkload)}, ` +
    `dst.namespace=${attr(a, LogAttr.dstNamespace)}, ` +
    `direction=${e.direction}, ` +
    `sent_bytes=${e.sentBytes}, ` +
    `received_bytes=${e.receivedBytes}, ` +
    `duration=${nsToMsString(e.durationNs)}ms`;
  if (extraFields) {
    line +=
      `, state=${e.state || UNKNOWN}, retransmissions=${e.retransmits}` +
      `, srtt=${e.srttUs > 0 ? usToMsString(e.srttUs) + 'ms' : UNKNOWN}` +
      `, min_rtt=${e.minRttUs > 0 ? usToMsString(e.minRttUs) + 'ms' : UNKNOWN}`;
    if (e.kind === 'fail') line += `, failure_reason=${e.failure ?? 'other'}`;
  }
  return flat(line);
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
  return addAttributes({}, entry, formatAddr(e.srcAddr, e.srcPort), formatAddr(e.dstAddr, e.dstPort));
}

/**
 * Adds the {@link accessLogAttributes} to `o`, in their order, and returns
 * it. Into the caller's object, so that the JSON line does not build the set
 * and then copy its ~30 properties again with a spread; `Object.keys`, not
 * `Object.entries`, so no [key, value] array per attribute. A key already in
 * `o` keeps its place and takes the new value, as it did under the spread.
 */
function addAttributes(o: AccessLogAttributes, entry: AccessLogEntry, srcAddr: string, dstAddr: string): AccessLogAttributes {
  const e = entry.event;
  const a = entry.attributes;
  for (const k of Object.keys(a)) {
    const v = a[k]!;
    if (v !== '') o[k] = v;
  }
  o['src.addr'] = srcAddr;
  o['dst.addr'] = dstAddr;
  o['direction'] = e.direction;
  o['event'] = e.kind;
  o['sent_bytes'] = e.sentBytes;
  o['received_bytes'] = e.receivedBytes;
  o['duration'] = e.durationNs / 1e6;
  if (e.state !== '') o['state'] = e.state;
  o['retransmissions'] = e.retransmits;
  o['lost_packets'] = e.lostPackets;
  if (e.srttUs > 0) o['srtt'] = e.srttUs / 1000;
  if (e.minRttUs > 0) o['min_rtt'] = e.minRttUs / 1000;
  if (e.kind === 'fail') o[RawAttr.failureReason] = e.failure ?? 'other';
  o['source.address'] = e.srcAddr;
  o['source.port'] = e.srcPort;
  o['destination.address'] = e.dstAddr;
  o['destination.port'] = e.dstPort;
  if (e.origDstAddr !== undefined) o['original_destination.address'] = e.origDstAddr;
  if (e.origDstPort !== undefined) o['original_destination.port'] = e.origDstPort;
  o['network.transport'] = 'tcp';
  o['network.type'] = e.family === 6 ? 'ipv6' : 'ipv4';
  return o;
}

/**
 * The body and attributes of one record's OpenTelemetry LogRecord: the Kmesh
 * line ({@link formatKmeshLine}, extra fields on) and {@link accessLogAttributes},
 * with the two addresses formatted once for both.
 */
export function kmeshLineAndAttributes(entry: AccessLogEntry): { line: string; attributes: AccessLogAttributes } {
  const e = entry.event;
  const src = formatAddr(e.srcAddr, e.srcPort);
  const dst = formatAddr(e.dstAddr, e.dstPort);
  return { line: kmeshLine(entry, src, dst, true), attributes: addAttributes({}, entry, src, dst) };
}

/** Severity of an access-log record: WARN for failed connects, else INFO. */
export function accessLogSeverity(entry: AccessLogEntry): 'INFO' | 'WARN' {
  return entry.event.kind === 'fail' ? 'WARN' : 'INFO';
}

/** One JSON object (no newline): `time`, `severity`, `body` aside, the {@link accessLogAttributes}. */
export function formatJsonLine(entry: AccessLogEntry): string {
  const e = entry.event;
  const head: AccessLogAttributes = {
    time: formatRfc3339Nano(e.timeUnixNano),
    observed_time: formatRfc3339Nano(entry.observedUnixNano),
    severity: accessLogSeverity(entry),
  };
  return JSON.stringify(addAttributes(head, entry, formatAddr(e.srcAddr, e.srcPort), formatAddr(e.dstAddr, e.dstPort)));
}
