import type { KubeConfig } from '@kubernetes/client-node';
import type { Counter } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { Component, CreateSettings, Host } from '../../component/component.js';
import type { K8sAttributesConfig } from './config.js';
import { labelOptions, type LabelOptions } from './istioLabels.js';
import type { KubeWatcher, WatchTiming } from './KubeWatcher.js';
import { MetadataIndex } from './MetadataIndex.js';

/** Seams for tests. */
export interface K8sMetadataDeps {
  /** Builds the client config; default from `auth_type`. */
  loadKubeConfig?: (config: K8sAttributesConfig) => KubeConfig;
  timing?: Partial<WatchTiming>;
  now?: () => number;
}

/**
 * The Kubernetes metadata one config needs: the index and the watch feeding
 * it, shared by the metrics and logs processors built from the same config
 * (SharedComponents) and reference-counted: the watch starts with the first
 * processor started and stops with the last one shut down.
 */
export class K8sMetadata {
  readonly index = new MetadataIndex();
  readonly options: LabelOptions;
  private readonly logger: Logger;
  private readonly watchErrors: Counter;
  private readonly watchErrorsAttrs: { processor: string };
  private readonly failing = new Set<string>();
  private refs = 0;
  private watcher: KubeWatcher | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  /** Serialises start/stop of the watch. */
  private transition: Promise<void> = Promise.resolve();

  constructor(
    settings: CreateSettings,
    private readonly config: K8sAttributesConfig,
    private readonly deps: K8sMetadataDeps = {},
  ) {
    this.options = labelOptions(config);
    this.logger = settings.logger;
    const id = settings.id.toString();
    this.watchErrors = settings.telemetry.counter(
      'k8s_attributes_watch_errors',
      'Kubernetes list/watch failures (each is retried with backoff)',
    );
    settings.telemetry.gauge('k8s_attributes_index_objects', 'Kubernetes objects held by the k8s_attributes index', () =>
      Object.entries(this.index.sizes()).map(([kind, n]) => [n, { processor: id, kind }]),
    );
    this.watchErrorsAttrs = { processor: id };
  }

  /** A lifecycle for one processor: start acquires the shared watch, shutdown releases it (once). */
  handle(): Component {
    let state: 'new' | 'started' | 'done' = 'new';
    return {
      start: async (_host: Host) => {
        if (state !== 'new') return;
        await this.acquire();
        state = 'started';
      },
      shutdown: async () => {
        const was = state;
        state = 'done';
        if (was === 'started') await this.release();
      },
    };
  }

  /** The running watch, if any (tests). */
  get kubeWatcher(): KubeWatcher | undefined {
    return this.watcher;
  }

  private acquire(): Promise<void> {
    const run = this.transition.then(async () => {
      if (this.refs === 0) await this.startWatch();
      this.refs++;
    });
    this.transition = run.catch(() => undefined);
    return run;
  }

  private release(): Promise<void> {
    const run = this.transition.then(async () => {
      if (this.refs === 0) return;
      this.refs--;
      if (this.refs === 0) await this.stopWatch();
    });
    this.transition = run.catch(() => undefined);
    return run;
  }

  private async startWatch(): Promise<void> {
    const grace = this.config.deleted_grace;
    const now = this.deps.now ?? Date.now;
    this.sweepTimer = setInterval(() => this.index.sweep(now(), grace), Math.max(250, Math.min(grace / 2, 10_000)));
    if (this.config.auth_type === 'none') return;
    let watcher: KubeWatcher;
    try {
      // Loaded here, not at the top: @kubernetes/client-node brings its whole
      // generated API (~75 MB of resident memory), which an agent with
      // `auth_type: none` never uses.
      const [{ KubeWatcher }, { loadKubeConfig }] = await Promise.all([import('./KubeWatcher.js'), import('./kubeConfig.js')]);
      const kc = (this.deps.loadKubeConfig ?? loadKubeConfig)(this.config);
      watcher = new KubeWatcher(kc, this.index, {
        nodeName: this.config.node_name,
        namespaces: this.config.namespaces,
        timing: this.deps.timing ?? {},
        now,
        onError: (resource, err, retryInMs) => {
          this.watchErrors.add(1, { ...this.watchErrorsAttrs, resource });
          if (!this.failing.has(resource)) {
            this.failing.add(resource);
            this.logger.warn({ resource, err: errorText(err), retryInMs }, 'Kubernetes watch failed; retrying with backoff');
          }
        },
        onRecovered: (resource) => {
          this.failing.delete(resource);
          this.logger.info({ resource }, 'Kubernetes watch recovered');
        },
      });
    } catch (err) {
      this.stopSweep();
      throw err;
    }
    this.watcher = watcher;
    watcher.start();
    if (this.config.wait_for_metadata) {
      const ok = await watcher.waitForSync(this.config.wait_for_metadata_timeout);
      if (!ok) {
        await this.stopWatch();
        throw new Error(`k8s_attributes: Kubernetes metadata not listed within ${this.config.wait_for_metadata_timeout} ms`);
      }
    }
  }

  private async stopWatch(): Promise<void> {
    this.stopSweep();
    const w = this.watcher;
    this.watcher = undefined;
    await w?.stop();
  }

  private stopSweep(): void {
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
