/**
 * A fake Kubernetes API server for tests: plain HTTP on 127.0.0.1, speaking
 * enough of the real protocol for `@kubernetes/client-node` informers
 * (ListWatch) to run against it unchanged:
 *
 * - `GET /api/v1/pods`, `/api/v1/namespaces/{ns}/pods`,
 *   `/apis/{group}/{version}/[namespaces/{ns}/]{plural}`: a `<Kind>List` with
 *   `metadata.resourceVersion`, honouring `fieldSelector`, `labelSelector`,
 *   `limit` and `continue`;
 * - the same with `?watch=true`: a chunked stream (headers flushed at once) of
 *   `{"type":"ADDED|MODIFIED|DELETED","object":{...}}` lines, replaying the
 *   changes after the requested `resourceVersion`; a version older than the
 *   last {@link FakeApiServer.compact} gets the real server's answer, an
 *   `ERROR` event carrying a `Status` with code 410 (Expired), then the end of
 *   the stream — the informer must re-list;
 * - a field-selected watch turns a change that moves an object out of (into)
 *   the selection into DELETED (ADDED), as the real watch cache does.
 *
 * Tests drive it at run time: {@link apply} / {@link delete} objects of any
 * registered kind, {@link dropWatches} to cut connections abruptly,
 * {@link stop} and {@link restart} (same port, state kept) to simulate an API
 * server outage.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The minimum shape of a Kubernetes object the fake stores. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
    [key: string]: unknown;
  };
  [key: string]: unknown;
}

/** How a kind is served: `/api/v1/...` for the core group, `/apis/{group}/{version}/...` otherwise. */
export interface KindInfo {
  kind: string;
  /** `v1` for core, else `group/version`. */
  apiVersion: string;
  /** The URL segment, e.g. `pods`. */
  plural: string;
  namespaced: boolean;
}

const BUILTIN_KINDS: KindInfo[] = [
  { kind: 'Pod', apiVersion: 'v1', plural: 'pods', namespaced: true },
  { kind: 'Service', apiVersion: 'v1', plural: 'services', namespaced: true },
  { kind: 'Endpoints', apiVersion: 'v1', plural: 'endpoints', namespaced: true },
  { kind: 'ConfigMap', apiVersion: 'v1', plural: 'configmaps', namespaced: true },
  { kind: 'Namespace', apiVersion: 'v1', plural: 'namespaces', namespaced: false },
  { kind: 'Node', apiVersion: 'v1', plural: 'nodes', namespaced: false },
  { kind: 'EndpointSlice', apiVersion: 'discovery.k8s.io/v1', plural: 'endpointslices', namespaced: true },
  { kind: 'Deployment', apiVersion: 'apps/v1', plural: 'deployments', namespaced: true },
  { kind: 'ReplicaSet', apiVersion: 'apps/v1', plural: 'replicasets', namespaced: true },
  { kind: 'StatefulSet', apiVersion: 'apps/v1', plural: 'statefulsets', namespaced: true },
  { kind: 'DaemonSet', apiVersion: 'apps/v1', plural: 'daemonsets', namespaced: true },
  { kind: 'Job', apiVersion: 'batch/v1', plural: 'jobs', namespaced: true },
  { kind: 'CronJob', apiVersion: 'batch/v1', plural: 'cronjobs', namespaced: true },
];

/** One request as the server saw it (for assertions on what the client asked). */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  watch: boolean;
}

interface StoredEvent {
  rv: number;
  kind: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: KubeObject;
  /** The object before a MODIFIED/DELETED change. */
  previous?: KubeObject;
}

interface Watcher {
  kind: string;
  namespace: string | undefined;
  matches: (o: KubeObject) => boolean;
  res: ServerResponse;
}

interface Route {
  info: KindInfo;
  namespace: string | undefined;
}

export interface FakeApiServerOptions {
  /** Port to listen on; 0 (default) picks a free one. */
  port?: number;
}

