import type { HrTime } from '@opentelemetry/api';
import { SeverityNumber, type LogRecord } from '@opentelemetry/api';
import type { AccessLogEntry } from '../../model/logs.js';
import { accessLogSeverity, kmeshLineAndAttributes } from '../common/accessLogLine.js';

/** ns since the epoch -> HrTime, exactly (no float rounding of the ns part). */
export function hrTimeOfUnixNano(ns: bigint): HrTime {
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}

/**
 * {@link hrTimeOfUnixNano} for a stream of times in (mostly) increasing order:
 * the last second seen, so that the times within it cost one BigInt
 * subtraction instead of two divisions. One per stream (event times, observed
 * times), so the two do not evict each other's second.
 */
class HrTimeOfUnixNano {
  /** The last second seen (>= 0), in s and in ns since the epoch. */
  private sec = 0;
  private secNs = 0n;

  of(ns: bigint): HrTime {
    const sub = Number(ns - this.secNs);
    if (sub >= 0 && sub < 1_000_000_000) return [this.sec, sub];
    // Times before the epoch are left to hrTimeOfUnixNano's truncating division, uncached.
    if (ns < 0n) return hrTimeOfUnixNano(ns);
    const sec = ns / 1_000_000_000n;
    this.secNs = sec * 1_000_000_000n;
    this.sec = Number(sec);
    return [this.sec, Number(ns - this.secNs)];
  }
}

const eventTime = new HrTimeOfUnixNano();
const observedTime = new HrTimeOfUnixNano();

/**
 * The OpenTelemetry LogRecord of one access-log entry: timestamp = kernel
 * event time, observedTimestamp = when the agent read it, severity INFO
 * (WARN for failed connects), body = the Kmesh line, attributes = the
 * access-log fields, semantic-convention forms and processor identities.
 */
export function toLogRecord(entry: AccessLogEntry): LogRecord {
  const severity = accessLogSeverity(entry);
  const { line, attributes } = kmeshLineAndAttributes(entry);
  return {
    timestamp: eventTime.of(entry.event.timeUnixNano),
    observedTimestamp: observedTime.of(entry.observedUnixNano),
    severityNumber: severity === 'WARN' ? SeverityNumber.WARN : SeverityNumber.INFO,
    severityText: severity,
    body: line,
    attributes,
  };
}
