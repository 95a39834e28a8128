import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { pino, type Logger } from 'pino';
import type { Factory } from './component/component.js';
import { formatProblems } from './config/errors.js';
import { builtinFactories } from './components.js';
import { formatDoctorReport, realDoctorDeps, runDoctor, type DoctorDeps, type DoctorInput } from './doctor.js';
import { embeddedConfigPath, packageVersion } from './paths.js';
import { createDefaultEbpfReceiverConfig, type EbpfReceiverConfig } from './receiver/ebpf/config.js';
import { loadConfigFile, type LogLevel } from './service/config.js';
import { agentResource, configuredClusterName } from './service/resource.js';
import { Service } from './service/Service.js';
import { SelfTelemetry } from './telemetry/SelfTelemetry.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_CONFIG = 2;

/** Everything the CLI touches outside itself, injected so tests can drive it in-process. */
export interface CliDeps {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  cwd: string;
  factories?: readonly Factory[];
  /** Subscribes to shutdown signals (SIGTERM/SIGINT); returns an unsubscribe function. */
  onSignal: (handler: (signal: string) => void) => () => void;
  /** Ends the process at once (second signal; shutdown grace period elapsed). Only the entry point implements this. */
  forceExit: (code: number) => void;
  /** Where the agent's own log goes; default stderr (stdout carries access logs). */
  logDestination?: pino.DestinationStream;
  /** Called once the service runs (tests use it to find bound ports). */
  onStarted?: (service: Service) => void;
  /** What `doctor` checks (default: this host and the native addon). */
  doctor?: DoctorDeps;
}

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

function defaultConfigPath(cwd: string): string {
  const local = resolve(cwd, 'otel-config.yaml');
  return existsSync(local) ? local : embeddedConfigPath;
}

/**
 * Parses the command line and runs the agent or a sub-command. Resolves to the
 * process exit code; never calls process.exit itself.
 */
export async function runCli(argv: readonly string[], deps: CliDeps): Promise<number> {
  const factories = deps.factories ?? builtinFactories;
  let exitCode = EXIT_OK;
  const program = new Command()
    .name('kmesh-otel')
    .description(
      'OpenTelemetry-native node agent: TCP connection telemetry from eBPF sockops,\n' +
        'exported as Kmesh/Istio-style metrics (Prometheus, OTLP) and access logs.',
    )
    .version(packageVersion, '-V, --version')
    .exitOverride()
    .enablePositionalOptions()
    .configureOutput({ writeOut: deps.stdout, writeErr: deps.stderr })
    .option('-c, --config <file>', 'config file (default: ./otel-config.yaml, else the embedded default)')
    .addOption(new Option('--log-level <level>', 'agent log level (overrides service.telemetry.logs.level)').choices(LEVELS))
    .action(async (opts: { config?: string; logLevel?: LogLevel }) => {
      exitCode = await runAgent(opts, deps, factories);
    });

  program
    .command('validate')
    .description('check a config file and exit: 0 if valid, 2 with every problem named by its key path')
    .option('-c, --config <file>', 'config file (default: ./otel-config.yaml, else the embedded default)')
    .action((opts: { config?: string }) => {
      const path = opts.config !== undefined ? resolve(deps.cwd, opts.config) : defaultConfigPath(deps.cwd);
      const result = loadConfigFile(path, factories, deps.env);
      for (const w of result.warnings) deps.stderr(`warning: ${w}\n`);
      if (result.problems.length > 0) {
        deps.stderr(`${path}: invalid configuration:\n${formatProblems(result.problems)}\n`);
        exitCode = EXIT_CONFIG;
        return;
      }
      deps.stdout(`${path}: configuration is valid\n`);
      exitCode = EXIT_OK;
    });

  program
    .command('doctor')
    .summary('check what this kernel and host allow and which periodic-report source the agent would use: exit 0 if it can run, 1 if not')
    .description(
      'Check what this kernel and host allow, one line per requirement with ok or the fix: root or capabilities, ' +
        'bpffs, the cgroup v2 path, BTF, sockops, sk_storage, ringbuf (one real load of the core and a trial attach), ' +
        'each periodic-report source (a trial load each), and which network namespaces are in view. Then which ' +
        'periodic-report source `auto` would use. Every trial is closed again: nothing stays attached or pinned.\n\n' +
        'Exit 0 when the agent can run, 1 when it cannot, 2 for an invalid config.',
    )
    .option('-c, --config <file>', 'config whose receivers.ebpf is checked (default: ./otel-config.yaml, else the embedded default)')
    .option('--json', 'print the report as JSON (with the kernel logs of refused loads)')
    .action(async (opts: { config?: string; json?: boolean }) => {
      exitCode = await runDoctorCommand(opts, deps, factories);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors with 2.
      return err.exitCode === 0 ? EXIT_OK : EXIT_CONFIG;
    }
    throw err;
  }
  return exitCode;
}

