/**
 * The flow key: what a metric point is aggregated by before any label is
 * known — the connection's two addresses, the destination port, the
 * original (pre-DNAT) destination, the reporting socket's direction and the
 * failure reason. Source ports are not part of it: they are ephemeral and
 * would make one series per connection.
 *
 * Typed once here (numbers stay numbers) and interned by the receiver's
 * FlowAggregator, so equal keys are one object: the k8s_attributes
 * processor's label cache looks a key up by identity, never re-reading or
 * parsing attribute strings.
 */
import type { Direction, FailureReason } from './connection.js';
import { RawAttr } from './metrics.js';

export interface FlowKey {
  readonly direction: Direction;
  /** Connection initiator (client) address. */
  readonly srcAddr: string;
  /** Acceptor (server) address and port. */
  readonly dstAddr: string;
  readonly dstPort: number;
  /** Original destination before DNAT, where known. */
  readonly origDstAddr: string | undefined;
  readonly origDstPort: number | undefined;
  /** Present on failed connects. */
  readonly failure: FailureReason | undefined;
  /**
   * The key as attributes under the receiver's raw keys ({@link RawAttr}),
   * built once per key: what a point carries until a processor maps it onto
   * labels. A point whose attributes are this very object carries nothing
   * else.
   */
  readonly attributes: Readonly<Record<string, string>>;
}

/** What a {@link FlowKey} is made from (a decoded record or a ConnectionEvent carries these fields). */
export type FlowKeyFields = Pick<FlowKey, 'direction' | 'srcAddr' | 'dstAddr' | 'dstPort' | 'origDstAddr' | 'origDstPort' | 'failure'>;

/** A new key (not interned: the aggregator interns; tests and benchmarks build keys directly). */
export function newFlowKey(f: FlowKeyFields): FlowKey {
  const attributes: Record<string, string> = {
    [RawAttr.direction]: f.direction,
    [RawAttr.sourceAddress]: f.srcAddr,
    [RawAttr.destinationAddress]: f.dstAddr,
    [RawAttr.destinationPort]: String(f.dstPort),
  };
  if (f.origDstAddr !== undefined) attributes[RawAttr.originalDestinationAddress] = f.origDstAddr;
  if (f.origDstPort !== undefined) attributes[RawAttr.originalDestinationPort] = String(f.origDstPort);
  if (f.failure !== undefined) attributes[RawAttr.failureReason] = f.failure;
  return {
    direction: f.direction,
    srcAddr: f.srcAddr,
    dstAddr: f.dstAddr,
    dstPort: f.dstPort,
    origDstAddr: f.origDstAddr,
    origDstPort: f.origDstPort,
    failure: f.failure,
    attributes,
  };
}