export class FakeApiServer {
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];
  private readonly kinds = new Map<string, KindInfo>();
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private readonly history: StoredEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly sockets = new Set<Socket>();
  private server: Server | undefined;
  private rv = 1;
  private compactedRv = 0;
  private portNumber: number;

  private constructor(port: number) {
    this.portNumber = port;
    for (const k of BUILTIN_KINDS) this.registerKind(k);
  }

  /** Starts a server on 127.0.0.1 (a random free port unless `options.port`). */
  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const s = new FakeApiServer(options.port ?? 0);
    await s.listen();
    return s;
  }

  get port(): number {
    return this.portNumber;
  }

  /** `http://127.0.0.1:<port>` */
  get url(): string {
    return `http://127.0.0.1:${this.portNumber}`;
  }

  get running(): boolean {
    return this.server !== undefined;
  }

  /** The current (latest) resourceVersion. */
  get resourceVersion(): number {
    return this.rv;
  }

  /** Adds a kind beyond the built-in ones (Pod, Service, Namespace, Node, Endpoints, ConfigMap, EndpointSlice, apps/v1, batch/v1). */
  registerKind(info: KindInfo): void {
    this.kinds.set(info.kind, info);
    if (!this.objects.has(info.kind)) this.objects.set(info.kind, new Map());
  }

  /**
   * Creates or replaces an object (`kind` and `metadata.name` required,
   * `metadata.namespace` for namespaced kinds). Assigns a new resourceVersion
   * (and a uid and creationTimestamp on creation), notifies watchers, and
   * returns the stored copy.
   */
  apply(obj: KubeObject): KubeObject {
    const info = this.kindOf(obj.kind);
    if (info.namespaced && !obj.metadata.namespace) throw new Error(`${info.kind} ${obj.metadata.name}: namespace required`);
    const store = this.objects.get(info.kind)!;
    const key = objectKey(obj.metadata.namespace, obj.metadata.name);
    const previous = store.get(key);
    const rv = ++this.rv;
    const stored: KubeObject = structuredClone(obj);
    stored.apiVersion = info.apiVersion;
    stored.kind = info.kind;
    stored.metadata.resourceVersion = String(rv);
    stored.metadata.uid = previous?.metadata.uid ?? obj.metadata.uid ?? randomUUID();
    stored.metadata.creationTimestamp ??= previous?.metadata.creationTimestamp ?? new Date().toISOString();
    if (!info.namespaced) delete stored.metadata.namespace;
    store.set(key, stored);
    const ev: StoredEvent = { rv, kind: info.kind, type: previous === undefined ? 'ADDED' : 'MODIFIED', object: stored };
    if (previous !== undefined) ev.previous = previous;
    this.record(ev);
    return structuredClone(stored);
  }

  /** Deletes an object; returns false when it did not exist. */
  delete(kind: string, name: string, namespace?: string): boolean {
    const info = this.kindOf(kind);
    const store = this.objects.get(info.kind)!;
    const key = objectKey(info.namespaced ? namespace : undefined, name);
    const previous = store.get(key);
    if (previous === undefined) return false;
    store.delete(key);
    const rv = ++this.rv;
    // The DELETED event carries the last state with the deletion's resourceVersion.
    const object: KubeObject = structuredClone(previous);
    object.metadata.resourceVersion = String(rv);
    this.record({ rv, kind: info.kind, type: 'DELETED', object, previous });
    return true;
  }

  /** The stored object, or undefined. */
  get(kind: string, name: string, namespace?: string): KubeObject | undefined {
    const info = this.kindOf(kind);
    const o = this.objects.get(info.kind)!.get(objectKey(info.namespaced ? namespace : undefined, name));
    return o === undefined ? undefined : structuredClone(o);
  }

  /** All stored objects of a kind. */
  list(kind: string): KubeObject[] {
    return [...this.objects.get(this.kindOf(kind).kind)!.values()].map((o) => structuredClone(o));
  }

  /**
   * Forgets the change history, as etcd compaction does: any watch from a
   * resourceVersion older than now is answered with 410 Expired.
   */
  compact(): void {
    this.compactedRv = this.rv;
    this.history.length = 0;
  }

  /** Number of open watch streams (optionally for one kind). */
  activeWatches(kind?: string): number {
    let n = 0;
    for (const w of this.watchers) if (kind === undefined || w.kind === kind) n++;
    return n;
  }

  /** Requests seen for a kind (`pods`, ...), list or watch. */
  requestCount(plural: string, watch?: boolean): number {
    return this.requests.filter((r) => r.path.endsWith('/' + plural) && (watch === undefined || r.watch === watch)).length;
  }

  /** Cuts every open watch connection abruptly (socket destroyed). Returns how many. */
  dropWatches(): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) w.res.socket?.destroy();
    this.watchers.clear();
    return n;
  }

  /** Ends every open watch stream cleanly, as the real server does at its watch timeout. Returns how many. */
  closeWatches(): number {
    const n = this.watchers.size;
    for (const w of [...this.watchers]) w.res.end();
    this.watchers.clear();
    return n;
  }

  /**
   * Writes a kubeconfig pointing at this server (plain HTTP, which
   * client-node only accepts with `insecure-skip-tls-verify`) and returns its
   * path; a fresh temporary file unless `file` is given.
   */
  writeKubeconfig(file?: string): string {
    const path = file ?? join(mkdtempSync(join(tmpdir(), 'fake-kube-')), 'kubeconfig');
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'fake', user: { token: 'fake-token' } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake' } }],
      'current-context': 'fake',
    };
    writeFileSync(path, JSON.stringify(config, null, 2));
    return path;
  }

  /** Stops listening and destroys every connection (objects and history are kept). Safe twice. */
  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    this.watchers.clear();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Listens again on the same port with the same objects (after {@link stop}). */
  async restart(): Promise<void> {
    if (this.server !== undefined) return;
    await this.listen();
  }

  // ---------------------------------------------------------------------------

  private kindOf(kind: string | undefined): KindInfo {
    const info = kind === undefined ? undefined : this.kinds.get(kind);
    if (info === undefined) throw new Error(`unknown kind ${String(kind)} (registerKind it first)`);
    return info;
  }

  private async listen(): Promise<void> {
    const server = createServer((req, res) => this.handle(req, res));
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.portNumber, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    if (addr !== null && typeof addr === 'object') this.portNumber = addr.port;
    this.server = server;
  }

  private record(ev: StoredEvent): void {
    this.history.push(ev);
    for (const w of [...this.watchers]) this.send(w, ev);
  }

  /** Sends one event to a watcher, translated through its selection. */
  private send(w: Watcher, ev: StoredEvent): void {
    if (w.kind !== ev.kind) return;
    if (w.namespace !== undefined && ev.object.metadata.namespace !== w.namespace) return;
    const now = w.matches(ev.object);
    const before = ev.previous !== undefined && w.matches(ev.previous);
    let type: StoredEvent['type'];
    if (ev.type === 'DELETED') {
      if (!before && !now) return;
      type = 'DELETED';
    } else if (ev.type === 'ADDED') {
      if (!now) return;
      type = 'ADDED';
    } else if (now && before) type = 'MODIFIED';
    else if (now) type = 'ADDED';
    else if (before) type = 'DELETED';
    else return;
    writeLine(w.res, { type, object: ev.object });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const query = Object.fromEntries(url.searchParams.entries());
    const watch = query.watch === 'true' || query.watch === '1';
    this.requests.push({ method: req.method ?? 'GET', path: url.pathname, query, watch });
    if (req.method !== 'GET') return status(res, 405, 'MethodNotAllowed', `${req.method} not supported by the fake`);
    const route = this.route(url.pathname);
    if (route === undefined) return status(res, 404, 'NotFound', `no route for ${url.pathname}`);
    let matches: (o: KubeObject) => boolean;
    try {
      matches = selectorMatcher(query.fieldSelector, query.labelSelector);
    } catch (err) {
      return status(res, 400, 'BadRequest', (err as Error).message);
    }
    if (watch) this.serveWatch(route, query, matches, res);
    else this.serveList(route, query, matches, res);
  }

  private route(pathname: string): Route | undefined {
    const parts = pathname.split('/').filter((p) => p !== '');
    let apiVersion: string;
    let rest: string[];
    if (parts[0] === 'api' && parts.length >= 3) {
      apiVersion = parts[1]!;
      rest = parts.slice(2);
    } else if (parts[0] === 'apis' && parts.length >= 4) {
      apiVersion = `${parts[1]}/${parts[2]}`;
      rest = parts.slice(3);
    } else return undefined;
    let namespace: string | undefined;
    if (rest.length === 3 && rest[0] === 'namespaces') {
      namespace = rest[1];
      rest = rest.slice(2);
    }
    if (rest.length !== 1) return undefined;
    for (const info of this.kinds.values()) {
      if (info.apiVersion === apiVersion && info.plural === rest[0]) {
        if (namespace !== undefined && !info.namespaced) return undefined;
        return { info, namespace };
      }
    }
    return undefined;
  }

  private selected(route: Route, matches: (o: KubeObject) => boolean): KubeObject[] {
    const out: KubeObject[] = [];
    for (const o of this.objects.get(route.info.kind)!.values()) {
      if (route.namespace !== undefined && o.metadata.namespace !== route.namespace) continue;
      if (matches(o)) out.push(o);
    }
    out.sort((a, b) => objectKey(a.metadata.namespace, a.metadata.name).localeCompare(objectKey(b.metadata.namespace, b.metadata.name)));
    return out;
  }

  private serveList(route: Route, query: Record<string, string>, matches: (o: KubeObject) => boolean, res: ServerResponse): void {
    const all = this.selected(route, matches);
    // Paging: `continue` is "<rv>:<offset>"; every page reports the snapshot's version.
    let offset = 0;
    let listRv = this.rv;
    if (query.continue) {
      const [rvText, offText] = query.continue.split(':');
      listRv = Number(rvText);
      offset = Number(offText);
      if (!Number.isInteger(offset) || offset < 0) return status(res, 400, 'BadRequest', 'bad continue token');
    }
    const limit = query.limit ? Number(query.limit) : 0;
    const end = limit > 0 ? Math.min(all.length, offset + limit) : all.length;
    const metadata: Record<string, string> = { resourceVersion: String(listRv) };
    if (end < all.length) metadata.continue = `${listRv}:${end}`;
    const body = {
      kind: `${route.info.kind}List`,
      apiVersion: route.info.apiVersion,
      metadata,
      // Real list responses leave kind/apiVersion off the items.
      items: all.slice(offset, end).map((o) => {
        const rest: Partial<KubeObject> = { ...o };
        delete rest.kind;
        delete rest.apiVersion;
        return rest;
      }),
    };
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private serveWatch(route: Route, query: Record<string, string>, matches: (o: KubeObject) => boolean, res: ServerResponse): void {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const w: Watcher = { kind: route.info.kind, namespace: route.namespace, matches, res };
    const fromText = query.resourceVersion ?? '';
    if (fromText === '' || fromText === '0') {
      // "Any version": synthetic ADDED for the current state, then changes.
      for (const o of this.selected(route, matches)) writeLine(res, { type: 'ADDED', object: o });
    } else {
      const from = Number(fromText);
      if (!Number.isFinite(from) || from < this.compactedRv) {
        writeLine(res, {
          type: 'ERROR',
          object: {
            kind: 'Status',
            apiVersion: 'v1',
            metadata: {},
            status: 'Failure',
            message: `too old resource version: ${fromText} (${this.compactedRv})`,
            reason: 'Expired',
            code: 410,
          },
        });
        res.end();
        return;
      }
      for (const ev of this.history) if (ev.rv > from) this.send(w, ev);
    }
    this.watchers.add(w);
    res.on('close', () => this.watchers.delete(w));
  }
}

