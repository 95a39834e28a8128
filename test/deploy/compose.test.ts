/**
 * The docker-compose stack: the compose file and Prometheus config pass their
 * own tools' offline validators (Debian's docker-compose 1.29 and promtool),
 * the agent's config passes the agent's validator, and the services agree
 * with each other on ports, paths and endpoints.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import {
  EXPECTED_CAPABILITIES,
  NETNS_MOUNT,
  composeDir,
  composeFile,
  portOf,
  readText,
  repoRoot,
  runTool,
  validateConfigText,
} from './expected.js';
import { agentSpanAttributes } from './spanAttributes.js';

type Obj = Record<string, unknown>;
const obj = (v: unknown, what: string): Obj => {
  assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), `${what} must be a mapping`);
  return v as Obj;
};
const arr = (v: unknown, what: string): unknown[] => {
  assert.ok(Array.isArray(v), `${what} must be a list`);
  return v;
};

const compose = obj(parse(readText(composeFile)), 'docker-compose.yml');
const services = obj(compose.services, 'services');
const agent = obj(services['kmesh-otel'], 'services.kmesh-otel');
const agentConfigPath = join(composeDir, 'kmesh-otel', 'config.yaml');
const agentConfig = obj(parse(readText(agentConfigPath)), 'kmesh-otel config');
const collectorConfig = obj(parse(readText(join(composeDir, 'otel-collector', 'config.yaml'))), 'collector config');
const prometheusConfigPath = join(composeDir, 'prometheus', 'prometheus.yml');
const prometheusConfig = obj(parse(readText(prometheusConfigPath)), 'prometheus.yml');

/** `${NAME:-default}` → default; anything else as is. */
function composeDefault(value: string): string {
  const m = /^\$\{[A-Z0-9_]+:-(.*)\}$/.exec(value);
  return m === null ? value : m[1]!;
}

/** `source:target[:mode]` short-syntax volumes of a service. */
function volumes(service: Obj, name: string): Array<{ source: string; target: string; readOnly: boolean }> {
  return arr(service.volumes ?? [], `services.${name}.volumes`).map((v) => {
    assert.equal(typeof v, 'string', `services.${name}.volumes: use the short syntax source:target[:ro]`);
    const [source, target, mode] = (v as string).split(':');
    assert.ok(source && target, `services.${name}.volumes: "${String(v)}" needs source and target`);
    return { source, target, readOnly: mode === 'ro' };
  });
}

/** Every scrape target of a job, as written. */
function scrapeTargets(job: string): string[] {
  const jobs = arr(prometheusConfig.scrape_configs, 'scrape_configs').map((j) => obj(j, 'scrape config'));
  const found = jobs.find((j) => j.job_name === job);
  assert.ok(found !== undefined, `prometheus.yml: no scrape job "${job}"`);
  return arr(found.static_configs, `${job}.static_configs`).flatMap((s) => arr(obj(s, 'static_config').targets, 'targets') as string[]);
}

