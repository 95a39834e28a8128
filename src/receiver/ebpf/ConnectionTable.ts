/**
 * Per-socket memory that turns the kernel's running totals (OPEN, REPORT and
 * CLOSE records all carry totals since establishment) into deltas since the
 * previous record of the same socket, so each byte is counted once however
 * many reports a long-lived connection produces.
 *
 * - Keyed by socket cookie (unique per boot, never reused), a number (exact:
 *   see ConnectionEvent.socketCookie).
 * - O(1) per record: one hash lookup, plus an insert for a new socket; no
 *   reordering on update (a delete + re-insert per record doubled its cost).
 *   A hand-made table in typed arrays rather than a Map of entry objects:
 *   this runs once per record, and the Map version spent most of its time
 *   waiting for memory and made the GC promote an object per connection.
 * - TTL: a live connection is refreshed by every periodic report, so an entry
 *   older than a few report intervals belongs to a socket whose CLOSE was lost
 *   (ringbuf full); {@link ConnectionTable.expire}, called once per report
 *   interval, sweeps those out instead of letting them leak (O(entries) per
 *   interval, not per record).
 * - Bounded: at `maxEntries` the oldest entry (insertion order) is evicted
 *   and counted. Eviction only happens when the table is overloaded, and the
 *   oldest entries are the likeliest to be leaked ones.
 * - No allocation per record: the arrays double when full (up to the
 *   power of two at or above `maxEntries`) and are reused after that.
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

export interface ConnectionTableOptions {
  /** Entries not seen for this long are dropped by {@link ConnectionTable.expire}. */
  ttlMs: number;
  /** Upper bound on tracked connections; past it the oldest entry (insertion order) is evicted. */
  maxEntries: number;
}

/*
 * Storage. Each entry is one 64-byte record of eight doubles in `slab` (one
 * or two cache lines, where a Map entry plus an entry object touched three or
 * four scattered ones and made every new connection an object for the GC to
 * promote). Doubles hold every field exactly: byte totals and cookies are
 * below 2^53, the rest are u32 counters, ms times and entry numbers.
 */
const STRIDE = 8;
const F_COOKIE = 0;
const F_SENT = 1;
const F_RECEIVED = 2;
const F_RETRANS = 3;
const F_LOST = 4;
const F_SEEN = 5;
/** Insertion-order list (what Map iteration order gave before): neighbours' entry numbers, -1 at the ends. */
const F_PREV = 6;
const F_NEXT = 7;

const INITIAL_CAPACITY = 1024;
const TWO_32 = 4294967296;

export class ConnectionTable {
  /** Entry records, `STRIDE` doubles each, by entry number. */
  private slab = new Float64Array(INITIAL_CAPACITY * STRIDE);
  /** Entry numbers not in use below `highWater`, reused last-freed first (still in cache). */
  private free = new Int32Array(INITIAL_CAPACITY);
  private freeCount = 0;
  /** Entry numbers at or above this were never used. */
  private highWater = 0;
  private capacity = INITIAL_CAPACITY;
  /**
   * Open addressing with linear probing, cookie -> entry number + 1 (0: empty
   * slot). At least twice the capacity, so probes stay short; deletion shifts
   * the following run back (no tombstones to accumulate).
   */
  private index = new Int32Array(INITIAL_CAPACITY * 2);
  private indexShift = 32 - Math.log2(INITIAL_CAPACITY * 2);
  private count = 0;
  private head = -1;
  private tail = -1;
  /** Entries dropped because the table was full. */
  evictions = 0;
  /** Entries dropped because their TTL ran out (a CLOSE was never seen). */
  expirations = 0;

  constructor(private readonly options: ConnectionTableOptions) {}

  get size(): number {
    return this.count;
  }

