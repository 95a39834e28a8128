/**
 * Memoises the Istio label block per flow key, for the processor's per-point
 * hot path.
 */
import type { FlowKey } from '../../model/flow.js';
import { Label } from '../../model/labels.js';
import { RawAttr } from '../../model/metrics.js';
import { labelBlock, withExtraAttributes, type LabelOptions } from './istioLabels.js';
import type { MetadataIndex } from './MetadataIndex.js';

/** Default bound on cached label blocks (each ~0.4 KB: ~6 MB when full). */
export const DEFAULT_ATTRIBUTE_CACHE_SIZE = 16_384;

/** Every key a label block can hold, in a fixed order. */
const BLOCK_KEYS: readonly string[] = [RawAttr.direction, ...Object.values(Label)];
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

/** One flow key's label set. */
export interface LabelEntry {
  /** What {@link istioAttributes} returns for the key. Shared: never mutate, never hand out (copy it). */
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
 * The label block ({@link labelBlock}) of each {@link FlowKey}, computed once
 * and shared by every point of that key.
 *
 * - Lookup: one Map lookup by the key object. The receiver interns keys (equal
 *   keys are one object, flush after flush), so nothing is hashed but an
 *   object identity; a key that is equal but not the same object (a copy)
 *   gets an entry of its own, with the same block content.
 * - Invalidation: a block depends only on its key, the options and the
 *   index, so the whole cache is dropped when {@link MetadataIndex.version}
 *   moves (any pod, service, namespace or job added, changed, deleted or
 *   swept; a pod update that changes none of the fields kept is no change).
 * - Bounded: at most `capacity` blocks; inserting into a full cache drops
 *   it all first (counted in `evictions`).
 * - Ownership: blocks never leave the cache; {@link attributes} returns a
 *   new object on every call, which the caller owns and may mutate.
 *
 * Results equal {@link istioAttributes}'s, key order included.
 */
export class IstioAttributeCache {
  private readonly byKey = new Map<FlowKey, LabelEntry>();
  /** Canonical key -> the one LabelSet of that content. */
  private readonly sets = new Map<string, LabelSet>();
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
    return this.byKey.size;
  }

  /**
   * `istioAttributes(flow, index, opts, attrs)`, memoised: `attrs` are a
   * point's attributes (by default the flow's own). Returns a new object on
   * every call.
   */
  attributes(flow: FlowKey, attrs: Readonly<Record<string, string>> = flow.attributes): Record<string, string> {
    const e = this.entry(flow);
    return attrs === flow.attributes ? { ...e.block } : withExtraAttributes(attrs, e.block);
  }

  /** The flow's entry. The block is shared: copy it before handing it on to a consumer that mutates. */
  entry(flow: FlowKey): LabelEntry {
    const v = this.index.version;
    if (v !== this.version) {
      if (this.byKey.size > 0) this.invalidations++;
      this.drop();
      this.version = v;
    }
    let e = this.byKey.get(flow);
    if (e !== undefined) {
      this.hits++;
      return e;
    }
    this.misses++;
    // Blocks are handed downstream as points' attributes (shared, see
    // processMetrics); consumers must not write to them (mutatesData). Not
    // frozen: V8 copies a frozen object's spread (`{ ...block }`, the logs
    // and extra-attribute paths) about 4x slower.
    const block = labelBlock(flow, this.index, this.opts);
    e = { block, set: this.intern(block) };
    if (this.byKey.size >= this.capacity) {
      this.evictions++;
      this.drop();
    }
    this.byKey.set(flow, e);
    return e;
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
    this.byKey.clear();
    this.sets.clear();
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
