// One leg of the kernel matrix: what runs on one kernel, the host's or a
// guest's, from the checkout copy. scripts/kernel-matrix.mjs runs it on the
// host directly and in each guest through qemu; the results go to OUT (a
// folder of the run, shared read-write with the guest):
//
//   source.json       periodic-source.mjs: the source `auto` picks, one walk over 10,000 sockets
//   <suite>.jsonl     `node scripts/run-tests.mjs <suite>` (the suite's own runner): one
//                     line per test (jsonl-reporter.mjs); the spec output goes to stdout
//   <suite>.retry.*   a crashed file's rerun (see below)
//   canary.*          the canary (scripts/vm/canary), apart from the suite
//   leg.json          all of it, read by the matrix
//
//   node scripts/vm/leg.mjs --out DIR [--suites kernel,e2e] [--files F,...] [--retry-crashes] [--canary]
//
// --files: only these test files (each still runs in the suite of its kind).
//
// A test file whose process dies by a signal (SIGSEGV, ...) is a crash, not
// a failure. With --retry-crashes (the matrix sets it for emulated guests
// only, where qemu 7.2's TCG is known to crash V8's JIT code now and then,
// shared/KERNELS.md) such a file runs once more and its rerun's results
// count; the crash stays in leg.json and the summary. On the host and under
// KVM a crash is never retried: it fails the leg.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { crashedFiles, parseResults, replaceFile, tally } from './results.mjs';

const { values: opts } = parseArgs({
  options: {
    out: { type: 'string' },
    suites: { type: 'string', default: 'kernel,e2e' },
    files: { type: 'string', default: '' },
    'retry-crashes': { type: 'boolean', default: false },
    canary: { type: 'boolean', default: false },
    'source-connections': { type: 'string', default: '5000' },
  },
});
if (!opts.out) {
  console.error('leg.mjs: --out DIR is required');
  process.exit(2);
}
const root = resolve(new URL('../..', import.meta.url).pathname);
const out = resolve(opts.out);
mkdirSync(out, { recursive: true });
const only = opts.files.split(',').filter(Boolean);
const started = Date.now();
const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
const leg = { kernel, started: new Date().toISOString(), source: null, suites: {}, tests: [], crashes: [], canary: null, seconds: {} };
const save = () => writeFileSync(join(out, 'leg.json'), JSON.stringify(leg, null, 1) + '\n');
const say = (m) => console.log(`kmx-leg (${kernel}): ${m}`);

/**
 * Runs node with the given args in the checkout with two reporters (given
 * through NODE_OPTIONS, so that the suite's own runner, run-tests.mjs, is
 * used unchanged): spec to our stdout (the console log, for people), JSON
 * lines to `<base>.jsonl` for the counts.
 */
function nodeWithReports(args, base, timeoutMs) {
  const reporters = [
    '--test-reporter=spec --test-reporter-destination=stdout',
    `--test-reporter=${join(root, 'scripts/vm/jsonl-reporter.mjs')} --test-reporter-destination=${base}.jsonl`,
  ].join(' ');
  const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${reporters}`.trim() };
  const r = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env, timeout: timeoutMs, killSignal: 'SIGKILL' });
  const jsonl = existsSync(`${base}.jsonl`) ? readFileSync(`${base}.jsonl`, 'utf8') : '';
  return { status: r.status, signal: r.signal, tests: parseResults(jsonl), timedOut: r.error?.code === 'ETIMEDOUT' };
}

// 1. The periodic-report source auto picks, and one walk's cost.
{
  const t0 = Date.now();
  say('periodic-report source (the agent ladder) and one walk over 10,000 sockets');
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/vm/periodic-source.mjs', opts['source-connections']], {
    cwd: root,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 300_000,
    killSignal: 'SIGKILL',
  });
  try {
    leg.source = JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    leg.source = { error: `periodic-source.mjs exited ${r.status ?? r.signal} without a result: ${r.stdout.slice(-500)}` };
  }
  writeFileSync(join(out, 'source.json'), JSON.stringify(leg.source) + '\n');
  say(`source: ${leg.source.source ?? '?'}, walk ${leg.source.walkMs?.toFixed?.(1) ?? '-'} ms over ${leg.source.sockets ?? 0} sockets (${leg.source.reported ?? 0} reported)`);
  leg.seconds.source = (Date.now() - t0) / 1000;
  save();
}

// 2. The suites, through the project's own runner.
for (const suite of opts.suites.split(',').filter(Boolean)) {
  const t0 = Date.now();
  if (only.length > 0) {
    // None of the files given is of this suite's kind: nothing to run, nothing failed.
    const list = spawnSync(process.execPath, ['scripts/run-tests.mjs', suite, ...only], { cwd: root, env: { ...process.env, LIST_TESTS: '1' }, encoding: 'utf8' });
    if (list.status !== 0) {
      say(`suite ${suite}: none of ${only.join(', ')}`);
      continue;
    }
  }
  say(`suite ${suite}`);
  const first = nodeWithReports(['scripts/run-tests.mjs', suite, ...only], join(out, suite), 45 * 60_000);
  let tests = first.tests;
  const crashed = crashedFiles(tests);
  for (const file of crashed) {
    leg.crashes.push({ suite, file, signal: tests.find((t) => t.file === file && t.status === 'crash')?.signal, retried: opts['retry-crashes'] });
    if (!opts['retry-crashes']) continue;
    say(`${file} crashed: running it once more (emulated guest)`);
    const again = nodeWithReports(['scripts/run-tests.mjs', suite, file], join(out, `${suite}.retry`), 20 * 60_000);
    tests = replaceFile(tests, file, again.tests);
    leg.crashes.at(-1).retryResult = tally(again.tests.filter((t) => t.file === file));
  }
  const runnerBroke = first.tests.length === 0 ? `run-tests.mjs ${suite} exited ${first.status ?? first.signal}${first.timedOut ? ' (timed out)' : ''} with no TAP results` : undefined;
  leg.suites[suite] = { ...tally(tests), exit: first.status, error: runnerBroke };
  leg.tests.push(...tests.map((t) => ({ suite, ...t })));
  leg.seconds[suite] = (Date.now() - t0) / 1000;
  save();
}

// 3. The canary, apart (its failure is expected on some kernels).
if (opts.canary) {
  const t0 = Date.now();
  say('canary (expected to fail on kernels before 6.4)');
  const r = nodeWithReports(['--test', 'scripts/vm/canary/canary.test.mjs'], join(out, 'canary'), 5 * 60_000);
  leg.canary = { tests: r.tests, ...tally(r.tests) };
  leg.seconds.canary = (Date.now() - t0) / 1000;
}

leg.seconds.total = (Date.now() - started) / 1000;
save();
const t = tally(leg.tests);
say(`done in ${leg.seconds.total.toFixed(0)} s: ${t.pass} passed, ${t.fail} failed, ${t.skip} skipped, ${t.crash} crashed`);
process.exit(t.fail + t.crash > 0 || Object.values(leg.suites).some((s) => s.error) ? 1 : 0);
