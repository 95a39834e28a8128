// Reading node's test runner results (scripts/vm/jsonl-reporter.mjs) for
// the kernel matrix, and the matrix's verdict. Pure functions: unit tested
// in test/scripts/kernelMatrix.test.ts.

/**
 * @typedef {{ file: string, name: string, status: 'pass' | 'fail' | 'skip' | 'todo' | 'crash',
 *   reason?: string, signal?: string, isSuite?: true }} TestResult
 *   A test, or a suite (`isSuite`; leg.json adds `suite`, the name of the
 *   matrix suite it ran in). `crash`: the process running the test file
 *   died by a signal (the runner reports the file as one failed test),
 *   `reason`: the skip reason or the failure's message.
 */

/**
 * The tests of one run, from the lines of scripts/vm/jsonl-reporter.mjs,
 * and the suites that say something their tests do not: a skipped suite
 * (its tests never exist, so without it a kernel that skips a whole suite
 * would look as if it had nothing to skip), a suite that failed by itself
 * (a hook: an `after` that finds namespaces left behind), and a passed
 * suite, so that a suite skipped on one kernel can be seen run on another.
 * A suite that failed only because a test in it did is left out: the test
 * is counted. {@link tally} counts no passed suite.
 * @param {string} text
 * @returns {TestResult[]}
 */
export function parseResults(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let e;
    try {
      e = JSON.parse(line);
    } catch {
      continue; // a line cut by a killed runner
    }
    if (e.type === 'suite' && !e.ok && e.skip === undefined && e.failureType === 'subtestsFailed') continue;
    const r = { file: e.file ?? '', name: e.name };
    if (e.type === 'suite') r.isSuite = true;
    if (e.skip !== undefined) Object.assign(r, { status: 'skip', reason: e.skip || undefined });
    else if (e.todo) r.status = 'todo';
    else if (e.ok) r.status = 'pass';
    else if (e.signal) Object.assign(r, { status: 'crash', signal: e.signal, reason: `the test process died by ${e.signal}` });
    else Object.assign(r, { status: 'fail', reason: e.error });
    out.push(r);
  }
  return out;
}

/** Files whose test process died by a signal. */
export function crashedFiles(results) {
  return [...new Set(results.filter((r) => r.status === 'crash').map((r) => r.file))];
}

/**
 * The results of a run with one file's results replaced by a rerun's
 * (a crash retried): what the rerun says about that file is what counts.
 */
export function replaceFile(results, file, rerun) {
  return [...results.filter((r) => r.file !== file), ...rerun.filter((r) => r.file === file || r.file === '')];
}

/** Counts per status; a passed suite is not a test and is not counted. */
export function tally(results) {
  const t = { pass: 0, fail: 0, skip: 0, todo: 0, crash: 0 };
  for (const r of results) if (!(r.isSuite && r.status === 'pass')) t[r.status]++;
  return t;
}

/**
 * The matrix's verdict over its legs. A leg fails on any failed or crashed
 * test, a missing result (the guest died, timed out or its runner broke), or
 * a count of zero tests. With two legs or more, a test skipped on every leg
 * fails too: the matrix exists so that each test runs on some kernel.
 * @param {Array<{ name: string, ok: boolean, error?: string, tests: TestResult[] }>} legs
 * @returns {{ ok: boolean, problems: string[] }}
 */
export function verdict(legs) {
  const problems = [];
  for (const leg of legs) {
    if (leg.error) problems.push(`${leg.name}: ${leg.error}`);
    if (!leg.error && leg.tests.length === 0) problems.push(`${leg.name}: no test ran`);
    for (const r of leg.tests) {
      if (r.status === 'fail') problems.push(`${leg.name}: FAILED ${r.name} (${shortFile(r.file)}): ${r.reason ?? ''}`);
      if (r.status === 'crash') problems.push(`${leg.name}: CRASHED ${shortFile(r.file)}: ${r.reason}`);
    }
  }
  if (legs.length >= 2 && legs.every((l) => !l.error)) {
    for (const [key, where] of skippedEverywhere(legs)) problems.push(`skipped on every kernel: ${key} (${where.join('; ')})`);
  }
  return { ok: problems.length === 0, problems };
}

/** Tests skipped on every leg, with each leg's reason. */
export function skippedEverywhere(legs) {
  const byKey = new Map();
  for (const leg of legs) {
    for (const r of leg.tests) {
      const key = `${shortFile(r.file)}: ${r.name}`;
      if (!byKey.has(key)) byKey.set(key, []);
      byKey.get(key).push({ leg: leg.name, r });
    }
  }
  const out = [];
  for (const [key, seen] of byKey) {
    if (seen.length === legs.length && seen.every((s) => s.r.status === 'skip')) out.push([key, seen.map((s) => `${s.leg}: ${s.r.reason ?? 'skipped'}`)]);
  }
  return out;
}

/**
 * Tests skipped on some leg and passed on another: what the matrix covers
 * that one kernel alone would not.
 */
export function coveredElsewhere(legs) {
  const out = [];
  for (const leg of legs) {
    for (const r of leg.tests.filter((t) => t.status === 'skip')) {
      // Legs run the checkout from different folders: compare files from the checkout root.
      const ranOn = legs.filter((o) => o !== leg && o.tests.some((t) => shortFile(t.file) === shortFile(r.file) && t.name === r.name && t.status === 'pass')).map((o) => o.name);
      if (ranOn.length > 0) out.push({ skippedOn: leg.name, name: r.name, file: shortFile(r.file), ranOn });
    }
  }
  return out;
}

/** A test file's path from the checkout root (`test/kernel/x.test.ts`). */
export function shortFile(file) {
  const i = file.lastIndexOf('/test/');
  if (i >= 0) return file.slice(i + 1);
  const s = file.lastIndexOf('/scripts/');
  return s >= 0 ? file.slice(s + 1) : file;
}
