import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { BpfNamespaceRef } from '../native/index.js';
import { runCli, type CliDeps } from '../src/cli.js';
import type { Factory } from '../src/component/component.js';
import {
  attributeCoreFailure,
  formatDoctorReport,
  runDoctor,
  type DoctorDeps,
  type DoctorInput,
  type DoctorKernel,
  type DoctorLine,
  type DoctorProbe,
  type DoctorReport,
} from '../src/doctor.js';
import { packageRoot } from '../src/paths.js';
import type { PeriodicSourceKind, UseSourceOptions } from '../src/receiver/ebpf/KernelSource.js';
import { PERIODIC_SOURCES } from '../src/receiver/ebpf/periodicSource.js';
import { BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC, type SystemProbe } from '../src/receiver/ebpf/preflight.js';
import { fakeFactories } from './helpers/fakeComponents.js';

const TMPFS_MAGIC = 0x01021994;
const MOUNTS = ['cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0', 'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0'].join('\n');

/** A host where preflight passes; `over` changes one thing. */
function system(over: Partial<SystemProbe> & { fs?: Record<string, number>; missing?: string[] } = {}): SystemProbe {
  const fs: Record<string, number> = { '/sys/fs/bpf': BPF_FS_MAGIC, '/sys/fs/cgroup/unified': CGROUP2_SUPER_MAGIC, ...over.fs };
  const present = new Set(['/obj.o', '/sys/kernel/btf/vmlinux'].filter((p) => !(over.missing ?? []).includes(p)));
  return {
    effectiveCapabilities: () => 0x1ffffffffffn,
    filesystemType: (p) => fs[p],
    exists: (p) => present.has(p),
    mounts: () => MOUNTS,
    ...over,
  };
}

/** The addon's error texts (native/src/bpf_probe.cc ThrowErrno + libbpf's log), as the kernel produces them. */
const coreError = (errno: string, libbpf: string[]): Error =>
  new Error(
    `cannot load the core BPF program (kmesh_sockops and its maps): ${errno}; see the libbpf log below\n` +
      libbpf.map((l) => `libbpf: ${l}`).join('\n') +
      "\nlibbpf: failed to load object '/obj.o'\n",
  );
const SK_STORAGE_ITER_EPERM =
  'the kernel refused kmesh_conn_iter (sk_storage_iter): Operation not permitted (errno 1); the kernel refuses it although this process is root (lockdown, a hardened build, or a disabled program type)';
const refusal = (first: string): Error => new Error(`${first}\nlibbpf: libbpf: prog 'kmesh_conn_iter': BPF program load failed: Operation not permitted\n`);

interface FakeKernelOptions {
  loadError?: Error;
  attachError?: Error;
  sourceErrors?: Partial<Record<PeriodicSourceKind, Error>>;
  namespaces?: BpfNamespaceRef[];
  openError?: Error;
}

const OWN_NS: BpfNamespaceRef = { path: '/proc/thread-self/ns/net', inode: 4026531833, fromDir: false };

/** A fake addon that records every probe and call, so tests can check that each probe was closed. */
class FakeKernel implements DoctorKernel {
  readonly probes: Array<{ objectPath: string; wakeupBytes: number; calls: string[]; closed: number }> = [];
  readonly sourceOptions: UseSourceOptions[] = [];
  readonly nsQueries: Array<[string, string[]]> = [];
  private nextId = 100;
  constructor(private readonly o: FakeKernelOptions = {}) {}

