/**
 * Which connection spans are kept. Decided from the span itself - never
 * from per-agent state - so that the two ends of a connection, reported by
 * two sockets and perhaps two agents, keep or drop the same connection:
 *
 * 1. a failed connect is always kept (it has only one end anyway);
 * 2. with `keepLongerThanNs`, a connection that lived at least that long is
 *    kept (each end measures its own duration, so a connection within a few
 *    RTTs of the threshold may be kept by one end only);
 * 3. every other connection is kept with probability `ratio`, decided from
 *    its trace id the way OpenTelemetry's consistent probability sampling
 *    does: the trace id's 56 least significant bits are the randomness R,
 *    and the span is kept when R >= (1 - ratio) * 2^56 (the rejection
 *    threshold of the specification's trace/tracestate-probability-sampling.md).
 *    The trace id is
 *    a hash of the two ISNs (src/model/traceIds.ts), so its low bits are
 *    uniform, and both ends compute the same id and the same answer.
 *
 * Kept and dropped spans are counted (by reason) for the receiver's
 * self-metrics.
 */

/** Why a span was kept, or that it was dropped. */
export type SamplingDecision = 'failed' | 'long' | 'ratio' | 'dropped';

export interface SpanSamplerOptions {
  /** Fraction of the other connections kept, 0..1. Default 1 (all). */
  ratio?: number;
  /** Keep every connection at least this old (ns) at its end; undefined: no such rule. */
  keepLongerThanNs?: number;
}

/** Counts of decisions since start, by reason. */
export interface SamplingCounts {
  failed: number;
  long: number;
  ratio: number;
  dropped: number;
}

const TWO_56 = 1n << 56n;
const LOW_56 = TWO_56 - 1n;

export class SpanSampler {
  readonly counts: SamplingCounts = { failed: 0, long: 0, ratio: 0, dropped: 0 };
  /** Keep when R >= threshold; 0 keeps all, 2^56 keeps none. */
  private readonly threshold: bigint;
  private readonly keepLongerThanNs: number | undefined;

  constructor(opts: SpanSamplerOptions = {}) {
    const ratio = opts.ratio ?? 1;
    if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`sampling ratio must be within 0..1, got ${ratio}`);
    // (1 - ratio) * 2^56, rounded: exact for the ratios people write (powers of two, 0, 1),
    // and within 2^-56 of the asked probability otherwise.
    this.threshold = ratio === 1 ? 0n : ratio === 0 ? TWO_56 : BigInt(Math.round((1 - ratio) * 2 ** 56));
    if (opts.keepLongerThanNs !== undefined && !(opts.keepLongerThanNs >= 0)) throw new RangeError(`keep_longer_than must be >= 0, got ${opts.keepLongerThanNs}`);
    this.keepLongerThanNs = opts.keepLongerThanNs;
  }

  /**
   * Decides for one span and counts the decision. `traceId`: 32 hex
   * characters (or 16 bytes); a malformed id is decided by the other rules
   * and otherwise dropped (counted), never thrown on.
   */
  decide(span: { traceId: string | Uint8Array; failed: boolean; durationNs: number }): SamplingDecision {
    const d = this.decision(span);
    this.counts[d]++;
    return d;
  }

  /** The decision without counting it. */
  decision(span: { traceId: string | Uint8Array; failed: boolean; durationNs: number }): SamplingDecision {
    if (span.failed) return 'failed';
    if (this.keepLongerThanNs !== undefined && span.durationNs >= this.keepLongerThanNs) return 'long';
    if (this.threshold === 0n) return 'ratio';
    const r = randomness(span.traceId);
    if (r === undefined) return 'dropped';
    return r >= this.threshold ? 'ratio' : 'dropped';
  }
}

/** The 56 least significant bits of a trace id (the last 7 bytes), or undefined for a malformed id. */
export function randomness(traceId: string | Uint8Array): bigint | undefined {
  if (typeof traceId === 'string') {
    if (!/^[0-9a-f]{32}$/i.test(traceId)) return undefined;
    return BigInt(`0x${traceId.slice(18)}`);
  }
  if (traceId.length !== 16) return undefined;
  let r = 0n;
  for (let i = 9; i < 16; i++) r = (r << 8n) | BigInt(traceId[i]!);
  return r & LOW_56;
}
