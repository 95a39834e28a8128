/**
 * The Grafana provisioning of the compose stack: data sources, the dashboard
 * provider, and a dashboard whose every query names metric families the agent
 * really exports (src/metrics/schema.ts) and whose access-log panel selects
 * the service name the agent really reports (src/service/resource.ts agentResource).
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { agentResource } from '../../src/service/resource.js';
import { KMESH_FAMILIES } from '../../src/metrics/schemas/kmesh.js';
import { composeDir, composeFile, readText } from './expected.js';

interface Target {
  refId?: string;
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}

const grafanaDir = join(composeDir, 'grafana');
const dashboardPath = join(grafanaDir, 'dashboards', 'kmesh-otel.json');
const dashboard = JSON.parse(readText(dashboardPath)) as {
  uid?: string;
  title?: string;
  panels?: Panel[];
  templating?: { list?: Array<{ name: string; query?: unknown; datasource?: { uid?: string } }> };
};
const datasources = (
  parse(readText(join(grafanaDir, 'provisioning', 'datasources', 'datasources.yaml'))) as { datasources: Array<{ uid: string; type: string; url: string }> }
).datasources;

/** Every metric family name the kmesh schema exposes. */
const families = new Set<string>(Object.values(KMESH_FAMILIES).map((f) => f.name));
const histogramFamilies = new Set<string>(
  Object.values(KMESH_FAMILIES)
    .filter((f) => f.type === 'histogram')
    .map((f) => f.name),
);

/** The family a series name in a query belongs to (histograms add _bucket/_sum/_count). */
function familyOf(series: string): string | undefined {
  if (families.has(series)) return series;
  const base = series.replace(/_(bucket|sum|count)$/, '');
  return histogramFamilies.has(base) ? base : undefined;
}

/** kmesh_* identifiers in a PromQL expression. */
function metricNamesIn(expr: string): string[] {
  return [...expr.matchAll(/\bkmesh_[a-z0-9_]+\b/g)].map((m) => m[0]);
}

function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

const panels = allPanels(dashboard.panels ?? []).filter((p) => p.type !== 'row');
const uidType = new Map(datasources.map((d) => [d.uid, d.type]));

describe('Grafana provisioning', () => {
  it('provisions Prometheus, Loki and Tempo at their compose service addresses', () => {
    const byType = new Map(datasources.map((d) => [d.type, d]));
    assert.equal(byType.get('prometheus')?.url, 'http://prometheus:9090');
    assert.equal(byType.get('loki')?.url, 'http://loki:3100');
    assert.equal(byType.get('tempo')?.url, 'http://tempo:3200');
    assert.equal(new Set(datasources.map((d) => d.uid)).size, datasources.length, 'data source uids must be unique');
  });

  it('has a dashboard provider reading the directory docker-compose.yml mounts the dashboards at', () => {
    const providers = (
      parse(readText(join(grafanaDir, 'provisioning', 'dashboards', 'dashboards.yaml'))) as { providers: Array<{ options: { path: string } }> }
    ).providers;
    assert.equal(providers.length, 1);
    const grafana = (parse(readText(composeFile)) as { services: { grafana: { volumes: string[] } } }).services.grafana;
    const mount = grafana.volumes.find((v) => v.startsWith('./deploy/compose/grafana/dashboards:'));
    assert.ok(mount !== undefined, 'grafana must mount deploy/compose/grafana/dashboards');
    assert.equal(mount.split(':')[1], providers[0]!.options.path);
    assert.ok(readdirSync(join(grafanaDir, 'dashboards')).includes('kmesh-otel.json'));
  });
});

