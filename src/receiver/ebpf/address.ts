/**
 * Address text for decoded records: dotted-quad IPv4, and IPv6 in the
 * canonical form of RFC 5952 section 4 (lower-case hex, no leading zeros,
 * the longest run of two or more zero groups shortened to `::`, the first one
 * on a tie; a single zero group is not shortened). IPv4-mapped IPv6
 * (`::ffff:a.b.c.d`, RFC 4291 section 2.5.5.2) is returned as plain IPv4 so a
 * dual-stack socket talking IPv4 aggregates with AF_INET sockets.
 *
 * node:net has no formatter (`SocketAddress`/`BlockList` parse but do not
 * print), hence this small one.
 */

/** Formats 16 address bytes at `offset` as RFC 5952 text (no IPv4-mapped special case). */
export function formatIPv6(view: DataView, offset: number): string {
  // Longest run of zero groups.
  let bestStart = -1;
  let bestLen = 0;
  let runStart = -1;
  for (let i = 0; i < 8; i++) {
    if (view.getUint16(offset + 2 * i, false) === 0) {
      if (runStart < 0) runStart = i;
      const len = i - runStart + 1;
      if (len > bestLen) {
        bestLen = len;
        bestStart = runStart;
      }
    } else {
      runStart = -1;
    }
  }
  if (bestLen < 2) bestStart = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += i === 0 ? '::' : ':';
      i += bestLen - 1;
      continue;
    }
    out += view.getUint16(offset + 2 * i, false).toString(16);
    if (i < 7) out += ':';
  }
  return out;
}

/** Formats a big-endian IPv4 address held in a uint32. */
export function formatIPv4(u32: number): string {
  return `${u32 >>> 24}.${(u32 >>> 16) & 0xff}.${(u32 >>> 8) & 0xff}.${u32 & 0xff}`;
}

/** True when the 16 bytes at `offset` are `::ffff:a.b.c.d`. */
export function isV4Mapped(view: DataView, offset: number): boolean {
  return (
    view.getUint32(offset, false) === 0 &&
    view.getUint32(offset + 4, false) === 0 &&
    view.getUint32(offset + 8, false) === 0x0000ffff
  );
}

/** True when `len` bytes at `offset` are all zero. */
export function isZero(view: DataView, offset: number, len: 4 | 16): boolean {
  if (view.getUint32(offset, false) !== 0) return false;
  if (len === 4) return true;
  return view.getUint32(offset + 4, false) === 0 && view.getUint32(offset + 8, false) === 0 && view.getUint32(offset + 12, false) === 0;
}

/** Slots of {@link IPv4TextCache}'s direct-mapped front (a power of two). */
const FRONT_BITS = 12;

/**
 * Caches IPv4 text by address value: a node talks to a bounded set of peers,
 * and building the string is most of the cost of an IPv4 address.
 *
 * Two levels, because this runs two or three times per record: a
 * direct-mapped front (an address hashes to one slot; a hit is an array read
 * and one compare, several times cheaper than a Map lookup) in front of a
 * bounded Map. A front miss falls back to the Map rather than reformatting,
 * so two hot addresses sharing a slot cost a Map lookup, and an address keeps
 * returning the same string instance (whose hash V8 computes once for the
 * aggregator's Map keys). The Map is cleared when full (cheaper than LRU
 * bookkeeping, and refilled in one batch); the front only ever holds text
 * equal to what formatting would produce, so it needs no clearing.
 */
export class IPv4TextCache {
  private readonly map = new Map<number, string>();
  private readonly frontKeys = new Int32Array(1 << FRONT_BITS);
  private readonly frontTexts: Array<string | undefined> = new Array<string | undefined>(1 << FRONT_BITS).fill(undefined);
  constructor(private readonly maxEntries = 65_536) {}

  get(u32: number): string {
    // Fibonacci hashing: the top bits of the product depend on every input
    // bit, so addresses differing only in their first octets spread too.
    const slot = Math.imul(u32, 0x9e3779b1) >>> (32 - FRONT_BITS);
    const front = this.frontTexts[slot];
    if (front !== undefined && this.frontKeys[slot] === (u32 | 0)) return front;
    let s = this.map.get(u32);
    if (s === undefined) {
      if (this.map.size >= this.maxEntries) this.map.clear();
      s = formatIPv4(u32);
      this.map.set(u32, s);
    }
    this.frontKeys[slot] = u32;
    this.frontTexts[slot] = s;
    return s;
  }
}
