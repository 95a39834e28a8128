/**
 * The decoded form of one kernel connection record, as the ebpf receiver hands
 * it to the logs pipeline and as processors/exporters read it. Independent of
 * the binary layout (that lives in bpf/include/record.h and decode.ts).
 */

/** OUTBOUND: this node's socket made the connection (active open); INBOUND: it accepted it. */
export type Direction = 'OUTBOUND' | 'INBOUND';

/**
 * What happened to the connection:
 * - `open`: the three-way handshake completed;
 * - `close`: the socket reached TCP_CLOSE after being established (final totals);
 * - `fail`: an active open went SYN_SENT -> CLOSE without being established;
 * - `report`: periodic running totals of a still-open connection.
 */
export type ConnectionEventKind = 'open' | 'close' | 'fail' | 'report';

/** Why a connect failed, from `sk_err` (errno) at the moment of the failure. */
export type FailureReason =
  | 'refused' // ECONNREFUSED: RST in answer to SYN
  | 'reset' // ECONNRESET
  | 'timeout' // ETIMEDOUT: SYN retries exhausted
  | 'host_unreachable' // EHOSTUNREACH
  | 'net_unreachable' // ENETUNREACH
  | 'other'; // any other errno, or none recorded

export interface ConnectionEvent {
  kind: ConnectionEventKind;
  direction: Direction;
  /** 4 or 6; IPv4-mapped IPv6 addresses are normalised to 4. */
  family: 4 | 6;
  /** Connection initiator (client) address and port, whatever the direction. */
  srcAddr: string;
  srcPort: number;
  /** Acceptor (server) address and port. */
  dstAddr: string;
  dstPort: number;
  /** Original destination before DNAT (e.g. a Service ClusterIP) where known, else undefined. */
  origDstAddr?: string;
  origDstPort?: number;
  /**
   * Kernel socket cookie: identity of the socket for the connection table.
   *
   * A u64 in the kernel, a number here, and exact: socket and netns cookies
   * are per-boot counters (`gen_cookie_next()`: one 64-bit counter per kind,
   * advanced as sockets and namespaces ask for a cookie), so they stay far
   * below 2^53, where a number holds every integer (that many sockets would
   * take centuries at a million per second). Numbers avoid a BigInt allocation
   * per record and hash faster as Map keys.
   */
  socketCookie: number;
  /** Network-namespace cookie of the socket (a per-boot counter too, see {@link socketCookie}). */
  netnsCookie: number;
  /** Wall-clock time of the kernel event, ns since the Unix epoch (from the monotonic clock). */
  timeUnixNano: bigint;
  /** Connection age at the event, ns (0 for failures that never established). */
  durationNs: number;
  /** Payload bytes this socket sent / received (exact, 64-bit in the kernel). */
  sentBytes: number;
  receivedBytes: number;
  /** Smoothed RTT and minimum RTT in microseconds (real units), 0 when unknown. */
  srttUs: number;
  minRttUs: number;
  /** Total retransmitted segments and lost packets. */
  retransmits: number;
  lostPackets: number;
  segsIn: number;
  segsOut: number;
  /** TCP state name at the event (e.g. `ESTABLISHED`, `CLOSE`, `SYN_SENT`). */
  state: string;
  /** Present on `fail` events. */
  failure?: FailureReason;
  /**
   * The connection's initial sequence numbers (unsigned 32-bit), the same on
   * both ends and through NAT: what the trace id is derived from. The
   * client's is known for every connect the probe saw (failed ones too), the
   * server's once the connection is established; undefined otherwise.
   */
  isnClient?: number;
  isnServer?: number;
}
