import type { Attributes, Counter } from '@opentelemetry/api';
import type { FlowPoint, MetricsBatch } from '../model/metrics.js';
import type { SelfTelemetry } from '../telemetry/SelfTelemetry.js';
import { labelValues, type FamilyBinding, type FamilyDef, type LabelGroup, type MetricSchema } from './schema.js';

/** The OpenTelemetry SDK's cardinality-overflow attribute (spec: metrics SDK, "Overflow attribute"). */
export const OVERFLOW_ATTRIBUTE = 'otel_metric_overflow';

/** Defaults of the store's knobs (also the exporters' config defaults). */
export const DEFAULT_MAX_SERIES_PER_FAMILY = 10_000;
export const DEFAULT_SERIES_TTL_MS = 5 * 60_000;

export interface SeriesStoreOptions {
  schema: MetricSchema;
  /** `cumulative` (Prometheus, OTLP default) or `delta` (values since the previous collect). Default cumulative. */
  temporality?: 'cumulative' | 'delta';
  /** Series budget per family; further label sets go to one overflow series. Default 10000. */
  maxSeriesPerFamily?: number;
  /** A series idle this long is removed once its last value has been collected. Default 5 min. */
  seriesTtlMs?: number;
  /** Self-metrics (overflowed points, series gauge); optional for benches. */
  telemetry?: SelfTelemetry;
  /** Attributes on the store's self-metrics, e.g. `{ exporter: 'prometheus' }`. */
  telemetryAttributes?: Attributes;
  /** Clock, ms since the epoch (tests inject one). */
  now?: () => number;
}

/**
 * Where a series' numbers sit in its label set's block of its group's slab
 * (offsets from the family's base within the block). Counters use the first five numbers;
 * histograms add sum, min, max and one count per bucket (the last for +Inf).
 */
const F_VALUE = 0; // counter value, or histogram observation count
const F_START = 1; // start of the current accumulation, ms
const F_LAST = 2; // last update, ms
const F_EXISTS = 3; // 1 while the series exists
const F_COLLECTED = 4; // 1 once a collect included the value as of the last update
const F_SUM = 5;
const F_MIN = 6;
const F_MAX = 7;
const F_COUNTS = 8;
const COUNTER_FIELDS = 5;
/**
 * A block starts with its owner's token (0: free): cached block offsets are
 * checked against it, so the hot path need not visit the LabelSet object.
 */
const B_OWNER = 0;

/**
 * What the store remembers per attributes object: per group `gi`, the block
 * offset at `2*gi` and its owner token at `2*gi+1` (offset -1: none), and the
 * label set at `2*groups + gi`. One plain array: small integers stay unboxed.
 */
type AttrCache<W> = (number | LabelSet<W> | undefined)[];

/**
 * One distinct list of label values of one {@link LabelGroup}. The state of
 * every series of the group's families that carry it (Kmesh: one workload
 * label set serves opened, closed, bytes, ... — up to nine series) is one
 * block of numbers in the group's slab (a Float64Array shared by all its
 * sets): a point's updates touch one contiguous block, and neither a series
 * nor a set's numbers cost an object of their own.
 *
 * The set belongs to no wire format: it holds the values as a list. Each
 * exporter owns its store and keeps its wire form of the set (Prometheus:
 * the escaped label text; OTLP: attributes or encoded bytes) in {@link wire},
 * built on first use and dropped with the set; or, for a table of its own,
 * indexes it by {@link id}.
 */
export class LabelSet<W = unknown> {
  /** Number of existing series in the set's block. */
  live = 0;
  /**
   * Start of the set's block in its group's slab while the store's index
   * holds the set (it has at least one series); -1 otherwise.
   */
  offset = -1;
  /** The token written at the start of the set's block while it owns it. */
  token = 0;
  /**
   * A small integer, unique among the store's registered sets (all groups)
   * and reused once a set is released: an array index for an exporter's
   * per-set table (check the entry's set, ids are reused). -1 while the set
   * is not registered.
   */
  id = -1;
  /** The store owner's wire form of this set (see the class comment); the store never reads it. */
  wire: W | undefined = undefined;

