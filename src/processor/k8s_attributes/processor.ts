/**
 * The processor bodies: pure functions of a batch and the index, wrapped by
 * processorhelper in factory.ts.
 */
import type { LogsBatch } from '../../model/logs.js';
import { addFlowValues, attributesKey, type FlowPoint, type MetricsBatch } from '../../model/metrics.js';
import { attributeCacheFor, type IstioAttributeCache, type LabelEntry, type LabelSet } from './attributeCache.js';
import { logAttributes, type LabelOptions } from './istioLabels.js';
import type { MetadataIndex } from './MetadataIndex.js';

/**
 * Maps every point onto the Istio label set, then merges points whose label
 * sets became equal (e.g. many client addresses of one workload). The input
 * batch is not modified. Label blocks are memoised per flow key in `cache`
 * (by default the one shared by this index and options).
 *
 * Same result as mapping every point and then `reaggregate()`: the first
 * point of each label set is copied (values, arrays) and later ones are
 * added into it, in input order. Merging happens before copying, and a
 * cached block's re-aggregation key is computed once, not per point.
 *
 * Attributes: a point whose label set is a cached block gets the cached
 * block itself, so the same object reaches the exporters batch after batch
 * and their series lookups hit by identity (no copy, no key rebuilt). When
 * the next consumer declares `mutatesData`, `shareBlocks` is false and each
 * point gets its own copy instead.
 */
export function processMetrics(
  batch: MetricsBatch,
  index: MetadataIndex,
  opts: LabelOptions,
  cache: IstioAttributeCache = attributeCacheFor(index, opts),
  shareBlocks = true,
): MetricsBatch {
  const out: FlowPoint[] = [];
  // Label sets the cache knows are grouped by identity; anything else (points with extra attributes) by attributesKey.
  const bySet = new Map<LabelSet, FlowPoint>();
  let byKey: Map<string, FlowPoint> | undefined;
  const points = batch.points;
  for (let i = 0; i < points.length; i++) {
    const p = points[i]!;
    const flow = p.flow;
    let e: LabelEntry | undefined;
    let set: LabelSet | undefined;
    let attributes: Record<string, string> | undefined;
    let key: string | undefined;
    let existing: FlowPoint | undefined;
    if (flow !== undefined && p.attributes === flow.attributes) {
      // The receiver's points: the flow's label block as is.
      e = cache.entry(flow);
      set = e.set;
      existing = bySet.get(set);
    } else {
      // Extra attributes beside the flow's (or no flow: nothing to map, kept as they are).
      attributes = flow !== undefined ? cache.attributes(flow, p.attributes) : p.attributes;
      set = flow !== undefined ? cache.labelSetOf({ ...attributes }) : undefined;
      if (set !== undefined) existing = bySet.get(set);
      else existing = (byKey ??= new Map()).get((key = attributesKey(attributes)));
    }
    if (existing !== undefined) {
      addFlowValues(existing, p);
      continue;
    }
    const q: FlowPoint = {
      opened: p.opened,
      closed: p.closed,
      failed: p.failed,
      sentBytes: p.sentBytes,
      receivedBytes: p.receivedBytes,
      retransmits: p.retransmits,
      lostPackets: p.lostPackets,
      // Copies: later points of the same label set are appended to them.
      durationsSec: p.durationsSec.slice(),
      rttsSec: p.rttsSec.slice(),
      attributes: attributes ?? (shareBlocks ? (e!.block as Record<string, string>) : { ...e!.block }),
    };
    if (set !== undefined) bySet.set(set, q);
    else byKey!.set(key!, q);
    out.push(q);
  }
  return { points: out };
}

/** Adds identity attributes to every entry (new entries; the input batch is not modified). */
export function processLogs(batch: LogsBatch, index: MetadataIndex, opts: LabelOptions): LogsBatch {
  return {
    entries: batch.entries.map((e) => ({
      event: e.event,
      attributes: logAttributes(e.event, e.attributes, index, opts),
      observedUnixNano: e.observedUnixNano,
    })),
  };
}
