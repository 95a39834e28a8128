import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionTable, newConnectionDelta, type ConnectionDelta } from '../../../src/receiver/ebpf/ConnectionTable.js';

const d = (): ConnectionDelta => newConnectionDelta();

describe('ConnectionTable', () => {
  it('turns running totals into deltas per socket', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 10 });
    const out = d();
    t.update(1n, 0, 0, 0, 0, 0, out);
    assert.deepEqual(out, { sentBytes: 0, receivedBytes: 0, retransmits: 0, lostPackets: 0 });
    t.update(1n, 100, 40, 1, 0, 10, out);
    assert.deepEqual(out, { sentBytes: 100, receivedBytes: 40, retransmits: 1, lostPackets: 0 });
    t.update(2n, 7, 7, 0, 0, 10, out); // another socket is independent
    assert.deepEqual(out, { sentBytes: 7, receivedBytes: 7, retransmits: 0, lostPackets: 0 });
    t.update(1n, 250, 40, 3, 0, 20, out);
    assert.deepEqual(out, { sentBytes: 150, receivedBytes: 0, retransmits: 2, lostPackets: 0 });
    t.close(1n, 1000, 300, 3, 0, out);
    assert.deepEqual(out, { sentBytes: 750, receivedBytes: 260, retransmits: 0, lostPackets: 0 });
    assert.equal(t.has(1n), false, 'close forgets the socket');
    assert.equal(t.size, 1);
  });

  it('counts a socket first seen by a report or a close with all of its totals', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 10 });
    const out = d();
    t.update(5n, 500, 50, 2, 1, 0, out);
    assert.deepEqual(out, { sentBytes: 500, receivedBytes: 50, retransmits: 2, lostPackets: 1 });
    t.close(6n, 10, 20, 0, 0, out);
    assert.deepEqual(out, { sentBytes: 10, receivedBytes: 20, retransmits: 0, lostPackets: 0 });
    assert.equal(t.has(6n), false);
  });

  it('never counts backwards when a report overtakes an older record', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 10 });
    const out = d();
    t.update(1n, 300, 30, 2, 0, 0, out); // REPORT read by the iterator first
    t.update(1n, 0, 0, 0, 0, 0, out); // then the ringbuf's OPEN
    assert.deepEqual(out, { sentBytes: 0, receivedBytes: 0, retransmits: 0, lostPackets: 0 });
    t.update(1n, 350, 30, 2, 0, 0, out); // the mark was not lowered: no double count
    assert.deepEqual(out, { sentBytes: 50, receivedBytes: 0, retransmits: 0, lostPackets: 0 });
  });

  it('sums increases of lost_out, which falls again on recovery', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 10 });
    const out = d();
    t.update(1n, 0, 0, 0, 3, 0, out);
    assert.equal(out.lostPackets, 3);
    t.update(1n, 0, 0, 0, 1, 0, out);
    assert.equal(out.lostPackets, 0);
    t.update(1n, 0, 0, 0, 4, 0, out);
    assert.equal(out.lostPackets, 3);
  });

  it('expires entries not seen within the TTL and counts them', () => {
    const t = new ConnectionTable({ ttlMs: 100, maxEntries: 10 });
    const out = d();
    t.update(1n, 0, 0, 0, 0, 0, out);
    t.update(2n, 0, 0, 0, 0, 50, out);
    t.update(3n, 0, 0, 0, 0, 60, out);
    t.update(1n, 10, 0, 0, 0, 90, out); // refreshed: now the newest
    assert.equal(t.expire(100), 0, 'nothing is 100 ms old yet');
    assert.equal(t.expire(155), 1);
    assert.equal(t.has(2n), false);
    assert.equal(t.has(3n), true);
    assert.equal(t.expire(200), 2);
    assert.equal(t.size, 0);
    assert.equal(t.expirations, 3);
    // A socket whose CLOSE was lost no longer leaks; if it shows up again it is new.
    t.update(1n, 10, 0, 0, 0, 300, out);
    assert.equal(out.sentBytes, 10);
  });

  it('is bounded: evicts the oldest entry and counts it', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 3 });
    const out = d();
    t.update(1n, 0, 0, 0, 0, 0, out);
    t.update(2n, 0, 0, 0, 0, 1, out);
    t.update(3n, 0, 0, 0, 0, 2, out);
    t.update(1n, 0, 0, 0, 0, 3, out); // an update does not reorder (O(1) per record)
    t.update(4n, 0, 0, 0, 0, 4, out);
    assert.equal(t.size, 3);
    assert.equal(t.evictions, 1);
    assert.equal(t.has(1n), false);
    assert.deepEqual([t.has(2n), t.has(3n), t.has(4n)], [true, true, true]);
    for (let i = 10n; i < 1010n; i++) t.update(i, 0, 0, 0, 0, 5, out);
    assert.equal(t.size, 3);
    assert.equal(t.evictions, 1001);
    assert.deepEqual([t.has(1007n), t.has(1008n), t.has(1009n)], [true, true, true], 'the newest stay');
  });

  it('remove and clear forget sockets', () => {
    const t = new ConnectionTable({ ttlMs: 1000, maxEntries: 10 });
    const out = d();
    t.update(1n, 5, 0, 0, 0, 0, out);
    t.remove(1n);
    t.remove(99n); // unknown: no-op
    assert.equal(t.size, 0);
    t.update(1n, 5, 0, 0, 0, 0, out);
    t.update(2n, 5, 0, 0, 0, 0, out);
    t.clear();
    assert.equal(t.size, 0);
  });
});
