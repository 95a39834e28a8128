#!/usr/bin/env -S node --max-semi-space-size=2
// The entry point: the only place that calls process.exit.
// --max-semi-space-size=2 (MiB; V8's default is 16): the agent's garbage is
// short-lived (decoded records, scrape text), and the default young
// generation keeps ~25 MB more resident under load for no measurable gain
// (bench/scale.ts). The same flag is in `npm start` and the Dockerfile.
import { runCli } from './cli.js';

const signals = ['SIGTERM', 'SIGINT'] as const;

runCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  cwd: process.cwd(),
  onSignal: (handler) => {
    for (const s of signals) process.on(s, handler);
    return () => {
      for (const s of signals) process.off(s, handler);
    };
  },
  forceExit: (code) => process.exit(code),
}).then(
  (code) => {
    // Let stdout drain (access logs) before leaving.
    process.exitCode = code;
    if (code !== 0) process.stdout.write('', () => process.exit(code));
    // Every component releases its handles on shutdown, so the loop should
    // empty now. If one does not, do not hang a node's rollout over it.
    setTimeout(() => {
      process.stderr.write('kmesh-otel: handles still open 5 s after shutdown; exiting anyway\n');
      process.exit(code);
    }, 5000).unref();
  },
  (err: unknown) => {
    process.stderr.write(`kmesh-otel: unexpected error: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