function objectKey(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

function writeLine(res: ServerResponse, value: unknown): void {
  if (res.writableEnded || res.destroyed) return;
  res.write(JSON.stringify(value) + '\n');
}

function status(res: ServerResponse, code: number, reason: string, message: string): void {
  res.writeHead(code, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
}

function fieldValue(o: KubeObject, path: string): string {
  let cur: unknown = o;
  for (const seg of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur === undefined || cur === null ? '' : String(cur);
}

/**
 * Field selectors (`a.b=v`, `a.b==v`, `a.b!=v`, comma = and) and equality/
 * existence label selectors (`k=v`, `k!=v`, `k`, `!k`).
 */
function selectorMatcher(fieldSelector: string | undefined, labelSelector: string | undefined): (o: KubeObject) => boolean {
  const tests: Array<(o: KubeObject) => boolean> = [];
  for (const term of splitTerms(fieldSelector)) {
    const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (m === null) throw new Error(`unsupported field selector term "${term}"`);
    const [, path, op, value] = m;
    tests.push((o) => (fieldValue(o, path!) === value) === (op !== '!='));
  }
  for (const term of splitTerms(labelSelector)) {
    const m = /^(!?)([\w./-]+)\s*(?:(==|=|!=)\s*(.*))?$/.exec(term);
    if (m === null) throw new Error(`unsupported label selector term "${term}"`);
    const [, not, key, op, value] = m;
    if (op === undefined) tests.push((o) => (o.metadata.labels?.[key!] !== undefined) === (not !== '!'));
    else tests.push((o) => (o.metadata.labels?.[key!] === value) === (op !== '!='));
  }
  return (o) => tests.every((t) => t(o));
}

function splitTerms(selector: string | undefined): string[] {
  if (selector === undefined) return [];
  return selector
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
}
