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
 * byte set to 1. One digest gives both span ids, and each digest is one
 * call over one buffer (crypto.hash, about half the cost of a createHash
 * chain for inputs this small): a span costs two SHA-256 runs.
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

  /** `key`: optional HMAC key shared by every agent whose traces must join (default: unkeyed SHA-256). */
  constructor(key?: string | Buffer) {
    this.key = key === undefined || key.length === 0 ? undefined : Buffer.from(key);
  }

  /** SHA-256 (or HMAC-SHA-256 under the key) of `data`. */
  private digest(data: Buffer): Buffer {
    if (this.key === undefined) return hash('sha256', data, 'buffer');
    return createHmac('sha256', this.key).update(data).digest();
  }

  /** Trace id (16 bytes) of an established connection, from (ISN_c, ISN_s). */
  traceIdOfPair(isnClient: number, isnServer: number): Buffer {
    const n = TRACE_LABEL.length;
    const data = Buffer.allocUnsafe(n + 8);
    TRACE_LABEL.copy(data, 0);
    data.writeUInt32BE(isnClient >>> 0, n);
    data.writeUInt32BE(isnServer >>> 0, n + 4);
    return nonZero(this.digest(data).subarray(0, 16));
  }

  /** Trace id (16 bytes) of a failed connect, from ISN_c and the client's tuple. */
  traceIdOfFailedConnect(isnClient: number, tuple: { srcAddr: string; srcPort: number; dstAddr: string; dstPort: number }): Buffer {
    const isn = Buffer.allocUnsafe(4);
    isn.writeUInt32BE(isnClient >>> 0, 0);
    const text = Buffer.from(`${tuple.srcAddr}|${tuple.srcPort}|${tuple.dstAddr}|${tuple.dstPort}`);
    return nonZero(this.digest(Buffer.concat([FAILED_LABEL, isn, text])).subarray(0, 16));
  }

  /** The client's and the server's span ids (8 bytes each) in trace `traceId`. */
  spanIds(traceId: Buffer): { client: Buffer; server: Buffer } {
    const d = this.digest(Buffer.concat([SPAN_LABEL, traceId]));
    return { client: nonZero(d.subarray(0, 8)), server: nonZero(d.subarray(8, 16)) };
  }

  /**
   * The span context of the socket that reported `e`: the client's span
   * (OUTBOUND, no parent) or the server's (INBOUND, child of the client's).
   * Undefined when the record carries too little: an established connection
   * without both ISNs, or a failure without the client's.
   */
  forEvent(e: Pick<ConnectionEvent, 'kind' | 'direction' | 'isnClient' | 'isnServer' | 'srcAddr' | 'srcPort' | 'dstAddr' | 'dstPort'>): ConnectionSpanContext | undefined {
    let traceId: Buffer;
    if (e.isnClient !== undefined && e.isnServer !== undefined) traceId = this.traceIdOfPair(e.isnClient, e.isnServer);
    else if (e.kind === 'fail' && e.isnClient !== undefined) traceId = this.traceIdOfFailedConnect(e.isnClient, e);
    else return undefined;
    const { client, server } = this.spanIds(traceId);
    if (e.direction === 'OUTBOUND') return { traceId: traceId.toString('hex'), spanId: client.toString('hex'), parentSpanId: undefined };
    return { traceId: traceId.toString('hex'), spanId: server.toString('hex'), parentSpanId: client.toString('hex') };
  }
}

/** A copy of `id` that is not all zeros (W3C Trace Context forbids those). */
function nonZero(id: Buffer): Buffer {
  const out = Buffer.from(id);
  if (out.every((b) => b === 0)) out[out.length - 1] = 1;
  return out;
}
