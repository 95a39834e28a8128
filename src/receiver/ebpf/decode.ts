/**
 * Decoding of packed `struct conn_record`s (bpf/include/record.h) into
 * {@link ConnectionEvent}s. Never throws on bad input: a record that cannot be
 * decoded is counted in {@link DecodeStats} and skipped, as the collector's
 * rule "do not crash after start-up" asks.
 */
import { endianness } from 'node:os';
import type { ConnectionEvent, Direction } from '../../model/connection.js';
import { formatIPv6, IPv4TextCache, isV4Mapped, isZero } from './address.js';
import {
  AF_INET,
  AF_INET6,
  DIRECTION_BY_VALUE,
  failureReason,
  KIND_BY_VALUE,
  OFF_DIRECTION,
  OFF_DST_ADDR,
  OFF_DST_PORT,
  OFF_EVENT_NS,
  OFF_FAMILY,
  OFF_KIND,
  OFF_LOST_OUT,
  OFF_MIN_RTT_US,
  OFF_NETNS_COOKIE,
  OFF_ORIG_DST_ADDR,
  OFF_ORIG_DST_PORT,
  OFF_RECEIVED_BYTES,
  OFF_SEGS_IN,
  OFF_SEGS_OUT,
  OFF_SENT_BYTES,
  OFF_SK_ERR,
  OFF_SOCKET_COOKIE,
  OFF_SRC_ADDR,
  OFF_SRC_PORT,
  OFF_SRTT_US,
  OFF_START_NS,
  OFF_STATE,
  OFF_TOTAL_RETRANS,
  RECORD_SIZE,
  RecordKind,
  tcpStateName,
} from './layout.js';
import { sharedClock, type MonotonicClock } from './MonotonicClock.js';

/** Records are written in the host's byte order (the BPF program runs on this CPU). */
const LE = endianness() === 'LE';
const TWO_32 = 4294967296;

/** Why a record was skipped. */
export type DecodeError = 'truncated' | 'unknown_kind' | 'unknown_direction' | 'unknown_family';

/** Running counts kept by {@link decodeBatch}; the receiver turns them into self-metrics. */
export interface DecodeStats {
  /** Records decoded and handed on. */
  decoded: number;
  /** Batches whose length was not a multiple of the record size (trailing bytes skipped). */
  truncated: number;
  unknownKind: number;
  unknownDirection: number;
  unknownFamily: number;
}

export function newDecodeStats(): DecodeStats {
  return { decoded: 0, truncated: 0, unknownKind: 0, unknownDirection: 0, unknownFamily: 0 };
}

/** Total of all error counts. */
export function decodeErrors(s: DecodeStats): number {
  return s.truncated + s.unknownKind + s.unknownDirection + s.unknownFamily;
}

/** Everything besides the buffer that decoding needs; shared caches live here. */
export interface DecodeContext {
  clock: MonotonicClock;
  ipv4: IPv4TextCache;
}

let defaultContext: DecodeContext | undefined;
function getDefaultContext(): DecodeContext {
  defaultContext ??= { clock: sharedClock(), ipv4: new IPv4TextCache() };
  return defaultContext;
}

export function newDecodeContext(clock: MonotonicClock = sharedClock()): DecodeContext {
  return { clock, ipv4: new IPv4TextCache() };
}

/** A u64 field as a number: exact below 2^53 (bytes, ns durations), which is all these fields reach. */
function u64(view: DataView, off: number): number {
  return LE
    ? view.getUint32(off + 4, true) * TWO_32 + view.getUint32(off, true)
    : view.getUint32(off, false) * TWO_32 + view.getUint32(off + 4, false);
}

/** Address text; `family` is the record's (already validated) family. */
function addressText(view: DataView, off: number, family: number, ctx: DecodeContext): string {
  if (family === AF_INET) return ctx.ipv4.get(view.getUint32(off, false));
  if (isV4Mapped(view, off)) return ctx.ipv4.get(view.getUint32(off + 12, false));
  return formatIPv6(view, off);
}

/**
 * Decodes the record at `offset`. Returns the event, or why it was skipped.
 * Never throws (a record running past the end is `truncated`).
 */
