/**
 * The byte layout of `struct conn_record` (bpf/include/record.h) as the
 * decoder reads it, plus the enum values and kernel constants it maps.
 *
 * This is deliberately NOT a second source of truth: test/receiver/ebpf/
 * layout.test.ts reads the compiled object's BTF (`bpftool btf dump -j`) and
 * fails on any difference in an offset, a size, the struct size or an enum
 * value, so a change to the header without a change here cannot ship.
 */
import type { ConnectionEventKind, Direction, FailureReason } from '../../model/connection.js';

/** One field: byte offset from the start of the record and byte size. */
export interface FieldLayout {
  readonly offset: number;
  readonly size: number;
}

/** sizeof(struct conn_record). */
export const RECORD_SIZE = 152;

/** Every member of struct conn_record, in declaration order (names as in C). */
export const RecordLayout = {
  socket_cookie: { offset: 0, size: 8 },
  netns_cookie: { offset: 8, size: 8 },
  start_ns: { offset: 16, size: 8 },
  event_ns: { offset: 24, size: 8 },
  sent_bytes: { offset: 32, size: 8 },
  received_bytes: { offset: 40, size: 8 },
  src_addr: { offset: 48, size: 16 },
  dst_addr: { offset: 64, size: 16 },
  orig_dst_addr: { offset: 80, size: 16 },
  srtt_us: { offset: 96, size: 4 },
  min_rtt_us: { offset: 100, size: 4 },
  total_retrans: { offset: 104, size: 4 },
  lost_out: { offset: 108, size: 4 },
  segs_in: { offset: 112, size: 4 },
  segs_out: { offset: 116, size: 4 },
  sk_err: { offset: 120, size: 4 },
  acked_base: { offset: 124, size: 4 },
  received_base: { offset: 128, size: 4 },
  isn_client: { offset: 132, size: 4 },
  isn_server: { offset: 136, size: 4 },
  src_port: { offset: 140, size: 2 },
  dst_port: { offset: 142, size: 2 },
  orig_dst_port: { offset: 144, size: 2 },
  family: { offset: 146, size: 2 },
  kind: { offset: 148, size: 1 },
  direction: { offset: 149, size: 1 },
  state: { offset: 150, size: 1 },
  isn_known: { offset: 151, size: 1 },
} as const satisfies Record<string, FieldLayout>;

/** Offsets as plain constants for the hot path (no property lookups per record). */
export const OFF_SOCKET_COOKIE = RecordLayout.socket_cookie.offset;
export const OFF_NETNS_COOKIE = RecordLayout.netns_cookie.offset;
export const OFF_START_NS = RecordLayout.start_ns.offset;
export const OFF_EVENT_NS = RecordLayout.event_ns.offset;
export const OFF_SENT_BYTES = RecordLayout.sent_bytes.offset;
export const OFF_RECEIVED_BYTES = RecordLayout.received_bytes.offset;
export const OFF_SRC_ADDR = RecordLayout.src_addr.offset;
export const OFF_DST_ADDR = RecordLayout.dst_addr.offset;
export const OFF_ORIG_DST_ADDR = RecordLayout.orig_dst_addr.offset;
export const OFF_SRTT_US = RecordLayout.srtt_us.offset;
export const OFF_MIN_RTT_US = RecordLayout.min_rtt_us.offset;
export const OFF_TOTAL_RETRANS = RecordLayout.total_retrans.offset;
export const OFF_LOST_OUT = RecordLayout.lost_out.offset;
export const OFF_SEGS_IN = RecordLayout.segs_in.offset;
export const OFF_SEGS_OUT = RecordLayout.segs_out.offset;
export const OFF_SK_ERR = RecordLayout.sk_err.offset;
export const OFF_ISN_CLIENT = RecordLayout.isn_client.offset;
export const OFF_ISN_SERVER = RecordLayout.isn_server.offset;
export const OFF_ISN_KNOWN = RecordLayout.isn_known.offset;
export const OFF_SRC_PORT = RecordLayout.src_port.offset;
export const OFF_DST_PORT = RecordLayout.dst_port.offset;
export const OFF_ORIG_DST_PORT = RecordLayout.orig_dst_port.offset;
export const OFF_FAMILY = RecordLayout.family.offset;
export const OFF_KIND = RecordLayout.kind.offset;
export const OFF_DIRECTION = RecordLayout.direction.offset;
export const OFF_STATE = RecordLayout.state.offset;

/** enum record_kind (record.h). Values are API. */
export const RecordKind = {
  RECORD_OPEN: 1,
  RECORD_CLOSE: 2,
  RECORD_FAIL: 3,
  RECORD_REPORT: 4,
} as const;

/** enum record_direction (record.h). Values are API. */
export const RecordDirection = {
  DIRECTION_OUTBOUND: 1,
  DIRECTION_INBOUND: 2,
} as const;

/** enum record_isn_known (record.h): bits of `isn_known`. Values are API. */
export const RecordIsnKnown = {
  ISN_CLIENT_KNOWN: 1,
  ISN_SERVER_KNOWN: 2,
} as const;

/** record_kind value -> model kind; index 0 and out-of-range are unknown. */
export const KIND_BY_VALUE: ReadonlyArray<ConnectionEventKind | undefined> = [undefined, 'open', 'close', 'fail', 'report'];

/** record_direction value -> model direction. */
export const DIRECTION_BY_VALUE: ReadonlyArray<Direction | undefined> = [undefined, 'OUTBOUND', 'INBOUND'];

/** Address families as the kernel numbers them (include/linux/socket.h). */
export const AF_INET = 2;
export const AF_INET6 = 10;

/**
 * TCP state names by value, from the kernel's enum in include/net/tcp_states.h
 * (TCP_ESTABLISHED = 1 ... TCP_NEW_SYN_RECV = 12, TCP_BOUND_INACTIVE = 13 since
 * Linux 6.8). Names follow the kernel's, without the `TCP_` prefix.
 */
export const TCP_STATE_NAMES: ReadonlyArray<string> = [
  'UNKNOWN',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT1',
  'FIN_WAIT2',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'CLOSING',
  'NEW_SYN_RECV',
  'BOUND_INACTIVE',
];

/** A TCP state value -> name; values the kernel may add later become `UNKNOWN`. */
export function tcpStateName(value: number): string {
  return TCP_STATE_NAMES[value] ?? 'UNKNOWN';
}

/** Linux errno values (include/uapi/asm-generic/errno.h) that name a connect failure. */
export const Errno = {
  ENETUNREACH: 101,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
} as const;

/** `sk_err` of a failed connect -> reason. Anything else (including 0) is `other`. */
export function failureReason(skErr: number): FailureReason {
  switch (skErr) {
    case Errno.ECONNREFUSED:
      return 'refused';
    case Errno.ECONNRESET:
      return 'reset';
    case Errno.ETIMEDOUT:
      return 'timeout';
    case Errno.EHOSTUNREACH:
      return 'host_unreachable';
    case Errno.ENETUNREACH:
      return 'net_unreachable';
    default:
      return 'other';
  }
}
