import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BPF_FS_MAGIC,
  CGROUP2_SUPER_MAGIC,
  checkCapabilities,
  checkCgroup,
  EbpfReceiverStartError,
  findCgroup2Mount,
  loadFailureMessage,
  preflight,
  type SystemProbe,
} from '../../../src/receiver/ebpf/preflight.js';

const MOUNTS = [
  'tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0',
  'cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0',
  'cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0',
  'bpf /sys/fs/bpf bpf rw,relatime 0 0',
].join('\n');

const TMPFS_MAGIC = 0x01021994;
const CGROUP_V1_MAGIC = 0x27e0eb;

function system(over: Partial<SystemProbe> & { fs?: Record<string, number> } = {}): SystemProbe {
  const fs: Record<string, number> = {
    '/sys/fs/bpf': BPF_FS_MAGIC,
    '/sys/fs/cgroup': TMPFS_MAGIC,
    '/sys/fs/cgroup/cpu': CGROUP_V1_MAGIC,
    '/sys/fs/cgroup/unified': CGROUP2_SUPER_MAGIC,
    ...over.fs,
  };
  return {
    effectiveCapabilities: () => 0x1ffffffffffn,
    filesystemType: (p) => fs[p],
    exists: (p) => p === '/obj.o',
    mounts: () => MOUNTS,
    ...over,
  };
}

function startError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof EbpfReceiverStartError, 'an EbpfReceiverStartError');
    return err.message;
  }
  return assert.fail('expected a start error');
}

describe('preflight', () => {
  it('passes on a good system and auto-detects the cgroup v2 mount', () => {
    assert.deepEqual(preflight({ bpf_object: '/obj.o' }, system()), { cgroupPath: '/sys/fs/cgroup/unified' });
    assert.deepEqual(preflight({ bpf_object: '/obj.o', cgroup_path: '/sys/fs/cgroup/unified' }, system()), { cgroupPath: '/sys/fs/cgroup/unified' });
  });

  it('finds cgroup2 mounts, unescaping /proc/self/mounts octal escapes', () => {
    assert.equal(findCgroup2Mount(MOUNTS), '/sys/fs/cgroup/unified');
    assert.equal(findCgroup2Mount('cgroup2 /sys/fs/cgroup cgroup2 rw 0 0'), '/sys/fs/cgroup');
    assert.equal(findCgroup2Mount('none /mnt/my\\040cg cgroup2 rw 0 0'), '/mnt/my cg');
    assert.equal(findCgroup2Mount('cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n'), undefined);
  });

  it('names missing capabilities and how to grant them', () => {
    const msg = startError(() => preflight({ bpf_object: '/obj.o' }, system({ effectiveCapabilities: () => 0n })));
    assert.match(msg, /missing capabilities CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN/);
    assert.match(msg, /run as root/);
    // CAP_SYS_ADMIN alone covers all three (kernels before 5.8 have no CAP_BPF).
    assert.doesNotThrow(() => preflight({ bpf_object: '/obj.o' }, system({ effectiveCapabilities: () => 1n << 21n })));
    const onlyBpf = startError(() => preflight({ bpf_object: '/obj.o' }, system({ effectiveCapabilities: () => (1n << 39n) | (1n << 38n) })));
    assert.match(onlyBpf, /missing capabilities CAP_NET_ADMIN \(/);
  });

  it('says how to mount bpffs', () => {
    const msg = startError(() => preflight({ bpf_object: '/obj.o' }, system({ fs: { '/sys/fs/bpf': TMPFS_MAGIC } })));
    assert.match(msg, /\/sys\/fs\/bpf is not a bpf filesystem: mount it with `mount -t bpf bpf \/sys\/fs\/bpf`/);
  });

  it('rejects a cgroup v1 path and points at the v2 mount', () => {
    const msg = startError(() => preflight({ bpf_object: '/obj.o', cgroup_path: '/sys/fs/cgroup/cpu' }, system()));
    assert.match(msg, /cgroup_path \/sys\/fs\/cgroup\/cpu is not a cgroup v2 hierarchy/);
    assert.match(msg, /cgroup v2 at \/sys\/fs\/cgroup\/unified/);
  });

  it('says how to mount cgroup v2 when there is none', () => {
    const msg = startError(() => preflight({ bpf_object: '/obj.o' }, system({ mounts: () => 'cgroup /sys/fs/cgroup/cpu cgroup rw 0 0' })));
    assert.match(msg, /no cgroup v2 mount found/);
    assert.match(msg, /mount -t cgroup2 none \/sys\/fs\/cgroup\/unified/);
    const missing = startError(() => preflight({ bpf_object: '/obj.o', cgroup_path: '/nope' }, system()));
    assert.match(missing, /cgroup_path \/nope does not exist/);
  });

  it('says to build a missing BPF object', () => {
    const msg = startError(() => preflight({ bpf_object: '/missing.o' }, system()));
    assert.match(msg, /BPF object \/missing\.o not found: build it with `npm run build`/);
  });

  it('lists every problem at once', () => {
    const msg = startError(() =>
      preflight({ bpf_object: '/missing.o' }, system({ effectiveCapabilities: () => 0n, fs: { '/sys/fs/bpf': TMPFS_MAGIC } })),
    );
    assert.equal(msg.split('\n  - ').length, 4, msg);
  });

  it('exposes each check with what it found, or the problem and its fix (for kmesh-otel doctor)', () => {
    assert.deepEqual(checkCgroup(undefined, system()), {
      ok: true,
      detail: '/sys/fs/cgroup/unified (auto-detected: the first cgroup2 mount in /proc/self/mounts)',
      cgroupPath: '/sys/fs/cgroup/unified',
    });
    assert.deepEqual(checkCgroup('/nope', system()), {
      ok: false,
      detail: 'receivers.ebpf.cgroup_path /nope does not exist',
      fix: 'mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified` (or boot with systemd.unified_cgroup_hierarchy=1) and set receivers.ebpf.cgroup_path to it',
    });
    assert.deepEqual(checkCapabilities(system({ effectiveCapabilities: () => 1n << 21n })), {
      ok: true,
      detail: 'CAP_SYS_ADMIN (covers CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)',
    });
    // Unreadable CapEff: not a reason to refuse; the load decides.
    assert.equal(checkCapabilities(system({ effectiveCapabilities: () => undefined })).ok, true);
    assert.doesNotThrow(() => preflight({ bpf_object: '/obj.o' }, system({ effectiveCapabilities: () => undefined })));
  });

  it('explains load failures', () => {
    const msg = loadFailureMessage('/obj.o', new Error('Permission denied (verifier log: ...)'));
    assert.match(msg, /^loading BPF object \/obj\.o failed: Permission denied/);
    assert.match(msg, /sockops, BPF_MAP_TYPE_SK_STORAGE and ringbuf/);
    assert.match(msg, /`kmesh-otel doctor` checks each/);
  });
});