export function decodeRecord(view: DataView, offset: number, ctx: DecodeContext = getDefaultContext()): ConnectionEvent | DecodeError {
  if (offset < 0 || offset + RECORD_SIZE > view.byteLength) return 'truncated';
  const kindValue = view.getUint8(offset + OFF_KIND);
  const kind = KIND_BY_VALUE[kindValue];
  if (kind === undefined) return 'unknown_kind';
  const direction: Direction | undefined = DIRECTION_BY_VALUE[view.getUint8(offset + OFF_DIRECTION)];
  if (direction === undefined) return 'unknown_direction';
  const family = view.getUint16(offset + OFF_FAMILY, LE);
  if (family !== AF_INET && family !== AF_INET6) return 'unknown_family';

  const srcOff = offset + OFF_SRC_ADDR;
  const dstOff = offset + OFF_DST_ADDR;
  const origOff = offset + OFF_ORIG_DST_ADDR;
  const v4 = family === AF_INET || (isV4Mapped(view, srcOff) && isV4Mapped(view, dstOff));

  let origDstAddr: string | undefined;
  if (!isZero(view, origOff, family === AF_INET ? 4 : 16)) origDstAddr = addressText(view, origOff, family, ctx);
  const origPort = view.getUint16(offset + OFF_ORIG_DST_PORT, LE);

  const startNs = u64(view, offset + OFF_START_NS);
  const eventNs = u64(view, offset + OFF_EVENT_NS);
  const isFail = kindValue === RecordKind.RECORD_FAIL;

  return {
    kind,
    direction,
    family: v4 ? 4 : 6,
    srcAddr: addressText(view, srcOff, family, ctx),
    srcPort: view.getUint16(offset + OFF_SRC_PORT, LE),
    dstAddr: addressText(view, dstOff, family, ctx),
    dstPort: view.getUint16(offset + OFF_DST_PORT, LE),
    origDstAddr,
    origDstPort: origPort === 0 ? undefined : origPort,
    socketCookie: view.getBigUint64(offset + OFF_SOCKET_COOKIE, LE),
    netnsCookie: view.getBigUint64(offset + OFF_NETNS_COOKIE, LE),
    timeUnixNano: ctx.clock.toUnixNano(view.getBigUint64(offset + OFF_EVENT_NS, LE)),
    // The model defines failures' age as 0; start_ns 0 means "not established".
    durationNs: isFail || startNs === 0 || eventNs < startNs ? 0 : eventNs - startNs,
    sentBytes: u64(view, offset + OFF_SENT_BYTES),
    receivedBytes: u64(view, offset + OFF_RECEIVED_BYTES),
    srttUs: view.getUint32(offset + OFF_SRTT_US, LE),
    minRttUs: view.getUint32(offset + OFF_MIN_RTT_US, LE),
    retransmits: view.getUint32(offset + OFF_TOTAL_RETRANS, LE),
    lostPackets: view.getUint32(offset + OFF_LOST_OUT, LE),
    segsIn: view.getUint32(offset + OFF_SEGS_IN, LE),
    segsOut: view.getUint32(offset + OFF_SEGS_OUT, LE),
    state: tcpStateName(view.getUint8(offset + OFF_STATE)),
    failure: isFail ? failureReason(view.getUint32(offset + OFF_SK_ERR, LE)) : undefined,
  };
}

/**
 * Decodes every whole record in `buf` and calls `onRecord` for each good one.
 * A length that is not a multiple of the record size counts once as
 * `truncated` and the trailing bytes are skipped; bad records are counted by
 * reason and skipped. Never throws (unless `onRecord` does). Returns the
 * number of records handed to `onRecord`.
 */
export function decodeBatch(
  buf: Uint8Array,
  onRecord: (event: ConnectionEvent) => void,
  stats: DecodeStats,
  ctx: DecodeContext = getDefaultContext(),
): number {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const whole = buf.byteLength - (buf.byteLength % RECORD_SIZE);
  if (whole !== buf.byteLength) stats.truncated++;
  let handed = 0;
  for (let off = 0; off < whole; off += RECORD_SIZE) {
    const r = decodeRecord(view, off, ctx);
    if (typeof r === 'string') {
      countError(stats, r);
      continue;
    }
    stats.decoded++;
    handed++;
    onRecord(r);
  }
  return handed;
}

function countError(stats: DecodeStats, e: DecodeError): void {
  switch (e) {
    case 'truncated':
      stats.truncated++;
      break;
    case 'unknown_kind':
      stats.unknownKind++;
      break;
    case 'unknown_direction':
      stats.unknownDirection++;
      break;
    case 'unknown_family':
      stats.unknownFamily++;
      break;
  }
}
