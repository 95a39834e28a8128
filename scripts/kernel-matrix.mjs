#!/usr/bin/env node
// The kernel matrix: the kernel and end-to-end tests on the host's kernel
// and, in throw-away qemu guests, on other kernels (by default Debian 12's
// stock 6.1, which loads the sk_storage map iterator the host's 6.18 build
// refuses), with a summary per kernel: the periodic-report source `auto`
// picks, one walk's cost over 10,000 sockets, tests passed/failed/skipped/
// crashed. See README.md#kernels.
//
//   node scripts/kernel-matrix.mjs [options]          (root; npm run test:kernels)
//     --kernel NAME=/path/vmlinuz[:/path/lib/modules/RELEASE]
//                        one more guest kernel (any bzImage with BTF; repeatable)
//     --no-debian        no Debian 12 guest        --no-host   no host leg
//     --suites kernel,e2e                           --no-canary
//     --files F[,F...]   only these test files (e.g. test/e2e/endpoints.test.ts),
//                        each in the suite of its kind
//     --timeout-min N    per guest (default 60)    --tcg-threads single|multi
//     --keep             keep the run folder even when everything passed
//     --help, -h         this text
//     --report FILE      also write the summary as Markdown
//
// The host is never rebooted or changed: guests boot the kernel image
// directly (no bootloader, no disk), see the host's root read-only over
// virtio-9p and write only into this run's folder. Each guest is killed after
// its timeout, and on this process's exit or signals. The run folder
// (checkout copy, consoles, TAP, results) is removed when everything passed,
// else kept and its path printed.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { clearTimeout, setTimeout } from 'node:timers';
import { parseArgs } from 'node:util';
import { buildInitramfs, GUEST_SHARE, guestScript, hiddenInGuest } from './vm/initramfs.mjs';
import { customKernel, debianKernel, extractVmlinux, moduleClosure } from './vm/kernels.mjs';
import { chooseAccel, qemuArgs, runGuest } from './vm/qemu.mjs';
import { coveredElsewhere, shortFile, tally, verdict } from './vm/results.mjs';

