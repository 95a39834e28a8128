import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { formatProblems, zodProblems } from '../../../src/config/errors.js';
import { createDefaultEbpfReceiverConfig, defaultBpfObjectPath, ebpfReceiverConfigSchema } from '../../../src/receiver/ebpf/config.js';

const testdata = (name: string): unknown => parse(readFileSync(new URL(`./testdata/${name}`, import.meta.url), 'utf8'));

function problems(input: unknown): string {
  const r = ebpfReceiverConfigSchema.safeParse(input);
  assert.equal(r.success, false, 'expected a validation error');
  return formatProblems(zodProblems(['receivers', 'ebpf'], r.error!));
}

describe('ebpf receiver config', () => {
  it('has documented defaults', () => {
    assert.deepEqual(createDefaultEbpfReceiverConfig(), {
      report_interval: 5000,
      drain_interval: 100,
      wakeup_bytes: 65536,
      bpf_object: defaultBpfObjectPath(),
      connection_ttl: 15000,
      max_connections: 262144,
      log_periodic_reports: true,
      periodic_source: 'auto',
      proc_path: '/proc',
      netns_dirs: ['/run/netns'],
      traces: { sampling_ratio: 1, trace_id_key: '' },
    });
    assert.equal(createDefaultEbpfReceiverConfig().traces.keep_longer_than, undefined, 'no duration rule by default');
    assert.equal(createDefaultEbpfReceiverConfig().cgroup_path, undefined, 'auto-detected at start');
  });

  it('defaults bpf_object to the repository object, from the source tree', () => {
    assert.equal(defaultBpfObjectPath(), new URL('../../../bpf/tcp_probe.bpf.o', import.meta.url).pathname);
    assert.ok(existsSync(new URL('../../../bpf/include/record.h', import.meta.url)));
  });

  it('reads every field from YAML, durations in ms', () => {
    assert.deepEqual(ebpfReceiverConfigSchema.parse(testdata('config.yaml')), {
      cgroup_path: '/sys/fs/cgroup/unified',
      report_interval: 10_000,
      drain_interval: 50,
      wakeup_bytes: 32768,
      bpf_object: '/opt/kmesh-otel/bpf/tcp_probe.bpf.o',
      connection_ttl: 60_000,
      max_connections: 1000,
      log_periodic_reports: false,
      periodic_source: 'sock_diag',
      proc_path: '/host/proc',
      netns_dirs: ['/run/netns', '/var/run/docker/netns'],
      traces: { sampling_ratio: 0.25, keep_longer_than: 30_000, trace_id_key: 'cluster-secret' },
    });
  });

  it('accepts an empty body (null in YAML is the service\'s business; {} here)', () => {
    assert.equal(ebpfReceiverConfigSchema.parse({}).report_interval, 5000);
  });

  it('derives connection_ttl from report_interval', () => {
    assert.equal(ebpfReceiverConfigSchema.parse({ report_interval: '1m' }).connection_ttl, 180_000);
  });

  it('rejects unknown keys by name (typo fixture)', () => {
    assert.equal(problems(testdata('typo.yaml')), 'receivers.ebpf.report_intervall: unknown key');
  });

  it('names the offending key of bad values', () => {
    assert.match(problems({ wakeup_bytes: 0 }), /^receivers\.ebpf\.wakeup_bytes: /);
    assert.match(problems({ max_connections: 1.5 }), /^receivers\.ebpf\.max_connections: /);
    assert.match(problems({ report_interval: 'soon' }), /^receivers\.ebpf\.report_interval: /);
    assert.match(problems({ report_interval: 0 }), /^receivers\.ebpf\.report_interval: must be greater than 0/);
    assert.match(problems({ log_periodic_reports: 'yes' }), /^receivers\.ebpf\.log_periodic_reports: /);
    assert.match(problems({ traces: { sampling_ratio: 1.5 } }), /^receivers\.ebpf\.traces\.sampling_ratio: /);
    assert.equal(problems({ traces: { sampling_rate: 0.5 } }), 'receivers.ebpf.traces.sampling_rate: unknown key');
    assert.match(problems({ cgroup_path: '' }), /^receivers\.ebpf\.cgroup_path: /);
    assert.match(problems({ periodic_source: 'task_file' }), /^receivers\.ebpf\.periodic_source: .*"auto"\|"sk_storage_iter"\|"tcp_iter"\|"sock_diag"\|"rtt_cb"\|"none"/);
    assert.match(problems({ netns_dirs: '/run/netns' }), /^receivers\.ebpf\.netns_dirs: /);
  });

  it('requires connection_ttl to exceed report_interval', () => {
    assert.equal(
      problems({ report_interval: '10s', connection_ttl: '10s' }),
      'receivers.ebpf.connection_ttl: must be longer than report_interval (10000ms), or live connections expire between reports',
    );
  });
});