describe('docker-compose.yml', () => {
  it('passes `docker-compose config -q`', () => {
    const r = runTool('docker-compose', ['-f', composeFile, 'config', '-q']);
    assert.equal(r.status, 0, `docker-compose config failed:\n${r.stderr}${r.stdout}`);
  });

  it('is checked by a validator that rejects a bad file (control)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-compose-'));
    try {
      const bad = join(dir, 'docker-compose.yml');
      writeFileSync(bad, 'version: "3.8"\nservices:\n  x:\n    image: busybox:1.36\n    cap_addd: [BPF]\n');
      const r = runTool('docker-compose', ['-f', bad, 'config', '-q'], { cwd: dir });
      assert.notEqual(r.status, 0, 'docker-compose accepted an unknown service key');
      assert.match(r.stderr, /cap_addd/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has the whole stack, every image but the agent pinned to a version', () => {
    assert.deepEqual(Object.keys(services).sort(), ['grafana', 'kmesh-otel', 'loki', 'otel-collector', 'prometheus', 'tempo']);
    for (const [name, svc] of Object.entries(services)) {
      if (name === 'kmesh-otel') continue;
      const image = obj(svc, name).image;
      assert.equal(typeof image, 'string', `services.${name}.image`);
      const tag = /:([^/:]+)$/.exec(image as string)?.[1];
      assert.ok(tag !== undefined && tag !== 'latest' && /\d/.test(tag), `services.${name}.image "${String(image)}" must pin a version tag`);
    }
  });

  it('mounts only files and directories that exist in the repository', () => {
    for (const [name, svc] of Object.entries(services)) {
      for (const v of volumes(obj(svc, name), name)) {
        if (isAbsolute(v.source)) continue; // host paths (/sys/...)
        const path = resolve(repoRoot, v.source);
        assert.ok(existsSync(path), `services.${name}: ${v.source} does not exist`);
      }
    }
  });

  it('builds the agent from the Dockerfile and runs it with its compose config', () => {
    const build = obj(agent.build, 'services.kmesh-otel.build');
    assert.equal(build.context, '.');
    assert.ok(existsSync(join(repoRoot, 'Dockerfile')), 'Dockerfile missing');
    const command = arr(agent.command, 'services.kmesh-otel.command') as string[];
    const configTarget = command[command.indexOf('--config') + 1];
    assert.ok(configTarget !== undefined, 'command must pass --config');
    const mount = volumes(agent, 'kmesh-otel').find((v) => v.target === configTarget);
    assert.ok(mount !== undefined, `nothing is mounted at ${configTarget}`);
    assert.equal(resolve(repoRoot, mount.source), agentConfigPath);
  });

  it('gives the agent the host namespaces, exactly the expected capabilities and not privileged', () => {
    assert.equal(agent.network_mode, 'host');
    assert.equal(agent.pid, 'host');
    assert.notEqual(agent.privileged, true, 'the agent must not run privileged');
    assert.deepEqual([...(arr(agent.cap_add, 'cap_add') as string[])].sort(), [...EXPECTED_CAPABILITIES].sort());
  });

  it('mounts bpffs, the host cgroup v2 root, kernel BTF and /run/netns read-only, and points the receiver at the cgroup mount', () => {
    const v = volumes(agent, 'kmesh-otel');
    const bySource = new Map(v.map((m) => [m.source, m]));
    for (const source of ['/sys/fs/bpf', '/sys/fs/cgroup', '/sys/kernel/btf', '/run/netns']) {
      const m = bySource.get(source);
      assert.ok(m !== undefined, `host path ${source} is not mounted`);
      assert.ok(m.readOnly, `${source} must be mounted read-only`);
    }
    assert.equal(bySource.get('/sys/fs/bpf')!.target, '/sys/fs/bpf');
    assert.equal(bySource.get('/sys/kernel/btf')!.target, '/sys/kernel/btf');
    assert.equal(bySource.get('/run/netns')!.target, NETNS_MOUNT, 'where the per-namespace sources look by default');
    const cgroupTarget = bySource.get('/sys/fs/cgroup')!.target;
    assert.notEqual(cgroupTarget, '/sys/fs/cgroup', 'mount the host cgroup root away from the container\'s own /sys/fs/cgroup');
    const env = obj(agent.environment, 'services.kmesh-otel.environment');
    assert.equal(composeDefault(String(env.KMESH_OTEL_CGROUP_PATH)), cgroupTarget);
    const ebpf = obj(obj(agentConfig.receivers, 'receivers').ebpf, 'receivers.ebpf');
    assert.match(String(ebpf.cgroup_path), /\$\{env:KMESH_OTEL_CGROUP_PATH/);
  });

  it('has a health check on the agent\'s health_check endpoint', () => {
    const hc = obj(obj(agentConfig.extensions, 'extensions').health_check, 'extensions.health_check');
    const port = portOf(String(hc.endpoint));
    const test = (arr(obj(agent.healthcheck, 'healthcheck').test, 'healthcheck.test') as string[]).join(' ');
    assert.ok(test.includes(`:${port}/healthz`), `healthcheck must probe :${port}/healthz: ${test}`);
  });
});

