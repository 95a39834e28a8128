/**
 * Per-flush aggregation of connection events into {@link FlowPoint}s keyed by
 * (source address, destination address, destination port, original
 * destination, direction, failure reason). Source ports are dropped: they are
 * ephemeral and would make one series per connection.
 */
import type { ConnectionEvent, FailureReason } from '../../model/connection.js';
import { emptyFlowValues, RawAttr, type FlowPoint } from '../../model/metrics.js';
import type { ConnectionDelta } from './ConnectionTable.js';

/**
 * What aggregation reads of an event: a {@link ConnectionEvent}, or the
 * receiver's reused per-record object (decode.ts `DecodedRecord`), which
 * carries only these fields. Nothing of it is kept (address strings are
 * immutable), so the caller may overwrite it after {@link FlowAggregator.add}.
 */
export type FlowInput = Pick<
  ConnectionEvent,
  'kind' | 'direction' | 'srcAddr' | 'dstAddr' | 'dstPort' | 'origDstAddr' | 'origDstPort' | 'failure' | 'durationNs' | 'srttUs'
>;

/** Small integers for the failure reason in the numeric part of the key (0: none). */
const FAILURE_INDEX: Record<FailureReason, number> = {
  refused: 1,
  reset: 2,
  timeout: 3,
  host_unreachable: 4,
  net_unreachable: 5,
  other: 6,
};

/**
 * Keying: nested Maps source -> destination -> (port | direction | failure
 * packed into one small integer). Address strings come from the decoder's
 * cache, so their hashes are computed once; this measured ~8x faster than
 * looking up a concatenated string key (which must be flattened and hashed
 * per record). Events with an original destination (rare: the BPF side
 * cannot see pre-DNAT addresses yet) take a concatenated-key map.
 */
export class FlowAggregator {
  private byAddress = new Map<string, Map<string, Map<number, FlowPoint>>>();
  private withOrigDst = new Map<string, FlowPoint>();
  private points: FlowPoint[] = [];

  /** Number of distinct attribute sets since the last {@link flush}. */
  get size(): number {
    return this.points.length;
  }

  /**
   * Adds one event: `delta` is what its totals add since the socket's previous
   * record (from the ConnectionTable); ignored for failures.
   *   open   -> opened + 1 (+ deltas, normally zero)
   *   close  -> closed + 1, deltas, a duration and an RTT sample
   *   fail   -> failed + 1 (a failed connect was never opened)
   *   report -> deltas and an RTT sample
   */
  add(e: FlowInput, delta: ConnectionDelta): void {
    const p = this.pointFor(e);
    switch (e.kind) {
      case 'fail':
        p.failed++;
        return;
      case 'open':
        p.opened++;
        break;
      case 'close':
        p.closed++;
        p.durationsSec.push(e.durationNs / 1e9);
        if (e.srttUs > 0) p.rttsSec.push(e.srttUs / 1e6);
        break;
      case 'report':
        if (e.srttUs > 0) p.rttsSec.push(e.srttUs / 1e6);
        break;
    }
    p.sentBytes += delta.sentBytes;
    p.receivedBytes += delta.receivedBytes;
    p.retransmits += delta.retransmits;
    p.lostPackets += delta.lostPackets;
  }

  /** The points since the last flush; starts a new flush. */
  flush(): FlowPoint[] {
    if (this.points.length === 0) return [];
    const out = this.points;
    this.points = [];
    this.byAddress = new Map();
    if (this.withOrigDst.size > 0) this.withOrigDst = new Map();
    return out;
  }

  private pointFor(e: FlowInput): FlowPoint {
    if (e.origDstAddr !== undefined || e.origDstPort !== undefined) return this.pointWithOrigDst(e);
    let byDst = this.byAddress.get(e.srcAddr);
    if (byDst === undefined) {
      byDst = new Map();
      this.byAddress.set(e.srcAddr, byDst);
    }
    let byRest = byDst.get(e.dstAddr);
    if (byRest === undefined) {
      byRest = new Map();
      byDst.set(e.dstAddr, byRest);
    }
    const rest = e.dstPort | (e.direction === 'INBOUND' ? 1 << 16 : 0) | ((e.failure === undefined ? 0 : FAILURE_INDEX[e.failure]) << 17);
    let p = byRest.get(rest);
    if (p === undefined) {
      p = this.newPoint(e);
      byRest.set(rest, p);
    }
    return p;
  }

  private pointWithOrigDst(e: FlowInput): FlowPoint {
    // No field can contain a space.
    const key =
      e.srcAddr +
      ' ' +
      e.dstAddr +
      ' ' +
      e.dstPort +
      ' ' +
      (e.origDstAddr ?? '') +
      ' ' +
      (e.origDstPort ?? '') +
      ' ' +
      e.direction +
      ' ' +
      (e.failure ?? '');
    let p = this.withOrigDst.get(key);
    if (p === undefined) {
      p = this.newPoint(e);
      this.withOrigDst.set(key, p);
    }
    return p;
  }

  private newPoint(e: FlowInput): FlowPoint {
    const attributes: Record<string, string> = {
      [RawAttr.direction]: e.direction,
      [RawAttr.sourceAddress]: e.srcAddr,
      [RawAttr.destinationAddress]: e.dstAddr,
      [RawAttr.destinationPort]: String(e.dstPort),
    };
    if (e.origDstAddr !== undefined) attributes[RawAttr.originalDestinationAddress] = e.origDstAddr;
    if (e.origDstPort !== undefined) attributes[RawAttr.originalDestinationPort] = String(e.origDstPort);
    if (e.failure !== undefined) attributes[RawAttr.failureReason] = e.failure;
    // Once per new flow per flush, not per record.
    const p: FlowPoint = { attributes, ...emptyFlowValues() };
    this.points.push(p);
    return p;
  }
}