const { values: opts } = parseArgs({
  options: {
    kernel: { type: 'string', multiple: true, default: [] },
    'no-debian': { type: 'boolean', default: false },
    'no-host': { type: 'boolean', default: false },
    'no-canary': { type: 'boolean', default: false },
    suites: { type: 'string', default: 'kernel,e2e' },
    files: { type: 'string', default: '' },
    'timeout-min': { type: 'string', default: '60' },
    'tcg-threads': { type: 'string', default: 'single' },
    keep: { type: 'boolean', default: false },
    report: { type: 'string' },
    quiet: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  // The usage is this file's header comment.
  const head = readFileSync(new URL(import.meta.url), 'utf8').split('\n');
  const end = head.findIndex((l, i) => i > 1 && !l.startsWith('//'));
  console.log(head.slice(1, end).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
  process.exit(0);
}

const root = resolve(new URL('..', import.meta.url).pathname);
const started = Date.now();
const say = (m) => console.log(`kernel-matrix: ${m}`);
if (process.getuid?.() !== 0) {
  console.error('kernel-matrix: needs root (BPF, namespaces, the cgroup-v2 root), like the kernel tests');
  process.exit(2);
}

// The run folder: the guests' read-write share.
const runDir = mkdtempSync(join(process.env.KMESH_MATRIX_TMP ?? tmpdir(), 'kmesh-matrix-'));
const work = join(runDir, 'work');
let keep = opts.keep;
process.once('exit', () => {
  if (!keep) rmSync(runDir, { recursive: true, force: true });
});
/** Stops the host leg (its tests' own cleanup runs), while one runs. */
let stopHostLeg;
for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.once(sig, () => {
    keep = true;
    console.error(`kernel-matrix: ${sig}: stopping (guests are killed); run folder kept: ${runDir}`);
    void Promise.resolve(stopHostLeg?.()).finally(() => process.exit(128 + n));
  });
}

/**
 * A copy of the checkout (sources and build outputs, without .git and
 * node_modules) that every leg runs: writable in the guests, and one
 * snapshot for all kernels while others keep editing the tree. node_modules
 * is a link to the checkout's, which the guests see read-only (nothing
 * writes there: tsx caches under /tmp).
 */
function snapshot() {
  const skip = new Set(['.git', 'node_modules']);
  cpSync(root, work, {
    recursive: true,
    filter: (src) => {
      const rel = relative(root, src);
      return !skip.has(rel.split('/')[0]) && !rel.startsWith('native/build/Release/obj.target');
    },
  });
  symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'));
}

/** The guest kernels this run covers. */
function guestKernels() {
  const list = [];
  const log = (m) => say(m);
  if (!opts['no-debian']) list.push(debianKernel('debian12', 'linux-image-amd64', log));
  for (const spec of opts.kernel) list.push(customKernel(spec));
  return list;
}

/** The host leg, as a child of ours so that a signal reaches it and its cleanup runs. */
function runHostLeg(outDir) {
  return new Promise((resolveLeg) => {
    const args = ['scripts/vm/leg.mjs', '--out', outDir, `--suites=${opts.suites}`, `--files=${opts.files}`];
    if (!opts['no-canary']) args.push('--canary');
    // Its own process group: a stop reaches the test runner and the test
    // processes under it too (the leg waits on them synchronously).
    const child = spawn(process.execPath, args, { cwd: work, stdio: 'inherit', detached: true });
    const closed = new Promise((r) => child.once('close', (code, signal) => r({ code, signal })));
    const group = (sig) => {
      try {
        process.kill(-child.pid, sig);
      } catch {
        // gone
      }
    };
    stopHostLeg = () => {
      group('SIGTERM');
      const force = setTimeout(() => group('SIGKILL'), 30_000);
      return closed.finally(() => clearTimeout(force));
    };
    void closed.then((r) => {
      stopHostLeg = undefined;
      resolveLeg(r);
    });
  });
}

async function runGuestLeg(kernel, outDir, accel) {
  const vmlinux = extractVmlinux(kernel, say);
  const mods = moduleClosure(kernel.modulesDir);
  if (mods.skipped.missing.length > 0) say(`${kernel.name}: no module ${mods.skipped.missing.join(', ')} in ${kernel.modulesDir} (tests needing it will fail)`);
  const initrd = join(outDir, 'initramfs.cpio');
  // The work copy's node_modules links to the checkout's: a checkout under
  // a directory the guest overlays with tmpfs (CI may clone into /tmp) is
  // bound back into the guest, or nothing resolves there.
  writeFileSync(initrd, buildInitramfs(mods.order, undefined, hiddenInGuest([realpathSync(join(root, 'node_modules'))])));
  const guestOut = `${GUEST_SHARE}/legs/${kernel.name}`;
  const legArgs = ['--out', guestOut, `--suites=${opts.suites}`, `--files=${opts.files}`];
  if (!opts['no-canary']) legArgs.push('--canary');
  // Only under emulation: a test process killed by a signal there is most
  // likely qemu's TCG (shared/KERNELS.md), so a crashed file runs once more.
  if (accel === 'tcg') legArgs.push('--retry-crashes');
  writeFileSync(
    join(runDir, 'guest.sh'),
    guestScript({
      cwd: `${GUEST_SHARE}/work`,
      command: `node scripts/vm/leg.mjs ${legArgs.join(' ')}`,
      // KMESH_TEST_EMULATED: under CPU emulation, where wall-clock figures
      // say nothing about the code, the tests relax a rate threshold and
      // stretch wait deadlines (README.md#kernels), nothing else.
      env: { CI: process.env.CI ?? '', KMESH_TEST_EMULATED: accel === 'tcg' ? '1' : '' },
      nofile: 20_000,
      resultDir: guestOut,
    }),
  );
  const append = ['console=ttyS0', 'panic=-1', 'quiet', 'loglevel=4', 'mitigations=off', 'tsc=reliable', 'clocksource=tsc'].join(' ');
  const timeoutMs = Number(opts['timeout-min']) * 60_000;
  const prefix = `[${kernel.name}] `;
  say(`${kernel.name}: booting ${kernel.release} (${vmlinux ? 'vmlinux, PVH entry' : 'bzImage'}) under ${accel}${accel === 'tcg' ? `, thread=${opts['tcg-threads']}` : ''}, timeout ${opts['timeout-min']} min`);
  const r = await runGuest({
    args: qemuArgs({ kernel: vmlinux ?? kernel.vmlinuz, initrd, append, share: runDir, accel, tcgThreads: opts['tcg-threads'] }),
    timeoutMs,
    consoleLog: join(outDir, 'console.log'),
    echo: opts.quiet ? undefined : (l) => console.log(prefix + l),
  });
  const codeFile = join(outDir, 'exit-code');
  const exit = existsSync(codeFile) ? Number(readFileSync(codeFile, 'utf8').trim()) : undefined;
  let error;
  if (r.timedOut) error = `guest killed after its ${opts['timeout-min']} min timeout`;
  else if (exit === undefined) error = `guest stopped without an exit code (qemu ${r.code ?? r.signal}; panic or init failure, see console.log)`;
  return { exit, error, seconds: r.seconds };
}

function readLeg(name, outDir) {
  try {
    return JSON.parse(readFileSync(join(outDir, 'leg.json'), 'utf8'));
  } catch {
    return undefined;
  }
}

const fmtMs = (v) => (typeof v === 'number' ? (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + ' ms' : '-');

// ---- run ----
const accel = chooseAccel();
const legs = [];
let kernels = [];
try {
  say(`run folder ${runDir}`);
  snapshot();
  try {
    kernels = guestKernels();
  } catch (err) {
    legs.push({ name: 'guests', where: 'vm', error: `cannot prepare guest kernels: ${err.message}`, tests: [] });
  }

  if (!opts['no-host']) {
    const outDir = join(runDir, 'legs', 'host');
    mkdirSync(outDir, { recursive: true });
    say('host leg: this machine\'s kernel');
    const t0 = Date.now();
    const r = await runHostLeg(outDir);
    const data = readLeg('host', outDir);
    legs.push({
      name: 'host',
      where: 'host',
      accel: '-',
      data,
      seconds: (Date.now() - t0) / 1000,
      error: data ? suiteError(data) : `leg exited ${r.code ?? r.signal} without results`,
      tests: data?.tests ?? [],
    });
  }

  for (const kernel of kernels) {
    const outDir = join(runDir, 'legs', kernel.name);
    mkdirSync(outDir, { recursive: true });
    const r = await runGuestLeg(kernel, outDir, accel);
    const data = readLeg(kernel.name, outDir);
    legs.push({
      name: kernel.name,
      where: `vm (${kernel.origin})`,
      accel: accel === 'tcg' ? `tcg ${opts['tcg-threads']}` : 'kvm',
      data,
      seconds: r.seconds,
      error: r.error ?? (data ? suiteError(data) : 'no leg.json from the guest'),
      tests: data?.tests ?? [],
    });
  }
} catch (err) {
  legs.push({ name: 'matrix', where: '-', error: `the matrix itself failed: ${err.stack ?? err.message}`, tests: [] });
}

function suiteError(data) {
  const broken = Object.entries(data.suites).filter(([, s]) => s.error).map(([k, s]) => `${k}: ${s.error}`);
  if (data.source?.error) broken.push(`periodic source: ${data.source.error}`);
  return broken.length > 0 ? broken.join('; ') : undefined;
}

// ---- summary ----
const v = verdict(legs);
const rows = legs.map((l) => {
  const t = tally(l.tests);
  const s = l.data?.source ?? {};
  const crashes = l.data?.crashes ?? [];
  return {
    kernel: l.data?.kernel ?? l.name,
    leg: l.name,
    where: l.where,
    accel: l.accel ?? '-',
    source: s.source ?? '-',
    refused: (s.skipped ?? []).map((x) => x.source).join(', ') || '-',
    walk: s.walkMs !== undefined && s.walkMs !== null ? `${fmtMs(s.walkMs)} (${s.reported}/${s.sockets})` : '-',
    others:
      Object.entries(s.others ?? {})
        .map(([k, o]) => (typeof o.walkMs === 'number' ? `${k} ${fmtMs(o.walkMs)}` : `${k}: refused`))
        .join(', ') || '-',
    pass: t.pass,
    fail: t.fail,
    skip: t.skip,
    crash: t.crash + crashes.filter((c) => c.retried).length,
    seconds: Math.round(l.seconds ?? 0),
  };
});

// The canary: a program only 6.4+ loads. The matrix's verdict over the
// canary's results must fail and name exactly the legs whose kernel refused it.
let canaryLine = 'canary: not run';
let canaryOk = true;
if (!opts['no-canary'] && legs.length >= 2 && legs.every((l) => l.data?.canary)) {
  const canaryLegs = legs.map((l) => ({ name: l.name, tests: l.data.canary.tests }));
  const failedOn = canaryLegs.filter((l) => l.tests.some((t) => t.status === 'fail' || t.status === 'crash')).map((l) => l.name);
  const passedOn = canaryLegs.filter((l) => l.tests.length > 0 && l.tests.every((t) => t.status === 'pass')).map((l) => l.name);
  const cv = verdict(canaryLegs);
  const named = canaryLegs.filter((l) => cv.problems.some((p) => p.startsWith(`${l.name}: `))).map((l) => l.name);
  if (failedOn.length === 0) canaryLine = `canary: loaded on every kernel (${passedOn.join(', ')}): add a kernel before 6.4 to see a kernel-specific failure fail the matrix`;
  else {
    canaryOk = !cv.ok && named.join() === failedOn.join();
    canaryLine = `canary (a program only Linux 6.4+ loads): refused on ${failedOn.join(', ')}, loaded on ${passedOn.join(', ') || 'none'} -> the matrix's verdict on it: ${cv.ok ? 'PASS' : 'FAIL'}, naming ${named.join(', ') || 'no leg'} ${canaryOk ? '(as it must: a kernel-specific failure fails the matrix)' : '(WRONG: the matrix would miss a kernel-specific failure)'}`;
  }
}

const table = [
  '| kernel | where | accel | periodic source (`auto`) | refused | one walk, 10,000 sockets (reported) | other sources, one walk | passed | failed | skipped | crashed | time |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.kernel} | ${r.where} | ${r.accel} | ${r.source} | ${r.refused} | ${r.walk} | ${r.others} | ${r.pass} | ${r.fail} | ${r.skip} | ${r.crash} | ${r.seconds} s |`),
];
const covered = coveredElsewhere(legs.filter((l) => !l.error));
const lines = [
  '',
  '## Kernel matrix',
  '',
  ...table,
  '',
  covered.length > 0 ? 'Skipped on one kernel, run on another:' : 'No test was skipped on one kernel and run on another.',
  ...covered.map((c) => `- ${c.file}: ${c.name} — skipped on ${c.skippedOn}, passed on ${c.ranOn.join(', ')}`),
  '',
  ...legs.flatMap((l) => (l.data?.crashes ?? []).map((c) => `- crash on ${l.name}: ${shortFile(c.file)} (${c.signal})${c.retried ? `, retried once: ${c.retryResult ? `${c.retryResult.pass} passed, ${c.retryResult.fail + c.retryResult.crash} failed` : 'no result'}` : ''}`)),
  canaryLine,
  '',
  v.ok && canaryOk ? 'verdict: PASS' : 'verdict: FAIL',
  ...v.problems.map((p) => `- ${p}`),
  ...(canaryOk ? [] : ['- the canary was not attributed to the kernels that refused it']),
  `matrix wall time: ${Math.round((Date.now() - started) / 1000)} s`,
];
const text = lines.join('\n');
console.log(text);
writeFileSync(join(runDir, 'summary.md'), text + '\n');
writeFileSync(join(runDir, 'summary.json'), JSON.stringify({ rows, problems: v.problems, canary: canaryLine, ok: v.ok && canaryOk }, null, 1) + '\n');
if (opts.report) writeFileSync(opts.report, text + '\n');

const ok = v.ok && canaryOk;
if (!ok) {
  keep = true;
  say(`FAILED: the run folder is kept for inspection: ${runDir} (legs/<kernel>/console.log, *.jsonl, leg.json)`);
} else if (keep) say(`run folder kept: ${runDir}`);
// Totals in the form CI reads as the run's closing line.
const total = tally(legs.flatMap((l) => l.tests));
console.log(`kernel-matrix: ${total.pass} passed, ${total.fail + total.crash} failed, ${total.skip} skipped`);
process.exit(ok ? 0 : 1);
