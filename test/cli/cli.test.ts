import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { pino } from 'pino';
import { runCli, type CliDeps } from '../../src/cli.js';
import type { Factory } from '../../src/component/component.js';
import { healthCheckExtensionFactory } from '../../src/extension/health_check/factory.js';
import { packageRoot, packageVersion } from '../../src/paths.js';
import { fakeFactories, fakeReceivers } from '../helpers/fakeComponents.js';

const factories = [...fakeFactories, healthCheckExtensionFactory] as unknown as Factory[];
const dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const validYaml = `
receivers: {fake: }
exporters: {collect: }
service: {pipelines: {metrics: {receivers: [fake], exporters: [collect]}}}`;

interface Harness {
  deps: CliDeps;
  out: string[];
  err: string[];
  signal: (name: string) => void;
  forced: number[];
  started: Promise<void>;
}

function harness(): Harness {
  const out: string[] = [];
  const err: string[] = [];
  const forced: number[] = [];
  let handler: ((s: string) => void) | undefined;
  let markStarted: () => void = () => undefined;
  const started = new Promise<void>((r) => (markStarted = r));
  const deps: CliDeps = {
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
    env: {},
    cwd: dir,
    factories,
    onSignal: (h) => {
      handler = h;
      return () => (handler = undefined);
    },
    forceExit: (code) => forced.push(code),
    logDestination: pino.destination({ dest: '/dev/null', sync: true }),
    onStarted: () => markStarted(),
  };
  return { deps, out, err, forced, started, signal: (s) => handler?.(s) };
}

describe('kmesh-otel CLI (in process)', () => {
  it('validate: exit 0 on a valid config', async () => {
    const f = join(dir, 'ok.yaml');
    writeFileSync(f, validYaml);
    const h = harness();
    assert.equal(await runCli(['validate', '--config', f], h.deps), 0);
    assert.equal(h.out.join(''), `${f}: configuration is valid\n`);
  });

  it('validate: exit 2 naming the offending key path', async () => {
    const f = join(dir, 'typo.yaml');
    writeFileSync(f, validYaml.replace('collect: }', 'collect: {endpointt: x}}'));
    const h = harness();
    assert.equal(await runCli(['validate', '-c', f], h.deps), 2);
    assert.equal(h.err.join(''), `${f}: invalid configuration:\nexporters.collect.endpointt: unknown key\n`);
  });

  it('validate: exit 2 when the file does not exist', async () => {
    const h = harness();
    assert.equal(await runCli(['validate', '--config', join(dir, 'missing.yaml')], h.deps), 2);
    assert.match(h.err.join(''), /cannot read config file .*missing\.yaml: ENOENT/);
  });

  it('--version and --help exit 0; an unknown option exits 2', async () => {
    let h = harness();
    assert.equal(await runCli(['--version'], h.deps), 0);
    assert.equal(h.out.join(''), `${packageVersion}\n`);
    h = harness();
    assert.equal(await runCli(['--help'], h.deps), 0);
    assert.match(h.out.join(''), /Usage: kmesh-otel \[options\] \[command\]/);
    assert.match(h.out.join(''), /validate \[options\]/);
    assert.match(h.out.join(''), /--log-level <level>/);
    h = harness();
    assert.equal(await runCli(['--bogus'], h.deps), 2);
    assert.match(h.err.join(''), /unknown option '--bogus'/);
  });

  it('runs the agent; the first signal shuts down gracefully with exit 0', async () => {
    const f = join(dir, 'run.yaml');
    writeFileSync(f, validYaml);
    const h = harness();
    const done = runCli(['--config', f, '--log-level', 'debug'], h.deps);
    await h.started;
    const r = fakeReceivers.get('fake')!;
    assert.equal(r.started, 1);
    h.signal('SIGTERM');
    assert.equal(await done, 0);
    assert.equal(r.stopped, 1);
    assert.deepEqual(h.forced, []);
  });

  it('a second signal forces the exit', async () => {
    const f = join(dir, 'run2.yaml');
    writeFileSync(f, validYaml);
    const h = harness();
    const done = runCli(['--config', f], h.deps);
    await h.started;
    h.signal('SIGINT');
    h.signal('SIGINT');
    assert.deepEqual(h.forced, [130]);
    assert.equal(await done, 0);
  });

  it('run: an invalid config exits 2 before starting anything', async () => {
    const f = join(dir, 'bad-run.yaml');
    writeFileSync(f, validYaml.replace('[collect]', '[otlp/x]'));
    const h = harness();
    assert.equal(await runCli(['--config', f], h.deps), 2);
    assert.match(h.err.join(''), /service\.pipelines\.metrics\.exporters\[0\]: no exporter "otlp\/x" is defined/);
  });
});

describe('kmesh-otel CLI (real process)', () => {
  // The built command, as users run it (npm run build, which npm ci runs).
  const main = join(packageRoot, 'dist', 'src', 'main.js');
  const run = (args: string[]) => {
    assert.ok(existsSync(main), `${main} is missing: run npm run build`);
    return spawnSync(process.execPath, [main, ...args], { cwd: dir, encoding: 'utf8', timeout: 30_000 });
  };

  it('validates the embedded default config', () => {
    const r = run(['validate']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${join(packageRoot, 'otel-config.yaml')}: configuration is valid\n`);
  });

  it('exits 2 and names exporters.prometheus.endpointt', () => {
    const f = join(dir, 'prom-typo.yaml');
    writeFileSync(
      f,
      `receivers: {ebpf: }
exporters: {prometheus: {endpointt: "0.0.0.0:1"}}
service: {pipelines: {metrics: {receivers: [ebpf], exporters: [prometheus]}}}`,
    );
    const r = run(['validate', '--config', f]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^exporters\.prometheus\.endpointt: unknown key$/m);
  });
});
