/**
 * Keeps a {@link MetadataIndex} in step with the Kubernetes API through
 * `@kubernetes/client-node` informers (ListWatch: list, then watch from the
 * list's resourceVersion; on 410 Gone it re-lists).
 *
 * What client-node leaves to its user, done here:
 * - reconnecting: ListWatch stops on an error (API server down, 5xx,
 *   broken stream); this restarts it with exponential backoff
 *   (`initialBackoffMs` doubling to `maxBackoffMs`), reset by the next
 *   successful list or event — no busy loop while the server is away;
 * - a floor between two watch requests (`minWatchIntervalMs`), since
 *   ListWatch re-watches at once when a stream ends cleanly;
 * - stopping for good: ListWatch opens a watch even when stopped during its
 *   list; the watch wrapper here refuses to, so every socket and timer is
 *   released by {@link KubeWatcher.stop};
 * - memory: objects are cut to the few fields used (objects.ts) before
 *   ListWatch caches them;
 * - paged lists (`limit`), so a large cluster is not one huge response.
 */
import {
  BatchV1Api,
  CoreV1Api,
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  type V1Job,
  type V1Namespace,
  type V1Pod,
  type V1Service,
} from '@kubernetes/client-node';
import type { MetadataIndex } from './MetadataIndex.js';
import { jobMeta, namespaceMeta, podMeta, serviceMeta } from './objects.js';

/** Internal knobs (tests shorten them); not user config. */
export interface WatchTiming {
  /** First retry delay after an error. Default 500 ms. */
  initialBackoffMs: number;
  /** Retry delay cap. Default 30 s. */
  maxBackoffMs: number;
  /** Minimum time between two watch requests of one resource. Default 1 s. */
  minWatchIntervalMs: number;
  /** Page size of list requests. Default 500. */
  pageSize: number;
}

export const DEFAULT_WATCH_TIMING: WatchTiming = {
  initialBackoffMs: 500,
  maxBackoffMs: 30_000,
  minWatchIntervalMs: 1000,
  pageSize: 500,
};

export interface KubeWatcherOptions {
  /** Watch only pods of this node (`spec.nodeName`); empty: all. */
  nodeName: string;
  /** Watch pods, services and jobs of these namespaces only; empty: all. */
  namespaces: readonly string[];
  timing?: Partial<WatchTiming>;
  /** Called on every watch/list error (the watch retries by itself). */
  onError?: (resource: string, err: unknown, retryInMs: number) => void;
  /** Called when a resource lists successfully again after errors. */
  onRecovered?: (resource: string) => void;
  /** Clock for retirement times; default Date.now. */
  now?: () => number;
}

/** What ListWatch caches: the object's identity plus the cut-down value. */
interface Slim<M> extends KubernetesObject {
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  value: M;
}

type Page<T extends KubernetesObject> = KubernetesListObject<T> & { metadata?: { resourceVersion?: string; _continue?: string; continue?: string } };

interface ResourceSpec<T extends KubernetesObject, M> {
  /** For logs and metrics: `pods`, `services`, ... */
  resource: string;
  path: string;
  fieldSelector: string | undefined;
  listPage: (cont: string | undefined, limit: number) => Promise<Page<T>>;
  cut: (raw: T) => M | undefined;
  upsert: (m: M) => void;
  remove: (m: M) => void;
}

function slimOf<T extends KubernetesObject, M>(raw: T, cut: (raw: T) => M | undefined): Slim<M> | undefined {
  const md = raw?.metadata;
  if (md?.name === undefined) return undefined;
  const value = cut(raw);
  if (value === undefined) return undefined;
  const metadata: Slim<M>['metadata'] = { name: md.name };
  if (md.namespace !== undefined) metadata.namespace = md.namespace;
  if (md.resourceVersion !== undefined) metadata.resourceVersion = md.resourceVersion;
  return { metadata, value };
}

/** Watch that cuts objects down, refuses to open after stop, and spaces out its requests. */
class SlimWatch<T extends KubernetesObject, M> extends Watch {
  stopped = false;
  private lastStart = 0;
  private wakeDelay: (() => void) | undefined;
  private delayTimer: NodeJS.Timeout | undefined;