/** `kmesh-otel doctor`: the receivers.ebpf settings the agent would start with, checked against this host. */
async function runDoctorCommand(opts: { config?: string; json?: boolean }, deps: CliDeps, factories: readonly Factory[]): Promise<number> {
  const path = opts.config !== undefined ? resolve(deps.cwd, opts.config) : defaultConfigPath(deps.cwd);
  const loaded = loadConfigFile(path, factories, deps.env);
  if (loaded.config === undefined) {
    deps.stderr(`${path}: invalid configuration:\n${formatProblems(loaded.problems)}\n`);
    return EXIT_CONFIG;
  }
  // The first ebpf receiver, as the service would create it (the config is the factory-validated one).
  const receiver = [...loaded.config.components.values()].find((c) => c.kind === 'receiver' && c.id.type === 'ebpf');
  const config = (receiver?.config as EbpfReceiverConfig | undefined) ?? createDefaultEbpfReceiverConfig();
  const input: DoctorInput = {
    cgroup_path: config.cgroup_path,
    bpf_object: config.bpf_object,
    proc_path: config.proc_path,
    netns_dirs: config.netns_dirs,
    periodic_source: config.periodic_source,
    report_interval: config.report_interval,
    wakeup_bytes: config.wakeup_bytes,
  };
  const report = await runDoctor(input, deps.doctor ?? realDoctorDeps);
  report.lines.unshift(
    receiver !== undefined
      ? { status: 'ok', check: 'config', detail: `receivers.${receiver.id.toString()} of ${path}` }
      : { status: 'warn', check: 'config', detail: `${path} defines no ebpf receiver: checking its defaults`, fix: 'add receivers.ebpf to the config the agent runs with' },
  );
  if (opts.json === true) deps.stdout(JSON.stringify({ config: path, ...report }, null, 2) + '\n');
  else deps.stdout(formatDoctorReport(report));
  return report.ok ? EXIT_OK : EXIT_FAILURE;
}

async function runAgent(
  opts: { config?: string; logLevel?: LogLevel },
  deps: CliDeps,
  factories: readonly Factory[],
): Promise<number> {
  const path = opts.config !== undefined ? resolve(deps.cwd, opts.config) : defaultConfigPath(deps.cwd);
  const loaded = loadConfigFile(path, factories, deps.env);
  const level = opts.logLevel ?? loaded.config?.logLevel ?? 'info';
  const logger: Logger = pino(
    { level, base: { service: 'kmesh-otel' } },
    deps.logDestination ?? pino.destination({ dest: 2, sync: true }),
  );
  for (const w of loaded.warnings) logger.warn(w);
  if (loaded.config === undefined) {
    deps.stderr(`${path}: invalid configuration:\n${formatProblems(loaded.problems)}\n`);
    return EXIT_CONFIG;
  }

  const resource = await agentResource({
    env: deps.env,
    version: packageVersion,
    clusterName: configuredClusterName(loaded.config),
    configured: loaded.config.resource,
  });
  const telemetry = new SelfTelemetry(resource);
  let stopRequested: (reason: string) => void = () => undefined;
  const stopped = new Promise<string>((r) => (stopRequested = r));
  let fatal = false;
  const service = new Service({
    config: loaded.config,
    logger,
    telemetry,
    resource,
    onFatalError: () => {
      fatal = true;
      stopRequested('fatal error');
    },
  });

  let signals = 0;
  let exitNow = false;
  const unsubscribe = deps.onSignal((signal) => {
    signals++;
    if (signals === 1) {
      logger.info({ signal }, 'shutting down (send again to force)');
      stopRequested(signal);
    } else {
      logger.warn({ signal }, 'second signal: forcing exit');
      deps.forceExit(130);
    }
  });

  try {
    logger.info({ config: path, version: packageVersion }, 'starting kmesh-otel');
    try {
      await service.start();
    } catch (err) {
      logger.error({ err }, 'start-up failed');
      deps.stderr(`kmesh-otel: ${(err as Error).message}\n`);
      return EXIT_FAILURE;
    }
    deps.onStarted?.(service);
    const reason = await stopped;
    logger.info({ reason }, 'stopping');
    await service.shutdown();
    const code = fatal ? EXIT_FAILURE : EXIT_OK;
    if (service.shutdownCutShort) {
      // A component still holds handles (an export to a backend that never
      // answers): waiting for the event loop to empty would outlast the
      // grace period the user set, so leave right away. What it held is
      // counted and logged already.
      logger.warn('exiting with the shutdown grace period elapsed');
      exitNow = true;
    } else logger.info('stopped');
    return code;
  } finally {
    unsubscribe();
    await telemetry.shutdown();
    if (exitNow) deps.forceExit(fatal ? EXIT_FAILURE : EXIT_OK);
  }
}
