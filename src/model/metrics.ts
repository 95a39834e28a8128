/**
 * Metrics as they travel through a pipeline: one point per flush per distinct
 * attribute set, carrying deltas since the previous flush. Exporters turn
 * points into metric families (names, label sets, unknown placeholders) with a
 * schema (see src/metrics/schema.ts); processors rewrite attributes.
 */

import type { FlowKey } from './flow.js';

/**
 * Attribute keys set by the ebpf receiver. Processors may consume (and delete)
 * the raw address keys; exporters never render keys that their schema does
 * not name, so raw addresses cannot leak into metric labels by accident.
 */
export const RawAttr = {
  direction: 'direction', // 'INBOUND' | 'OUTBOUND'
  sourceAddress: 'source.address',
  destinationAddress: 'destination.address',
  destinationPort: 'destination.port',
  originalDestinationAddress: 'original_destination.address',
  originalDestinationPort: 'original_destination.port',
  failureReason: 'failure.reason', // a FailureReason, only on failed connects
} as const;

/** Deltas since the previous flush for one attribute set. */
export interface FlowValues {
  opened: number;
  closed: number;
  failed: number;
  sentBytes: number;
  receivedBytes: number;
  retransmits: number;
  lostPackets: number;
  /** Durations (seconds) of connections closed in this flush. */
  durationsSec: number[];
  /** Smoothed RTT (seconds) of connections closed or reported in this flush. */
  rttsSec: number[];
}

export interface FlowPoint extends FlowValues {
  /**
   * The flow the point aggregates (the receiver's points; interned, so equal
   * keys are one object). Absent on points that did not come from a flow.
   */
  flow?: FlowKey;
  /**
   * Attribute key -> value. An absent key means "unknown". From the
   * receiver: `flow.attributes` itself; processors replace it with labels.
   */
  attributes: Record<string, string>;
}

export interface MetricsBatch {
  points: FlowPoint[];
}

export function emptyFlowValues(): FlowValues {
  return {
    opened: 0,
    closed: 0,
    failed: 0,
    sentBytes: 0,
    receivedBytes: 0,
    retransmits: 0,
    lostPackets: 0,
    durationsSec: [],
    rttsSec: [],
  };
}

/** Adds `from` into `into` (used wherever points with equal attributes merge). */
export function addFlowValues(into: FlowValues, from: FlowValues): void {
  into.opened += from.opened;
  into.closed += from.closed;
  into.failed += from.failed;
  into.sentBytes += from.sentBytes;
  into.receivedBytes += from.receivedBytes;
  into.retransmits += from.retransmits;
  into.lostPackets += from.lostPackets;
  for (const d of from.durationsSec) into.durationsSec.push(d);
  for (const r of from.rttsSec) into.rttsSec.push(r);
}

/** A stable key for an attribute set (sorted keys), for re-aggregation maps. */
export function attributesKey(attrs: Record<string, string>): string {
  const keys = Object.keys(attrs).sort();
  let out = '';
  for (const k of keys) out += k + '\u0000' + attrs[k] + '\u0001';
  return out;
}

/** Merges points with equal attribute sets, summing their values. */
export function reaggregate(points: FlowPoint[]): FlowPoint[] {
  const byKey = new Map<string, FlowPoint>();
  for (const p of points) {
    const key = attributesKey(p.attributes);
    const existing = byKey.get(key);
    if (existing === undefined) byKey.set(key, p);
    else addFlowValues(existing, p);
  }
  return [...byKey.values()];
}
