import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionTable, newConnectionDelta, type ConnectionDelta } from '../../../src/receiver/ebpf/ConnectionTable.js';

const d = (): ConnectionDelta => newConnectionDelta();

describe('ConnectionTable', () => {
  it('turns running totals into deltas per socket', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 10 });
    const out = d();
    t.update(1, 0, 0, 0, 0, 0, out);
    assert.deepEqual(out, { sentBytes: 0, receivedBytes: 0, retransmits: 0, lostPackets: 0 });
    t.update(1, 100, 40, 1, 0, 10, out);
    assert.deepEqual(out, { sentBytes: 100, receivedBytes: 40, retransmits: 1, lostPackets: 0 });
    t.update(2, 7, 7, 0, 0, 10, out); // another socket is independent
    assert.deepEqual(out, { sentBytes: 7, receivedBytes: 7, retransmits: 0, lostPackets: 0 });
    t.update(1, 250, 40, 3, 0, 20, out);
    assert.deepEqual(out, { sentBytes: 150, receivedBytes: 0, retransmits: 2, lostPackets: 0 });
    t.close(1, 1000, 300, 3, 0, out);
    assert.deepEqual(out, { sentBytes: 750, receivedBytes: 260, retransmits: 0, lostPackets: 0 });
    assert.equal(t.has(1), false, 'close forgets the socket');
    assert.equal(t.size, 1);
  });

  it('counts a socket first seen by a report or a close with all of its totals', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 10 });
    const out = d();
    t.update(5, 500, 50, 2, 1, 0, out);
    assert.deepEqual(out, { sentBytes: 500, receivedBytes: 50, retransmits: 2, lostPackets: 1 });
    t.close(6, 10, 20, 0, 0, out);
    assert.deepEqual(out, { sentBytes: 10, receivedBytes: 20, retransmits: 0, lostPackets: 0 });
    assert.equal(t.has(6), false);
  });

  it('never counts backwards when a report overtakes an older record', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 10 });
    const out = d();
    t.update(1, 300, 30, 2, 0, 0, out); // REPORT read by the iterator first
    t.update(1, 0, 0, 0, 0, 0, out); // then the ringbuf's OPEN
    assert.deepEqual(out, { sentBytes: 0, receivedBytes: 0, retransmits: 0, lostPackets: 0 });
    t.update(1, 350, 30, 2, 0, 0, out); // the mark was not lowered: no double count
    assert.deepEqual(out, { sentBytes: 50, receivedBytes: 0, retransmits: 0, lostPackets: 0 });
  });

  it('sums increases of lost_out, which falls again on recovery', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 10 });
    const out = d();
    t.update(1, 0, 0, 0, 3, 0, out);
    assert.equal(out.lostPackets, 3);
    t.update(1, 0, 0, 0, 1, 0, out);
    assert.equal(out.lostPackets, 0);
    t.update(1, 0, 0, 0, 4, 0, out);
    assert.equal(out.lostPackets, 3);
  });

  it('expires entries not seen within the TTL and counts them', () => {
    const t = new ConnectionTable({ ttlMs: 100, maxEntries: 10 });
    const out = d();
    t.update(1, 0, 0, 0, 0, 0, out);
    t.update(2, 0, 0, 0, 0, 50, out);
    t.update(3, 0, 0, 0, 0, 60, out);
    t.update(1, 10, 0, 0, 0, 90, out); // refreshed: now the newest
    assert.equal(t.expire(100), 0, 'nothing is 100 ms old yet');
    assert.equal(t.expire(155), 1);
    assert.equal(t.has(2), false);
    assert.equal(t.has(3), true);
    assert.equal(t.expire(200), 2);
    assert.equal(t.size, 0);
    assert.equal(t.expirations, 3);
    // A socket whose CLOSE was lost no longer leaks; if it shows up again it is new.
    t.update(1, 10, 0, 0, 0, 300, out);
    assert.equal(out.sentBytes, 10);
  });

  it('is bounded: evicts the oldest entry and counts it', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 3 });
    const out = d();
    t.update(1, 0, 0, 0, 0, 0, out);
    t.update(2, 0, 0, 0, 0, 1, out);
    t.update(3, 0, 0, 0, 0, 2, out);
    t.update(1, 0, 0, 0, 0, 3, out); // an update does not reorder (O(1) per record)
    t.update(4, 0, 0, 0, 0, 4, out);
    assert.equal(t.size, 3);
    assert.equal(t.evictions, 1);
    assert.equal(t.has(1), false);
    assert.deepEqual([t.has(2), t.has(3), t.has(4)], [true, true, true]);
    for (let i = 10; i < 1010; i++) t.update(i, 0, 0, 0, 0, 5, out);
    assert.equal(t.size, 3);
    assert.equal(t.evictions, 1001);
    assert.deepEqual([t.has(1007), t.has(1008), t.has(1009)], [true, true, true], 'the newest stay');
  });

  it('remove and clear forget sockets', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 10 });
    const out = d();
    t.update(1, 5, 0, 0, 0, 0, out);
    t.remove(1);
    t.remove(99); // unknown: no-op
    assert.equal(t.size, 0);
    t.update(1, 5, 0, 0, 0, 0, out);
    t.update(2, 5, 0, 0, 0, 0, out);
    t.clear();
    assert.equal(t.size, 0);
  });

  it('agrees with a Map of entries under random churn (growth, eviction, expiry, probe runs)', () => {
    // The specification as the simplest code: a Map keeps insertion order, an
    // update does not reorder, eviction takes the first key.
    class Model {
      readonly m = new Map<number, { sent: number; received: number; retrans: number; lost: number; seen: number }>();
      evictions = 0;
      constructor(private readonly ttl: number, private readonly max: number) {}
      private apply(e: { sent: number; received: number; retrans: number; lost: number }, s: number, r: number, rt: number, l: number): number[] {
        const out = [Math.max(0, s - e.sent), Math.max(0, r - e.received), Math.max(0, rt - e.retrans), Math.max(0, l - e.lost)];
        e.sent = Math.max(e.sent, s);
        e.received = Math.max(e.received, r);
        e.retrans = Math.max(e.retrans, rt);
        e.lost = l;
        return out;
      }
      update(c: number, s: number, r: number, rt: number, l: number, now: number): number[] {
        let e = this.m.get(c);
        if (e === undefined) {
          if (this.m.size >= this.max) {
            this.m.delete(this.m.keys().next().value!);
            this.evictions++;
          }
          e = { sent: 0, received: 0, retrans: 0, lost: 0, seen: now };
          this.m.set(c, e);
        }
        e.seen = now;
        return this.apply(e, s, r, rt, l);
      }
      close(c: number, s: number, r: number, rt: number, l: number): number[] {
        const e = this.m.get(c);
        if (e === undefined) return [s, r, rt, l];
        this.m.delete(c);
        return this.apply(e, s, r, rt, l);
      }
      expire(now: number): number {
        let n = 0;
        for (const [c, e] of this.m) {
          if (e.seen > now - this.ttl) continue;
          this.m.delete(c);
          n++;
        }
        return n;
      }
    }
    let seed = 1;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return Math.floor((seed / 2 ** 32) * n);
    };
    // [maxEntries, distinct cookies, first cookie, TTL, steps]. The 1000-entry
    // case never expires, so the table stays full (index half used): long
    // probe runs, some wrapping around its end, where deletion is easiest to
    // get wrong.
    const cases = [
      [3, 10, 0, 100, 20_000],
      [64, 200, 2 ** 40, 100, 20_000],
      [1000, 3000, 0, 1e9, 100_000],
      [5000, 100_000, 2 ** 33, 100, 50_000],
    ] as const;
    for (const [max, keys, base, ttl, steps] of cases) {
      const t = new ConnectionTable({ ttlMs: ttl, maxEntries: max });
      const m = new Model(ttl, max);
      const out = d();
      const got = (): number[] => [out.sentBytes, out.receivedBytes, out.retransmits, out.lostPackets];
      let now = 0;
      for (let i = 0; i < steps; i++) {
        const c = base + rnd(keys);
        const [s, r, rt, l] = [rnd(1e6), rnd(1e6), rnd(10), rnd(5)];
        const op = rnd(100);
        if (op < 55) {
          t.update(c, s!, r!, rt!, l!, now, out);
          assert.deepEqual(got(), m.update(c, s!, r!, rt!, l!, now), `update ${c} (step ${i})`);
        } else if (op < 85) {
          t.close(c, s!, r!, rt!, l!, out);
          assert.deepEqual(got(), m.close(c, s!, r!, rt!, l!), `close ${c} (step ${i})`);
        } else if (op < 95) {
          t.remove(c);
          m.m.delete(c);
        } else if (op < 99) {
          assert.equal(t.has(c), m.m.has(c), `has ${c} (step ${i})`);
        } else {
          assert.equal(t.expire(now), m.expire(now), `expire (step ${i})`);
        }
        assert.equal(t.size, m.m.size);
        now += rnd(3);
      }
      assert.equal(t.evictions, m.evictions);
      for (const c of m.m.keys()) assert.ok(t.has(c), `${c} tracked`);
    }
  });
});
