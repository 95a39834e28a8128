#!/usr/bin/env node
// Runs the test suite with Node's own runner (TypeScript through tsx).
// Usage: node scripts/run-tests.mjs [unit|kernel|e2e|all] [extra files...]
// Files run one at a time: kernel and e2e tests attach at the cgroup-v2 root
// and create namespaces, and this machine has two cores anyway.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const mode = process.argv[2] ?? 'all';
const explicit = process.argv.slice(3);

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

const isKernel = (f) => f.includes(`${sep}test${sep}kernel${sep}`) || f.endsWith('.kernel.test.ts');
const isE2e = (f) => f.includes(`${sep}test${sep}e2e${sep}`);
let files = explicit.length > 0 ? explicit : walk(join(root, 'test')).sort();
if (mode === 'unit') files = files.filter((f) => !isKernel(f) && !isE2e(f));
else if (mode === 'kernel') files = files.filter(isKernel);
else if (mode === 'e2e') files = files.filter(isE2e);
else if (mode !== 'all') {
  console.error(`unknown mode "${mode}" (unit|kernel|e2e|all)`);
  process.exit(2);
}
// Unit tests first: they are quick and tell the most when something breaks.
files.sort((a, b) => Number(isKernel(a) || isE2e(a)) - Number(isKernel(b) || isE2e(b)) || (isE2e(a) - isE2e(b)));

const args = ['--import', 'tsx', '--test', '--test-concurrency=1', ...files.map((f) => relative(root, f))];
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
