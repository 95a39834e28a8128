/**
 * Trace and span ids of a TCP connection, derived from what both of its ends
 * already share: the two initial sequence numbers (RFC 9293 section 3.4.1).
 * Each end's agent computes the same ids on its own - on one node or on two,
 * through NAT (which leaves sequence numbers alone) - so the client's span and
 * the server's span form one trace with no header injected anywhere.
 *
 * Derivation (version 1; changing it splits traces between agents of two
 * versions, so it is API):
 *   trace id  = first 16 bytes of H("kmesh-otel trace v1" || ISN_c || ISN_s)
 *   S = H("kmesh-otel span ids v1" || trace id)
 *   client span id = bytes 0..7 of S
 *   server span id = bytes 8..15 of S, its parent the client span id
 *   failed connect (no server ISN): trace id = first 16 bytes of
 *     H("kmesh-otel failed connect v1" || ISN_c || "src|sport|dst|dport"),
 *     the tuple as the client saw it, in the text form of ConnectionEvent
 *     (IPv4 dotted, IPv6 RFC 5952, IPv4-mapped IPv6 as IPv4)
 * with ISNs as 4 bytes big-endian and H = SHA-256, or HMAC-SHA-256 under a
 * key when one is configured. The two ISNs are 64 random bits (RFC 6528), so
 * ids collide only as random 64-bit values do. A key keeps the ISNs from
 * being recoverable from the ids by a 2^64 search and keeps ids of different
 * clusters apart; every agent that must join traces needs the same key.
 * An id that would be all zeros (invalid in W3C Trace Context) gets its last
 * byte set to 1.
 *
 * Cost: a span costs two SHA-256 runs over one small buffer each, through
 * Node's one-shot crypto.hash with hex output. Hex output, not a Buffer:
 * measured on Node 24 here, hash() into a Buffer took ~1.0 us and into a
 * hex string ~0.3 us for these 27-30 byte inputs (the Buffer's backing
 * store is what costs), and the ids are wanted as hex anyway (the span
 * model, the SDK). The inputs are written into scratch buffers kept per
 * instance (hashing is synchronous), so a span allocates only its id strings.
 */
import { createHmac, hash } from 'node:crypto';
import type { ConnectionEvent } from './connection.js';

/** The ids of one span: lowercase hex, 32 (trace) and 16 (span) characters. */
export interface ConnectionSpanContext {
  readonly traceId: string;
  readonly spanId: string;
  /** The client span's id, on the server's span; undefined on the client's. */
  readonly parentSpanId: string | undefined;
}

const TRACE_LABEL = Buffer.from('kmesh-otel trace v1');
const FAILED_LABEL = Buffer.from('kmesh-otel failed connect v1');
const SPAN_LABEL = Buffer.from('kmesh-otel span ids v1');

/** Derives the ids; one per agent (the key is fixed for its life). */
export class ConnectionTraceIds {
  private readonly key: Buffer | undefined;
  /** TRACE_LABEL || ISN_c || ISN_s, the ISNs rewritten per connection. */
  private readonly pairInput = Buffer.alloc(TRACE_LABEL.length + 8);
  /** SPAN_LABEL || trace id, the trace id rewritten per span. */
  private readonly spanInput = Buffer.alloc(SPAN_LABEL.length + 16);

  /** `key`: optional HMAC key shared by every agent whose traces must join (default: unkeyed SHA-256). */
  constructor(key?: string | Buffer) {
    this.key = key === undefined || key.length === 0 ? undefined : Buffer.from(key);
    TRACE_LABEL.copy(this.pairInput, 0);
    SPAN_LABEL.copy(this.spanInput, 0);
  }

  /** SHA-256 (or HMAC-SHA-256 under the key) of `data`, as 64 lowercase hex digits. */
  private digestHex(data: Buffer): string {
    if (this.key === undefined) return hash('sha256', data, 'hex');
    return createHmac('sha256', this.key).update(data).digest('hex');
  }

