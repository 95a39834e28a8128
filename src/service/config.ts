import { readFileSync, statSync } from 'node:fs';
import { z } from 'zod';
import {
  parseComponentId,
  type ComponentId,
  type Factory,
  type Kind,
  type Signal,
} from '../component/component.js';
import { formatPath, zodProblems, type ConfigProblem } from '../config/errors.js';
import { MAX_CONFIG_BYTES, parseConfigYaml } from '../config/yamlDocument.js';
import { duration } from '../config/types.js';
import { expandEnv } from './envExpand.js';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const pipelineSchema = z.strictObject({
  /** Receivers feeding this pipeline (at least one). */
  receivers: z.array(z.string()).min(1, 'a pipeline needs at least one receiver'),
  /** Processors, applied in order. Default: none. */
  processors: z.array(z.string()).default([]),
  /** Exporters the pipeline fans out to (at least one). */
  exporters: z.array(z.string()).min(1, 'a pipeline needs at least one exporter'),
});
export type PipelineConfig = z.infer<typeof pipelineSchema>;

const componentSection = z.record(z.string(), z.unknown()).nullish().transform((v) => v ?? {});

/** The collector layout. Component bodies are checked by their factories, not here. */
export const serviceFileSchema = z.strictObject({
  receivers: componentSection,
  processors: componentSection,
  exporters: componentSection,
  extensions: componentSection,
  /** Accepted for compatibility with collector configs; nothing connects yet. */
  connectors: componentSection,
  service: z.strictObject({
    /** Extensions to start (ids defined under `extensions`). Default: none. */
    extensions: z.array(z.string()).default([]),
    /** `metrics`, `logs`, `traces`, optionally `/name` (e.g. `logs/loki`). */
    pipelines: z.record(z.string(), pipelineSchema).default({}),
    /**
     * One grace period for the whole shutdown, shared by every component in
     * stop order (receivers, processors, exporters, extensions): whatever is
     * not flushed when it ends is counted, logged and abandoned, and the
     * agent exits. Keep it below the pod's terminationGracePeriodSeconds.
     * Default `10s`.
     */
    shutdown_timeout: duration.default(10_000),
    telemetry: z
      .strictObject({
        logs: z.strictObject({ level: z.enum(LOG_LEVELS).default('info') }).default({ level: 'info' }),
        /**
         * Resource attributes of everything the agent exports, as the
         * Collector's `service.telemetry.resource`: each key sets one
         * attribute over what the agent detects and `OTEL_RESOURCE_ATTRIBUTES`
         * says; a null value (`key:` or `key: null`) removes it. Default: none.
         */
        resource: z.record(z.string().min(1), z.string().nullable()).default({}),
      })
      .default({ logs: { level: 'info' }, resource: {} }),
  }),
});

export interface ResolvedComponent {
  kind: Kind;
  id: ComponentId;
  factory: Factory;
  config: unknown;
}

export interface ResolvedPipeline {
  /** e.g. `metrics` or `logs/loki`. */
  name: string;
  signal: Signal;
  receivers: string[];
  processors: string[];
  exporters: string[];
}

export interface AgentConfig {
  components: Map<string, ResolvedComponent>; // key: `${kind}:${id}`
  extensions: string[];
  pipelines: ResolvedPipeline[];
  logLevel: LogLevel;
  /** `service.telemetry.resource`: attributes to set (null: remove). */
  resource: Record<string, string | null>;
  /** `service.shutdown_timeout`, ms: the grace period of the whole shutdown. */
  shutdownTimeoutMs: number;
}

export interface LoadResult {
  config?: AgentConfig;
  problems: ConfigProblem[];
  /** Non-fatal remarks (unset env vars, defined but unused components). */
  warnings: string[];
}

const SECTION: Record<Kind, 'receivers' | 'processors' | 'exporters' | 'extensions'> = {
  receiver: 'receivers',
  processor: 'processors',
  exporter: 'exporters',
  extension: 'extensions',
};

export const componentKey = (kind: Kind, id: string): string => `${kind}:${id}`;

/** Reads, expands and validates a config file; never throws for user errors. */
export function loadConfigFile(path: string, factories: readonly Factory[], env = process.env): LoadResult {
  let text: string;
  try {
    // Checked before reading: a huge (or endless, like /dev/zero) file is refused whole.
    const size = statSync(path).size;
    if (size > MAX_CONFIG_BYTES) {
      return { problems: [{ path: '', message: `config file ${path} is ${size} bytes; the limit is ${MAX_CONFIG_BYTES} (1 MiB)` }], warnings: [] };
    }
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { problems: [{ path: '', message: `cannot read config file ${path}: ${(err as Error).message}` }], warnings: [] };
  }
  return loadConfigText(text, factories, env);
}

export function loadConfigText(text: string, factories: readonly Factory[], env = process.env): LoadResult {
  const parsed = parseConfigYaml(text);
  if (parsed.problems.length > 0) return { problems: parsed.problems, warnings: [] };
  const { value, missing } = expandEnv(parsed.value, env);
  const warnings = missing.map((n) => `environment variable ${n} is not set; expanded to an empty string`);
  const result = validateConfig(value, factories);
  return { ...result, warnings: [...warnings, ...result.warnings] };
}

