import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

const root = join(import.meta.dirname, '..', '..');
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> };
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } };

// Issue 15: one OpenTelemetry JS line, on the runtime it needs.
describe('dependencies', () => {
  it('one version of each @opentelemetry package in the lock file, on the 3.x / 0.30x lines', () => {
    const versions = new Map<string, Set<string>>();
    for (const [path, p] of Object.entries(lock.packages)) {
      const name = path.split('node_modules/').at(-1)!;
      if (!name.startsWith('@opentelemetry/') || p.version === undefined) continue;
      if (!versions.has(name)) versions.set(name, new Set());
      versions.get(name)!.add(p.version);
    }
    assert.ok(versions.size > 5, 'OpenTelemetry packages found in the lock file');
    for (const [name, set] of versions) {
      assert.equal(set.size, 1, `${name}: ${[...set].join(', ')}`);
      const v = [...set][0]!;
      if (['core', 'resources', 'sdk-metrics', 'sdk-logs', 'sdk-trace'].includes(name.slice('@opentelemetry/'.length))) assert.match(v, /^3\./, `${name} ${v}`);
      else if (name.startsWith('@opentelemetry/exporter-') || name.startsWith('@opentelemetry/otlp-')) assert.match(v, /^0\.30\d\./, `${name} ${v}`);
    }
    assert.match([...versions.get('@opentelemetry/api')!][0]!, /^1\./);
  });

  it('runs on Node 24: engines, and the Node setup.sh installs', () => {
    assert.equal(pkg.engines.node, '>=24.0.0');
    assert.ok(Number(process.versions.node.split('.')[0]) >= 24, `this test runs on Node ${process.versions.node}`);
    const setup = readFileSync(join(root, 'scripts', 'setup.sh'), 'utf8');
    assert.match(setup, /^NODE_PKG_VERSION=24\.\d+\.\d+$/m);
  });

  it('the Dockerfile builds and runs on node:24 images pinned by digest', () => {
    const docker = readFileSync(join(root, 'Dockerfile'), 'utf8');
    const args = new Map([...docker.matchAll(/^ARG (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    const froms = [...docker.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]!.replace(/^\$\{(\w+)\}$/, (_, a: string) => args.get(a) ?? a));
    assert.equal(froms.length, 2, 'build and runtime stages');
    for (const image of froms) assert.match(image, /^node:24-bookworm(-slim)?@sha256:[0-9a-f]{64}$/, image);
  });
});
