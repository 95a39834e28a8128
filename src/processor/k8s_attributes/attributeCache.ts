/**
 * Memoises the Istio label block per raw key, for the processor's per-point
 * hot path.
 */
import { RawAttr } from '../../model/metrics.js';
import { IstioAttr, labelBlock, onlyRawKeys, withExtraAttributes, type LabelOptions } from './istioLabels.js';
import type { MetadataIndex } from './MetadataIndex.js';

/** Default bound on cached label blocks (each ~0.4 KB with its key: ~6 MB when full). */
export const DEFAULT_ATTRIBUTE_CACHE_SIZE = 16_384;

/** Every key a label block can hold, in a fixed order. */
const BLOCK_KEYS: readonly string[] = [RawAttr.direction, ...Object.values(IstioAttr)];
const BLOCK_KEY_SET: ReadonlySet<string> = new Set(BLOCK_KEYS);

/**
 * One distinct label set. Equal label sets (e.g. many source addresses of
 * one workload) share one object while the cache lives, so re-aggregation
 * groups points by identity instead of hashing a string per point.
 */
export interface LabelSet {
  /** Shared: never mutate, never hand out (copy it). */
  readonly block: Readonly<Record<string, string>>;
}

/** One raw key's label set. */
export interface LabelEntry {
  readonly direction: string | undefined;
  readonly dstPort: string | undefined;
  readonly origAddr: string | undefined;
  readonly origPort: string | undefined;
  readonly failure: string | undefined;
  /** What {@link istioAttributes} returns for these raw attributes. Shared: never mutate, never hand out (copy it). */
  readonly block: Readonly<Record<string, string>>;
  /** The label set of `block`: shared by every entry of equal content. */
  readonly set: LabelSet;
}

/** A key equal for equal blocks (whatever their key order) and distinct otherwise; `undefined` when `o` holds a key no block can. */
function canonicalKey(o: Readonly<Record<string, string>>): string | undefined {
  for (const k in o) if (!BLOCK_KEY_SET.has(k)) return undefined;
  let key = '';
  for (let i = 0; i < BLOCK_KEYS.length; i++) {
    const v = o[BLOCK_KEYS[i]!];
    // \u0001 for absent, \u0000 after each value: Kubernetes names, addresses and ports contain neither.
    key += v === undefined ? '\u0001' : v + '\u0000';
  }
  return key;
}

/**
 * The label block ({@link labelBlock}) of each raw key — source address,
 * destination address and port, original destination address and port,
 * direction, failure reason — computed once and copied into each point.
 *
 * - Lookup: destination address -> source address -> a short list matched
 *   on the other five values. Nested maps on the point's own strings, not a
 *   concatenated key: hashing a fresh joined string per point cost more
 *   than computing the labels.
 * - Invalidation: a block depends only on its raw key, the options and the
 *   index, so the whole cache is dropped when {@link MetadataIndex.version}
 *   moves (any pod, service, namespace or job added, changed, deleted or
 *   swept; a pod update that changes none of the fields kept is no change).
 * - Bounded: at most `capacity` blocks; inserting into a full cache drops
 *   it all first (counted in `evictions`).
 * - Ownership: blocks never leave the cache; {@link attributes} returns a
 *   new object (a spread of the block) on every call, which the caller
 *   owns and may mutate.
 *
 * Results equal {@link istioAttributes}'s, key order included.
 */
export class IstioAttributeCache {
  private readonly byDst = new Map<string | undefined, Map<string | undefined, LabelEntry[]>>();
  /** Canonical key -> the one LabelSet of that content. */
  private readonly sets = new Map<string, LabelSet>();
  private count = 0;
  private version: number;
  /** Lookups answered from the cache / computed (benchmarks, tests). */
  hits = 0;
  misses = 0;
  /** Times the cache was dropped because the index changed / because it was full. */
  invalidations = 0;
  evictions = 0;

  constructor(
    readonly index: MetadataIndex,
    readonly opts: LabelOptions,
    readonly capacity: number = DEFAULT_ATTRIBUTE_CACHE_SIZE,
  ) {
    if (!(capacity >= 1)) throw new RangeError(`attribute cache capacity must be >= 1, got ${capacity}`);
    this.version = index.version;
  }

  /** Blocks held now. */
  get size(): number {
    return this.count;
  }

