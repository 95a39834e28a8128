import type { ConnectionEvent } from './connection.js';

/**
 * One access-log entry: a connection event plus the identity attributes that
 * processors add (`src.workload`, `dst.service`, `k8s.*`, ...). Exporters
 * build the OpenTelemetry LogRecord and the Kmesh console line from it.
 */
export interface AccessLogEntry {
  event: ConnectionEvent;
  /** Attribute key -> value added by processors. An absent key means "unknown". */
  attributes: Record<string, string>;
  /** When the agent saw the record, ns since the Unix epoch (LogRecord observed timestamp). */
  observedUnixNano: bigint;
}

export interface LogsBatch {
  entries: AccessLogEntry[];
}

/** Access-log attribute keys that processors fill (Kmesh line fields). */
export const LogAttr = {
  srcWorkload: 'src.workload',
  srcNamespace: 'src.namespace',
  dstService: 'dst.service',
  dstWorkload: 'dst.workload',
  dstNamespace: 'dst.namespace',
} as const;
