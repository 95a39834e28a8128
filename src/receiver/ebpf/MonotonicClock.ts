/**
 * Converts kernel timestamps (`bpf_ktime_get_ns()`, CLOCK_MONOTONIC) to wall
 * clock ns since the Unix epoch.
 *
 * `process.hrtime.bigint()` reads the same clock (libuv's uv_hrtime is
 * clock_gettime(CLOCK_MONOTONIC) on Linux), so the conversion is one offset:
 * realtime - monotonic, sampled at the same instant. `Date.now()` has only
 * millisecond resolution, so the offset is taken at a millisecond *edge*: spin
 * until Date.now() ticks over and read the monotonic clock around that call.
 * Date.now() floors CLOCK_REALTIME to the ms, so at the edge realtime equals
 * `d * 1e6` ns exactly; the edge lies between the monotonic reads bracketing
 * the last call that returned the old value and the first that returned the
 * new one. That bracket (reported as {@link uncertaintyNs}) is typically well
 * under 1 µs on an idle core; the best of a few attempts is kept, and each
 * sync spins at most ~1 ms (bounded by a deadline).
 *
 * Accuracy: the conversion is as good as the bracket plus NTP slew since the
 * last sync (at most 500 ppm -> 30 µs per minute); {@link maybeResync} redoes
 * it every `resyncIntervalMs` (default 60 s) so clock steps are picked up.
 */
export class MonotonicClock {
  /** realtime_ns - monotonic_ns. */
  offsetNs = 0n;
  /** Half-width of the bracket of the last sync, ns. */
  uncertaintyNs = 0;
  private lastSyncMs = 0;

  constructor(private readonly resyncIntervalMs = 60_000) {
    this.sync();
  }

  /** Wall-clock ns since the epoch for a CLOCK_MONOTONIC ns value. */
  toUnixNano(monotonicNs: bigint): bigint {
    return monotonicNs + this.offsetNs;
  }

  /** Wall-clock ns since the epoch, now (sub-ms, from the monotonic clock). */
  nowUnixNano(): bigint {
    return process.hrtime.bigint() + this.offsetNs;
  }

  /** Resyncs when the last sync is older than the resync interval. */
  maybeResync(nowMs = Date.now()): void {
    if (nowMs - this.lastSyncMs >= this.resyncIntervalMs || nowMs < this.lastSyncMs) this.sync();
  }

  /** Samples the offset (best of up to 3 ms-edge brackets). */
  sync(): void {
    let best: { offset: bigint; halfWidth: bigint } | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const s = sampleAtMillisecondEdge();
      if (s !== undefined && (best === undefined || s.halfWidth < best.halfWidth)) best = s;
      if (best !== undefined && best.halfWidth < 2_000n) break;
    }
    if (best === undefined) {
      // No clean edge within the deadlines (a very busy machine): fall back to
      // the time origin plus elapsed monotonic time, still sub-ms resolution.
      const mono = process.hrtime.bigint();
      const realNs = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
      best = { offset: realNs - mono, halfWidth: 1_000_000n };
    }
    this.offsetNs = best.offset;
    this.uncertaintyNs = Number(best.halfWidth);
    this.lastSyncMs = Date.now();
  }
}

function sampleAtMillisecondEdge(): { offset: bigint; halfWidth: bigint } | undefined {
  const deadline = process.hrtime.bigint() + 3_000_000n;
  let prevBefore = process.hrtime.bigint();
  const d0 = Date.now();
  for (;;) {
    const before = process.hrtime.bigint();
    const d = Date.now();
    const after = process.hrtime.bigint();
    if (d !== d0) {
      // Skipped more than one ms: we were descheduled, the bracket is useless.
      if (d !== d0 + 1) return undefined;
      const mid = (prevBefore + after) / 2n;
      return { offset: BigInt(d) * 1_000_000n - mid, halfWidth: (after - prevBefore) / 2n };
    }
    if (after > deadline) return undefined;
    prevBefore = before;
  }
}

/** The process-wide clock the decoder uses unless given another. */
let shared: MonotonicClock | undefined;
export function sharedClock(): MonotonicClock {
  shared ??= new MonotonicClock();
  return shared;
}