  constructor(
    /** Label names (shared with the family definitions). */
    readonly names: readonly string[],
    /**
     * The label values, aligned with {@link names}; never changed. The set's
     * identity within its group, and its only copy of it: no key string is
     * built or kept (the strings are shared with the attributes they were
     * read from).
     */
    readonly values: readonly string[],
    /** {@link hashValues} of the values. */
    readonly hash: number,
  ) {}
}

/** FNV-1a over the values' UTF-16 code units, with a separator after each value. */
export function hashValues(values: readonly string[]): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    for (let j = 0; j < v.length; j++) h = Math.imul(h ^ v.charCodeAt(j), 0x01000193);
    // A code unit no text ends a value with in practice; equality is checked value by value anyway.
    h = Math.imul(h ^ 0xffff, 0x01000193);
  }
  return h | 0;
}

function sameValues(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * A group's registered label sets: by hash of their values for lookups (a
 * hash shared by several sets holds them in a small array, compared value
 * by value), and in registration order for snapshots (a Set: removal while
 * iterating is safe). Keeping no key string per set saves about the size of
 * its values' text per set, which a key map would hold.
 */
class LabelSetIndex<W> {
  private readonly byHash = new Map<number, LabelSet<W> | LabelSet<W>[]>();
  private readonly all = new Set<LabelSet<W>>();

  find(values: readonly string[], hash: number): LabelSet<W> | undefined {
    const e = this.byHash.get(hash);
    if (e === undefined) return undefined;
    if (!Array.isArray(e)) return sameValues(e.values, values) ? e : undefined;
    for (let i = 0; i < e.length; i++) if (sameValues(e[i]!.values, values)) return e[i];
    return undefined;
  }

  add(ls: LabelSet<W>): void {
    const e = this.byHash.get(ls.hash);
    if (e === undefined) this.byHash.set(ls.hash, ls);
    else if (Array.isArray(e)) e.push(ls);
    else this.byHash.set(ls.hash, [e, ls]);
    this.all.add(ls);
  }

  delete(ls: LabelSet<W>): void {
    const e = this.byHash.get(ls.hash);
    if (e === ls) this.byHash.delete(ls.hash);
    else if (Array.isArray(e)) {
      const i = e.indexOf(ls);
      if (i >= 0) e.splice(i, 1);
      if (e.length === 1) this.byHash.set(ls.hash, e[0]!);
    }
    this.all.delete(ls);
  }

  sets(): IterableIterator<LabelSet<W>> {
    return this.all.values();
  }

  clear(): void {
    this.byHash.clear();
    this.all.clear();
  }
}

interface FamilyState<W> {
  readonly def: FamilyDef;
  readonly group: GroupState<W>;
  /** Offset of this family's series within a label set's block. */
  readonly base: number;
  /** Number of histogram counts (buckets + 1); 0 for counters. */
  readonly nCounts: number;
  /** Series within the budget. */
  live: number;
  /** Stride of a point in a snapshot's `values`: 1 for counters, nCounts + 4 for histograms. */
  readonly stride: number;
}

interface GroupState<W> {
  readonly group: LabelGroup;
  readonly read: LabelGroup['read'];
  readonly bindings: readonly FamilyBinding[];
  /** Per binding: its family's state. */
  readonly families: FamilyState<W>[];
  /** Numbers per label set (block size). */
  readonly blockSize: number;
  /** The blocks of the registered sets (and the overflow set at 0); grows by doubling. */
  slab: Float64Array;
  /** Offsets of released blocks, reused first. */
  readonly freeBlocks: number[];
  /** End of the used part of the slab. */
  used: number;
  readonly index: LabelSetIndex<W>;
  /** The `otel_metric_overflow="true"` set (block 0): its series take what label sets beyond a family's budget contribute. */
  readonly overflow: LabelSet<W>;
}

/** A family's points as of one collect, in flat arrays (no per-point objects). */
export interface FamilySnapshot<W = unknown> {
  readonly def: FamilyDef;
  /** Number of points. */
  readonly length: number;
  /** Label set of each point. */
  readonly labels: readonly LabelSet<W>[];
  /** Start of each point's accumulation, ms. */
  readonly startMs: Float64Array;
  /**
   * Counters: the value of each point. Histograms, `stride` numbers per point:
   * the per-bucket (not cumulative) counts, the last one for +Inf, then sum,
   * count, min, max.
   */
  readonly values: Float64Array;
  readonly stride: number;
}