  open(objectPath: string, wakeupBytes: number): DoctorProbe {
    if (this.o.openError !== undefined) throw this.o.openError;
    const rec = { objectPath, wakeupBytes, calls: [] as string[], closed: 0 };
    this.probes.push(rec);
    const id = this.nextId++;
    let loaded = false;
    return {
      load: () => {
        rec.calls.push('load');
        if (this.o.loadError !== undefined) throw this.o.loadError;
        loaded = true;
      },
      useSource: (kind, options) => {
        rec.calls.push(`useSource:${kind}`);
        this.sourceOptions.push(options);
        const err = this.o.sourceErrors?.[kind];
        if (err !== undefined) throw err;
      },
      attachCgroup: (path) => {
        rec.calls.push(`attach:${path}`);
        if (this.o.attachError !== undefined) throw this.o.attachError;
      },
      programIds: () => ({ sockops: loaded ? id : 0, iter: 0 }),
      close: () => {
        rec.closed++;
      },
    };
  }

  listNetworkNamespaces(procPath: string, netnsDirs: string[]): BpfNamespaceRef[] {
    this.nsQueries.push([procPath, netnsDirs]);
    return this.o.namespaces ?? [OWN_NS];
  }
}

const INPUT: DoctorInput = {
  bpf_object: '/obj.o',
  proc_path: '/proc',
  netns_dirs: ['/run/netns'],
  periodic_source: 'auto',
  report_interval: 5000,
  wakeup_bytes: 65536,
};

function deps(kernel: FakeKernel | Error, sys: SystemProbe = system(), euid = 0): DoctorDeps {
  return {
    system: sys,
    euid: () => euid,
    kernel: () => (kernel instanceof Error ? Promise.reject(kernel) : Promise.resolve(kernel)),
  };
}

const line = (r: DoctorReport, check: string): DoctorLine => {
  const l = r.lines.find((x) => x.check === check);
  assert.ok(l !== undefined, `no line for ${check}`);
  return l;
};
const statuses = (r: DoctorReport): Record<string, string> => Object.fromEntries(r.lines.map((l) => [l.check, l.status]));

function assertAllClosed(k: FakeKernel): void {
  for (const [i, p] of k.probes.entries()) assert.equal(p.closed, 1, `probe ${i} (${p.calls.join(',')}) closed exactly once`);
}

