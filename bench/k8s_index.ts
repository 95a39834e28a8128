/**
 * The k8s_attributes index at cluster scale: 10,000 pods and 5,000 services
 * (cut down from API-shaped objects as the watch does), then
 * - IP -> pod lookups per second,
 * - (IP, port) -> service lookups per second (cluster IP and by target port),
 * - istioAttributes() per point, uncached (what every cache miss costs),
 * - the memoised mapping (IstioAttributeCache) per point,
 * - the processor's full path, processMetrics() on 4,096-point batches
 *   (map + copy + re-aggregate), with a warm cache and with the cache
 *   invalidated before every batch (a pod changes between flushes),
 * - heap and RSS held by the index.
 * Every rate is the median of REPS runs (min-max alongside).
 * Run: node --expose-gc --import tsx bench/k8s_index.ts
 *  or: npm run build:bench && node --expose-gc dist-bench/bench/k8s_index.js
 */
import type { V1Pod, V1Service } from '@kubernetes/client-node';
import { newFlowKey, type FlowKey } from '../src/model/flow.js';
import type { FlowPoint, MetricsBatch } from '../src/model/metrics.js';
import { IstioAttributeCache } from '../src/processor/k8s_attributes/attributeCache.js';
import { createDefaultConfig } from '../src/processor/k8s_attributes/config.js';
import { istioAttributes, labelOptions } from '../src/processor/k8s_attributes/istioLabels.js';
import { MetadataIndex } from '../src/processor/k8s_attributes/MetadataIndex.js';
import { podMeta, serviceMeta } from '../src/processor/k8s_attributes/objects.js';
import { processMetrics } from '../src/processor/k8s_attributes/processor.js';

const PODS = 10_000;
const SERVICES = 5_000;
const NAMESPACES = 50;
const REPS = Number(process.env.REPS ?? 5);
/** Upper bound of one timed run, s (the whole script stays well inside bench/k8s.ts's budget). */
const REP_SECONDS = Number(process.env.REP_SECONDS ?? 1.5);

const gc = (globalThis as { gc?: () => void }).gc;
function mem(): { heapMB: number; rssMB: number } {
  gc?.();
  const m = process.memoryUsage();
  return { heapMB: m.heapUsed / 2 ** 20, rssMB: m.rss / 2 ** 20 };
}