  constructor(
    config: KubeConfig,
    private readonly cut: (raw: T) => M | undefined,
    private readonly minIntervalMs: number,
    private readonly onEvent: () => void,
  ) {
    super(config);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    const wait = this.lastStart + this.minIntervalMs - Date.now();
    if (wait > 0 && !this.stopped) {
      await new Promise<void>((resolve) => {
        this.wakeDelay = resolve;
        this.delayTimer = setTimeout(resolve, wait);
      });
      this.wakeDelay = undefined;
      this.delayTimer = undefined;
    }
    if (this.stopped) return abortedController();
    this.lastStart = Date.now();
    const controller = await super.watch(
      path,
      queryParams,
      (phase: string, obj: unknown, watchObj?: unknown) => {
        if (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') {
          const slim = slimOf(obj as T, this.cut);
          if (slim === undefined) return;
          this.onEvent();
          callback(phase, slim, watchObj);
        } else callback(phase, obj, watchObj);
      },
      done,
    );
    if (this.stopped) controller.abort();
    return controller;
  }

  stop(): void {
    this.stopped = true;
    if (this.delayTimer !== undefined) clearTimeout(this.delayTimer);
    this.wakeDelay?.();
  }
}

function abortedController(): AbortController {
  const c = new AbortController();
  c.abort();
  return c;
}

/** What the watcher needs of each resource's watch. */
interface WatchHandle {
  readonly synced: boolean;
  start(): void;
  stop(): Promise<void>;
  whenSynced(): Promise<void>;
}

/** One resource: its ListWatch, its retry timer, its sync state. */
class ResourceWatch<T extends KubernetesObject, M> implements WatchHandle {
  synced = false;
  private readonly informer: ListWatch<Slim<M>>;
  private readonly watch: SlimWatch<T, M>;
  private stopped = true;
  private retryTimer: NodeJS.Timeout | undefined;
  private backoffMs: number;
  private failing = false;
  private syncWaiters: Array<() => void> = [];

  constructor(
    kubeConfig: KubeConfig,
    private readonly spec: ResourceSpec<T, M>,
    private readonly timing: WatchTiming,
    private readonly opts: KubeWatcherOptions,
  ) {
    this.backoffMs = timing.initialBackoffMs;
    this.watch = new SlimWatch<T, M>(kubeConfig, spec.cut, timing.minWatchIntervalMs, () => this.succeeded());
    this.informer = new ListWatch<Slim<M>>(spec.path, this.watch, () => this.list(), false, undefined, spec.fieldSelector);
    this.informer.on('add', (o) => spec.upsert(o.value));
    this.informer.on('update', (o) => spec.upsert(o.value));
    this.informer.on('delete', (o) => spec.remove(o.value));
    this.informer.on('error', (err) => this.failed(err));
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.watch.stopped = false;
    this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.watch.stop();
    await this.informer.stop();
    for (const w of this.syncWaiters) w();
    this.syncWaiters = [];
  }

  /** Resolves at the first successful list (or at stop). */
  whenSynced(): Promise<void> {
    if (this.synced || this.stopped) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  private run(): void {
    this.informer.start().catch((err: unknown) => this.failed(err));
  }

  /** ListWatch's list function: all pages, cut down, one resourceVersion. */
  private async list(): Promise<KubernetesListObject<Slim<M>>> {
    const items: Slim<M>[] = [];
    let cont: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await this.spec.listPage(cont, this.timing.pageSize);
      if (this.stopped) throw new Error('watch stopped');
      resourceVersion ??= page.metadata?.resourceVersion;
      for (const raw of page.items ?? []) {
        const slim = slimOf(raw, this.spec.cut);
        if (slim !== undefined) items.push(slim);
      }
      cont = page.metadata?._continue ?? page.metadata?.continue;
    } while (cont !== undefined && cont !== '');
    // ListWatch applies the items right after this resolves; mark synced after that.
    setImmediate(() => this.markSynced());
    this.succeeded();
    return { metadata: { resourceVersion: resourceVersion ?? '' }, items } as KubernetesListObject<Slim<M>>;
  }

  private markSynced(): void {
    if (this.synced || this.stopped) return;
    this.synced = true;
    for (const w of this.syncWaiters) w();
    this.syncWaiters = [];
  }

  private succeeded(): void {
    this.backoffMs = this.timing.initialBackoffMs;
    if (this.failing) {
      this.failing = false;
      this.opts.onRecovered?.(this.spec.resource);
    }
  }

