/**
 * Turns a socket's final event (close, or a failed connect) into its span:
 * ids from the ISN pair (src/model/traceIds.ts), the sampling decision
 * (SpanSampler.ts), CLIENT for the OUTBOUND socket and SERVER for the INBOUND
 * one. Counts what it does not emit: spans sampled out, and records that
 * carry too few ISNs to name a trace (a socket whose establishment the
 * probe did not see has no state and no records at all, so this only
 * happens with a record from an older probe).
 */
import { endianness } from 'node:os';
import type { ConnectionEvent } from '../../model/connection.js';
import { ConnectionTraceIds } from '../../model/traceIds.js';
import type { ConnectionSpan } from '../../model/traces.js';
import { OFF_EVENT_NS, OFF_START_NS } from './layout.js';
import { SpanSampler } from './SpanSampler.js';

/** Records are in the host's byte order (the BPF program runs on this CPU). */
const LE = endianness() === 'LE';

export interface ConnectionSpanOptions {
  /** `traces.sampling_ratio`. */
  samplingRatio: number;
  /** `traces.keep_longer_than`, ms. */
  keepLongerThanMs: number | undefined;
  /** `traces.trace_id_key` ('' = unkeyed). */
  traceIdKey: string;
}

export class ConnectionSpanBuilder {
  readonly sampler: SpanSampler;
  private readonly ids: ConnectionTraceIds;
  /** Final events without the ISNs a trace id needs (not emitted). */
  withoutIsns = 0;

  constructor(opts: ConnectionSpanOptions) {
    this.sampler = new SpanSampler({
      ratio: opts.samplingRatio,
      keepLongerThanNs: opts.keepLongerThanMs === undefined ? undefined : opts.keepLongerThanMs * 1e6,
    });
    this.ids = new ConnectionTraceIds(opts.traceIdKey);
  }

  /**
   * The span of `event` (a `close` or `fail`), or undefined when it is
   * sampled out or cannot be named (both counted). `attemptNs`: for a failed
   * connect, how long the connect took (the model gives failures no age);
   * see {@link failedConnectAgeNs}.
   */
  build(event: ConnectionEvent, observedUnixNano: bigint, attemptNs = 0): ConnectionSpan | undefined {
    const context = this.ids.forEvent(event);
    if (context === undefined) {
      this.withoutIsns++;
      return undefined;
    }
    const failed = event.kind === 'fail';
    const durationNs = failed ? attemptNs : event.durationNs;
    if (this.sampler.decide({ traceId: context.traceId, failed, durationNs }) === 'dropped') return undefined;
    return {
      event,
      context,
      kind: event.direction === 'OUTBOUND' ? 'CLIENT' : 'SERVER',
      attributes: {},
      startUnixNano: event.timeUnixNano - BigInt(durationNs),
      endUnixNano: event.timeUnixNano,
      observedUnixNano,
    };
  }
}

/**
 * How long the failed connect of the record at `offset` took: the record's
 * start_ns is the TCP_CONNECT_CB time for failures (record.h).
 */
export function failedConnectAgeNs(view: DataView, offset: number): number {
  const start = view.getBigUint64(offset + OFF_START_NS, LE);
  const end = view.getBigUint64(offset + OFF_EVENT_NS, LE);
  return start === 0n || end < start ? 0 : Number(end - start);
}