/** Checks a parsed config against the service schema and every component's factory. Reports all problems at once. */
export function validateConfig(raw: unknown, factories: readonly Factory[]): LoadResult {
  const problems: ConfigProblem[] = [];
  const warnings: string[] = [];
  const parsed = serviceFileSchema.safeParse(raw);
  if (!parsed.success) {
    problems.push(...zodProblems([], parsed.error));
    // Keep going on the sections that did parse, so every problem shows at once.
  }
  const file = (parsed.success ? parsed.data : partialSections(raw)) as Partial<z.infer<typeof serviceFileSchema>>;

  const components = new Map<string, ResolvedComponent>();
  for (const kind of ['receiver', 'processor', 'exporter', 'extension'] as const) {
    const section = SECTION[kind];
    const entries = (file[section] ?? {}) as Record<string, unknown>;
    for (const [idText, body] of Object.entries(entries)) {
      const id = parseComponentId(idText);
      if (id === undefined) {
        problems.push({ path: formatPath([section, idText]), message: 'invalid component id (use type or type/name)' });
        continue;
      }
      const factory = factories.find((f) => f.kind === kind && f.type === id.type);
      if (factory === undefined) {
        const known = factories.filter((f) => f.kind === kind).map((f) => f.type).sort();
        problems.push({
          path: formatPath([section, idText]),
          message: `unknown ${kind} type "${id.type}" (known: ${known.join(', ')})`,
        });
        continue;
      }
      const res = factory.configSchema.safeParse(body ?? factory.createDefaultConfig());
      if (!res.success) {
        problems.push(...zodProblems([section, idText], res.error));
        continue;
      }
      components.set(componentKey(kind, idText), { kind, id, factory, config: res.data });
    }
  }

  const service = file.service;
  const pipelines: ResolvedPipeline[] = [];
  const used = new Set<string>();
  const extensions = service?.extensions ?? [];
  extensions.forEach((ext, i) => {
    if (!components.has(componentKey('extension', ext)) && !definedButInvalid(raw, 'extensions', ext)) {
      problems.push({ path: `service.extensions[${i}]`, message: `no extension "${ext}" is defined` });
    }
    used.add(componentKey('extension', ext));
  });

  for (const [name, p] of Object.entries(service?.pipelines ?? {})) {
    const signalText = name.split('/')[0]!;
    if (signalText !== 'metrics' && signalText !== 'logs' && signalText !== 'traces') {
      problems.push({ path: `service.pipelines.${name}`, message: 'pipeline name must be metrics, logs or traces (optionally /name)' });
      continue;
    }
    const signal: Signal = signalText;
    const check = (kind: Kind, list: string[], field: string): void => {
      list.forEach((ref, i) => {
        const path = `service.pipelines.${name}.${field}[${i}]`;
        const c = components.get(componentKey(kind, ref));
        used.add(componentKey(kind, ref));
        if (c === undefined) {
          if (!definedButInvalid(raw, SECTION[kind], ref)) problems.push({ path, message: `no ${kind} "${ref}" is defined` });
          return;
        }
        if (!supports(c.factory, signal)) {
          problems.push({ path, message: `${kind} "${ref}" does not support ${signal}` });
        }
      });
      const dup = list.find((ref, i) => list.indexOf(ref) !== i);
      if (dup !== undefined) problems.push({ path: `service.pipelines.${name}.${field}`, message: `"${dup}" is listed twice` });
    };
    check('receiver', p.receivers, 'receivers');
    check('processor', p.processors, 'processors');
    check('exporter', p.exporters, 'exporters');
    pipelines.push({ name, signal, receivers: p.receivers, processors: p.processors, exporters: p.exporters });
  }
  if (service !== undefined && pipelines.length === 0 && problems.length === 0) {
    problems.push({ path: 'service.pipelines', message: 'at least one pipeline is required' });
  }
  for (const key of components.keys()) {
    if (!used.has(key)) warnings.push(`${key.replace(':', ' ')} is defined but not used by any pipeline`);
  }

  if (problems.length > 0) return { problems, warnings };
  return {
    config: {
      components,
      extensions,
      pipelines,
      logLevel: service?.telemetry.logs.level ?? 'info',
      resource: service?.telemetry.resource ?? {},
      shutdownTimeoutMs: service?.shutdown_timeout ?? 10_000,
    },
    problems,
    warnings,
  };
}

function supports(factory: Factory, signal: Signal): boolean {
  if (factory.kind === 'extension') return false;
  if (signal === 'metrics') return factory.createMetrics !== undefined;
  if (signal === 'logs') return factory.createLogs !== undefined;
  return factory.createTraces !== undefined;
}

/** A component that is defined but whose body failed validation: its references are not reported twice. */
function definedButInvalid(raw: unknown, section: string, id: string): boolean {
  if (raw === null || typeof raw !== 'object') return false;
  const s = (raw as Record<string, unknown>)[section];
  return s !== null && typeof s === 'object' && Object.prototype.hasOwnProperty.call(s, id);
}

/** Best-effort view of a config whose top level failed the schema, so component checks still run. */
function partialSections(raw: unknown): Record<string, unknown> {
  if (raw === null || typeof raw !== 'object') return {};
  const r = raw as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const s of ['receivers', 'processors', 'exporters', 'extensions'] as const) {
    const v = r[s];
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) out[s] = v;
  }
  const service = serviceFileSchema.shape.service.safeParse(r.service);
  if (service.success) out.service = service.data;
  return out;
}
