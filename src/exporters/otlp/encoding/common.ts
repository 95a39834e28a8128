import type { Resource } from '@opentelemetry/resources';
import { encodeFragment, ProtoWriter, WireType, type RequestBuffers } from './ProtoWriter.js';

/**
 * opentelemetry.proto.common.v1 and resource.v1 (AnyValue, KeyValue,
 * InstrumentationScope, Resource) for the direct OTLP encoders, value for
 * value what @opentelemetry/otlp-transformer writes for the same SDK data
 * (test/exporters/otlp/encodingEquivalence.test.ts decodes both and
 * compares them), and the cached encodings that make repeated parts cost a
 * copy: a resource's bytes per Resource object, a scope's per name.
 */

const LD = WireType.LengthDelimited;
const MIN_INT64 = -(2 ** 63);
const MAX_INT64 = 2 ** 63;

/**
 * The fields of an AnyValue message for an attribute value, dispatched as the
 * SDK's serializer does: string; boolean; number as int_value when an
 * integer in int64 range, else double_value; bytes; array; key-value list.
 * Anything else (undefined, null, a function) is an empty AnyValue.
 */
export function writeAnyValue(w: ProtoWriter, value: unknown): void {
  switch (typeof value) {
    case 'string':
      w.tag(1, LD).string(value);
      return;
    case 'boolean':
      w.tag(2, WireType.Varint).bool(value);
      return;
    case 'number':
      if (Number.isInteger(value) && value >= MIN_INT64 && value < MAX_INT64) w.tag(3, WireType.Varint).int64(value);
      else w.tag(4, WireType.Fixed64).double(value);
      return;
  }
  if (value instanceof Uint8Array) {
    w.tag(7, LD).bytes(value);
  } else if (Array.isArray(value)) {
    w.tag(5, LD).fork();
    for (const item of value) {
      w.tag(1, LD).fork();
      writeAnyValue(w, item);
      w.ldelim();
    }
    w.ldelim();
  } else if (typeof value === 'object' && value !== null) {
    w.tag(6, LD).fork();
    const o = value as Record<string, unknown>;
    for (const k in o) {
      if (!Object.hasOwn(o, k)) continue;
      writeKeyValue(w, 1, k, o[k]);
    }
    w.ldelim();
  }
}

/** One KeyValue as field `field` of the enclosing message. */
export function writeKeyValue(w: ProtoWriter, field: number, key: string, value: unknown): void {
  w.tag(field, LD).fork().tag(1, LD).string(key).tag(2, LD).fork();
  writeAnyValue(w, value);
  w.ldelim().ldelim();
}

/** Every own attribute of `attributes`, in their order, as repeated KeyValue field `field`. */
export function writeAttributes(w: ProtoWriter, attributes: Readonly<Record<string, unknown>>, field: number): void {
  for (const k in attributes) {
    if (!Object.hasOwn(attributes, k)) continue;
    writeKeyValue(w, field, k, attributes[k]);
  }
}

/** A KeyValue field (tag included), encoded once: the unit a label-set cache splices. */
export function encodeKeyValue(field: number, key: string, value: unknown): Uint8Array {
  return encodeFragment((w) => writeKeyValue(w, field, key, value));
}

/**
 * Field `field` holding the Resource message (attributes, dropped count 0)
 * of `resource`, and, when the resource has a schema URL, the enclosing
 * message's `schema_url` field (`schemaUrlField`). Both ResourceMetrics and
 * ResourceLogs put the resource at 1 and its schema URL at 3.
 */
function encodeResource(resource: Resource): { resource: Uint8Array; schemaUrl: Uint8Array } {
  const res = encodeFragment((w) => {
    w.tag(1, LD).fork();
    writeAttributes(w, resource.attributes, 1);
    w.tag(2, WireType.Varint).uint32(0);
    w.ldelim();
  });
  const url = resource.schemaUrl;
  const schemaUrl = url ? encodeFragment((w) => w.tag(3, LD).string(url)) : new Uint8Array(0);
  return { resource: res, schemaUrl };
}

/**
 * The encoded resource of each Resource object (an agent has one; its
 * attributes are final once detectors have resolved, which the exporters
 * wait for before encoding). Weak: a dropped Resource drops its bytes.
 */
const resourceCache = new WeakMap<Resource, { resource: Uint8Array; schemaUrl: Uint8Array }>();

/** {@link encodeResource}, cached per Resource object. */
export function encodedResource(resource: Resource): { resource: Uint8Array; schemaUrl: Uint8Array } {
  let e = resourceCache.get(resource);
  if (e === undefined || resource.asyncAttributesPending === true) {
    e = encodeResource(resource);
    // Not cached while detectors are still resolving: the attributes may still change.
    if (resource.asyncAttributesPending !== true) resourceCache.set(resource, e);
  }
  return e;
}

/** An instrumentation scope as the SDK hands it to its serializer. */
export interface Scope {
  name: string;
  version?: string | undefined;
  schemaUrl?: string | undefined;
}

/**
 * InstrumentationScope as field 1 of ScopeMetrics/ScopeLogs (name, version
 * when set), and the enclosing message's schema_url field (3) when set:
 * encoded once per scope by the encoders that own it.
 */
export function encodeScope(scope: Scope): { scope: Uint8Array; schemaUrl: Uint8Array } {
  const s = encodeFragment((w) => {
    w.tag(1, LD).fork().tag(1, LD).string(scope.name);
    if (scope.version) w.tag(2, LD).string(scope.version);
    w.ldelim();
  });
  const url = scope.schemaUrl;
  return { scope: s, schemaUrl: url ? encodeFragment((w) => w.tag(3, LD).string(url)) : new Uint8Array(0) };
}

/**
 * A bounded string-keyed cache of encoded fragments. When full it is
 * cleared (not evicted one by one): the working set of label sets is small
 * and stable, and a churning one then costs re-encoding, never unbounded
 * memory.
 */
export class FragmentCache<V> {
  private readonly map = new Map<string, V>();

  constructor(private readonly maxEntries: number) {}

  get(key: string): V | undefined {
    return this.map.get(key);
  }

  set(key: string, value: V): void {
    if (this.map.size >= this.maxEntries) this.map.clear();
    this.map.set(key, value);
  }

  get size(): number {
    return this.map.size;
  }
}

/**
 * The envelope the logs and traces export requests share, with one
 * resource and one scope:
 * `resource_<signal>(1) { resource(1), scope_<signal>(2) { scope(1), items(2)*, schema_url(3) }, schema_url(3) }`.
 * `writeItem` writes one item's message fields (the LogRecord's or the Span's).
 */
export function encodeSingleScopeRequest<T>(
  resource: Resource,
  scope: { scope: Uint8Array; schemaUrl: Uint8Array },
  items: readonly T[],
  writeItem: (w: ProtoWriter, item: T) => void,
  buffers: RequestBuffers,
): Uint8Array {
  const w = buffers.writer(items.length);
  const res = encodedResource(resource);
  w.tag(1, LD).fork().raw(res.resource);
  w.tag(2, LD).fork().raw(scope.scope);
  for (const item of items) {
    w.tag(2, LD).fork();
    writeItem(w, item);
    w.ldelim();
  }
  w.raw(scope.schemaUrl).ldelim();
  w.raw(res.schemaUrl).ldelim();
  const bytes = w.finish();
  buffers.learn(bytes.length, items.length);
  return bytes;
}
