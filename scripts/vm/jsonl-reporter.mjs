// A node:test reporter for the kernel matrix: one JSON line per finished
// test or suite, with what the TAP reporter leaves out for passing tests: the
// file it belongs to. A test file whose process died by a signal is reported
// by the runner as one failed test of that file, its error carrying `signal`.
//   node --test --test-reporter=./scripts/vm/jsonl-reporter.mjs --test-reporter-destination=FILE ...
export default async function* jsonlReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const d = event.data;
    const err = d.details?.error;
    const line = {
      file: d.file ?? '',
      name: d.name,
      nesting: d.nesting,
      type: d.details?.type ?? 'test',
      ok: event.type === 'test:pass',
      skip: d.skip === undefined || d.skip === false ? undefined : d.skip === true ? '' : String(d.skip),
      todo: d.todo === undefined || d.todo === false ? undefined : true,
    };
    if (err) {
      line.error = String(err.cause?.message ?? err.message ?? err).split('\n')[0];
      line.failureType = err.failureType;
      if (err.signal) line.signal = err.signal;
      if (err.exitCode !== undefined && err.exitCode !== null) line.exitCode = err.exitCode;
    }
    yield JSON.stringify(line) + '\n';
  }
}