/** What one collect saw: the families with at least one point, in schema order. */
export interface StoreSnapshot<W = unknown> {
  readonly endMs: number;
  /** `delta`: each point holds what was added since the previous collect. */
  readonly temporality: 'cumulative' | 'delta';
  readonly families: readonly FamilySnapshot<W>[];
}

/**
 * Cumulative (or delta) state of every series of a schema's families, updated
 * once per FlowPoint (per flush, not per connection record), and read through
 * {@link snapshot}: flat arrays of numbers and {@link LabelSet}s, in no wire
 * format. Each exporter builds its own store (src/exporters/common/seriesStore.ts)
 * and turns snapshots into its wire format: the Prometheus exposition writer,
 * the SDK's MetricData (src/exporters/common/sdkMetrics.ts, for the OTLP and
 * debug exporters), each caching its form of a label set in `LabelSet.wire`
 * (the `W` type parameter).
 *
 * Why not SDK instruments: an instrument cannot forget a series (a deleted
 * pod's label set stays forever), and a per-record `counter.add` with 23
 * attributes is the slow path this avoids.
 *
 * Update cost: a point's attributes object is remembered (weakly) with the
 * slab blocks it resolved to, so a point carrying an attributes object seen
 * before costs a WeakMap lookup and a few number updates in one block (the
 * block's owner token says the cached offset is still valid). A new object
 * costs reading its label values, hashing them and one Map lookup per group. Attributes objects are treated as immutable once
 * consumed, as everywhere in the pipeline (processors build new objects;
 * nothing edits a point's attributes after handing the point on). A
 * point's label values are a function of its attributes object: the one
 * value not read from it, `reporter` without a processor, comes from the
 * point's flow key, whose attributes object the receiver's points carry
 * (one object per interned key, so the same object means the same flow).
 *
 * Memory: no object per series. One {@link LabelSet} per distinct label
 * value list of a group: the values (strings shared with the attributes
 * they came from), their hash, the owner's wire form, and a block of
 * numbers in the group's slab holding all the group's series with those
 * labels. The slab grows by doubling and does not shrink; freed blocks
 * are reused.
 *
 * Bounds:
 * - at most `maxSeriesPerFamily` series per family, plus one overflow series
 *   labelled only `otel_metric_overflow="true"` that takes every further label
 *   set's contributions (the SDK's cardinality-limit convention), counted in
 *   `kmesh_otel_exporter_metric_overflow_points`; nothing is dropped silently;
 * - stale series: a series not updated for `seriesTtlMs` is removed at the
 *   first collect after the TTL, provided an earlier collect already returned
 *   its final value (so its last increment is exported at least once). Keep
 *   the TTL above the scrape/export interval. The slot is then free for a new
 *   label set. A series that comes back later restarts from 0 with a new start
 *   time, which Prometheus `rate()` and OTLP consumers treat as a reset.
 *
 * snapshot() copies the values synchronously, so concurrent
 * scrapes are safe and each sees one consistent state.
 */
export class SeriesStore<W = unknown> {
  private readonly families: FamilyState<W>[];
  private readonly groups: GroupState<W>[];
  private readonly schema: MetricSchema;
  private readonly delta: boolean;
  private readonly maxSeries: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly overflowCounter: Counter | undefined;
  private readonly telemetryAttributes: Attributes;
  /** attributes object -> its label set per group (entries die with the objects). */
  private byAttributes = new WeakMap<object, AttrCache<W>>();
  /** Source of {@link LabelSet.token}s. */
  private nextToken = 1;
  /** Scratch for {@link LabelGroup.read}: one number per binding. */
  private readonly increments: Float64Array;
  /** Released {@link LabelSet.id}s, reused first; and the next never-used one. */
  private readonly freeIds: number[] = [];
  private nextId = 0;
  private closed = false;