  has(cookie: number): boolean {
    return this.find(cookie) >= 0;
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
  update(cookie: number, sent: number, received: number, retrans: number, lost: number, nowMs: number, out: ConnectionDelta): void {
    let id = this.find(cookie);
    if (id < 0) {
      if (this.count >= this.options.maxEntries && this.head >= 0) {
        this.delete(this.head);
        this.evictions++;
      }
      id = this.insert(cookie);
    }
    this.apply(id * STRIDE, sent, received, retrans, lost, out);
    this.slab[id * STRIDE + F_SEEN] = nowMs;
  }

  /** Like {@link update} for a CLOSE (final totals), then forgets the socket. */
  close(cookie: number, sent: number, received: number, retrans: number, lost: number, out: ConnectionDelta): void {
    const id = this.find(cookie);
    if (id < 0) {
      out.sentBytes = sent;
      out.receivedBytes = received;
      out.retransmits = retrans;
      out.lostPackets = lost;
      return;
    }
    this.apply(id * STRIDE, sent, received, retrans, lost, out);
    this.delete(id);
  }

  /** Forgets a socket (a failed connect never carries totals worth keeping). */
  remove(cookie: number): void {
    const id = this.find(cookie);
    if (id >= 0) this.delete(id);
  }

  /** Drops entries not seen for the TTL (a sweep: call it once per report interval); returns how many. */
  expire(nowMs: number): number {
    const cutoff = nowMs - this.options.ttlMs;
    const slab = this.slab;
    let n = 0;
    for (let id = this.head; id >= 0; ) {
      const next = slab[id * STRIDE + F_NEXT]!;
      if (slab[id * STRIDE + F_SEEN]! <= cutoff) {
        this.delete(id);
        n++;
      }
      id = next;
    }
    this.expirations += n;
    return n;
  }

  clear(): void {
    this.index.fill(0);
    this.count = 0;
    this.freeCount = 0;
    this.highWater = 0;
    this.head = -1;
    this.tail = -1;
  }

  private apply(at: number, sent: number, received: number, retrans: number, lost: number, out: ConnectionDelta): void {
    const slab = this.slab;
    const prevSent = slab[at + F_SENT]!;
    if (sent > prevSent) {
      out.sentBytes = sent - prevSent;
      slab[at + F_SENT] = sent;
    } else out.sentBytes = 0;
    const prevReceived = slab[at + F_RECEIVED]!;
    if (received > prevReceived) {
      out.receivedBytes = received - prevReceived;
      slab[at + F_RECEIVED] = received;
    } else out.receivedBytes = 0;
    const prevRetrans = slab[at + F_RETRANS]!;
    if (retrans > prevRetrans) {
      out.retransmits = retrans - prevRetrans;
      slab[at + F_RETRANS] = retrans;
    } else out.retransmits = 0;
    const prevLost = slab[at + F_LOST]!;
    out.lostPackets = lost > prevLost ? lost - prevLost : 0;
    slab[at + F_LOST] = lost;
  }

  /** Home slot of a cookie: both 32-bit halves mixed, the top bits of a multiplicative hash. */
  private home(cookie: number): number {
    const h = Math.imul((cookie >>> 0) ^ Math.imul(Math.floor(cookie / TWO_32), 0x85ebca6b), 0x9e3779b1);
    return h >>> this.indexShift;
  }

  /** The entry number of a cookie, or -1. */
  private find(cookie: number): number {
    const index = this.index;
    const slab = this.slab;
    const mask = index.length - 1;
    for (let slot = this.home(cookie); ; slot = (slot + 1) & mask) {
      const id = index[slot]! - 1;
      if (id < 0) return -1;
      if (slab[id * STRIDE + F_COOKIE] === cookie) return id;
    }
  }

  /** Adds a zeroed entry for a cookie known to be absent, at the end of the insertion order. */
  private insert(cookie: number): number {
    if (this.count >= this.capacity) this.grow();
    const id = this.freeCount > 0 ? this.free[--this.freeCount]! : this.highWater++;
    const slab = this.slab;
    const at = id * STRIDE;
    slab[at + F_COOKIE] = cookie;
    slab[at + F_SENT] = 0;
    slab[at + F_RECEIVED] = 0;
    slab[at + F_RETRANS] = 0;
    slab[at + F_LOST] = 0;
    slab[at + F_SEEN] = 0;
    slab[at + F_PREV] = this.tail;
    slab[at + F_NEXT] = -1;
    if (this.tail >= 0) slab[this.tail * STRIDE + F_NEXT] = id;
    else this.head = id;
    this.tail = id;
    this.placeInIndex(cookie, id);
    this.count++;
    return id;
  }

  private placeInIndex(cookie: number, id: number): void {
    const index = this.index;
    const mask = index.length - 1;
    let slot = this.home(cookie);
    while (index[slot] !== 0) slot = (slot + 1) & mask;
    index[slot] = id + 1;
  }

  /** Removes an entry: out of the index, out of the insertion order, onto the free list. */
  private delete(id: number): void {
    const index = this.index;
    const slab = this.slab;
    const mask = index.length - 1;
    const at = id * STRIDE;
    let hole = this.home(slab[at + F_COOKIE]!);
    while (index[hole] !== id + 1) hole = (hole + 1) & mask;
    // Backward-shift deletion: move back every later member of the probe run
    // whose home is not cyclically within (hole, slot], so every lookup still
    // meets its key before an empty slot.
    for (let slot = (hole + 1) & mask; ; slot = (slot + 1) & mask) {
      const other = index[slot]! - 1;
      if (other < 0) break;
      const h = this.home(slab[other * STRIDE + F_COOKIE]!);
      const stays = hole <= slot ? hole < h && h <= slot : hole < h || h <= slot;
      if (stays) continue;
      index[hole] = other + 1;
      hole = slot;
    }
    index[hole] = 0;

    const prev = slab[at + F_PREV]!;
    const next = slab[at + F_NEXT]!;
    if (prev >= 0) slab[prev * STRIDE + F_NEXT] = next;
    else this.head = next;
    if (next >= 0) slab[next * STRIDE + F_PREV] = prev;
    else this.tail = prev;
    this.free[this.freeCount++] = id;
    this.count--;
  }

  /** Doubles the capacity (entry numbers and the insertion order stay; the index is rebuilt). */
  private grow(): void {
    const capacity = this.capacity * 2;
    const slab = new Float64Array(capacity * STRIDE);
    slab.set(this.slab);
    this.slab = slab;
    const free = new Int32Array(capacity);
    free.set(this.free.subarray(0, this.freeCount));
    this.free = free;
    this.capacity = capacity;
    this.index = new Int32Array(capacity * 2);
    this.indexShift = 32 - Math.log2(capacity * 2);
    for (let id = this.head; id >= 0; id = slab[id * STRIDE + F_NEXT]!) this.placeInIndex(slab[id * STRIDE + F_COOKIE]!, id);
  }
}
