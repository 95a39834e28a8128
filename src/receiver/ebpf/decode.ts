/**
 * Decoding of packed `struct conn_record`s (bpf/include/record.h) into
 * {@link ConnectionEvent}s. Never throws on bad input: a record that cannot be
 * decoded is counted in {@link DecodeStats} and skipped, as the collector's
 * rule "do not crash after start-up" asks.
 */
import { endianness } from 'node:os';
import type { ConnectionEvent, ConnectionEventKind, Direction, FailureReason } from '../../model/connection.js';
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

/** Running counts kept by the decode loop (RecordProcessor.process); the receiver turns them into self-metrics. */
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

export function newDecodeContext(clock: MonotonicClock = sharedClock()): DecodeContext {
  return { clock, ipv4: new IPv4TextCache() };
}

/** A u64 field as a number: exact below 2^53 (bytes, ns, cookies), which is all these fields reach. */
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

/** The event's family: 4 for AF_INET and for IPv4-mapped IPv6 on both ends. Only for a validated record. */
function modelFamily(view: DataView, offset: number): 4 | 6 {
  if (view.getUint16(offset + OFF_FAMILY, LE) === AF_INET) return 4;
  return isV4Mapped(view, offset + OFF_SRC_ADDR) && isV4Mapped(view, offset + OFF_DST_ADDR) ? 4 : 6;
}

/**
 * The part of a record that the connection table and the flow aggregator
 * read, decoded into one object that the caller reuses for every record: the
 * metrics path allocates nothing per record, and the fields only a log entry
 * needs (family, source port, netns cookie, the wall-clock time as a BigInt,
 * minimum RTT, segment counts, state) are not read at all unless the record becomes
 * one ({@link eventFromRecord}). Field meanings are those of
 * {@link ConnectionEvent}; every field is written by {@link decodeInto}, so
 * nothing of a previous record survives. Never keep it past the next record:
 * anything kept (a log entry) must be a fresh {@link ConnectionEvent}.
 */
export class DecodedRecord {
  kind: ConnectionEventKind = 'open';
  direction: Direction = 'OUTBOUND';
  srcAddr = '';
  dstAddr = '';
  dstPort = 0;
  origDstAddr: string | undefined = undefined;
  origDstPort: number | undefined = undefined;
  socketCookie = 0;
  durationNs = 0;
  sentBytes = 0;
  receivedBytes = 0;
  srttUs = 0;
  retransmits = 0;
  lostPackets = 0;
  failure: FailureReason | undefined = undefined;
}

/**
 * Validates the record at `offset` and decodes the metrics path's part of it
 * into `out`. Returns why the record must be skipped (then `out` is
 * unspecified), or undefined. Never throws (a record running past the end is
 * `truncated`).
 */
export function decodeInto(view: DataView, offset: number, ctx: DecodeContext, out: DecodedRecord): DecodeError | undefined {
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
  const isFail = kindValue === RecordKind.RECORD_FAIL;

  out.kind = kind;
  out.direction = direction;
  out.srcAddr = addressText(view, srcOff, family, ctx);
  out.dstAddr = addressText(view, dstOff, family, ctx);
  out.dstPort = view.getUint16(offset + OFF_DST_PORT, LE);
  out.origDstAddr = isZero(view, origOff, family === AF_INET ? 4 : 16) ? undefined : addressText(view, origOff, family, ctx);
  const origPort = view.getUint16(offset + OFF_ORIG_DST_PORT, LE);
  out.origDstPort = origPort === 0 ? undefined : origPort;
  out.socketCookie = u64(view, offset + OFF_SOCKET_COOKIE);
  // The model defines failures' age as 0; start_ns 0 means "not established".
  const startNs = isFail ? 0 : u64(view, offset + OFF_START_NS);
  const eventNs = startNs === 0 ? 0 : u64(view, offset + OFF_EVENT_NS);
  out.durationNs = startNs === 0 || eventNs < startNs ? 0 : eventNs - startNs;
  out.sentBytes = u64(view, offset + OFF_SENT_BYTES);
  out.receivedBytes = u64(view, offset + OFF_RECEIVED_BYTES);
  out.srttUs = view.getUint32(offset + OFF_SRTT_US, LE);
  out.retransmits = view.getUint32(offset + OFF_TOTAL_RETRANS, LE);
  out.lostPackets = view.getUint32(offset + OFF_LOST_OUT, LE);
  out.failure = isFail ? failureReason(view.getUint32(offset + OFF_SK_ERR, LE)) : undefined;
  return undefined;
}

/**
 * A fresh {@link ConnectionEvent} for the record at `offset`, which `r` holds
 * decoded by {@link decodeInto}: copies `r` and reads the fields only events
 * carry. The result shares nothing mutable with `r` (strings are immutable),
 * so it may be kept while `r` moves on to the next record.
 */
export function eventFromRecord(view: DataView, offset: number, ctx: DecodeContext, r: DecodedRecord): ConnectionEvent {
  return {
    kind: r.kind,
    direction: r.direction,
    family: modelFamily(view, offset),
    srcAddr: r.srcAddr,
    srcPort: view.getUint16(offset + OFF_SRC_PORT, LE),
    dstAddr: r.dstAddr,
    dstPort: r.dstPort,
    origDstAddr: r.origDstAddr,
    origDstPort: r.origDstPort,
    socketCookie: r.socketCookie,
    netnsCookie: u64(view, offset + OFF_NETNS_COOKIE),
    timeUnixNano: ctx.clock.toUnixNano(view.getBigUint64(offset + OFF_EVENT_NS, LE)),
    durationNs: r.durationNs,
    sentBytes: r.sentBytes,
    receivedBytes: r.receivedBytes,
    srttUs: r.srttUs,
    minRttUs: view.getUint32(offset + OFF_MIN_RTT_US, LE),
    retransmits: r.retransmits,
    lostPackets: r.lostPackets,
    segsIn: view.getUint32(offset + OFF_SEGS_IN, LE),
    segsOut: view.getUint32(offset + OFF_SEGS_OUT, LE),
    state: tcpStateName(view.getUint8(offset + OFF_STATE)),
    failure: r.failure,
  };
}

/**
 * The byte length of the whole records in `buf`; a length that is not a
 * multiple of the record size counts once as `truncated` (the trailing bytes
 * are skipped). For loops over a batch, with {@link countDecodeError}.
 */
export function wholeRecordsLength(buf: Uint8Array, stats: DecodeStats): number {
  const whole = buf.byteLength - (buf.byteLength % RECORD_SIZE);
  if (whole !== buf.byteLength) stats.truncated++;
  return whole;
}

/** Counts a skipped record by reason. */
export function countDecodeError(stats: DecodeStats, e: DecodeError): void {
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
