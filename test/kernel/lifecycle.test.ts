// test-kind: kernel
/**
 * Attach/detach hygiene: bpf_links only, nothing pinned, nothing left behind
 * after close() or after the attaching process is killed; a process that
 * drained can exit after close(); errors say what to do.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import {
  attachedProgramIds,
  BPF_OBJECT,
  bpffsEntries,
  CGROUP_ROOT,
  eventually,
  kernelSkipReason,
  NATIVE_INDEX,
  openProbe,
  programExists,
} from '../helpers/kernel.js';
import { deadlineMs } from '../helpers/deadline.js';

const skip = kernelSkipReason();

/** Runs an ESM snippet in a child node process; resolves its stdout lines as they come. */
function child(code: string) {
  const p = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  createInterface({ input: p.stdout }).on('line', (l) => lines.push(l));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    p.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { p, lines, stderr: () => stderr, exited };
}

describe('kernel: attach lifecycle', { skip }, () => {
  it('close() detaches: the program id leaves the cgroup and the kernel; nothing pinned', async () => {
    const pinnedBefore = bpffsEntries();
    const probe = await openProbe();
    let ids: { sockops: number; iter: number };
    try {
      ids = probe.programIds();
      assert.ok(ids.sockops > 0, 'sockops program id');
      assert.ok(attachedProgramIds().includes(ids.sockops), `kmesh_sockops (id ${ids.sockops}) attached at ${CGROUP_ROOT}`);
      probe.iterate(); // also creates the iterator link
      assert.deepEqual(bpffsEntries(), pinnedBefore, 'nothing pinned in /sys/fs/bpf');
    } finally {
      probe.close();
    }
    assert.ok(!attachedProgramIds().includes(ids.sockops), 'not attached after close()');
    assert.ok(await eventually(() => !programExists(ids.sockops) && !programExists(ids.iter)), 'programs freed after close()');
    probe.close(); // idempotent
    assert.throws(() => probe.drainNow(), /closed/, 'use after close is a clear error');
  });

  it('detachCgroups() detaches and attachCgroup() attaches again, the probe staying loaded', async () => {
    const probe = await openProbe();
    try {
      const { sockops } = probe.programIds();
      assert.equal(probe.detachCgroups(), 1, 'one link destroyed');
      assert.ok(!attachedProgramIds().includes(sockops), 'not attached after detachCgroups()');
      assert.ok(programExists(sockops), 'still loaded');
      assert.equal(probe.detachCgroups(), 0, 'nothing left to detach');
      probe.attachCgroup(CGROUP_ROOT);
      assert.ok(attachedProgramIds().includes(sockops), 'attached again');
    } finally {
      probe.close();
    }
  });

  it('SIGKILL of the attaching process leaves nothing attached', async () => {
    const c = child(`
      import { BpfProbe } from ${JSON.stringify(NATIVE_INDEX)};
      const p = new BpfProbe(${JSON.stringify(BPF_OBJECT)}, { wakeupBytes: 65536 });
      p.load(); p.attachCgroup(${JSON.stringify(CGROUP_ROOT)});
      p.startDrain(() => {}, 100);
      console.log(JSON.stringify(p.programIds()));
      setInterval(() => {}, 1000);
    `);
    try {
      assert.ok(await eventually(() => c.lines.length > 0 || c.p.exitCode !== null, deadlineMs(10_000)), 'child attached');
      assert.ok(c.lines.length > 0, `child reported its program ids; stderr: ${c.stderr()}`);
      const ids = JSON.parse(c.lines[0]!) as { sockops: number };
      assert.ok(attachedProgramIds().includes(ids.sockops), 'child program attached');
      c.p.kill('SIGKILL');
      const { signal } = await c.exited;
      assert.equal(signal, 'SIGKILL');
      assert.ok(await eventually(() => !attachedProgramIds().includes(ids.sockops)), 'detached when the process died');
      assert.ok(await eventually(() => !programExists(ids.sockops)), 'program freed');
    } finally {
      c.p.kill('SIGKILL');
    }
  });

  it('a process that drained exits on its own after close()', async () => {
    const c = child(`
      import { BpfProbe } from ${JSON.stringify(NATIVE_INDEX)};
      const p = new BpfProbe(${JSON.stringify(BPF_OBJECT)}, { wakeupBytes: 65536 });
      p.load(); p.attachCgroup(${JSON.stringify(CGROUP_ROOT)});
      p.startDrain(() => {}, 200);
      setTimeout(() => { p.close(); console.log('closed'); }, 300);
    `);
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), deadlineMs(10_000)).unref());
    try {
      const r = await Promise.race([c.exited, timeout]);
      assert.notEqual(r, 'timeout', 'process exited after close() (drain thread joined, TSFN released)');
      assert.deepEqual(r, { code: 0, signal: null }, `clean exit; stderr: ${c.stderr()}`);
      assert.deepEqual(c.lines, ['closed']);
    } finally {
      c.p.kill('SIGKILL');
    }
  });

  it('errors name the problem and the fix', async () => {
    const { BpfProbe } = await import('../../native/index.js');
    assert.throws(() => new BpfProbe('/nonexistent/tcp_probe.bpf.o', { wakeupBytes: 1 }), /cannot read BPF object .*errno 2.*build:bpf/s);
    const probe = await openProbe({ attach: false });
    try {
      assert.throws(() => probe.attachCgroup('/proc'), /not a cgroup v2 directory/);
      assert.throws(() => probe.attachCgroup('/nonexistent-cgroup'), /cannot open cgroup directory.*errno 2/s);
      assert.throws(() => probe.load(), /already loaded/);
    } finally {
      probe.close();
    }
  });
});
