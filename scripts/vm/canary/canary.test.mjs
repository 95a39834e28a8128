// The kernel matrix's canary: a test that passes on kernels from 6.4 on and
// fails on older ones, standing in for a kernel-specific regression. The
// matrix runs it apart from the suite (scripts/kernel-matrix.mjs, --canary,
// on by default) and checks that its verdict fails, naming exactly the
// kernels that refuse the program: the proof that a test failing on one
// kernel only fails the matrix. Not run by `npm test` (not under test/).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('./canary.bpf.c', import.meta.url));
const PIN_PREFIX = 'kmx-canary-';

test('canary: a socket filter that calls the bpf_iter_num kfuncs (Linux 6.4+) loads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kmx-canary-'));
  // bpftool prog load must pin; the pin is removed at once (and stale ones first).
  for (const e of readdirSync('/sys/fs/bpf')) if (e.startsWith(PIN_PREFIX)) rmSync(join('/sys/fs/bpf', e), { force: true });
  const pin = join('/sys/fs/bpf', `${PIN_PREFIX}${process.pid}`);
  try {
    const obj = join(dir, 'canary.bpf.o');
    execFileSync('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${process.arch === 'x64' ? 'x86_64' : 'aarch64'}-linux-gnu`, '-c', SOURCE, '-o', obj], { stdio: 'pipe', timeout: 120_000 });
    let err = '';
    try {
      execFileSync('bpftool', ['prog', 'load', obj, pin], { stdio: 'pipe', timeout: 60_000 });
    } catch (e) {
      err = String(e.stderr ?? e.message).split('\n').filter((l) => /error|fail|not found/i.test(l)).slice(0, 3).join(' | ');
    }
    assert.equal(err, '', 'the kernel loads the canary program');
  } finally {
    rmSync(pin, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