describe('deploy/compose/grafana/dashboards/kmesh-otel.json', () => {
  it('parses and has a uid, a title and panels', () => {
    assert.ok(typeof dashboard.uid === 'string' && dashboard.uid.length > 0);
    assert.ok(typeof dashboard.title === 'string' && dashboard.title.length > 0);
    assert.ok(panels.length >= 5, `expected at least 5 panels, found ${panels.length}`);
    const ids = allPanels(dashboard.panels ?? []).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids must be unique');
  });

  it('queries only provisioned data sources', () => {
    for (const p of panels) {
      for (const t of p.targets ?? []) {
        const uid = t.datasource?.uid ?? p.datasource?.uid;
        assert.ok(uid !== undefined && uidType.has(uid), `panel "${p.title}" target ${t.refId}: data source uid ${uid} is not provisioned`);
      }
    }
  });

  it('every Prometheus panel queries existing kmesh_tcp families, and nothing else named kmesh_', () => {
    for (const p of panels) {
      const targets = p.targets ?? [];
      assert.ok(targets.length > 0, `panel "${p.title}" has no query`);
      const type = uidType.get(p.datasource?.uid ?? '');
      if (type !== 'prometheus') continue;
      let named = 0;
      for (const t of targets) {
        assert.ok(typeof t.expr === 'string' && t.expr.length > 0, `panel "${p.title}" target ${t.refId} has no expr`);
        for (const series of metricNamesIn(t.expr)) {
          assert.ok(familyOf(series) !== undefined, `panel "${p.title}": ${series} is not a metric family of the agent`);
          named++;
        }
      }
      assert.ok(named > 0, `panel "${p.title}" names no kmesh_tcp metric family`);
    }
  });

  it('covers traffic, connections and failures by workload and by service', () => {
    const used = new Set(panels.flatMap((p) => (p.targets ?? []).flatMap((t) => metricNamesIn(t.expr ?? '').map(familyOf))));
    const f = KMESH_FAMILIES;
    for (const fam of [
      f.workloadSent, f.workloadReceived, f.serviceSent, f.serviceReceived,
      f.workloadOpened, f.workloadClosed, f.serviceOpened, f.serviceClosed,
      f.workloadFailed, f.serviceFailed,
    ]) {
      assert.ok(used.has(fam.name), `no panel shows ${fam.name}`);
    }
  });

  it('has an access-log panel on the agent\'s log records in Loki', async () => {
    const resource = await agentResource({ env: {}, version: '0.0.0', host: async () => ({}), otelEnv: () => ({}) });
    const serviceName = resource.attributes['service.name'];
    assert.equal(typeof serviceName, 'string');
    const logPanels = panels.filter((p) => p.type === 'logs');
    assert.equal(logPanels.length, 1, 'expected one logs panel');
    const lp = logPanels[0]!;
    assert.equal(uidType.get(lp.datasource?.uid ?? ''), 'loki', 'the logs panel must query Loki');
    // Loki's OTLP ingestion turns the resource attribute service.name into the stream label service_name.
    assert.ok(
      (lp.targets ?? []).some((t) => (t.expr ?? '').includes(`service_name="${String(serviceName)}"`)),
      `the logs panel must select {service_name="${String(serviceName)}"}`,
    );
  });

  it('uses only template variables it defines', () => {
    const defined = new Set((dashboard.templating?.list ?? []).map((v) => v.name));
    const texts = [
      ...panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')),
      ...(dashboard.templating?.list ?? []).map((v) => JSON.stringify(v.query ?? '')),
    ];
    for (const text of texts) {
      for (const m of text.matchAll(/\$(?:\{)?([A-Za-z_][A-Za-z0-9_]*)/g)) {
        const name = m[1]!;
        if (name.startsWith('__')) continue; // Grafana's built-ins ($__rate_interval, ...)
        assert.ok(defined.has(name), `$${name} is used but not defined (in: ${text})`);
      }
    }
    for (const v of dashboard.templating?.list ?? []) {
      for (const series of metricNamesIn(JSON.stringify(v.query ?? ''))) {
        assert.ok(familyOf(series) !== undefined, `variable $${v.name}: ${series} is not a metric family of the agent`);
      }
    }
  });
});