describe('doctor (fake kernel)', () => {
  it('all ok: every requirement ok, auto takes the first source, exit 0', async () => {
    const k = new FakeKernel({ namespaces: [OWN_NS, { path: '/proc/42/ns/net', inode: 7, fromDir: false }, { path: '/run/netns/a', inode: 8, fromDir: true }] });
    const r = await runDoctor(INPUT, deps(k));
    assert.equal(
      formatDoctorReport(r),
      [
        'ok   capabilities: root (uid 0): CAP_SYS_ADMIN (covers CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)',
        'ok   bpffs: /sys/fs/bpf is a bpf filesystem',
        'ok   cgroup v2: /sys/fs/cgroup/unified (auto-detected: the first cgroup2 mount in /proc/self/mounts)',
        'ok   BTF: /sys/kernel/btf/vmlinux present',
        'ok   bpf object: /obj.o',
        'ok   native addon: kmesh_bpf loaded',
        'ok   sockops: BPF_PROG_TYPE_SOCK_OPS program kmesh_sockops loaded',
        'ok   sk_storage: BPF_MAP_TYPE_SK_STORAGE map conn_state created',
        'ok   ringbuf: BPF_MAP_TYPE_RINGBUF map events created',
        'ok   cgroup attach: kmesh_sockops (prog id 100) attached to /sys/fs/cgroup/unified by a bpf_link, then closed',
        'ok   sk_storage_iter: loads, attaches and walks (one trial walk)',
        'ok   tcp_iter: loads, attaches and walks (one trial walk per namespace in view)',
        'ok   sock_diag: answers (one trial INET_DIAG dump per namespace in view)',
        'ok   rtt_cb: loads; nothing beyond the core; reports senders only (a socket that only receives is reported at its close)',
        'ok   namespaces: 3 network namespaces in view: 2 via /proc, 1 via /run/netns',
        'periodic reports: auto would use sk_storage_iter',
        'verdict: kmesh-otel can run here',
        '',
      ].join('\n'),
    );
    assert.equal(r.ok, true);
    assert.equal(r.autoSource, 'sk_storage_iter');
    assert.equal(r.configuredSource, 'sk_storage_iter');
    // One probe for the core and one per source, each opened with the config's object and threshold, each closed.
    assert.deepEqual(
      k.probes.map((p) => p.calls.join(',')),
      ['load,attach:/sys/fs/cgroup/unified', ...PERIODIC_SOURCES.map((s) => `load,useSource:${s}`)],
    );
    assert.ok(k.probes.every((p) => p.objectPath === '/obj.o' && p.wakeupBytes === 65536));
    assertAllClosed(k);
    assert.deepEqual(r.trialProgramIds, [100, 101, 102, 103, 104]);
    assert.deepEqual(k.sourceOptions[0], { procPath: '/proc', netnsDirs: ['/run/netns'], rttIntervalMs: 5000 });
    assert.deepEqual(k.nsQueries, [['/proc', ['/run/netns']]]);
  });

  it('core refused at the sk_storage map: FAIL naming sk_storage and the kernel reason, sources not tried, exit 1', async () => {
    const err = coreError('Invalid argument (errno 22)', ["libbpf: map 'conn_state': failed to create: Invalid argument(-22)"]);
    const k = new FakeKernel({ loadError: err });
    const r = await runDoctor(INPUT, deps(k));
    assert.equal(r.ok, false);
    assert.deepEqual(line(r, 'sk_storage'), {
      status: 'fail',
      check: 'sk_storage',
      detail:
        "BPF_MAP_TYPE_SK_STORAGE map conn_state refused: cannot load the core BPF program (kmesh_sockops and its maps): Invalid argument (errno 22); see the libbpf log below (libbpf: map 'conn_state': failed to create: Invalid argument(-22))",
      fix: 'needs BPF_MAP_TYPE_SK_STORAGE with BTF (Linux 5.2+, CONFIG_DEBUG_INFO_BTF=y)',
      log: err.message,
    });
    assert.equal(line(r, 'sockops').status, 'skip');
    assert.equal(line(r, 'ringbuf').status, 'skip');
    assert.equal(line(r, 'cgroup attach').detail, 'not tried: the core does not load');
    for (const s of PERIODIC_SOURCES) assert.equal(line(r, s).status, 'skip', s);
    assert.equal(r.autoSource, undefined);
    assert.equal(r.periodic, 'unknown: the core does not load');
    assert.equal(k.probes.length, 1, 'no source trial after a refused core');
    assertAllClosed(k);
    assert.match(formatDoctorReport(r), /^FAIL sk_storage: BPF_MAP_TYPE_SK_STORAGE map conn_state refused: .*Invalid argument \(errno 22\).*; needs BPF_MAP_TYPE_SK_STORAGE/m);
    assert.match(formatDoctorReport(r), /\nverdict: kmesh-otel cannot run here: fix the FAIL lines above\n$/);
  });

  it('attributes a refused core to ringbuf or sockops from libbpf\'s log', async () => {
    let r = await runDoctor(
      INPUT,
      deps(new FakeKernel({ loadError: coreError('Operation not permitted (errno 1)', ["map 'events': failed to create: Operation not permitted(-1)"]) })),
    );
    assert.deepEqual(
      ['sockops', 'sk_storage', 'ringbuf'].map((c) => line(r, c).status),
      ['skip', 'skip', 'fail'],
    );
    assert.match(line(r, 'ringbuf').detail, /^BPF_MAP_TYPE_RINGBUF map events refused: .*Operation not permitted \(errno 1\)/);
    assert.match(line(r, 'ringbuf').fix!, /BPF_MAP_TYPE_RINGBUF \(Linux 5\.8\+\)/);

    r = await runDoctor(
      INPUT,
      deps(
        new FakeKernel({
          loadError: coreError('Permission denied (errno 13)', [
            "prog 'kmesh_sockops': BPF program load failed: Permission denied",
            "prog 'kmesh_sockops': -- BEGIN PROG LOAD LOG --",
            'R1 invalid mem access',
          ]),
        }),
      ),
    );
    assert.deepEqual(
      ['sockops', 'sk_storage', 'ringbuf'].map((c) => line(r, c).status),
      ['fail', 'skip', 'skip'],
    );
    assert.match(line(r, 'sockops').detail, /Permission denied \(errno 13\).*\(libbpf: prog 'kmesh_sockops': BPF program load failed: Permission denied\)$/);
    assert.equal(line(r, 'sk_storage').detail, 'not confirmed: the core load stopped at sockops');

    // Nothing named (e.g. no kernel BTF at all): the failure lands on sockops, and BTF is a FAIL too.
    r = await runDoctor(
      INPUT,
      deps(new FakeKernel({ loadError: coreError('No such process (errno 3)', ['failed to find valid kernel BTF']) }), system({ missing: ['/sys/kernel/btf/vmlinux'] })),
    );
    assert.equal(line(r, 'sockops').status, 'fail');
    assert.match(line(r, 'sockops').detail, /^the core did not load: cannot load the core/);
    assert.equal(line(r, 'sockops').fix, 'needs a kernel with sockops and the helpers kmesh_sockops calls (Linux 5.10+; the verifier log in `kmesh-otel doctor --json` says which instruction), or a rebuilt object (`npm run build:bpf`)');
    assert.equal(line(r, 'sk_storage').detail, 'not confirmed: the core did not load');
    assert.deepEqual(line(r, 'BTF'), {
      status: 'fail',
      check: 'BTF',
      detail: "/sys/kernel/btf/vmlinux missing (the core's CO-RE reads need kernel BTF)",
      fix: 'run a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian, Ubuntu, Fedora and RHEL kernels are)',
    });
  });

  it('attributeCoreFailure reads the first part libbpf names', () => {
    assert.deepEqual(attributeCoreFailure("x\nlibbpf: libbpf: map 'conn_state': failed to create: Invalid argument(-22)\nlibbpf: prog 'kmesh_sockops': y"), {
      part: 'sk_storage',
      name: "map 'conn_state'",
      logLine: "map 'conn_state': failed to create: Invalid argument(-22)",
    });
    assert.deepEqual(attributeCoreFailure("libbpf: map 'lost_records': failed to create: E2BIG"), {
      part: undefined,
      name: "map 'lost_records'",
      logLine: "map 'lost_records': failed to create: E2BIG",
    });
    assert.equal(attributeCoreFailure('Error in bpf_create_map_xattr(events):Invalid argument(-22).').part, 'ringbuf');
    assert.deepEqual(attributeCoreFailure('no log at all'), { part: undefined, name: undefined, logLine: undefined });
  });

  it('a refused source is a warning with the kernel reason and what it needs; auto falls to the next, exit 0', async () => {
    const k = new FakeKernel({ sourceErrors: { sk_storage_iter: refusal(SK_STORAGE_ITER_EPERM) } });
    const r = await runDoctor(INPUT, deps(k));
    assert.equal(r.ok, true);
    assert.deepEqual(line(r, 'sk_storage_iter'), {
      status: 'warn',
      check: 'sk_storage_iter',
      detail: `refused: ${SK_STORAGE_ITER_EPERM}`,
      fix: 'needs iter/bpf_sk_storage_map programs (Linux 5.10+; refused by some hardened builds)',
      log: refusal(SK_STORAGE_ITER_EPERM).message,
    });
    assert.equal(line(r, 'tcp_iter').status, 'ok');
    assert.equal(r.autoSource, 'tcp_iter');
    assert.equal(r.periodic, 'auto would use tcp_iter (refused: sk_storage_iter)');
    // Only its own namespace in view, and tcp_iter walks per namespace: a warning with the fix.
    assert.deepEqual(line(r, 'namespaces'), {
      status: 'warn',
      check: 'namespaces',
      detail: "1 network namespace in view: 1 via /proc, 0 via /run/netns: only the agent's own, so tcp_iter and sock_diag report no pod's connections",
      fix: "run the agent with hostPID: true, or mount the host's /run/netns read-only into it (a directory in receivers.ebpf.netns_dirs)",
    });
    assertAllClosed(k);
    assert.equal(k.probes.length, 5, 'every source is tried, even after one loads');
  });

  it('auto walks the ladder in order: the first source that loads wins; none when all are refused', async () => {
    let r = await runDoctor(
      INPUT,
      deps(new FakeKernel({ sourceErrors: { sk_storage_iter: refusal('a'), tcp_iter: refusal('b') } })),
    );
    assert.equal(r.autoSource, 'sock_diag');
    assert.equal(r.periodic, 'auto would use sock_diag (refused: sk_storage_iter, tcp_iter)');
    r = await runDoctor(INPUT, deps(new FakeKernel({ sourceErrors: { tcp_iter: refusal('b'), sock_diag: refusal('c') } })));
    assert.equal(r.autoSource, 'sk_storage_iter', 'a refused later source does not matter');
    assert.equal(line(r, 'namespaces').status, 'ok', 'sk_storage_iter does not need other namespaces in view');
    assert.equal(line(r, 'namespaces').detail, "1 network namespace in view: 1 via /proc, 0 via /run/netns (only the agent's own; not needed: periodic reports use sk_storage_iter)");

    const all = Object.fromEntries(PERIODIC_SOURCES.map((s) => [s, refusal(`${s} refused`)]));
    r = await runDoctor(INPUT, deps(new FakeKernel({ sourceErrors: all })));
    assert.equal(r.ok, true, 'the core alone runs');
    assert.equal(r.autoSource, 'none');
    assert.deepEqual(PERIODIC_SOURCES.map((s) => line(r, s).status), ['warn', 'warn', 'warn', 'warn']);
    assert.match(r.periodic, /^auto would use none: every source is refused/);
  });

  it('a pinned periodic_source that is refused is a FAIL (the agent would not start); a pinned one that loads is reported', async () => {
    let r = await runDoctor({ ...INPUT, periodic_source: 'sk_storage_iter' }, deps(new FakeKernel({ sourceErrors: { sk_storage_iter: refusal(SK_STORAGE_ITER_EPERM) } })));
    assert.equal(r.ok, false);
    assert.equal(line(r, 'sk_storage_iter').status, 'fail');
    assert.match(line(r, 'sk_storage_iter').fix!, /^receivers\.ebpf\.periodic_source pins it: set it to auto/);
    assert.equal(r.autoSource, 'tcp_iter');
    assert.equal(r.configuredSource, undefined);
    assert.equal(r.periodic, 'auto would use tcp_iter (refused: sk_storage_iter); receivers.ebpf.periodic_source pins sk_storage_iter, which this kernel refuses');

    r = await runDoctor({ ...INPUT, periodic_source: 'rtt_cb' }, deps(new FakeKernel({ sourceErrors: { sk_storage_iter: refusal('x') } })));
    assert.equal(r.ok, true);
    assert.equal(r.configuredSource, 'rtt_cb');
    assert.equal(r.periodic, 'auto would use tcp_iter (refused: sk_storage_iter); receivers.ebpf.periodic_source pins rtt_cb, which loads');
    assert.equal(line(r, 'namespaces').status, 'ok', 'rtt_cb walks no namespace');

    r = await runDoctor({ ...INPUT, periodic_source: 'none' }, deps(new FakeKernel()));
    assert.equal(r.configuredSource, 'none');
    assert.equal(r.periodic, 'auto would use sk_storage_iter; receivers.ebpf.periodic_source is none: no periodic reports');
  });

  it('not root and no capabilities: FAIL with the fix, and the refused load says the same', async () => {
    // What libbpf says as an unprivileged user (nothing named: it fails probing before any map).
    const eperm = Object.assign(
      coreError('Operation not permitted (errno 1)', [
        'libbpf: Failed to bump RLIMIT_MEMLOCK (err = -1), you might need to do it explicitly!',
        "Error in bpf_object__probe_loading():Operation not permitted(1). Couldn't load trivial BPF program.",
      ]),
      { errno: 1 },
    );
    const k = new FakeKernel({ loadError: eperm });
    const r = await runDoctor(INPUT, deps(k, system({ effectiveCapabilities: () => 0n }), 1000));
    assert.equal(r.ok, false);
    assert.deepEqual(line(r, 'capabilities'), {
      status: 'fail',
      check: 'capabilities',
      detail: 'missing capabilities CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN (loading and attaching a sockops program needs them)',
      fix: 'run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (in Kubernetes: securityContext.capabilities.add)',
    });
    assert.match(
      formatDoctorReport(r),
      /^FAIL capabilities: missing capabilities CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN \(loading and attaching a sockops program needs them\); run as root, or grant/m,
    );
    // The refused load points at the same fix rather than at the kernel.
    assert.equal(line(r, 'sockops').status, 'fail');
    assert.equal(line(r, 'sockops').fix, 'not privileged: run as root, or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (in Kubernetes: securityContext.capabilities.add)');
    assertAllClosed(k);

    // CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN without CAP_SYS_ADMIN: enough for the core, not for other namespaces.
    const caps = (1n << 39n) | (1n << 38n) | (1n << 12n);
    const ok = await runDoctor(INPUT, deps(new FakeKernel(), system({ effectiveCapabilities: () => caps }), 1000));
    assert.deepEqual(line(ok, 'capabilities'), {
      status: 'ok',
      check: 'capabilities',
      detail: 'CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN (no CAP_SYS_ADMIN: tcp_iter and sock_diag cannot enter other network namespaces)',
    });
  });

  it('bpffs, cgroup v2 and a missing object are FAILs with preflight\'s fixes; what depends on them is skipped', async () => {
    const k = new FakeKernel();
    let r = await runDoctor({ ...INPUT, cgroup_path: '/sys/fs/cgroup/cpu' }, deps(k, system({ fs: { '/sys/fs/bpf': TMPFS_MAGIC, '/sys/fs/cgroup/cpu': 0x27e0eb } })));
    assert.equal(r.ok, false);
    assert.deepEqual(statuses(r), {
      capabilities: 'ok',
      bpffs: 'fail',
      'cgroup v2': 'fail',
      BTF: 'ok',
      'bpf object': 'ok',
      'native addon': 'ok',
      sockops: 'ok',
      sk_storage: 'ok',
      ringbuf: 'ok',
      'cgroup attach': 'skip',
      sk_storage_iter: 'ok',
      tcp_iter: 'ok',
      sock_diag: 'ok',
      rtt_cb: 'ok',
      namespaces: 'ok',
    });
    assert.equal(line(r, 'bpffs').fix, 'mount it with `mount -t bpf bpf /sys/fs/bpf` (in Kubernetes: a hostPath volume of /sys/fs/bpf)');
    assert.equal(
      line(r, 'cgroup v2').fix,
      'this machine has cgroup v2 at /sys/fs/cgroup/unified; set cgroup_path to it or leave it unset to auto-detect',
    );
    assert.ok(
      k.probes.every((p) => !p.calls.some((c) => c.startsWith('attach:'))),
      'no attach without a cgroup v2 directory',
    );

    const k2 = new FakeKernel();
    r = await runDoctor(INPUT, deps(k2, system({ missing: ['/obj.o'] })));
    assert.equal(line(r, 'bpf object').status, 'fail');
    assert.equal(line(r, 'bpf object').fix, 'build it with `npm run build` (or `make -C bpf`), or set receivers.ebpf.bpf_object');
    assert.deepEqual(
      r.lines.filter((l) => l.status === 'skip').map((l) => l.check),
      ['native addon', 'sockops', 'sk_storage', 'ringbuf', 'cgroup attach', ...PERIODIC_SOURCES, 'namespaces'],
    );
    assert.equal(k2.probes.length, 0);
  });

  it('a refused attach is a FAIL; a missing addon is a FAIL naming the build step', async () => {
    const k = new FakeKernel({ attachError: new Error('cannot attach kmesh_sockops to /sys/fs/cgroup/unified: Bad file descriptor (errno 9); see the libbpf log below\nlibbpf: x') });
    let r = await runDoctor(INPUT, deps(k));
    assert.equal(r.ok, false);
    assert.equal(line(r, 'cgroup attach').status, 'fail');
    assert.equal(
      line(r, 'cgroup attach').detail,
      'attaching to /sys/fs/cgroup/unified failed: cannot attach kmesh_sockops to /sys/fs/cgroup/unified: Bad file descriptor (errno 9); see the libbpf log below',
    );
    assertAllClosed(k);

    r = await runDoctor(INPUT, deps(new Error("Cannot find module '/x/native/build/Release/kmesh_bpf.node'\nRequire stack: ...")));
    assert.equal(r.ok, false);
    assert.deepEqual(line(r, 'native addon'), {
      status: 'fail',
      check: 'native addon',
      detail: "cannot load it: Cannot find module '/x/native/build/Release/kmesh_bpf.node'",
      fix: 'build it with `npm run build:native`',
    });
    assert.equal(line(r, 'sockops').status, 'skip');
  });

  it('BTF missing while the core loads (libbpf found it elsewhere) is only a warning', async () => {
    const r = await runDoctor(INPUT, deps(new FakeKernel(), system({ missing: ['/sys/kernel/btf/vmlinux'] })));
    assert.equal(r.ok, true);
    assert.equal(line(r, 'BTF').status, 'warn');
  });
});