  constructor(opts: SeriesStoreOptions) {
    this.schema = opts.schema;
    this.delta = opts.temporality === 'delta';
    this.maxSeries = opts.maxSeriesPerFamily ?? DEFAULT_MAX_SERIES_PER_FAMILY;
    this.ttlMs = opts.seriesTtlMs ?? DEFAULT_SERIES_TTL_MS;
    this.now = opts.now ?? Date.now;
    this.telemetryAttributes = opts.telemetryAttributes ?? {};
    const overflowNames = [OVERFLOW_ATTRIBUTE];
    const overflowValues = ['true'];
    const byName = new Map<string, FamilyState<W>>();
    this.groups = opts.schema.groups.map((group) => {
      // Layout of a label set's state: each binding's numbers at a fixed offset.
      const layout: { family: FamilyDef; base: number; nCounts: number }[] = [];
      let size = 1; // B_OWNER
      for (const b of group.bindings) {
        const nCounts = b.family.type === 'histogram' ? (b.family.buckets?.length ?? 0) + 1 : 0;
        layout.push({ family: b.family, base: size, nCounts });
        size += nCounts === 0 ? COUNTER_FIELDS : F_COUNTS + nCounts;
      }
      const overflow = new LabelSet<W>(overflowNames, overflowValues, hashValues(overflowValues));
      overflow.offset = 0;
      overflow.token = -1;
      const g: GroupState<W> = {
        group,
        read: group.read,
        bindings: group.bindings,
        families: [],
        blockSize: size,
        slab: new Float64Array(size * 64),
        freeBlocks: [],
        used: size, // block 0: the overflow set
        index: new LabelSetIndex<W>(),
        overflow,
      };
      for (const l of layout) {
        const f: FamilyState<W> = { def: l.family, group: g, base: l.base, nCounts: l.nCounts, live: 0, stride: l.nCounts === 0 ? 1 : l.nCounts + 4 };
        g.families.push(f);
        byName.set(l.family.name, f);
      }
      return g;
    });
    this.families = opts.schema.families.map((def) => {
      const f = byName.get(def.name);
      if (f === undefined) throw new Error(`schema ${opts.schema.name}: family ${def.name} is in no label group`);
      return f;
    });
    this.increments = new Float64Array(Math.max(0, ...this.groups.map((g) => g.bindings.length)));
    const t = opts.telemetry;
    if (t !== undefined) {
      this.overflowCounter = t.counter(
        'exporter_metric_overflow_points',
        'Series contributions routed to the otel_metric_overflow series because a family reached its series budget',
      );
      t.gauge('exporter_metric_series', 'Series currently held per metric family', () => {
        if (this.closed) return [];
        return this.families.map((f) => [familySize(f), { ...this.telemetryAttributes, metric: f.def.name }]);
      });
    }
  }

  /** Adds every point of a batch. Never throws on odd values (non-finite or negative increments are ignored). */
  consume(batch: MetricsBatch): void {
    // One clock read per batch: the points of a flush are simultaneous.
    const nowMs = this.now();
    const points = batch.points;
    for (let i = 0; i < points.length; i++) this.addAt(points[i]!, nowMs);
  }

  private addAt(point: FlowPoint, nowMs: number): void {
    const attrs = point.attributes;
    const groups = this.groups;
    const ng = groups.length;
    let c = this.byAttributes.get(attrs);
    if (c === undefined) {
      c = new Array<number | LabelSet<W> | undefined>(3 * ng);
      for (let gi = 0; gi < ng; gi++) {
        c[2 * gi] = -1;
        c[2 * gi + 1] = 0;
        c[2 * ng + gi] = undefined;
      }
      this.byAttributes.set(attrs, c);
    }
    const inc = this.increments;
    for (let gi = 0; gi < ng; gi++) {
      const g = groups[gi]!;
      g.read(point, inc);
      const n = g.bindings.length;
      let st = g.slab;
      let block = c[2 * gi] as number;
      // The cached block is still this label set's if it carries the cached token.
      if (block >= 0 && st[block + B_OWNER] !== c[2 * gi + 1]) block = -1;
      for (let bi = 0; bi < n; bi++) {
        const value = inc[bi]!;
        // Also rejects NaN; +Infinity would poison the series forever.
        if (!(value > 0) || value === Infinity) continue;
        const fam = g.families[bi]!;
        let o = block < 0 ? -1 : block + fam.base;
        if (o < 0 || st[o + F_EXISTS] === 0) {
          const ls = this.labelSetOf(g, c[2 * ng + gi] as LabelSet<W> | undefined, point);
          c[2 * ng + gi] = ls;
          o = ls.offset >= 0 && st[ls.offset + fam.base + F_EXISTS] !== 0 ? ls.offset + fam.base : this.newSeries(fam, ls, nowMs);
          st = g.slab; // may have grown
          if (ls.offset >= 0) {
            block = ls.offset;
            c[2 * gi] = block;
            c[2 * gi + 1] = ls.token;
          }
        }
        st[o + F_LAST] = nowMs;
        st[o + F_COLLECTED] = 0;
        if (fam.nCounts === 0) {
          st[o + F_VALUE] += value;
        } else {
          const observations = g.bindings[bi]!.observations!(point);
          const bounds = fam.def.buckets ?? [];
          for (let i = 0; i < observations.length; i++) {
            const x = observations[i]!;
            if (!Number.isFinite(x)) continue;
            st[o + F_COUNTS + bucketIndex(bounds, x)] += 1;
            st[o + F_VALUE] += 1;
            st[o + F_SUM] += x;
            if (x < st[o + F_MIN]!) st[o + F_MIN] = x;
            if (x > st[o + F_MAX]!) st[o + F_MAX] = x;
          }
        }
      }
    }
  }

