import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MonotonicClock, sharedClock } from '../../../src/receiver/ebpf/MonotonicClock.js';

describe('MonotonicClock', () => {
  it('converts the monotonic clock to wall time within a millisecond of Date.now()', () => {
    const c = new MonotonicClock();
    for (let i = 0; i < 5; i++) {
      const before = BigInt(Date.now()) * 1_000_000n;
      const now = c.toUnixNano(process.hrtime.bigint());
      const after = BigInt(Date.now() + 1) * 1_000_000n;
      assert.ok(now >= before - 200_000n && now <= after + 200_000n, `${now} within [${before}, ${after}]`);
    }
    assert.ok(c.uncertaintyNs < 1_000_000, `sub-ms bracket (${c.uncertaintyNs} ns)`);
  });

  it('agrees with performance.timeOrigin + performance.now() to sub-ms', () => {
    const c = new MonotonicClock();
    const viaPerf = (performance.timeOrigin + performance.now()) * 1e6;
    const viaClock = Number(c.nowUnixNano());
    // timeOrigin is sampled once at start-up, so allow for a little NTP slew since then.
    assert.ok(Math.abs(viaPerf - viaClock) < 2e6, `difference ${Math.abs(viaPerf - viaClock)} ns`);
  });

  it('converts by one exact offset: differences of monotonic times are kept to the ns', () => {
    const c = new MonotonicClock();
    const t = 123_456_789_012_345n;
    assert.equal(c.toUnixNano(t + 1_001n) - c.toUnixNano(t), 1_001n);
    assert.equal(c.toUnixNano(t), t + c.offsetNs);
  });

  it('resyncs only once the interval has passed, or when the wall clock went back', () => {
    const c = new MonotonicClock(60_000);
    const now = Date.now();
    c.offsetNs = 0n; // a resync would set the real, non-zero offset again
    c.maybeResync(now + 59_000);
    assert.equal(c.offsetNs, 0n, 'within the interval: no resync');
    c.maybeResync(now - 10_000);
    assert.notEqual(c.offsetNs, 0n, 'clock went back: resynced');
    c.offsetNs = 0n;
    c.maybeResync(Date.now() + 60_000);
    assert.notEqual(c.offsetNs, 0n, 'interval passed: resynced');
  });

  it('is one clock per process for the decoder', () => {
    assert.equal(sharedClock(), sharedClock());
  });
});
