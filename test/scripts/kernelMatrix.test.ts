/**
 * The kernel matrix's own logic (scripts/vm/results.mjs, initramfs.mjs):
 * reading the runner's results, telling a crash from a failure, the retry of
 * a crashed file, and the verdict — a failure on one kernel only fails the
 * matrix and names that kernel; a test skipped on every kernel fails it; one
 * skipped on one kernel and run on another is coverage. The matrix itself
 * (qemu guests) runs in CI through `npm run test:kernels`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { buildInitramfs, guestScript, hiddenInGuest, initScript } from '../../scripts/vm/initramfs.mjs';
import { coveredElsewhere, crashedFiles, parseResults, replaceFile, tally, verdict, type TestResult } from '../../scripts/vm/results.mjs';

const line = (o: Record<string, unknown>): string => JSON.stringify({ nesting: 0, type: 'test', ...o });
const SOURCES = '/c/test/kernel/sources.test.ts';
const ITER = '/c/test/kernel/iterate.test.ts';

describe('kernel matrix: results', () => {
  it('reads tests, skips with their reason, failures, crashes; survives a cut line', () => {
    const text = [
      line({ file: SOURCES, name: 'a', ok: true }),
      line({ file: SOURCES, name: 'b', ok: true, skip: 'this kernel (6.18) refuses sk_storage_iter: EPERM' }),
      line({ file: SOURCES, name: 'c', ok: true, skip: '' }),
      line({ file: ITER, name: 'd', ok: false, error: 'the child churned connections: 29', failureType: 'testCodeFailure' }),
      line({ file: ITER, name: 'iterate.test.ts', ok: false, error: 'test failed', signal: 'SIGSEGV' }),
      line({ file: SOURCES, name: 'suite', ok: false, type: 'suite', error: '1 subtest failed', failureType: 'subtestsFailed' }),
      line({ file: SOURCES, name: 'e', ok: true, todo: true }),
      '{"file":"/c/test/kernel/x.te',
    ].join('\n');
    const r = parseResults(text);
    assert.deepEqual(
      r.map((t) => [t.name, t.status]),
      [
        ['a', 'pass'],
        ['b', 'skip'],
        ['c', 'skip'],
        ['d', 'fail'],
        ['iterate.test.ts', 'crash'],
        ['e', 'todo'],
      ],
    );
    assert.equal(r[1]!.reason, 'this kernel (6.18) refuses sk_storage_iter: EPERM');
    assert.equal(r[3]!.reason, 'the child churned connections: 29');
    assert.equal(r[4]!.signal, 'SIGSEGV');
    assert.deepEqual(tally(r), { pass: 1, fail: 1, skip: 2, todo: 1, crash: 1 });
    assert.deepEqual(crashedFiles(r), [ITER]);
  });

  it('suites: a skipped one and one whose hook failed count, one failed through its tests does not, a passed one is kept but not counted', () => {
    const ISN = '/c/test/kernel/isn.test.ts';
    const r = parseResults(
      [
        // A skipped suite: node reports its tests nowhere, only the suite.
        line({ file: ISN, name: 'the ISN pair through NAT', ok: true, type: 'suite', skip: 'this kernel refuses the NAT rules' }),
        line({ file: ISN, name: 'a', ok: false, error: 'boom', failureType: 'testCodeFailure' }),
        line({ file: ISN, name: 'fails through a', ok: false, type: 'suite', error: '1 subtest failed', failureType: 'subtestsFailed' }),
        line({ file: ISN, name: 'b', ok: true }),
        line({ file: ISN, name: 'leaks', ok: false, type: 'suite', error: 'namespaces left: kmt-1-c', failureType: 'hookFailed' }),
        line({ file: ISN, name: 'passes', ok: true, type: 'suite' }),
      ].join('\n'),
    );
    assert.deepEqual(
      r.map((t) => [t.name, t.status, t.isSuite ?? false]),
      [
        ['the ISN pair through NAT', 'skip', true],
        ['a', 'fail', false],
        ['b', 'pass', false],
        ['leaks', 'fail', true],
        ['passes', 'pass', true],
      ],
    );
    assert.deepEqual(tally(r), { pass: 1, fail: 2, skip: 1, todo: 0, crash: 0 });
    // leg.json tags each result with its matrix suite's name (`suite`): the same counts.
    assert.deepEqual(tally(r.map((t) => ({ suite: 'kernel', ...t }))), tally(r));
    const v = verdict([{ name: 'host', tests: r }]);
    assert.ok(v.problems.includes('host: FAILED leaks (test/kernel/isn.test.ts): namespaces left: kmt-1-c'), v.problems.join('; '));
    // A suite skipped on one kernel and run on another is coverage; skipped on both fails.
    const ran = [{ file: ISN, name: 'the ISN pair through NAT', status: 'pass', isSuite: true } satisfies TestResult];
    const skipped = r.filter((t) => t.name === 'the ISN pair through NAT');
    assert.deepEqual(coveredElsewhere([{ name: 'debian12', tests: skipped }, { name: 'host', tests: ran }]), [
      { skippedOn: 'debian12', name: 'the ISN pair through NAT', file: 'test/kernel/isn.test.ts', ranOn: ['host'] },
    ]);
    assert.match(verdict([{ name: 'debian12', tests: skipped }, { name: 'host', tests: skipped }]).problems.join('; '), /skipped on every kernel: test\/kernel\/isn\.test\.ts: the ISN pair through NAT/);
  });

  it('a crashed file rerun: the rerun counts for that file, the others stay', () => {
    const first: TestResult[] = [
      { file: SOURCES, name: 'a', status: 'pass' },
      { file: ITER, name: 'x', status: 'pass' },
      { file: ITER, name: 'iterate.test.ts', status: 'crash', signal: 'SIGSEGV' },
    ];
    const rerun: TestResult[] = [
      { file: ITER, name: 'x', status: 'pass' },
      { file: ITER, name: 'y', status: 'pass' },
    ];
    const merged = replaceFile(first, ITER, rerun);
    assert.deepEqual(tally(merged), { pass: 3, fail: 0, skip: 0, todo: 0, crash: 0 });
  });
});

describe('kernel matrix: verdict', () => {
  const host = (tests: TestResult[]) => ({ name: 'host', tests });
  const guest = (tests: TestResult[]) => ({ name: 'debian12', tests });

  it('a failure on one kernel only fails the matrix and names that kernel', () => {
    const v = verdict([
      host([{ file: SOURCES, name: 'loads', status: 'pass' }]),
      guest([{ file: SOURCES, name: 'loads', status: 'fail', reason: 'refused' }]),
    ]);
    assert.equal(v.ok, false);
    assert.equal(v.problems.length, 1, v.problems.join('; '));
    assert.match(v.problems[0]!, /^debian12: FAILED loads \(test\/kernel\/sources\.test\.ts\): refused$/);
  });

  it('a crash fails the matrix as a crash, not as an assertion failure', () => {
    const v = verdict([guest([{ file: ITER, name: 'iterate.test.ts', status: 'crash', reason: 'the test process died by SIGSEGV' }])]);
    assert.equal(v.ok, false);
    assert.match(v.problems[0]!, /^debian12: CRASHED test\/kernel\/iterate\.test\.ts: the test process died by SIGSEGV$/);
  });

  it('skipped on one kernel and run on the other is coverage; skipped on every kernel fails', () => {
    const skippedHere: TestResult = { file: SOURCES, name: 'sk_storage_iter: idle', status: 'skip', reason: 'this kernel refuses sk_storage_iter' };
    // The guest runs the checkout copy from another folder than the host.
    const ranThere: TestResult = { ...skippedHere, file: '/tmp/kmx/work/test/kernel/sources.test.ts', status: 'pass', reason: undefined };
    const legs = [host([skippedHere]), guest([ranThere])];
    assert.deepEqual(verdict(legs), { ok: true, problems: [] });
    assert.deepEqual(coveredElsewhere(legs), [{ skippedOn: 'host', name: 'sk_storage_iter: idle', file: 'test/kernel/sources.test.ts', ranOn: ['debian12'] }]);
    const nowhere = verdict([host([skippedHere]), guest([skippedHere])]);
    assert.equal(nowhere.ok, false);
    assert.match(nowhere.problems[0]!, /^skipped on every kernel: test\/kernel\/sources\.test\.ts: sk_storage_iter: idle/);
    // One kernel alone may skip: there is no other to run it.
    assert.equal(verdict([host([skippedHere])]).ok, true);
  });

  it('a leg without results (guest died, timed out) or with no test fails', () => {
    const v = verdict([host([{ file: SOURCES, name: 'a', status: 'pass' }]), { name: 'debian12', error: 'guest killed after its 60 min timeout', tests: [] }]);
    assert.deepEqual(v.problems, ['debian12: guest killed after its 60 min timeout']);
    assert.deepEqual(verdict([host([])]).problems, ['host: no test ran']);
  });
});

describe('kernel matrix: guest boot files', () => {
  const busybox = '/bin/busybox';
  const staticBusybox = existsSync(busybox) && !readFileSync(busybox).includes(Buffer.from('/lib64/ld-linux'));

  it('the initramfs is a newc archive busybox cpio reads: init, busybox, console node, modules in order', { skip: staticBusybox ? undefined : 'busybox-static not installed' }, () => {
    const image = buildInitramfs([
      { name: 'netfs', bytes: Buffer.from('a') },
      { name: '9p', bytes: Buffer.from('bc') },
    ]);
    const listing = execFileSync(busybox, ['cpio', '-t'], { input: image, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] }).split('\n').filter(Boolean);
    for (const name of ['init', 'bin/busybox', 'bin/sh', 'dev/console', 'modules/netfs.ko', 'modules/9p.ko']) assert.ok(listing.includes(name), `${name} in ${listing.join(' ')}`);
    const init = image.toString('latin1');
    assert.ok(init.indexOf('for m in netfs 9p;') > 0, 'modules load in the given (dependency) order');
  });

  it('a checkout the guest would hide (under its tmpfs overlays, e.g. a CI clone in /tmp) is bound back from the host root', () => {
    assert.deepEqual(hiddenInGuest(['/tmp/ci/main/node_modules', '/work/main/node_modules', '/run/x', '/var/tmp', '/var/lib/x', '/rootfs/a']), [
      '/tmp/ci/main/node_modules',
      '/run/x',
      '/var/tmp',
    ]);
    const init = initScript(['9p'], ['/tmp/ci/main/node_modules']);
    const overlays = init.indexOf('mount -t tmpfs -o mode=0755 tmpfs /newroot/$d');
    const bind = init.indexOf(`mount --bind "/hostroot$k" "/newroot$k"`);
    assert.ok(overlays > 0 && bind > overlays, 'bound after the overlays, so it stays visible');
    assert.match(init, /for k in '\/tmp\/ci\/main\/node_modules'; do/);
    assert.doesNotMatch(initScript(['9p']), /\/hostroot/, 'nothing to bind: no second mount');
  });

  it('the guest script records the exit code in the leg folder and powers off', () => {
    const s = guestScript({ cwd: '/tmp/kmx/work', command: 'node scripts/vm/leg.mjs', env: { KMESH_TEST_EMULATED: '1', X: "it's" }, nofile: 20000, resultDir: '/tmp/kmx/legs/debian12' });
    assert.match(s, /export KMESH_TEST_EMULATED='1'/);
    assert.match(s, /export X='it'\\''s'/);
    assert.match(s, /echo \$rc > '\/tmp\/kmx\/legs\/debian12\/exit-code\.tmp'/);
    assert.match(s, /echo o > \/proc\/sysrq-trigger/);
  });
});