describe('kmesh-otel doctor (CLI, in process)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-otel-doctor-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  function cli(doctor: DoctorDeps): { deps: CliDeps; out: string[]; err: string[] } {
    const out: string[] = [];
    const err: string[] = [];
    return {
      out,
      err,
      deps: {
        stdout: (t) => out.push(t),
        stderr: (t) => err.push(t),
        env: {},
        cwd: dir,
        onSignal: () => () => undefined,
        forceExit: () => assert.fail('doctor never forces an exit'),
        doctor,
      },
    };
  }

  it('checks receivers.ebpf of --config, exit 0 when it can run', async () => {
    const f = join(dir, 'agent.yaml');
    writeFileSync(
      f,
      `receivers:
  ebpf/node:
    cgroup_path: /sys/fs/cgroup/unified
    bpf_object: /obj.o
    proc_path: /host/proc
    netns_dirs: [/host/run/netns]
    periodic_source: sock_diag
    report_interval: 2s
exporters: {debug: {}}
service: {pipelines: {logs: {receivers: [ebpf/node], exporters: [debug]}}}`,
    );
    const k = new FakeKernel();
    const h = cli(deps(k));
    assert.equal(await runCli(['doctor', '--config', f], h.deps), 0);
    const text = h.out.join('');
    assert.match(text, new RegExp(`^ok   config: receivers\\.ebpf/node of ${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\n`));
    assert.match(text, /^ok {3}cgroup v2: \/sys\/fs\/cgroup\/unified \(receivers\.ebpf\.cgroup_path\) is a cgroup v2 hierarchy$/m);
    assert.match(text, /^periodic reports: auto would use sk_storage_iter; receivers\.ebpf\.periodic_source pins sock_diag, which loads$/m);
    assert.match(text, /\nverdict: kmesh-otel can run here\n$/);
    assert.deepEqual(k.sourceOptions[0], { procPath: '/host/proc', netnsDirs: ['/host/run/netns'], rttIntervalMs: 2000 });
    assert.deepEqual(k.nsQueries, [['/host/proc', ['/host/run/netns']]]);
    assert.equal(h.err.join(''), '');
  });

  it('exit 1 when it cannot run; --json carries the same report', async () => {
    const f = join(dir, 'default.yaml');
    writeFileSync(f, `receivers: {ebpf: {bpf_object: /obj.o}}\nexporters: {debug: {}}\nservice: {pipelines: {logs: {receivers: [ebpf], exporters: [debug]}}}`);
    const k = new FakeKernel({ loadError: coreError('Invalid argument (errno 22)', ["map 'events': failed to create: Invalid argument(-22)"]) });
    const h = cli(deps(k));
    assert.equal(await runCli(['doctor', '-c', f, '--json'], h.deps), 1);
    const report = JSON.parse(h.out.join('')) as DoctorReport & { config: string };
    assert.equal(report.config, f);
    assert.equal(report.ok, false);
    assert.equal(report.lines[0]!.check, 'config');
    assert.equal(report.lines.find((l) => l.check === 'ringbuf')!.status, 'fail');
    assert.match(report.lines.find((l) => l.check === 'ringbuf')!.log!, /map 'events': failed to create/);
  });

  it('a config without an ebpf receiver is checked with the defaults (warn); an invalid one exits 2', async () => {
    const f = join(dir, 'noebpf.yaml');
    writeFileSync(f, `receivers: {otlp: {}}\nexporters: {debug: {}}\nservice: {pipelines: {logs: {receivers: [otlp], exporters: [debug]}}}`);
    let h = cli(deps(new FakeKernel()));
    const code = await runCli(['doctor', '-c', f], h.deps);
    // Not a valid config here (no otlp receiver exists), so: exit 2 naming it.
    assert.equal(code, 2);
    assert.match(h.err.join(''), /receivers\.otlp: unknown receiver type "otlp"/);

    // Only possible with other receiver types than this build's (ebpf is its only one): the test's fakes.
    const g = join(dir, 'other-receiver.yaml');
    writeFileSync(g, 'receivers: {fake: }\nexporters: {collect: }\nservice: {pipelines: {metrics: {receivers: [fake], exporters: [collect]}}}\n');
    const k = new FakeKernel();
    h = cli(deps(k, system({ exists: () => true })));
    h.deps.factories = fakeFactories as unknown as Factory[];
    assert.equal(await runCli(['doctor', '-c', g], h.deps), 0);
    const lines = h.out.join('').split('\n');
    assert.equal(lines[0], `warn config: ${g} defines no ebpf receiver: checking its defaults; add receivers.ebpf to the config the agent runs with`);
    assert.equal(lines[5], `ok   bpf object: ${join(packageRoot, 'bpf', 'tcp_probe.bpf.o')}`, 'the default bpf_object');
    assert.equal(k.probes[0]!.objectPath, join(packageRoot, 'bpf', 'tcp_probe.bpf.o'));
    assert.deepEqual(k.sourceOptions[0], { procPath: '/proc', netnsDirs: ['/run/netns'], rttIntervalMs: 5000 });
  });

  it('--help lists doctor and its options', async () => {
    let h = cli(deps(new FakeKernel()));
    assert.equal(await runCli(['--help'], h.deps), 0);
    assert.match(h.out.join(''), /^ {2}doctor \[options\] +check what this kernel and host allow/m);
    h = cli(deps(new FakeKernel()));
    assert.equal(await runCli(['doctor', '--help'], h.deps), 0);
    assert.match(h.out.join(''), /Usage: kmesh-otel doctor \[options\]/);
    assert.match(h.out.join(''), /-c, --config <file>/);
    assert.match(h.out.join(''), /--json/);
    assert.match(h.out.join(''), /^Exit 0 when the agent can run, 1 when it cannot, 2 for an invalid config\.$/m);
  });
});
