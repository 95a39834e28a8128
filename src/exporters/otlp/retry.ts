import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { RetryConfig } from './config.js';

/**
 * Exponential backoff with jitter, as the Collector's exporterhelper
 * (cenkalti/backoff): the n-th wait is drawn uniformly from
 * `interval * (1 ± randomization_factor)`, where `interval` starts at
 * `initial_interval` and grows by `multiplier` up to `max_interval`. The
 * jitter spreads a fleet's retries after a shared outage, instead of every
 * agent hitting the recovering backend at the same instants.
 */
export class Backoff {
  private interval: number;
  private readonly started: number;

  constructor(
    private readonly config: RetryConfig,
    private readonly random: () => number = Math.random,
    private readonly now: () => number = Date.now,
  ) {
    this.interval = Math.max(1, config.initial_interval);
    this.started = now();
  }

  /** The next wait in ms, or undefined when `max_elapsed_time` would be passed (0: never). */
  next(): number | undefined {
    const rf = this.config.randomization_factor;
    const wait = Math.max(0, Math.round(this.interval * (1 - rf + 2 * rf * this.random())));
    this.interval = Math.min(this.interval * this.config.multiplier, Math.max(1, this.config.max_interval));
    const limit = this.config.max_elapsed_time;
    if (limit > 0 && this.now() - this.started + wait > limit) return undefined;
    return wait;
  }
}

/** gRPC status codes the Collector retries (exporterhelper shouldRetry; RESOURCE_EXHAUSTED only with RetryInfo, which grpc-js does not surface). */
const GRPC_RETRYABLE = new Set([1 /* CANCELLED */, 4 /* DEADLINE_EXCEEDED */, 10 /* ABORTED */, 11 /* OUT_OF_RANGE */, 14 /* UNAVAILABLE */, 15 /* DATA_LOSS */]);
/** HTTP statuses that are worth retrying (OTLP/HTTP specification, "Retryable Response Codes"). */
const HTTP_RETRYABLE = new Set([429, 502, 503, 504]);

/**
 * A permanent error is not retried (the Collector's consumererror.Permanent):
 * the backend refused the data itself (HTTP 4xx other than 429, gRPC
 * INVALID_ARGUMENT, UNAUTHENTICATED, ...). The SDK exporters report HTTP
 * statuses (100..599) and gRPC status codes (0..16) in `error.code`; anything
 * else (a refused connection, a timeout) is transient.
 */
export function isPermanent(result: ExportResult): boolean {
  const code = (result.error as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'number') return false;
  if (code >= 100 && code <= 599) return !HTTP_RETRYABLE.has(code) && code >= 400;
  if (code >= 0 && code <= 16) return code !== 0 && !GRPC_RETRYABLE.has(code);
  return false;
}

interface Waiting {
  timer: NodeJS.Timeout;
  /** Ends the retry loop now with the last failure. */
  fail: () => void;
}

/**
 * Runs export attempts with {@link Backoff} between failures. Stopping
 * (shutdown) fails every retry that is waiting and makes later failures
 * final, so a shutdown with a dead backend costs one attempt, bounded by the
 * exporter's timeout. Every loop is bounded by `max_elapsed_time`.
 */
export class Retrier {
  private stopping = false;
  private readonly waiting = new Set<Waiting>();

  constructor(
    private readonly config: RetryConfig,
    private readonly random: () => number = Math.random,
  ) {}

  /**
   * Calls `attempt` until it succeeds, fails permanently or the backoff gives
   * up; then `done` once with the last result. `onRetry` sees every wait
   * (tests, self-metrics).
   */
  run(attempt: (cb: (r: ExportResult) => void) => void, done: (r: ExportResult) => void, onRetry?: (waitMs: number) => void): void {
    const backoff = new Backoff(this.config, this.random);
    let finished = false;
    const finish = (r: ExportResult): void => {
      if (finished) return;
      finished = true;
      done(r);
    };
    const once = (): void => {
      let settled = false;
      const onResult = (r: ExportResult): void => {
        if (settled) return;
        settled = true;
        if (r.code === ExportResultCode.SUCCESS || !this.config.enabled || this.stopping || isPermanent(r)) return finish(r);
        const wait = backoff.next();
        if (wait === undefined) return finish(r);
        onRetry?.(wait);
        const entry: Waiting = {
          timer: setTimeout(() => {
            this.waiting.delete(entry);
            once();
          }, wait),
          fail: () => finish(r),
        };
        this.waiting.add(entry);
      };
      try {
        attempt(onResult);
      } catch (err) {
        onResult({ code: ExportResultCode.FAILED, error: err as Error });
      }
    };
    once();
  }

  /** Retries waiting for their time. */
  get waitingCount(): number {
    return this.waiting.size;
  }

  /** Stops retrying: waiting retries fail now, later failures are final. */
  stop(): void {
    this.stopping = true;
    for (const w of this.waiting) {
      clearTimeout(w.timer);
      w.fail();
    }
    this.waiting.clear();
  }
}
