/**
 * The Prometheus alert rules shipped for data loss (issue 19):
 * `promtool check rules`, the rules' unit tests (`promtool test rules`,
 * with a control that a broken rule fails them), every self-metric they
 * read exists in the sources, and the compose Prometheus loads them.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { composeDir, composeFile, isSelfMetric, readText, runTool } from './expected.js';

const promDir = join(composeDir, 'prometheus');
const rulesPath = join(promDir, 'kmesh-otel-alerts.yml');
const testsPath = join(promDir, 'kmesh-otel-alerts.test.yml');
const rules = parse(readText(rulesPath)) as { groups: Array<{ name: string; rules: Array<{ alert: string; expr: string }> }> };
const alerts = rules.groups.flatMap((g) => g.rules);

describe('deploy/compose/prometheus/kmesh-otel-alerts.yml', () => {
  it('passes `promtool check rules`', () => {
    const r = runTool('promtool', ['check', 'rules', rulesPath]);
    assert.equal(r.status, 0, `promtool failed:\n${r.stderr}${r.stdout}`);
    assert.match(r.stdout, new RegExp(`SUCCESS: ${alerts.length} rules found`));
  });

  it('passes its unit tests (`promtool test rules`), which test every alert', () => {
    const r = runTool('promtool', ['test', 'rules', testsPath], { cwd: promDir });
    assert.equal(r.status, 0, `promtool test rules failed:\n${r.stderr}${r.stdout}`);
    const tested = new Set([...readText(testsPath).matchAll(/alertname: (\w+)/g)].map((m) => m[1]));
    for (const a of alerts) assert.ok(tested.has(a.alert), `${a.alert} has no unit test`);
  });

  it('its unit tests fail when a rule is broken (control)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-alerts-'));
    try {
      // The kernel-loss alert now needs more than 1,000 lost records: the test expecting it at 120 must fail.
      writeFileSync(join(dir, 'kmesh-otel-alerts.yml'), readText(rulesPath).replace('(increase(kmesh_otel_ebpf_kernel_lost_records_total[5m])) > 0', '(increase(kmesh_otel_ebpf_kernel_lost_records_total[5m])) > 1000'));
      copyFileSync(testsPath, join(dir, 'kmesh-otel-alerts.test.yml'));
      const r = runTool('promtool', ['test', 'rules', 'kmesh-otel-alerts.test.yml'], { cwd: dir });
      assert.notEqual(r.status, 0, 'promtool test rules passed with a broken rule');
      assert.match(r.stdout + r.stderr, /KmeshOtelKernelRecordsLost/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads only self-metrics the agent defines', () => {
    let named = 0;
    for (const a of alerts) {
      for (const m of a.expr.matchAll(/\bkmesh_[a-z0-9_]+\b/g)) {
        assert.ok(isSelfMetric(m[0]), `${a.alert}: ${m[0]} is not a self-metric of the agent`);
        named++;
      }
    }
    assert.ok(named >= 10);
  });

  it('is loaded by the compose Prometheus (rule_files, and mounted next to prometheus.yml)', () => {
    const cfg = parse(readText(join(promDir, 'prometheus.yml'))) as { rule_files?: string[] };
    assert.deepEqual(cfg.rule_files, ['kmesh-otel-alerts.yml']);
    const prom = (parse(readText(composeFile)) as { services: { prometheus: { volumes: string[] } } }).services.prometheus;
    assert.ok(prom.volumes.includes('./deploy/compose/prometheus/kmesh-otel-alerts.yml:/etc/prometheus/kmesh-otel-alerts.yml:ro'));
    assert.ok(prom.volumes.includes('./deploy/compose/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro'));
  });
});
