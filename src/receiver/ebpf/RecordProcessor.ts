/**
 * The receiver's body without timers or I/O: one packed buffer of kernel
 * records in, one metrics batch and one logs batch out. Pure enough to unit
 * test and benchmark on its own.
 */
import type { ConnectionEvent } from '../../model/connection.js';
import type { AccessLogEntry, LogsBatch } from '../../model/logs.js';
import type { MetricsBatch } from '../../model/metrics.js';
import { ConnectionTable, newConnectionDelta } from './ConnectionTable.js';
import { decodeBatch, newDecodeContext, newDecodeStats, type DecodeContext, type DecodeStats } from './decode.js';
import { FlowAggregator } from './FlowAggregator.js';

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
  private nowMs = 0;
  private observedUnixNano = 0n;
  private readonly onRecord = (e: ConnectionEvent): void => this.handle(e);

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
    this.nowMs = nowMs;
    this.observedUnixNano = this.ctx.clock.nowUnixNano();
    decodeBatch(buf, this.onRecord, this.stats, this.ctx);
    const points = this.aggregator.flush();
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

  private handle(e: ConnectionEvent): void {
    const d = this.delta;
    const t = this.table;
    let log = false;
    switch (e.kind) {
      case 'open':
        this.kinds.open++;
        t.update(e.socketCookie, e.sentBytes, e.receivedBytes, e.retransmits, e.lostPackets, this.nowMs, d);
        break;
      case 'report':
        this.kinds.report++;
        t.update(e.socketCookie, e.sentBytes, e.receivedBytes, e.retransmits, e.lostPackets, this.nowMs, d);
        log = this.options.logPeriodicReports;
        break;
      case 'close':
        this.kinds.close++;
        t.close(e.socketCookie, e.sentBytes, e.receivedBytes, e.retransmits, e.lostPackets, d);
        log = true;
        break;
      case 'fail':
        this.kinds.fail++;
        t.remove(e.socketCookie);
        log = true;
        break;
    }
    if (this.options.wantMetrics) this.aggregator.add(e, d);
    if (log && this.options.wantLogs) this.entries.push({ event: e, attributes: {}, observedUnixNano: this.observedUnixNano });
  }
}