  private failed(err: unknown): void {
    if (this.stopped) return;
    if (this.retryTimer !== undefined) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.timing.maxBackoffMs);
    this.failing = true;
    this.opts.onError?.(this.spec.resource, err, delay);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.stopped) this.run();
    }, delay);
  }
}

/** Watches pods, services, namespaces and jobs into one index. */
export class KubeWatcher {
  private readonly watches: WatchHandle[] = [];
  private started = false;

  constructor(kubeConfig: KubeConfig, index: MetadataIndex, opts: KubeWatcherOptions) {
    const timing: WatchTiming = { ...DEFAULT_WATCH_TIMING, ...opts.timing };
    const now = opts.now ?? Date.now;
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const batch = kubeConfig.makeApiClient(BatchV1Api);
    const podSelector = opts.nodeName !== '' ? `spec.nodeName=${opts.nodeName}` : undefined;
    // One watch per namespace when filtered (works with namespaced Roles), else cluster-wide.
    const scopes: Array<string | undefined> = opts.namespaces.length > 0 ? [...new Set(opts.namespaces)] : [undefined];
    const add = <T extends KubernetesObject, M>(spec: ResourceSpec<T, M>): void => {
      this.watches.push(new ResourceWatch<T, M>(kubeConfig, spec, timing, opts));
    };
    for (const ns of scopes) {
      const nsPath = ns === undefined ? '' : `/namespaces/${encodeURIComponent(ns)}`;
      add<V1Pod, ReturnType<typeof podMeta> & object>({
        resource: 'pods',
        path: `/api/v1${nsPath}/pods`,
        fieldSelector: podSelector,
        listPage: (cont, limit) =>
          ns === undefined
            ? core.listPodForAllNamespaces({ fieldSelector: podSelector, limit, _continue: cont })
            : core.listNamespacedPod({ namespace: ns, fieldSelector: podSelector, limit, _continue: cont }),
        cut: podMeta,
        upsert: (m) => index.upsertPod(m, now()),
        remove: (m) => index.deletePod(m.namespace, m.name, now()),
      });
      add<V1Service, ReturnType<typeof serviceMeta> & object>({
        resource: 'services',
        path: `/api/v1${nsPath}/services`,
        fieldSelector: undefined,
        listPage: (cont, limit) =>
          ns === undefined
            ? core.listServiceForAllNamespaces({ limit, _continue: cont })
            : core.listNamespacedService({ namespace: ns, limit, _continue: cont }),
        cut: serviceMeta,
        upsert: (m) => index.upsertService(m),
        remove: (m) => index.deleteService(m.namespace, m.name, now()),
      });
      add<V1Job, ReturnType<typeof jobMeta> & object>({
        resource: 'jobs',
        path: `/apis/batch/v1${nsPath}/jobs`,
        fieldSelector: undefined,
        listPage: (cont, limit) =>
          ns === undefined
            ? batch.listJobForAllNamespaces({ limit, _continue: cont })
            : batch.listNamespacedJob({ namespace: ns, limit, _continue: cont }),
        cut: jobMeta,
        upsert: (m) => index.upsertJob(m),
        remove: (m) => index.deleteJob(m.namespace, m.name),
      });
    }
    add<V1Namespace, ReturnType<typeof namespaceMeta> & object>({
      resource: 'namespaces',
      path: '/api/v1/namespaces',
      fieldSelector: undefined,
      listPage: (cont, limit) => core.listNamespace({ limit, _continue: cont }),
      cut: namespaceMeta,
      upsert: (m) => index.upsertNamespace(m),
      remove: (m) => index.deleteNamespace(m.name, now()),
    });
  }

  /** Starts every watch; returns at once (lists and watches proceed in the background). */
  start(): void {
    if (this.started) return;
    this.started = true;
    for (const w of this.watches) w.start();
  }

  /** True once every resource has been listed at least once. */
  get synced(): boolean {
    return this.watches.every((w) => w.synced);
  }

  /** Resolves true when every resource has been listed, false at the timeout (or stop). */
  async waitForSync(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.all(this.watches.map((w) => w.whenSynced())), timeout]);
    clearTimeout(timer);
    return this.synced;
  }

  /** Stops every watch and timer. Safe before start and twice. */
  async stop(): Promise<void> {
    this.started = false;
    await Promise.all(this.watches.map((w) => w.stop()));
  }
}
