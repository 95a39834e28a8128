/**
 * Loss is never silent. A component that loses data (the kernel dropped
 * records, a batch could not be decoded, a connection was evicted, an export
 * failed) reports it here, besides counting it in its own self-metric:
 *
 * - the first loss of each cause is logged at once (warn), with its detail;
 * - later ones are summed and logged as one line per cause at most every
 *   `summaryIntervalMs` (a storm of drops costs one line a minute, not one
 *   per drop: the collector's "no per-item logging" rule);
 * - `kmesh_otel_data_loss_last_time{<component>, cause}` carries the Unix time
 *   (seconds) of the last loss of each cause, 0 until there is one, and exists
 *   from start-up for every cause the component declares, so a dashboard can
 *   show "data incomplete since" and an alert can fire on `> 0` and recent.
 */
import type { Attributes } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { SelfTelemetry } from './SelfTelemetry.js';

export interface LossLogOptions {
  /** Least time between two summary lines of one cause. Default 60 s. */
  summaryIntervalMs?: number;
  /** Clock (tests). Default Date.now. */
  now?: () => number;
  /**
   * Log due summaries on a timer of `summaryIntervalMs` (unref'd), so a
   * loss that stops is still summarised without another record() or
   * tick(). Default true; close() stops it.
   */
  timer?: boolean;
}

interface CauseState {
  /** Losses since the last line logged for this cause. */
  pending: number;
  /** All losses of this cause. */
  total: number;
  lastLoggedMs: number;
  lastLossMs: number;
}

export class LossLog {
  private readonly causes = new Map<string, CauseState>();
  private readonly intervalMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;

  /**
   * `attrs` name the component (e.g. `{ receiver: 'ebpf' }`); `causes` are
   * the causes it can report, whose time series exist from now on at 0.
   */
  constructor(
    private readonly logger: Logger,
    telemetry: SelfTelemetry,
    private readonly attrs: Attributes,
    causes: readonly string[],
    options: LossLogOptions = {},
  ) {
    this.intervalMs = options.summaryIntervalMs ?? 60_000;
    this.now = options.now ?? Date.now;
    for (const c of causes) this.state(c);
    if (options.timer ?? true) {
      this.timer = setInterval(() => this.tick(), this.intervalMs);
      // Summaries must never keep the process alive on their own.
      this.timer.unref();
    }
    telemetry.gauge(
      'data_loss_last_time',
      'Unix time (s) of the last data loss of each cause, 0 before any: data is incomplete since then',
      () => [...this.causes].map(([cause, s]) => [s.lastLossMs / 1000, { ...this.attrs, cause }]),
      's',
    );
  }

  /** Reports `count` items lost for `cause` (a short snake_case reason); `detail` goes into the log line. */
  record(cause: string, count: number, detail: Record<string, unknown> = {}): void {
    if (!(count > 0)) return;
    const s = this.state(cause);
    const now = this.now();
    s.pending += count;
    s.total += count;
    s.lastLossMs = now;
    if (s.lastLoggedMs === 0) {
      this.logger.warn({ ...this.attrs, cause, lost: count, ...detail }, 'data lost (first occurrence; later losses of this cause are summarised)');
      s.pending = 0;
      s.lastLoggedMs = now;
      return;
    }
    this.tick(now);
  }

  /** Logs the summary of every cause whose interval has passed (call periodically; cheap when nothing is due). */
  tick(now = this.now()): void {
    for (const [cause, s] of this.causes) {
      if (s.pending > 0 && now - s.lastLoggedMs >= this.intervalMs) this.summarise(cause, s, now);
    }
  }

  /** Logs every pending summary now, due or not (shutdown). */
  flush(): void {
    const now = this.now();
    for (const [cause, s] of this.causes) if (s.pending > 0) this.summarise(cause, s, now);
  }

  /** Stops the summary timer and logs every pending summary (component shutdown). Safe twice. */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }

  /** Total lost for a cause (tests, shutdown reports). */
  total(cause: string): number {
    return this.causes.get(cause)?.total ?? 0;
  }

  private summarise(cause: string, s: CauseState, now: number): void {
    this.logger.warn(
      { ...this.attrs, cause, lost: s.pending, lostTotal: s.total, sinceMs: now - s.lastLoggedMs },
      'data lost (summary since the last line)',
    );
    s.pending = 0;
    s.lastLoggedMs = now;
  }

  private state(cause: string): CauseState {
    let s = this.causes.get(cause);
    if (s === undefined) {
      s = { pending: 0, total: 0, lastLoggedMs: 0, lastLossMs: 0 };
      this.causes.set(cause, s);
    }
    return s;
  }
}