  /**
   * The registered label set equal to `cached` (a set this attributes object
   * resolved to before, since removed) or to `attrs`' values; else a new,
   * unregistered one (registered when it gets its first series).
   */
  private labelSetOf(g: GroupState<W>, cached: LabelSet<W> | undefined, point: FlowPoint): LabelSet<W> {
    if (cached !== undefined) return g.index.find(cached.values, cached.hash) ?? cached;
    const names = g.group.labels;
    const values = g.group.values?.(point, this.schema.unknown) ?? labelValues(point, names, this.schema.unknown);
    const hash = hashValues(values);
    return g.index.find(values, hash) ?? new LabelSet<W>(names, values, hash);
  }

  /**
   * Creates `fam`'s series in `ls` (registering `ls` and giving it a block on
   * its first series) and returns the slab index of the series' numbers; or,
   * when the family's budget is used up, makes sure the overflow set has the
   * series and returns the index of that one (nothing is remembered in `ls`:
   * once a slot frees up, the label set gets a series of its own).
   */
  private newSeries(fam: FamilyState<W>, ls: LabelSet<W>, nowMs: number): number {
    const g = fam.group;
    if (fam.live >= this.maxSeries) {
      this.overflowCounter?.add(1, { ...this.telemetryAttributes, metric: fam.def.name });
      const at = g.overflow.offset + fam.base;
      if (g.slab[at + F_EXISTS] === 0) initSeries(g.slab, at, fam.nCounts, nowMs);
      return at;
    }
    if (ls.offset < 0) {
      ls.offset = allocBlock(g);
      ls.token = this.nextToken;
      // Tokens only need to differ between a block's successive owners; wrap within small integers.
      this.nextToken = this.nextToken >= 0x3fffffff ? 1 : this.nextToken + 1;
      g.slab[ls.offset + B_OWNER] = ls.token;
      ls.id = this.freeIds.pop() ?? this.nextId++;
      g.index.add(ls);
    }
    fam.live++;
    ls.live++;
    const at = ls.offset + fam.base;
    initSeries(g.slab, at, fam.nCounts, nowMs);
    return at;
  }

  private removeSeries(fam: FamilyState<W>, ls: LabelSet<W>): void {
    const g = fam.group;
    g.slab[ls.offset + fam.base + F_EXISTS] = 0;
    if (ls === g.overflow) return;
    fam.live--;
    if (--ls.live === 0) {
      // Every series flag of the block is 0 now, so the block can be handed out as is.
      g.slab[ls.offset + B_OWNER] = 0;
      g.freeBlocks.push(ls.offset);
      ls.offset = -1;
      this.freeIds.push(ls.id);
      ls.id = -1;
      g.index.delete(ls);
    }
  }

  /** Number of series held in all families (overflow series included). */
  seriesCount(): number {
    let n = 0;
    for (const f of this.families) n += familySize(f);
    return n;
  }

  /** Drops all state and stops reporting the series gauge. */
  close(): void {
    this.closed = true;
    for (const g of this.groups) {
      for (const ls of g.index.sets()) {
        ls.offset = -1;
        ls.live = 0;
        ls.id = -1;
      }
      g.index.clear();
      g.freeBlocks.length = 0;
      g.slab = new Float64Array(g.blockSize);
      g.used = g.blockSize;
    }
    for (const f of this.families) f.live = 0;
    this.freeIds.length = 0;
    this.nextId = 0;
    this.byAttributes = new WeakMap();
  }

