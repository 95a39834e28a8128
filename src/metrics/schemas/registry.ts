/**
 * The metric schemas an exporter's `schema` key can name. Adding a schema:
 * one file next to this one exporting a {@link MetricSchema}, and one line
 * in {@link SCHEMAS}; the config key's accepted values, its validation
 * message and the exporters follow from here.
 */
import type { MetricSchema } from '../schema.js';
import { istioSchema } from './istio.js';
import { kmeshSchema } from './kmesh.js';

/** Every schema by the name the config uses (the first is the default). */
export const SCHEMAS = {
  kmesh: kmeshSchema,
  istio: istioSchema,
} as const satisfies Record<string, MetricSchema>;

/** Which schema an exporter renders. */
export type SchemaName = keyof typeof SCHEMAS;
export const SCHEMA_NAMES = Object.keys(SCHEMAS) as [SchemaName, ...SchemaName[]];

export function schemaByName(name: SchemaName): MetricSchema {
  return SCHEMAS[name];
}
