// test-kind: kernel
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { it } from 'node:test';
import { builtinFactories } from '../../src/components.js';

// Acceptance (issue 2): every registered factory's components start from
// their default config, shut down twice, and leave no handle behind — proven
// by a child process that ends on its own. Needs root (the ebpf receiver
// attaches for real) and free default ports (15020, 13133).
// Under CPU emulation (the kernel matrix's guest, KMESH_TEST_EMULATED=1) the
// child needs several times longer: on the host it takes ~15 s, ~12 s of it
// the otlp_http exporters' shutdown waiting on the SDK HTTP transport's own
// retries against the absent default endpoint.
const EMULATED = process.env.KMESH_TEST_EMULATED === '1';
const CHILD_LIMIT_MS = EMULATED ? 180_000 : 45_000;

it('every registered component starts, shuts down twice and leaks no handle', { timeout: CHILD_LIMIT_MS + 15_000 }, async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'lifecycleChild.ts')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_LIMIT_MS);
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  clearTimeout(timer);
  assert.equal(code, 0, `child did not exit cleanly by itself (code ${code}).\nstdout:\n${out}\nstderr:\n${err}`);
  for (const f of builtinFactories) {
    assert.match(out, new RegExp(`started ${f.kind}/${f.type} `), `${f.kind}/${f.type} was started`);
  }
  assert.match(out, /done\n$/);
});