  /** Trace id of an established connection, from (ISN_c, ISN_s): 32 hex digits. */
  private traceHexOfPair(isnClient: number, isnServer: number): string {
    const data = this.pairInput;
    const n = TRACE_LABEL.length;
    data.writeUInt32BE(isnClient >>> 0, n);
    data.writeUInt32BE(isnServer >>> 0, n + 4);
    return nonZeroHex(this.digestHex(data).slice(0, 32));
  }

  /** Trace id of a failed connect, from ISN_c and the client's tuple: 32 hex digits. */
  private traceHexOfFailedConnect(isnClient: number, tuple: { srcAddr: string; srcPort: number; dstAddr: string; dstPort: number }): string {
    const isn = Buffer.allocUnsafe(4);
    isn.writeUInt32BE(isnClient >>> 0, 0);
    const text = Buffer.from(`${tuple.srcAddr}|${tuple.srcPort}|${tuple.dstAddr}|${tuple.dstPort}`);
    return nonZeroHex(this.digestHex(Buffer.concat([FAILED_LABEL, isn, text])).slice(0, 32));
  }

  /** The client's and the server's span ids in trace `traceHex` (32 hex digits): 16 hex digits each. */
  private spanHexes(traceHex: string): { client: string; server: string } {
    this.spanInput.write(traceHex, SPAN_LABEL.length, 16, 'hex');
    const d = this.digestHex(this.spanInput);
    return { client: nonZeroHex(d.slice(0, 16)), server: nonZeroHex(d.slice(16, 32)) };
  }

  /** Trace id (16 bytes) of an established connection, from (ISN_c, ISN_s). */
  traceIdOfPair(isnClient: number, isnServer: number): Buffer {
    return Buffer.from(this.traceHexOfPair(isnClient, isnServer), 'hex');
  }

  /** Trace id (16 bytes) of a failed connect, from ISN_c and the client's tuple. */
  traceIdOfFailedConnect(isnClient: number, tuple: { srcAddr: string; srcPort: number; dstAddr: string; dstPort: number }): Buffer {
    return Buffer.from(this.traceHexOfFailedConnect(isnClient, tuple), 'hex');
  }

  /** The client's and the server's span ids (8 bytes each) in trace `traceId`. */
  spanIds(traceId: Buffer): { client: Buffer; server: Buffer } {
    const { client, server } = this.spanHexes(traceId.toString('hex'));
    return { client: Buffer.from(client, 'hex'), server: Buffer.from(server, 'hex') };
  }

  /**
   * The span context of the socket that reported `e`: the client's span
   * (OUTBOUND, no parent) or the server's (INBOUND, child of the client's).
   * Undefined when the record carries too little: an established connection
   * without both ISNs, or a failure without the client's.
   */
  forEvent(e: Pick<ConnectionEvent, 'kind' | 'direction' | 'isnClient' | 'isnServer' | 'srcAddr' | 'srcPort' | 'dstAddr' | 'dstPort'>): ConnectionSpanContext | undefined {
    let traceId: string;
    if (e.isnClient !== undefined && e.isnServer !== undefined) traceId = this.traceHexOfPair(e.isnClient, e.isnServer);
    else if (e.kind === 'fail' && e.isnClient !== undefined) traceId = this.traceHexOfFailedConnect(e.isnClient, e);
    else return undefined;
    const { client, server } = this.spanHexes(traceId);
    if (e.direction === 'OUTBOUND') return { traceId, spanId: client, parentSpanId: undefined };
    return { traceId, spanId: server, parentSpanId: client };
  }
}

const ZERO_HEX = /^0+$/;

/** `id` (hex), or, when it is all zeros (W3C Trace Context forbids those), the same with its last byte 1. */
function nonZeroHex(id: string): string {
  // Almost never taken: an id's first digit is 0 with probability 1/16, all of them with 2^-64 or less.
  if (id.charCodeAt(0) !== 48 || !ZERO_HEX.test(id)) return id;
  return `${id.slice(0, -2)}01`;
}
