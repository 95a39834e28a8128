#!/usr/bin/env node
// Runs the test suite with Node's own runner (TypeScript through tsx).
// Usage: node scripts/run-tests.mjs [unit|kernel|e2e|all] [extra files...]
// (LIST_TESTS=1: print each selected file with its kind instead of running them.)
// Files run one at a time: kernel and e2e tests attach at the cgroup-v2 root
// and create namespaces, and this machine has two cores anyway.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const mode = process.argv[2] ?? 'all';
// Absolute, so that a file's folder (test/kernel, test/e2e) is seen the same way
// whether it was named relative or found by the walk.
const explicit = process.argv.slice(3).map((f) => resolve(f));

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

// A test's kind is what it needs, declared in the file itself, in a line of
// its first 20 as `// test-kind: kernel` (root and the real kernel: BPF
// attached at the cgroup-v2 root, namespaces) or `// test-kind: e2e` (the
// whole agent: the CLI, real Prometheus, the OTLP receiver, BPF too). No
// such line: a unit test (no root, nothing attached, safe beside others'
// kernel tests) — except in test/kernel/ and test/e2e/, where every file
// needs the kernel, so a file new there that lacks the line still runs as
// what it is. A root-needing test elsewhere (test/service/lifecycle) says so.
const KIND_LINE = /^\/\/ test-kind: (kernel|e2e)\s*$/m;
const kinds = new Map();
function kindOf(f) {
  let k = kinds.get(f);
  if (k === undefined) {
    const head = readFileSync(f, 'utf8').split('\n', 20).join('\n');
    k = KIND_LINE.exec(head)?.[1];
    if (k === undefined) {
      if (f.includes(`${sep}test${sep}kernel${sep}`)) k = 'kernel';
      else if (f.includes(`${sep}test${sep}e2e${sep}`)) k = 'e2e';
      else k = 'unit';
    }
    kinds.set(f, k);
  }
  return k;
}
const isKernel = (f) => kindOf(f) === 'kernel';
const isE2e = (f) => kindOf(f) === 'e2e';
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

// An empty list would make `node --test` discover files by itself (fixtures too).
if (files.length === 0) {
  console.error(`no ${mode} test among the files given`);
  process.exit(2);
}
if (process.env.LIST_TESTS === "1") { for (const f of files) console.log(kindOf(f), relative(root, f)); process.exit(0); }
const args = ['--import', 'tsx', '--test', '--test-concurrency=1', ...files.map((f) => relative(root, f))];
const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
