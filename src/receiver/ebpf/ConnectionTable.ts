/**
 * Per-socket memory that turns the kernel's running totals (OPEN, REPORT and
 * CLOSE records all carry totals since establishment) into deltas since the
 * previous record of the same socket, so each byte is counted once however
 * many reports a long-lived connection produces.
 *
 * - Keyed by socket cookie (unique per boot, never reused), as a number: V8
 *   hashes number keys about twice as fast as bigint keys. Cookies come from
 *   one 64-bit counter per boot and stay far below 2^53 (that many sockets
 *   would take centuries at a million per second), where the conversion is exact.
 * - O(1) per record: one Map lookup, plus an insert for a new socket; no
 *   reordering on update (a delete + re-insert per record doubled its cost).
 * - TTL: a live connection is refreshed by every periodic report, so an entry
 *   older than a few report intervals belongs to a socket whose CLOSE was lost
 *   (ringbuf full); {@link ConnectionTable.expire}, called once per report
 *   interval, sweeps those out instead of letting them leak (O(entries) per
 *   interval, not per record).
 * - Bounded: at `maxEntries` the oldest entry (insertion order) is evicted
 *   and counted. Eviction only happens when the table is overloaded, and the
 *   oldest entries are the likeliest to be leaked ones.
 * - No allocation per record besides a new connection's entry.
 */

/** What one record adds, written into a caller-owned object (no allocation). */
export interface ConnectionDelta {
  sentBytes: number;
  receivedBytes: number;
  retransmits: number;
  lostPackets: number;
}

export function newConnectionDelta(): ConnectionDelta {
  return { sentBytes: 0, receivedBytes: 0, retransmits: 0, lostPackets: 0 };
}

interface Entry {
  sent: number;
  received: number;
  retrans: number;
  lost: number;
  seenMs: number;
}

export interface ConnectionTableOptions {
  /** Entries not seen for this long are dropped by {@link ConnectionTable.expire}. */
  ttlMs: number;
  /** Upper bound on tracked connections; the least recently seen is evicted past it. */
  maxEntries: number;
}

export class ConnectionTable {
  private readonly entries = new Map<number, Entry>();
  /** Entries dropped because the table was full. */
  evictions = 0;
  /** Entries dropped because their TTL ran out (a CLOSE was never seen). */
  expirations = 0;

  constructor(private readonly options: ConnectionTableOptions) {}

  get size(): number {
    return this.entries.size;
  }

  has(cookie: bigint): boolean {
    return this.entries.has(Number(cookie));
  }

  /**
   * Records the totals of a live socket (OPEN or REPORT) and writes into `out`
   * what they add since the previous record of that socket (all of it for a
   * socket not seen before, e.g. one opened before the agent started).
   *
   * Bytes and retransmissions are monotonic in the kernel: a total below the
   * remembered one (a REPORT read by the iterator overtaking the ringbuf's
   * OPEN) adds nothing and does not lower the mark. `lost_out` is the number
   * of segments currently presumed lost (it falls again on recovery), so the
   * counter sums its increases and the mark follows it both ways.
   */
  update(cookie: bigint, sent: number, received: number, retrans: number, lost: number, nowMs: number, out: ConnectionDelta): void {
    const key = Number(cookie);
    let e = this.entries.get(key);
    if (e === undefined) {
      if (this.entries.size >= this.options.maxEntries) this.evictOldest();
      e = { sent: 0, received: 0, retrans: 0, lost: 0, seenMs: nowMs };
      this.entries.set(key, e);
    }
    this.apply(e, sent, received, retrans, lost, out);
    e.seenMs = nowMs;
  }

  /** Like {@link update} for a CLOSE (final totals), then forgets the socket. */
  close(cookie: bigint, sent: number, received: number, retrans: number, lost: number, out: ConnectionDelta): void {
    const key = Number(cookie);
    const e = this.entries.get(key);
    if (e === undefined) {
      out.sentBytes = sent;
      out.receivedBytes = received;
      out.retransmits = retrans;
      out.lostPackets = lost;
      return;
    }
    this.apply(e, sent, received, retrans, lost, out);
    this.entries.delete(key);
  }

  /** Forgets a socket (a failed connect never carries totals worth keeping). */
  remove(cookie: bigint): void {
    this.entries.delete(Number(cookie));
  }

  /** Drops entries not seen for the TTL (a sweep: call it once per report interval); returns how many. */
  expire(nowMs: number): number {
    const cutoff = nowMs - this.options.ttlMs;
    let n = 0;
    // Deleting the current entry while iterating a Map is well defined (ECMA-262 Map.prototype.forEach/iterators).
    for (const [key, e] of this.entries) {
      if (e.seenMs > cutoff) continue;
      this.entries.delete(key);
      n++;
    }
    this.expirations += n;
    return n;
  }

  clear(): void {
    this.entries.clear();
  }

  private apply(e: Entry, sent: number, received: number, retrans: number, lost: number, out: ConnectionDelta): void {
    if (sent > e.sent) {
      out.sentBytes = sent - e.sent;
      e.sent = sent;
    } else out.sentBytes = 0;
    if (received > e.received) {
      out.receivedBytes = received - e.received;
      e.received = received;
    } else out.receivedBytes = 0;
    if (retrans > e.retrans) {
      out.retransmits = retrans - e.retrans;
      e.retrans = retrans;
    } else out.retransmits = 0;
    out.lostPackets = lost > e.lost ? lost - e.lost : 0;
    e.lost = lost;
  }

  private evictOldest(): void {
    for (const key of this.entries.keys()) {
      this.entries.delete(key);
      this.evictions++;
      return;
    }
  }
}
