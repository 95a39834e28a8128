/**
 * Connection spans end to end: two network-namespace pods (sleep 10.244.0.17
 * -> httpbin 10.244.0.11) described by a fake Kubernetes API server, the
 * agent started through the real CLI with a traces pipeline
 * (ebpf -> k8s_attributes -> otlp + debug) and a logs pipeline to the same
 * in-repo OTLP/gRPC receiver, which decodes the real protobufs. N short
 * connections and some refused connects in; out must come exactly N CLIENT
 * and N SERVER spans, each pair one trace with the SERVER span the CLIENT
 * span's child, exact bytes, the k8s identities of both ends, durations equal
 * to the connection's life as the access log records it, and an ERROR span
 * with its reason per refused connect. The same connections as metrics in
 * the semconv schema: semantic-convention names and units, exact counts and
 * bytes, `error.type` of the refused connects, durations in seconds equal to
 * the spans'.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { packageRoot } from '../../src/paths.js';
import { FakeApiServer } from '../helpers/fakeApiServer.js';
import { attachedProgramIds, kernelSkipReason } from '../helpers/kernel.js';
import { createPodNetwork, killAllPeers, startPeer, type PodNetwork } from '../helpers/netns.js';
import { OtlpReceiver, type ReceivedPoint, type ReceivedSpan } from '../helpers/otlpReceiver.js';
import { deadlineMs } from '../helpers/deadline.js';
import { freePort, waitFor } from '../helpers/prometheusServer.js';
import { namespace, pod } from '../processor/k8s_attributes/fixtures.js';

const MAIN = join(packageRoot, 'dist', 'src', 'main.js');
const HTTPBIN_POD = 'httpbin-5c5944c58c-v9mlk';
const SLEEP_POD = 'sleep-7656cf8794-9v2gv';
const N = 10; // short connections sleep -> httpbin:8000
const REQUEST = 1000;
const RESPONSE = 300;
const REFUSED = 3; // connects to httpbin:8001, where nothing listens

const ns = (s: string): bigint => BigInt(s);

describe('connection spans (e2e)', { skip: kernelSkipReason(), timeout: deadlineMs(180_000) }, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'kmesh-otel-e2e-'));
  let net: PodNetwork | undefined;
  let api: FakeApiServer | undefined;
  let otlp: OtlpReceiver | undefined;
  let agent: ChildProcessWithoutNullStreams | undefined;
  let agentExit: Promise<number | null> | undefined;
  let stdout = '';
  let stderr = '';
  const programsBefore = new Set(attachedProgramIds());

  before(async () => {
    assert.ok(existsSync(MAIN), `${MAIN} is missing: run npm run build`);
    net = createPodNetwork([11, 17]);
    api = await FakeApiServer.start();
    api.apply(namespace('default'));
    api.apply(
      pod({
        name: HTTPBIN_POD,
        ip: net.pods[0]!.ipv4,
        labels: { app: 'httpbin', version: 'v1', 'pod-template-hash': '5c5944c58c' },
        owner: { kind: 'ReplicaSet', name: 'httpbin-5c5944c58c' },
        sa: 'httpbin',
      }),
    );
    api.apply(
      pod({
        name: SLEEP_POD,
        ip: net.pods[1]!.ipv4,
        labels: { app: 'sleep', 'pod-template-hash': '7656cf8794' },
        owner: { kind: 'ReplicaSet', name: 'sleep-7656cf8794' },
        sa: 'sleep',
      }),
    );
    const kubeconfig = api.writeKubeconfig(join(tmp, 'kubeconfig'));
    otlp = await OtlpReceiver.start();
    const healthPort = await freePort();
    const config = join(tmp, 'config.yaml');
    writeFileSync(
      config,
      `receivers:
  ebpf:
    drain_interval: 50ms
    log_periodic_reports: false
processors:
  k8s_attributes:
    auth_type: kubeConfig
    wait_for_metadata: true
exporters:
  otlp:
    endpoint: ${otlp.endpoint}
    tls: { insecure: true }
    compression: none
    sending_queue: { batch: { flush_timeout: 100ms, min_size: 64 } }
  # The semantic-convention schema on OTLP, fed by the same connections.
  otlp/semconv:
    endpoint: ${otlp.endpoint}
    tls: { insecure: true }
    compression: none
    export_interval: 300ms
    schema: semconv
  debug: {}
extensions:
  health_check:
    endpoint: 127.0.0.1:${healthPort}
service:
  extensions: [health_check]
  pipelines:
    traces: { receivers: [ebpf], processors: [k8s_attributes], exporters: [otlp, debug] }
    logs: { receivers: [ebpf], processors: [k8s_attributes], exporters: [otlp] }
    metrics: { receivers: [ebpf], processors: [k8s_attributes], exporters: [otlp/semconv] }
`,
    );
    agent = spawn(process.execPath, [MAIN, '--config', config], { env: { ...process.env, KUBECONFIG: kubeconfig }, stdio: ['pipe', 'pipe', 'pipe'] });
    agent.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    agent.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-50_000)));
    const proc = agent;
    agentExit = new Promise((r) => proc.on('exit', (code) => r(code)));
    await waitFor(
      'the agent health check to answer 200',
      async () => {
        if (proc.exitCode !== null) throw new Error(`agent exited ${proc.exitCode}: ${stderr}`);
        const r = await fetch(`http://127.0.0.1:${healthPort}/healthz`).catch(() => undefined);
        return r?.status === 200 ? true : undefined;
      },
      30_000,
    );
  });

  after(async () => {
    killAllPeers();
    if (agent !== undefined && agent.exitCode === null) {
      agent.kill('SIGTERM');
      const code = await Promise.race([agentExit, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
      if (code === 'timeout') {
        agent.kill('SIGKILL');
        await agentExit;
      }
    }
    await otlp?.stop().catch(() => undefined);
    await api?.stop().catch(() => undefined);
    net?.destroy();
    rmSync(tmp, { recursive: true, force: true });
    const left = attachedProgramIds().filter((id) => !programsBefore.has(id));
    assert.deepEqual(left, [], 'the agent left no program attached');
  });

  it(`${N} connections give ${N} CLIENT and ${N} SERVER spans in ${N} two-span traces; refused connects give ERROR spans`, async () => {
    const [httpbin, sleep] = [net!.pods[0]!, net!.pods[1]!];
    const t0 = BigInt(Date.now()) * 1_000_000n;
    const server = startPeer(httpbin.netns, { mode: 'server', host: httpbin.ipv4, port: 8000, write: RESPONSE, expectRead: REQUEST, connections: N });
    await server.waitFor('listening');
    const clientPorts: number[] = [];
    for (let i = 0; i < N; i++) {
      const c = startPeer(sleep.netns, { mode: 'client', host: httpbin.ipv4, port: 8000, write: REQUEST });
      clientPorts.push((await c.waitFor('connected')).localPort as number);
      assert.equal((await c.waitFor('done')).received, RESPONSE, `client ${i} got the whole answer`);
    }
    assert.equal(await server.exit(), 0);
    for (let i = 0; i < REFUSED; i++) {
      const r = startPeer(sleep.netns, { mode: 'refused', host: httpbin.ipv4, port: 8001 });
      assert.equal((await r.waitFor('error')).code, 'ECONNREFUSED');
    }

    const ours = (s: ReceivedSpan): boolean => s.attributes['server.address'] === httpbin.ipv4 && s.attributes['client.address'] === sleep.ipv4;
    const spans = await waitFor(
      `${2 * N + REFUSED} spans at the OTLP receiver`,
      () => {
        const got = otlp!.spans().filter(ours);
        return got.length >= 2 * N + REFUSED ? got : undefined;
      },
      20_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; got ${otlp!.spans().filter(ours).length}; agent stderr: ${stderr.slice(-3000)}`);
    });
    const t1 = BigInt(Date.now()) * 1_000_000n;
    // Nothing more arrives later (no duplicates): flushes are 100 ms apart.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(otlp!.spans().filter(ours).length, 2 * N + REFUSED, 'no further spans');

    const clients = spans.filter((s) => s.kind === 'SPAN_KIND_CLIENT' && s.attributes['server.port'] === 8000);
    const servers = spans.filter((s) => s.kind === 'SPAN_KIND_SERVER');
    const failed = spans.filter((s) => s.attributes['server.port'] === 8001);
    assert.equal(clients.length, N, `${N} CLIENT spans`);
    assert.equal(servers.length, N, `${N} SERVER spans`);
    assert.equal(failed.length, REFUSED, `${REFUSED} spans of refused connects`);
    assert.deepEqual(clients.map((s) => s.attributes['client.port']).sort(), [...clientPorts].sort(), 'one CLIENT span per client socket');
    assert.equal(new Set(clients.map((s) => s.traceId)).size, N, `${N} distinct traces`);

    const logs = otlp!.logs().filter((l) => l.attributes['source.address'] === sleep.ipv4 && l.attributes['destination.address'] === httpbin.ipv4);
    for (const c of clients) {
      const what = `connection from port ${String(c.attributes['client.port'])}`;
      const s = servers.filter((x) => x.traceId === c.traceId);
      assert.equal(s.length, 1, `${what}: one SERVER span in its trace`);
      const sv = s[0]!;
      assert.equal(c.parentSpanId, '', `${what}: the CLIENT span is the root`);
      assert.equal(sv.parentSpanId, c.spanId, `${what}: the SERVER span is the CLIENT span's child`);
      assert.notEqual(sv.spanId, c.spanId, `${what}: two spans`);
      assert.equal(c.name, `tcp connect httpbin:8000`, `${what}: client span name: the destination workload`);
      assert.equal(sv.name, `tcp accept httpbin:8000`, `${what}: server span name`);
      assert.equal(c.statusCode, 'STATUS_CODE_UNSET', `${what}: client status`);
      assert.equal(sv.statusCode, 'STATUS_CODE_UNSET', `${what}: server status`);
      // Bytes, exact, each from its own socket.
      assert.equal(c.attributes['kmesh.sent_bytes'], REQUEST, `${what}: client sent`);
      assert.equal(c.attributes['kmesh.received_bytes'], RESPONSE, `${what}: client received`);
      assert.equal(sv.attributes['kmesh.sent_bytes'], RESPONSE, `${what}: server sent`);
      assert.equal(sv.attributes['kmesh.received_bytes'], REQUEST, `${what}: server received`);
      // Semantic-convention tuple of each socket.
      assert.equal(c.attributes['network.transport'], 'tcp');
      assert.equal(c.attributes['network.type'], 'ipv4');
      assert.equal(c.attributes['network.peer.address'], httpbin.ipv4, `${what}: client's peer is the server`);
      assert.equal(c.attributes['network.local.address'], sleep.ipv4);
      assert.equal(sv.attributes['network.peer.address'], sleep.ipv4, `${what}: server's peer is the client`);
      assert.equal(sv.attributes['network.local.port'], 8000);
      // The k8s identities of both ends, on both spans.
      for (const [x, side] of [[c, 'client'], [sv, 'server']] as const) {
        assert.equal(x.attributes['source.k8s.pod.name'], SLEEP_POD, `${what}: ${side} span, source pod`);
        assert.equal(x.attributes['destination.k8s.pod.name'], HTTPBIN_POD, `${what}: ${side} span, destination pod`);
        assert.equal(x.attributes['source.k8s.deployment.name'], 'sleep', `${what}: ${side} span, source workload`);
        assert.equal(x.attributes['destination.k8s.deployment.name'], 'httpbin', `${what}: ${side} span, destination workload`);
        assert.equal(x.attributes['src.workload'], undefined, `${what}: ${side} span, no Kmesh access-log keys`);
      }
      // Durations: inside the test's window, and exactly the life the access log records for that socket.
      for (const [x, dir] of [[c, 'OUTBOUND'], [sv, 'INBOUND']] as const) {
        const start = ns(x.startTimeUnixNano);
        const end = ns(x.endTimeUnixNano);
        assert.ok(start >= t0 - 1_000_000_000n && end <= t1 && end > start, `${what} ${dir}: [${start}, ${end}] within the test`);
        const log = logs.filter((l) => l.attributes.direction === dir && l.attributes['source.port'] === c.attributes['client.port'] && l.attributes.event === 'close');
        assert.equal(log.length, 1, `${what} ${dir}: one close record in the access log`);
        assert.equal(log[0]!.timeUnixNano, x.endTimeUnixNano, `${what} ${dir}: the span ends at the close`);
        assert.equal(Number(end - start) / 1e6, log[0]!.attributes.duration, `${what} ${dir}: span duration = the connection's life`);
      }
      assert.ok(ns(sv.startTimeUnixNano) >= ns(c.startTimeUnixNano), `${what}: the server establishes after the client`);
    }

    for (const f of failed) {
      assert.equal(f.kind, 'SPAN_KIND_CLIENT', 'a refused connect is a CLIENT span');
      assert.equal(f.statusCode, 'STATUS_CODE_ERROR');
      assert.equal(f.statusMessage, 'ECONNREFUSED');
      assert.equal(f.attributes['error.type'], 'ECONNREFUSED');
      assert.equal(f.attributes['kmesh.response_flags'], 'UF');
      assert.equal(f.parentSpanId, '');
      assert.ok(ns(f.endTimeUnixNano) >= ns(f.startTimeUnixNano), 'the attempt has a start before its end');
    }
    assert.equal(new Set(failed.map((f) => f.traceId)).size, REFUSED, 'each refused connect its own trace');

    // debug: one line per span.
    await waitFor('debug span lines on stdout', () => (stdout.split('\n').filter((l) => l.startsWith('span: ') && l.includes(`dst.addr=${httpbin.ipv4}:`)).length >= 2 * N + REFUSED ? true : undefined), 10_000);
    const lines = stdout.split('\n').filter((l) => l.startsWith('span: ') && l.includes(`dst.addr=${httpbin.ipv4}:`));
    assert.equal(lines.length, 2 * N + REFUSED, 'one debug line per span');
    for (const c of clients) assert.equal(lines.filter((l) => l.includes(`trace_id=${c.traceId}`)).length, 2, 'both spans of a trace on the console');

    // The same connections in the semconv metrics (cumulative; the newest point of each series).
    const mine = (p: ReceivedPoint): boolean => p.attributes['destination.k8s.pod.name'] === HTTPBIN_POD && p.attributes['client.service.name'] === 'sleep';
    const latest = (metric: string, reporter: string, extra: Record<string, unknown> = {}): ReceivedPoint | undefined =>
      otlp!
        .points()
        .filter((p) => p.metric === metric && mine(p) && p.attributes['kmesh.reporter'] === reporter && Object.entries(extra).every(([k, v]) => p.attributes[k] === v))
        .at(-1);
    await waitFor(
      'semconv metrics of every connection',
      () => (latest('kmesh.tcp.connection.duration', 'destination')?.value === N && latest('kmesh.tcp.connection.failed', 'source')?.value === REFUSED ? true : undefined),
      10_000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; got ${JSON.stringify(otlp!.points().filter(mine).map((p) => [p.metric, p.attributes['kmesh.reporter'], p.value]))}`);
    });
    const identity = {
      'client.service.name': 'sleep',
      'server.service.name': 'httpbin',
      'source.k8s.namespace.name': 'default',
      'destination.k8s.namespace.name': 'default',
      'destination.address': httpbin.ipv4,
      'network.transport': 'tcp',
    };
    for (const [metric, reporter, value, unit] of [
      ['kmesh.tcp.connection.opened', 'source', N, '{connection}'],
      ['kmesh.tcp.connection.closed', 'destination', N, '{connection}'],
      ['kmesh.tcp.sent', 'source', N * REQUEST, 'By'],
      ['kmesh.tcp.received', 'source', N * RESPONSE, 'By'],
      ['kmesh.tcp.sent', 'destination', N * RESPONSE, 'By'],
      ['kmesh.tcp.received', 'destination', N * REQUEST, 'By'],
    ] as const) {
      const p = latest(metric, reporter);
      assert.ok(p !== undefined, `${metric} (${reporter}) exported`);
      assert.equal(p.value, value, `${metric} (${reporter}): exact`);
      assert.equal(p.unit, unit, `${metric}: unit in the metadata`);
      for (const [k, v] of Object.entries(identity)) assert.equal(p.attributes[k], v, `${metric} (${reporter}): ${k}`);
    }
    const refusedPoint = latest('kmesh.tcp.connection.failed', 'source')!;
    assert.equal(refusedPoint.attributes['error.type'], 'ECONNREFUSED', 'the refused connects by their error.type');
    for (const [reporter, side] of [['source', clients], ['destination', servers]] as const) {
      const d = latest('kmesh.tcp.connection.duration', reporter)!;
      assert.equal(d.unit, 's');
      assert.equal(d.value, N, `${reporter}: one duration per connection`);
      const spanSeconds = side.reduce((sum, x) => sum + Number(ns(x.endTimeUnixNano) - ns(x.startTimeUnixNano)) / 1e9, 0);
      assert.ok(Math.abs(d.sum! - spanSeconds) < 1e-6, `${reporter}: durations in seconds, equal to the spans' (${d.sum} vs ${spanSeconds})`);
    }
    assert.ok(!otlp!.points().some((p) => p.metric.startsWith('kmesh_tcp_')), 'the semconv exporter sends no Kmesh-named family');
  });
});