describe('deploy/compose/kmesh-otel/config.yaml', () => {
  const env = Object.fromEntries(
    Object.entries(obj(agent.environment, 'services.kmesh-otel.environment')).map(([k, v]) => [k, composeDefault(String(v))]),
  );

  it('passes `kmesh-otel validate` with the environment of the compose service', () => {
    const r = validateConfigText(readText(agentConfigPath), env);
    assert.equal(r.status, 0, `kmesh-otel validate failed:\n${r.stderr}${r.stdout}`);
  });

  it('would be rejected with a misspelt key (control)', () => {
    const broken = readText(agentConfigPath).replace('report_interval:', 'report_intervall:');
    assert.notEqual(broken, readText(agentConfigPath), 'the control needs report_interval in the config');
    const r = validateConfigText(broken, env);
    assert.equal(r.status, 2, `expected exit 2:\n${r.stderr}${r.stdout}`);
    assert.match(r.stderr, /receivers\.ebpf\.report_intervall/);
  });

  it('exports metrics to Prometheus and metrics and logs to the collector', () => {
    const pipelines = obj(obj(agentConfig.service, 'service').pipelines, 'service.pipelines');
    const metrics = obj(pipelines.metrics, 'pipelines.metrics');
    const logs = obj(pipelines.logs, 'pipelines.logs');
    assert.ok((metrics.exporters as string[]).includes('prometheus'), 'metrics must go to prometheus');
    assert.ok((metrics.exporters as string[]).includes('otlp'), 'metrics must go to otlp');
    assert.ok((logs.exporters as string[]).includes('otlp'), 'logs must go to otlp');
  });

  it('has a traces pipeline from the ebpf receiver through k8s_attributes to the collector', () => {
    const pipelines = obj(obj(agentConfig.service, 'service').pipelines, 'service.pipelines');
    const traces = obj(pipelines.traces, 'pipelines.traces');
    assert.deepEqual(traces.receivers, ['ebpf']);
    assert.deepEqual(traces.processors, ['k8s_attributes']);
    assert.deepEqual(traces.exporters, ['otlp'], 'spans go to the collector (and on to Tempo) over OTLP');
    // The same OTLP exporter as the other signals: the collector's OTLP/gRPC port (checked below).
    assert.match(String(obj(obj(agentConfig.exporters, 'exporters').otlp, 'exporters.otlp').endpoint), /\$\{env:KMESH_OTEL_OTLP_ENDPOINT/);
  });
});

describe('the compose services agree', () => {
  const exporters = obj(agentConfig.exporters, 'exporters');
  const collectorExporters = obj(collectorConfig.exporters, 'collector exporters');
  const collectorReceivers = obj(collectorConfig.receivers, 'collector receivers');

  it('Prometheus scrapes the agent on its prometheus exporter port through the host gateway', () => {
    const port = portOf(String(obj(exporters.prometheus, 'exporters.prometheus').endpoint));
    assert.deepEqual(scrapeTargets('kmesh-otel'), [`host.docker.internal:${port}`]);
    const extraHosts = arr(obj(services.prometheus, 'prometheus').extra_hosts, 'prometheus.extra_hosts');
    assert.ok(extraHosts.includes('host.docker.internal:host-gateway'), 'prometheus needs host.docker.internal mapped to the host gateway');
  });

  it('the agent reaches the collector\'s OTLP/gRPC receiver through a port published on loopback', () => {
    const agentEnv = obj(agent.environment, 'environment');
    const otlpEndpoint = composeDefault(String(agentEnv.KMESH_OTEL_OTLP_ENDPOINT));
    assert.match(String(obj(exporters.otlp, 'exporters.otlp').endpoint), /\$\{env:KMESH_OTEL_OTLP_ENDPOINT/);
    const grpc = obj(obj(obj(collectorReceivers.otlp, 'otlp').protocols, 'protocols').grpc, 'grpc');
    const port = portOf(String(grpc.endpoint));
    assert.equal(otlpEndpoint, `127.0.0.1:${port}`);
    const published = arr(obj(services['otel-collector'], 'otel-collector').ports, 'otel-collector.ports');
    assert.ok(published.includes(`127.0.0.1:${port}:${port}`), `otel-collector must publish 127.0.0.1:${port}:${port}`);
  });

  it('the collector\'s pipelines use only defined components and reach Loki, Tempo and Prometheus', () => {
    const pipelines = obj(obj(collectorConfig.service, 'service').pipelines, 'collector pipelines');
    const defined: Record<string, Obj> = {
      receivers: collectorReceivers,
      processors: obj(collectorConfig.processors, 'processors'),
      exporters: collectorExporters,
    };
    for (const [name, p] of Object.entries(pipelines)) {
      for (const kind of ['receivers', 'processors', 'exporters']) {
        for (const id of (obj(p, name)[kind] ?? []) as string[]) {
          assert.ok(id in defined[kind]!, `collector pipeline ${name}: ${kind} "${id}" is not defined`);
        }
      }
    }
    const exportersOf = (name: string): string[] => obj(pipelines[name], name).exporters as string[];
    const endpointOf = (id: string): string => String(obj(collectorExporters[id], id).endpoint);
    assert.ok(exportersOf('logs').some((id) => id.split('/')[0] === 'otlphttp' && endpointOf(id) === 'http://loki:3100/otlp'), 'logs must go to Loki\'s OTLP endpoint');
    assert.ok(exportersOf('traces').some((id) => id.split('/')[0] === 'otlp' && endpointOf(id).startsWith('tempo:')), 'traces must go to Tempo');
    const promExporter = exportersOf('metrics').find((id) => id.split('/')[0] === 'prometheus');
    assert.ok(promExporter !== undefined, 'metrics must go to a prometheus exporter');
    assert.deepEqual(scrapeTargets('otel-collector'), [`otel-collector:${portOf(endpointOf(promExporter))}`]);
  });

  it('Tempo receives OTLP/gRPC on the port the collector sends to', () => {
    const tempo = obj(parse(readText(join(composeDir, 'tempo', 'config.yaml'))), 'tempo config');
    const grpc = obj(
      obj(obj(obj(obj(tempo.distributor, 'distributor').receivers, 'receivers').otlp, 'otlp').protocols, 'protocols').grpc,
      'grpc',
    );
    const tempoExporter = Object.entries(collectorExporters).find(([, v]) => String(obj(v, 'exporter').endpoint).startsWith('tempo:'));
    assert.ok(tempoExporter !== undefined, 'no collector exporter to tempo');
    assert.equal(portOf(String(grpc.endpoint)), portOf(String(obj(tempoExporter[1], 'exporter').endpoint)));
  });

  it('Tempo\'s service graph is on and remote-writes to the compose Prometheus, which accepts remote writes', () => {
    const tempo = obj(parse(readText(join(composeDir, 'tempo', 'config.yaml'))), 'tempo config');
    const defaults = obj(obj(tempo.overrides, 'overrides').defaults, 'overrides.defaults');
    assert.deepEqual(obj(defaults.metrics_generator, 'overrides.defaults.metrics_generator').processors, ['service-graphs']);
    const generator = obj(tempo.metrics_generator, 'metrics_generator');
    const writes = arr(obj(generator.storage, 'metrics_generator.storage').remote_write, 'remote_write').map((w) => String(obj(w, 'remote_write entry').url));
    const promPort = portOf(String(arr(obj(services.prometheus, 'prometheus').ports, 'prometheus.ports')[0]).split(':').slice(-2).join(':'));
    assert.deepEqual(writes, [`http://prometheus:${promPort}/api/v1/write`]);
    const promArgs = arr(obj(services.prometheus, 'prometheus').command, 'prometheus.command');
    assert.ok(promArgs.includes('--web.enable-remote-write-receiver'), 'Prometheus must accept remote writes');
    // The service map of Grafana's Tempo data source reads those series from Prometheus.
    const ds = (parse(readText(join(composeDir, 'grafana', 'provisioning', 'datasources', 'datasources.yaml'))) as { datasources: Obj[] }).datasources;
    const tempoDs = ds.find((d) => d.type === 'tempo');
    const promDs = ds.find((d) => d.type === 'prometheus');
    assert.equal(obj(obj(tempoDs?.jsonData, 'tempo jsonData').serviceMap, 'serviceMap').datasourceUid, promDs?.uid);
  });

  it('the collector names each span\'s node after the end it describes, with attributes the agent sets', () => {
    const pipelines = obj(obj(collectorConfig.service, 'service').pipelines, 'collector pipelines');
    const procs = obj(pipelines.traces, 'traces').processors as string[];
    const t = procs.indexOf('transform/connection_ends');
    const g = procs.indexOf('groupbyattrs/connection_ends');
    assert.ok(t >= 0 && g > t, 'transform sets service.name per span, then groupbyattrs moves it to the resource');
    const processors = obj(collectorConfig.processors, 'processors');
    assert.deepEqual(obj(processors['groupbyattrs/connection_ends'], 'groupbyattrs').keys, ['service.name']);
    const statements = arr(obj(arr(obj(processors['transform/connection_ends'], 'transform').trace_statements, 'trace_statements')[0], 'statements').statements, 'statements') as string[];
    const known = agentSpanAttributes();
    let named = 0;
    for (const st of statements) {
      for (const m of st.matchAll(/attributes\["([^"]+)"\]/g)) {
        if (m[1] === 'service.name') continue;
        assert.ok(known.has(m[1]!), `"${m[1]}" is not an attribute the agent's spans carry (in: ${st})`);
        named++;
      }
      // CLIENT spans are named after the client (source.*), SERVER spans after the server (destination.*).
      if (st.includes('SPAN_KIND_CLIENT')) assert.doesNotMatch(st, /destination\./, st);
      if (st.includes('SPAN_KIND_SERVER')) assert.doesNotMatch(st, /source\./, st);
    }
    assert.ok(named >= 5, 'the statements read the agent\'s attributes');
  });

  it('Loki accepts OTLP (structured metadata on a v13 TSDB schema)', () => {
    const loki = obj(parse(readText(join(composeDir, 'loki', 'config.yaml'))), 'loki config');
    assert.equal(obj(loki.limits_config, 'limits_config').allow_structured_metadata, true);
    const schemas = arr(obj(loki.schema_config, 'schema_config').configs, 'schema_config.configs').map((c) => obj(c, 'schema'));
    const last = schemas.at(-1)!;
    assert.equal(last.schema, 'v13');
    assert.equal(last.store, 'tsdb');
    assert.equal(portOf(`x:${String(obj(loki.server, 'server').http_listen_port)}`), 3100);
  });
});

describe('deploy/compose/prometheus/prometheus.yml', () => {
  it('passes `promtool check config`', () => {
    const r = runTool('promtool', ['check', 'config', prometheusConfigPath]);
    assert.equal(r.status, 0, `promtool failed:\n${r.stderr}${r.stdout}`);
  });

  it('is checked by a validator that rejects a bad file (control)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-prom-'));
    try {
      const bad = join(dir, 'prometheus.yml');
      // The rule file it names comes along, so the bad duration is the only fault.
      writeFileSync(join(dir, 'kmesh-otel-alerts.yml'), readText(join(dirname(prometheusConfigPath), 'kmesh-otel-alerts.yml')));
      writeFileSync(bad, readText(prometheusConfigPath).replace('scrape_interval: 15s', 'scrape_interval: 15 seconds'));
      const r = runTool('promtool', ['check', 'config', bad]);
      assert.notEqual(r.status, 0, 'promtool accepted an invalid duration');
      assert.match(r.stdout + r.stderr, /duration/, 'promtool refused it for the duration');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