function podIp(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

function makePod(i: number): V1Pod {
  const svc = i % SERVICES;
  const app = `app-${svc}`;
  return {
    metadata: {
      name: `${app}-7d9f8c6b5-${i.toString(36).padStart(5, 'x')}`,
      namespace: `ns-${svc % NAMESPACES}`,
      uid: `00000000-0000-0000-0000-${i.toString().padStart(12, '0')}`,
      resourceVersion: String(i),
      labels: { app, version: 'v1', 'pod-template-hash': '7d9f8c6b5', 'app.kubernetes.io/part-of': 'bench' },
      annotations: { 'kubectl.kubernetes.io/restartedAt': '2024-01-01T00:00:00Z', 'prometheus.io/scrape': 'true' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${app}-7d9f8c6b5`, uid: 'x', controller: true }],
    },
    spec: {
      nodeName: `node-${i % 100}`,
      serviceAccountName: app,
      containers: [
        { name: 'main', image: `registry.example/${app}:v1`, ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }], env: [{ name: 'A', value: 'b' }] },
        { name: 'sidecar', image: 'registry.example/sidecar:v1' },
      ],
    },
    status: { phase: 'Running', podIP: podIp(i), podIPs: [{ ip: podIp(i) }] },
  } as V1Pod;
}

function makeService(s: number): V1Service {
  return {
    metadata: { name: `app-${s}`, namespace: `ns-${s % NAMESPACES}`, resourceVersion: String(s) },
    spec: {
      clusterIP: `10.96.${s >> 8}.${s & 255}`,
      clusterIPs: [`10.96.${s >> 8}.${s & 255}`],
      selector: { app: `app-${s}` },
      ports: [{ name: 'http', port: 80, targetPort: 'http' as unknown as never, protocol: 'TCP' }],
    },
  } as V1Service;
}

/**
 * Runs `fn(0..n-1)` REPS times after a warm-up, each run bounded to
 * REP_SECONDS (a slow machine measures fewer calls, not a longer run); prints
 * the median rate (and min-max) of calls * `unit` per second.
 */
/** Every rate's runs, printed as one JSON line at the end when BENCH_JSON=1 (for bench/k8s.ts). */
const results: Array<{ name: string; what: string; runs: number[] }> = [];

function rate(name: string, n: number, fn: (i: number) => unknown, unit = 1, what = 'lookups'): void {
  let sink = 0;
  for (let i = 0; i < Math.min(n, 200_000); i++) if (fn(i) !== undefined) sink++; // warm-up
  const rates: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = process.hrtime.bigint();
    const until = t0 + BigInt(REP_SECONDS * 1e9);
    let done = 0;
    // The clock is read once per 64 calls of the cheap functions (negligible
    // next to them), after every call of the batch-sized ones.
    const step = n >= 100_000 ? 64 : 1;
    while (done < n) {
      const end = Math.min(n, done + step);
      for (let i = done; i < end; i++) if (fn(i) !== undefined) sink++;
      done = end;
      if (process.hrtime.bigint() > until) break;
    }
    rates.push((done * unit) / (Number(process.hrtime.bigint() - t0) / 1e9));
  }
  results.push({ name, what, runs: [...rates] });
  rates.sort((a, b) => a - b);
  const m = (x: number): string => (x / 1e6).toFixed(2);
  console.log(
    `${name.padEnd(52)} ${m(rates[rates.length >> 1]!).padStart(6)} M ${what}/s  (median of ${REPS} runs of up to ${n * unit} or ${REP_SECONDS} s; ${m(rates[0]!)}-${m(rates[rates.length - 1]!)}; sink ${sink})`,
  );
}

const before = mem();
const index = new MetadataIndex();
for (let i = 0; i < PODS; i++) index.upsertPod(podMeta(makePod(i))!, 0);
for (let s = 0; s < SERVICES; s++) index.upsertService(serviceMeta(makeService(s))!);
const after = mem();
console.log(`index: ${PODS} pods, ${SERVICES} services; sizes ${JSON.stringify(index.sizes())}`);
console.log(`heap held by index: ${(after.heapMB - before.heapMB).toFixed(1)} MB; heap ${after.heapMB.toFixed(1)} MB, RSS ${after.rssMB.toFixed(1)} MB${gc ? '' : ' (run with --expose-gc for exact heap)'}`);

// Lookup keys prepared up front (the receiver hands strings over); 1 in 8 misses.
const KEYS = 1 << 16;
const ips: string[] = [];
for (let k = 0; k < KEYS; k++) ips.push(k % 8 === 0 ? `192.168.${k & 255}.${(k >> 8) & 255}` : podIp((k * 7919) % PODS));
const N = 20_000_000;
rate('podByIp', N, (i) => index.podByIp(ips[i & (KEYS - 1)]!));
const cips: string[] = [];
for (let k = 0; k < KEYS; k++) cips.push(`10.96.${(k % SERVICES) >> 8}.${(k % SERVICES) & 255}`);
rate('serviceByClusterIp', N, (i) => index.serviceByClusterIp(cips[i & (KEYS - 1)]!, 80));
const pods = ips.map((ip) => index.podByIp(ip)).filter((p) => p !== undefined);
rate('serviceOfPodPort (named target port)', N, (i) => index.serviceOfPodPort(pods[i % pods.length]!, 8080));

const opts = labelOptions(createDefaultConfig());
// Flow keys as the receiver builds them (interned by FlowAggregator); all 4,096 distinct.
const RAW = 4096;
const points: FlowKey[] = [];
for (let k = 0; k < RAW; k++) {
  points.push(
    newFlowKey({
      direction: k % 2 ? 'INBOUND' : 'OUTBOUND',
      srcAddr: podIp((k * 31) % PODS),
      dstAddr: podIp((k * 17 + 5) % PODS),
      dstPort: 8080,
      origDstAddr: undefined,
      origDstPort: undefined,
      failure: undefined,
    }),
  );
}
rate('istioAttributes (uncached: a cache miss)', 1_000_000, (i) => istioAttributes(points[i & (RAW - 1)]!, index, opts), 1, 'points');
const cache = new IstioAttributeCache(index, opts);
// entry(): the lookup processMetrics does per receiver point (the block is
// shared, not copied); attributes() returns a private copy of the 23 labels.
rate('IstioAttributeCache.entry (warm)', 5_000_000, (i) => cache.entry(points[i & (RAW - 1)]!), 1, 'points');
rate('IstioAttributeCache.attributes copy (warm)', 5_000_000, (i) => cache.attributes(points[i & (RAW - 1)]!), 1, 'points');
console.log(`  cache: ${cache.size} blocks, ${cache.hits} hits, ${cache.misses} misses, ${cache.invalidations} invalidations`);

// The full processor path on receiver-sized batches.
function batch(): MetricsBatch {
  const pts: FlowPoint[] = points.map((flow) => ({
    opened: 1,
    closed: 1,
    failed: 0,
    sentBytes: 1000,
    receivedBytes: 2000,
    retransmits: 0,
    lostPackets: 0,
    durationsSec: [0.01],
    rttsSec: [0.0002],
    flow,
    attributes: flow.attributes as Record<string, string>,
  }));
  return { points: pts };
}
const batches = [batch(), batch()];
const full = new IstioAttributeCache(index, opts);
let outPoints = 0;
rate('processMetrics, full path, warm cache', 300, (i) => (outPoints = processMetrics(batches[i & 1]!, index, opts, full).points.length), RAW, 'points');
console.log(`  ${RAW} points in -> ${outPoints} series out per batch`);
// A real pod change before every batch (a label flip) drops the whole cache: every point misses.
const churnPod = podMeta(makePod(PODS - 1))!;
rate(
  'processMetrics, full path, cache dropped every batch',
  100,
  (i) => {
    index.upsertPod({ ...churnPod, labels: { ...churnPod.labels, churn: String(i) } }, 0);
    return processMetrics(batches[i & 1]!, index, opts, full).points.length;
  },
  RAW,
  'points',
);
console.log(`  cache: ${full.size} blocks, ${full.hits} hits, ${full.misses} misses, ${full.invalidations} invalidations`);
// Status-only updates (the bulk of pod MODIFIED events) change no kept field and keep the cache.
const v0 = index.version;
for (let i = 0; i < PODS; i++) index.upsertPod(podMeta(makePod(i))!, 0);
console.log(`  re-upserting all ${PODS} unchanged pods (a re-list / status churn) moved the index version by ${index.version - v0 - 1}`);
const end = mem();
console.log(`after lookups: heap ${end.heapMB.toFixed(1)} MB, RSS ${end.rssMB.toFixed(1)} MB`);
if (process.env.BENCH_JSON === '1') {
  console.log('JSON ' + JSON.stringify({ results, index: { heapMB: after.heapMB - before.heapMB, rssMB: after.rssMB }, pods: PODS, services: SERVICES }));
}
