// test-kind: kernel
// The doctor against the real kernel (root, BPF loaded and attached for real);
// the doctor's logic against fake kernels is in doctor.test.ts (a unit test).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { DoctorReport } from '../src/doctor.js';
import { packageRoot } from '../src/paths.js';
import type { PeriodicSourceKind } from '../src/receiver/ebpf/KernelSource.js';
import { PERIODIC_SOURCES } from '../src/receiver/ebpf/periodicSource.js';
import { attachedProgramIds, BPF_OBJECT, CGROUP_ROOT, kernelSkipReason, programExists } from './helpers/kernel.js';

/** Every path under bpffs, recursively (the doctor must pin nothing). */
function bpffsTree(root = '/sys/fs/bpf'): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      out.push(p);
      if (statSync(p).isDirectory()) walk(p);
    }
  };
  walk(root);
  return out.sort();
}

const CHECKS = [
  'config',
  'capabilities',
  'bpffs',
  'cgroup v2',
  'BTF',
  'bpf object',
  'native addon',
  'sockops',
  'sk_storage',
  'ringbuf',
  'cgroup attach',
  ...PERIODIC_SOURCES,
  'namespaces',
];

describe('kmesh-otel doctor (real kernel, built CLI)', () => {
  const skip = kernelSkipReason();
  if (skip !== undefined) process.stdout.write(`# skipping the real doctor test: ${skip}\n`);

  it('exits 0, prints every requirement, picks the first source a real trial loads, and leaves nothing behind', { skip }, async () => {
    const main = join(packageRoot, 'dist', 'src', 'main.js');
    assert.ok(existsSync(main), `${main} is missing: run npm run build:ts`);
    const cwd = mkdtempSync(join(tmpdir(), 'kmesh-otel-doctor-real-'));
    try {
      // What this kernel really allows, tried here with the addon, independently of the doctor.
      const { BpfProbe } = await import('../native/index.js');
      const loads = new Map<PeriodicSourceKind, boolean>();
      for (const s of PERIODIC_SOURCES) {
        const p = new BpfProbe(BPF_OBJECT, { wakeupBytes: 65536 });
        try {
          p.load();
          p.useSource(s, { procPath: '/proc', netnsDirs: ['/run/netns'], rttIntervalMs: 5000 });
          loads.set(s, true);
        } catch {
          loads.set(s, false);
        } finally {
          p.close();
        }
      }
      const expectedAuto = PERIODIC_SOURCES.find((s) => loads.get(s)) ?? 'none';

      const attachedBefore = new Set(attachedProgramIds(CGROUP_ROOT));
      const bpffsBefore = bpffsTree();

      const text = spawnSync(process.execPath, [main, 'doctor'], { cwd, encoding: 'utf8', timeout: 60_000 });
      assert.equal(text.status, 0, `doctor exit status\nstdout:\n${text.stdout}\nstderr:\n${text.stderr}`);
      const out = text.stdout.trimEnd().split('\n');
      assert.deepEqual(
        out.slice(0, CHECKS.length).map((l) => /^(?:ok {2}|warn|FAIL|skip) ([^:]+):/.exec(l)?.[1]),
        CHECKS,
        text.stdout,
      );
      assert.equal(out.length, CHECKS.length + 2, text.stdout);
      for (const l of out.slice(0, CHECKS.length)) assert.doesNotMatch(l, /^(FAIL|skip) /, `no failed or skipped requirement here: ${l}`);
      for (const s of PERIODIC_SOURCES) {
        const l = out.find((x) => x.slice(5).startsWith(`${s}: `))!;
        assert.equal(l.slice(0, 4), loads.get(s) ? 'ok  ' : 'warn', `${s}: the doctor agrees with a real trial: ${l}`);
      }
      assert.match(out.at(-2)!, new RegExp(`^periodic reports: auto would use ${expectedAuto}( |$)`));
      assert.equal(out.at(-1), 'verdict: kmesh-otel can run here');

      const json = spawnSync(process.execPath, [main, 'doctor', '--json'], { cwd, encoding: 'utf8', timeout: 60_000 });
      assert.equal(json.status, 0, json.stderr);
      const report = JSON.parse(json.stdout) as DoctorReport;
      assert.equal(report.autoSource, expectedAuto);
      assert.ok(report.trialProgramIds.length >= 5, `a core and per-source trial loads: ${report.trialProgramIds.join(',')}`);
      // Every program the trials loaded is gone from the kernel: nothing attached, nothing pinned.
      // (A closed bpf_link may release its program from a workqueue: allow the kernel a moment.)
      const gone = () => report.trialProgramIds.every((id) => !programExists(id));
      for (let i = 0; i < 20 && !gone(); i++) await new Promise((r) => setTimeout(r, 100));
      for (const id of report.trialProgramIds) assert.equal(programExists(id), false, `trial program ${id} still exists`);
      // None of the doctor's programs is attached at the cgroup root, and nothing new is (kernel tests
      // running at the same time attach there too: wait a little for theirs to go before comparing).
      const attachedNew = () => attachedProgramIds(CGROUP_ROOT).filter((id) => !attachedBefore.has(id));
      assert.deepEqual(attachedNew().filter((id) => report.trialProgramIds.includes(id)), [], 'trial programs attached after doctor');
      for (let i = 0; i < 30 && attachedNew().length > 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual(attachedNew(), [], `programs attached at ${CGROUP_ROOT} after doctor`);
      assert.deepEqual(bpffsTree(), bpffsBefore, 'nothing new in /sys/fs/bpf');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});
