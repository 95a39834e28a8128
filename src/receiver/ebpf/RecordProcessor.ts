/**
 * The receiver's body without timers or I/O: one packed buffer of kernel
 * records in, one metrics batch and one logs batch out. Pure enough to unit
 * test and benchmark on its own.
 */
import type { AccessLogEntry, LogsBatch } from '../../model/logs.js';
import type { MetricsBatch } from '../../model/metrics.js';
import { ConnectionTable, newConnectionDelta } from './ConnectionTable.js';
import {
  countDecodeError,
  decodeInto,
  DecodedRecord,
  eventFromRecord,
  newDecodeContext,
  newDecodeStats,
  wholeRecordsLength,
  type DecodeContext,
  type DecodeStats,
} from './decode.js';
import { FlowAggregator } from './FlowAggregator.js';
import { RECORD_SIZE } from './layout.js';

export interface RecordProcessorOptions {
  /** ConnectionTable TTL, ms. */
  connectionTtlMs: number;
  /** ConnectionTable bound. */
  maxConnections: number;
  /** Emit an access-log entry for each periodic report (opens never get one). */
  logPeriodicReports: boolean;
  /** Whether anyone consumes logs; when false no entries are built. */
  wantLogs: boolean;
  /** Whether anyone consumes metrics; when false no points are built. */
  wantMetrics: boolean;
}

/** Records per kind in the last processed buffer, for self-metrics. */
export interface KindCounts {
  open: number;
  close: number;
  fail: number;
  report: number;
}

export interface ProcessResult {
  metrics: MetricsBatch | undefined;
  logs: LogsBatch | undefined;
}

export class RecordProcessor {
  readonly table: ConnectionTable;
  readonly stats: DecodeStats = newDecodeStats();
  readonly kinds: KindCounts = { open: 0, close: 0, fail: 0, report: 0 };
  private readonly aggregator = new FlowAggregator();
  private readonly delta = newConnectionDelta();
  private entries: AccessLogEntry[] = [];
  /** Reused for every record; only records that become log entries get a ConnectionEvent of their own. */
  private readonly record = new DecodedRecord();

  constructor(
    private readonly options: RecordProcessorOptions,
    private readonly ctx: DecodeContext = newDecodeContext(),
  ) {
    this.table = new ConnectionTable({ ttlMs: options.connectionTtlMs, maxEntries: options.maxConnections });
  }

  /** Which consumers exist can change until start (the factory wires them one by one). */
  setWants(metrics: boolean, logs: boolean): void {
    this.options.wantMetrics = metrics;
    this.options.wantLogs = logs;
  }

  /** Decodes `buf`, updates the table and returns what to hand on (undefined when empty). */
  process(buf: Uint8Array, nowMs = Date.now()): ProcessResult {
    const observedUnixNano = this.ctx.clock.nowUnixNano();
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const whole = wholeRecordsLength(buf, this.stats);
    const { ctx, record: r, table: t, delta: d, kinds, stats, aggregator } = this;
    const { wantMetrics, wantLogs, logPeriodicReports } = this.options;
    // The one decode loop: no callback and no event object per record (only log entries get one).
    for (let off = 0; off < whole; off += RECORD_SIZE) {
      const err = decodeInto(view, off, ctx, r);
      if (err !== undefined) {
        countDecodeError(stats, err);
        continue;
      }
      stats.decoded++;
      let log = false;
      switch (r.kind) {
        case 'open':
          kinds.open++;
          t.update(r.socketCookie, r.sentBytes, r.receivedBytes, r.retransmits, r.lostPackets, nowMs, d);
          break;
        case 'report':
          kinds.report++;
          t.update(r.socketCookie, r.sentBytes, r.receivedBytes, r.retransmits, r.lostPackets, nowMs, d);
          log = logPeriodicReports;
          break;
        case 'close':
          kinds.close++;
          t.close(r.socketCookie, r.sentBytes, r.receivedBytes, r.retransmits, r.lostPackets, d);
          log = true;
          break;
        case 'fail':
          kinds.fail++;
          t.remove(r.socketCookie);
          log = true;
          break;
      }
      if (wantMetrics) aggregator.add(r, d);
      // A fresh event per entry: `r` is overwritten by the next record, entries are kept.
      if (log && wantLogs) this.entries.push({ event: eventFromRecord(view, off, ctx, r), attributes: {}, observedUnixNano });
    }
    const points = aggregator.flush();
    const entries = this.entries;
    if (entries.length > 0) this.entries = [];
    return {
      metrics: points.length > 0 ? { points } : undefined,
      logs: entries.length > 0 ? { entries } : undefined,
    };
  }

  /** Drops table entries past their TTL; returns how many. */
  expire(nowMs = Date.now()): number {
    return this.table.expire(nowMs);
  }
}