  /**
   * Copies every family's current points into flat arrays, synchronously;
   * this is the collect: series are marked collected, stale ones removed
   * (see the class comment), and in delta mode values reset.
   */
  snapshot(): StoreSnapshot<W> {
    const nowMs = this.now();
    const families: FamilySnapshot<W>[] = [];
    for (const fam of this.families) {
      const n = familySize(fam);
      if (n === 0) continue;
      const { stride, base, nCounts } = fam;
      const st = fam.group.slab;
      const labels: LabelSet<W>[] = [];
      const startMs = new Float64Array(n);
      const values = new Float64Array(n * stride);
      let len = 0;
      const take = (ls: LabelSet<W>): void => {
        const at = ls.offset + base;
        if (st[at + F_EXISTS] === 0) return;
        if (st[at + F_COLLECTED] !== 0) {
          const stale = nowMs - st[at + F_LAST]! >= this.ttlMs;
          // Delta: nothing new since the previous collect, so no point. Either way, forget it once stale.
          if (stale) this.removeSeries(fam, ls);
          if (this.delta || stale) return;
        }
        labels.push(ls);
        startMs[len] = st[at + F_START]!;
        if (nCounts === 0) {
          values[len] = st[at + F_VALUE]!;
        } else {
          const o = len * stride;
          values.set(st.subarray(at + F_COUNTS, at + F_COUNTS + nCounts), o);
          values[o + nCounts] = st[at + F_SUM]!;
          values[o + nCounts + 1] = st[at + F_VALUE]!;
          values[o + nCounts + 2] = st[at + F_MIN]!;
          values[o + nCounts + 3] = st[at + F_MAX]!;
        }
        len++;
        st[at + F_COLLECTED] = 1;
        if (this.delta) resetAccumulation(st, at, nCounts, nowMs);
      };
      // Removal during iteration is safe: a Map iterator skips deleted entries.
      for (const ls of fam.group.index.sets()) take(ls);
      take(fam.group.overflow);
      if (len === 0) continue;
      families.push({
        def: fam.def,
        length: len,
        labels,
        startMs: len === n ? startMs : startMs.subarray(0, len),
        values: len === n ? values : values.subarray(0, len * stride),
        stride,
      });
    }
    return { endMs: nowMs, temporality: this.delta ? 'delta' : 'cumulative', families };
  }
}

function familySize<W>(f: FamilyState<W>): number {
  return f.live + (f.group.slab[f.group.overflow.offset + f.base + F_EXISTS] !== 0 ? 1 : 0);
}

/** A free block of `g`'s slab (all zero or all series flags 0), growing the slab when needed. */
function allocBlock<W>(g: GroupState<W>): number {
  const free = g.freeBlocks.pop();
  if (free !== undefined) return free;
  if (g.used + g.blockSize > g.slab.length) {
    const bigger = new Float64Array(g.slab.length * 2);
    bigger.set(g.slab);
    g.slab = bigger;
  }
  const at = g.used;
  g.used += g.blockSize;
  return at;
}

/** A new series whose numbers start at `st[at]`, starting now. */
function initSeries(st: Float64Array, at: number, nCounts: number, nowMs: number): void {
  st[at + F_LAST] = nowMs;
  st[at + F_EXISTS] = 1;
  st[at + F_COLLECTED] = 0;
  resetAccumulation(st, at, nCounts, nowMs);
}

/** Zero values, starting a new accumulation now (a new series, or delta mode after a collect). */
function resetAccumulation(st: Float64Array, at: number, nCounts: number, nowMs: number): void {
  st[at + F_VALUE] = 0;
  st[at + F_START] = nowMs;
  if (nCounts > 0) {
    st[at + F_SUM] = 0;
    st[at + F_MIN] = Infinity;
    st[at + F_MAX] = -Infinity;
    st.fill(0, at + F_COUNTS, at + F_COUNTS + nCounts);
  }
}

/** Index of the bucket whose inclusive upper bound is the first >= v (last bucket = +Inf). */
export function bucketIndex(bounds: readonly number[], v: number): number {
  let lo = 0;
  let hi = bounds.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (v <= bounds[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
