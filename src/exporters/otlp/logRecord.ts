import type { HrTime } from '@opentelemetry/api';
import { SeverityNumber, type LogRecord } from '@opentelemetry/api-logs';
import type { AccessLogEntry } from '../../model/logs.js';
import { accessLogAttributes, accessLogSeverity, formatKmeshLine } from '../debug/accessLogLine.js';

/** ns since the epoch -> HrTime, exactly (no float rounding of the ns part). */
export function hrTimeOfUnixNano(ns: bigint): HrTime {
  return [Number(ns / 1_000_000_000n), Number(ns % 1_000_000_000n)];
}

/**
 * The OpenTelemetry LogRecord of one access-log entry: timestamp = kernel
 * event time, observedTimestamp = when the agent read it, severity INFO
 * (WARN for failed connects), body = the Kmesh line, attributes = the
 * access-log fields, semantic-convention forms and processor identities.
 */
export function toLogRecord(entry: AccessLogEntry): LogRecord {
  const severity = accessLogSeverity(entry);
  return {
    timestamp: hrTimeOfUnixNano(entry.event.timeUnixNano),
    observedTimestamp: hrTimeOfUnixNano(entry.observedUnixNano),
    severityNumber: severity === 'WARN' ? SeverityNumber.WARN : SeverityNumber.INFO,
    severityText: severity,
    body: formatKmeshLine(entry),
    attributes: accessLogAttributes(entry),
  };
}
