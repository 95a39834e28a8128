/**
 * Metric schemas: what one {@link FlowPoint} (attributes + per-flush deltas)
 * adds to which metric families under which label values, described by
 * label groups that a `SeriesStore` applies.
 *
 * Each schema is one file in schemas/, registered by one line in
 * schemas/registry.ts. A schema names every label it renders; attributes
 * it does not name (the receiver's raw dotted keys such as
 * `source.address`) are never rendered, so raw addresses cannot leak into
 * label sets by accident.
 */
import { Label, REQUEST_PROTOCOL, reporterFor } from '../model/labels.js';
import type { FlowPoint } from '../model/metrics.js';

/** One metric family: name exactly as exposed, fixed label names in a stable (sorted) order. */
export interface FamilyDef {
  readonly name: string;
  readonly help: string;
  /** UCUM unit for OTLP (`By`, `s`, `{connection}`...). */
  readonly unit: string;
  /** `counter`: monotonic sum; `histogram`: explicit-bucket histogram. */
  readonly type: 'counter' | 'histogram';
  /** Label names, sorted, so label keys are rendered in a stable order. */
  readonly labels: readonly string[];
  /** Upper bucket bounds (histograms only), ascending. */
  readonly buckets?: readonly number[];
}

/** A family of a {@link LabelGroup}; histograms also say where their observations are. */
export interface FamilyBinding {
  readonly family: FamilyDef;
  /** Observations of a point (histograms only). */
  readonly observations?: (p: FlowPoint) => readonly number[];
}

/**
 * Families that share one label-name list (Kmesh: the workload families, the
 * service families). A point's label values are rendered once per group, and
 * a SeriesStore keeps one label set per distinct value list per group, shared
 * by every family of the group.
 */
export interface LabelGroup {
  /** Label names, sorted (the `labels` of every family in `bindings`). */
  readonly labels: readonly string[];
  readonly bindings: readonly FamilyBinding[];
  /**
   * Writes what `p` adds to each binding's family into `out[i]` (counters:
   * the increment; histograms: the number of observations); <= 0 means
   * nothing. One call per point and group rather than one closure per family:
   * the store's hot path reads a few numbers from a typed array instead of
   * making ~14 megamorphic calls per point.
   */
  readonly read: (p: FlowPoint, out: Float64Array) => void;
}

export interface MetricSchema {
  /** The name exporters' `schema` key selects it by (its entry in schemas/registry.ts). */
  readonly name: string;
  /** The placeholder rendered for an unknown label value. */
  readonly unknown: string;
  /** Every family, in exposition order. */
  readonly families: readonly FamilyDef[];
  /** The families by label group; what a point contributes is fully described here. */
  readonly groups: readonly LabelGroup[];
}

/** A counter family. */
export function counter(name: string, help: string, unit: string, labels: readonly string[]): FamilyDef {
  return { name, help, unit, type: 'counter', labels };
}

/**
 * `reporter` as set by the k8s_attributes processor; without it, from the
 * point's flow ({@link reporterFor} its direction), as the processor would.
 */
export function reporterOf(p: FlowPoint): string | undefined {
  const r = p.attributes[Label.reporter];
  if (r !== undefined && r !== '') return r;
  return p.flow === undefined ? undefined : reporterFor(p.flow.direction);
}

/**
 * Label values of `p` for `names`, `unknown` where the attribute is absent
 * or empty; `reporter` and `request_protocol` filled as the processor fills
 * them when no processor did.
 */
export function labelValues(p: FlowPoint, names: readonly string[], unknown: string): string[] {
  const attrs = p.attributes;
  const out = new Array<string>(names.length);
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    let v: string | undefined;
    if (name === Label.reporter) v = reporterOf(p);
    else if (name === Label.requestProtocol) v = attrs[name] || REQUEST_PROTOCOL;
    else v = attrs[name];
    out[i] = v === undefined || v === '' ? unknown : v;
  }
  return out;
}