  /** `istioAttributes(attrs, index, opts)`, memoised. Returns a new object on every call. */
  attributes(attrs: Readonly<Record<string, string>>): Record<string, string> {
    const e = this.lookup(attrs);
    if (onlyRawKeys(attrs, e.direction, attrs[RawAttr.sourceAddress], attrs[RawAttr.destinationAddress], e.dstPort, e.origAddr, e.origPort, e.failure)) {
      return { ...e.block };
    }
    return withExtraAttributes(attrs, e.block);
  }

  /**
   * The entry for a point holding nothing but raw keys (the receiver's
   * points), else undefined (use {@link attributes}). The block is shared:
   * copy it before handing it on.
   */
  entry(attrs: Readonly<Record<string, string>>): LabelEntry | undefined {
    const e = this.lookup(attrs);
    return onlyRawKeys(attrs, e.direction, attrs[RawAttr.sourceAddress], attrs[RawAttr.destinationAddress], e.dstPort, e.origAddr, e.origPort, e.failure)
      ? e
      : undefined;
  }

  private lookup(attrs: Readonly<Record<string, string>>): LabelEntry {
    const v = this.index.version;
    if (v !== this.version) {
      if (this.count > 0) this.invalidations++;
      this.drop();
      this.version = v;
    }
    const direction = attrs[RawAttr.direction];
    const srcAddr = attrs[RawAttr.sourceAddress];
    const dstAddr = attrs[RawAttr.destinationAddress];
    const dstPort = attrs[RawAttr.destinationPort];
    const origAddr = attrs[RawAttr.originalDestinationAddress];
    const origPort = attrs[RawAttr.originalDestinationPort];
    const failure = attrs[RawAttr.failureReason];
    let bySrc = this.byDst.get(dstAddr);
    let list = bySrc?.get(srcAddr);
    if (list !== undefined) {
      for (let i = 0; i < list.length; i++) {
        const e = list[i]!;
        if (
          e.dstPort === dstPort &&
          e.direction === direction &&
          e.origAddr === origAddr &&
          e.origPort === origPort &&
          e.failure === failure
        ) {
          this.hits++;
          return e;
        }
      }
    }
    this.misses++;
    // Blocks are handed downstream as points' attributes (shared, see
    // processMetrics); consumers must not write to them (mutatesData). Not
    // frozen: V8 copies a frozen object's spread (`{ ...block }`, the logs
    // and extra-attribute paths) about 4x slower.
    const block = labelBlock(direction, srcAddr, dstAddr, dstPort, origAddr, origPort, failure, this.index, this.opts);
    const entry: LabelEntry = { direction, dstPort, origAddr, origPort, failure, block, set: this.intern(block) };
    if (this.count >= this.capacity) {
      this.evictions++;
      this.drop();
      bySrc = undefined;
      list = undefined;
    }
    if (bySrc === undefined) {
      bySrc = new Map();
      this.byDst.set(dstAddr, bySrc);
    }
    if (list === undefined) bySrc.set(srcAddr, [entry]);
    else list.push(entry);
    this.count++;
    return entry;
  }

  /**
   * The shared LabelSet equal to `attributes` (a mapped point's attributes),
   * when it holds only block keys; else undefined. Interns `attributes`
   * itself (the caller must not mutate it afterwards) when new.
   */
  labelSetOf(attributes: Readonly<Record<string, string>>): LabelSet | undefined {
    const key = canonicalKey(attributes);
    return key === undefined ? undefined : this.internKeyed(key, attributes);
  }

  private intern(block: Record<string, string>): LabelSet {
    return this.internKeyed(canonicalKey(block)!, block);
  }

  private internKeyed(key: string, block: Readonly<Record<string, string>>): LabelSet {
    let set = this.sets.get(key);
    if (set === undefined) {
      set = { block };
      this.sets.set(key, set);
    }
    return set;
  }

  /** Drops every block. */
  drop(): void {
    this.byDst.clear();
    this.sets.clear();
    this.count = 0;
  }
}

const caches = new WeakMap<MetadataIndex, WeakMap<LabelOptions, IstioAttributeCache>>();

/** The cache of an (index, options) pair, created on first use; lives as long as both do. */
export function attributeCacheFor(index: MetadataIndex, opts: LabelOptions): IstioAttributeCache {
  let byOpts = caches.get(index);
  if (byOpts === undefined) {
    byOpts = new WeakMap();
    caches.set(index, byOpts);
  }
  let cache = byOpts.get(opts);
  if (cache === undefined) {
    cache = new IstioAttributeCache(index, opts);
    byOpts.set(opts, cache);
  }
  return cache;
}
