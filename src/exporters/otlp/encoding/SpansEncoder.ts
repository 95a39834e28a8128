import type { Resource } from '@opentelemetry/resources';
import type { FailureReason } from '../../../model/connection.js';
import { ERROR_TYPE, KmeshAttr, SemconvAttr } from '../../../model/semconv.js';
import { connectionSpanAttributes, spanName, type ConnectionSpan } from '../../../model/traces.js';
import type { EncodedRequest } from '../transport.js';
import { AttributeSetCache } from './AttributeSetCache.js';
import { encodeScope, encodeSingleScopeRequest, FragmentCache, writeAttributes, writeKeyValue, type Scope } from './common.js';
import { encodeFragment, int64VarintLength, ProtoWriter, REQUEST_BUFFERS_POOLED, RequestBuffers, UnixNanoBits, WireType } from './ProtoWriter.js';

/**
 * Direct OTLP encoding of connection spans: one ExportTraceServiceRequest
 * (opentelemetry.proto.collector.trace.v1) from the pipeline's
 * ConnectionSpans, with the content of the SDK path (toReadableSpan and
 * @opentelemetry/otlp-transformer's ProtobufTraceSerializer) —
 * test/exporters/otlp/spansEncodingEquivalence.test.ts decodes both and
 * compares them field by field.
 *
 * What repeats is encoded once and spliced: the resource and scope; the
 * processors' identity attributes of a span (`source.k8s.*`,
 * `destination.k8s.*`: a batch carries a few distinct sets), cached per set
 * as the bytes of their KeyValue fields; attributes with few values
 * (addresses, `network.*`, `kmesh.response_flags`, `error.type`); each
 * attribute key; the span's kind and its constant tail (dropped counts,
 * status, flags). Per span, only the ids, the name, the times, the ports
 * and the numbers are encoded.
 */

const LD = WireType.LengthDelimited;

/** Span field numbers (opentelemetry/proto/trace/v1/trace.proto). */
const F = {
  traceId: 1,
  spanId: 2,
  parentSpanId: 4,
  name: 5,
  kind: 6,
  start: 7,
  end: 8,
  attributes: 9,
  droppedAttributes: 10,
  droppedEvents: 12,
  droppedLinks: 14,
  status: 15,
  flags: 16,
} as const;

/** Span.SpanKind values (trace.proto): the SDK's SpanKind + 1. */
const PROTO_KIND = { SERVER: 2, CLIENT: 3 } as const;

/** Status.StatusCode values (trace.proto). */
const STATUS_UNSET = 0;
const STATUS_ERROR = 2;

/**
 * SpanFlags (trace.proto): the W3C trace flags (SAMPLED, 0x01) in the low
 * byte, CONTEXT_HAS_IS_REMOTE (0x100) always, CONTEXT_IS_REMOTE (0x200) when
 * the parent is remote: the server span's parent is the client span,
 * reported by the other socket (see toReadableSpan), the client span has none.
 */
const FLAGS = { CLIENT: 0x101, SERVER: 0x301 } as const;

/** Where the spans were made: the SDK path's instrumentation scope. */
export const SPAN_SCOPE: Scope = { name: 'kmesh-otel' };

const A = SemconvAttr;
const K = KmeshAttr;

/** The attribute keys connectionAttributes sets itself, in its order. */
const OWN_KEYS = [
  A.networkTransport,
  A.networkType,
  A.networkLocalAddress,
  A.networkLocalPort,
  A.networkPeerAddress,
  A.networkPeerPort,
  A.serverAddress,
  A.serverPort,
  A.clientAddress,
  A.clientPort,
  K.sentBytes,
  K.receivedBytes,
  K.retransmissions,
  K.srtt,
  K.minRtt,
  K.responseFlags,
  A.errorType,
] as const;
type OwnKey = (typeof OWN_KEYS)[number];
const OWN_KEY_SET: ReadonlySet<string> = new Set(OWN_KEYS);

/** The key field and the value field's tag of each own key's KeyValue, after the KeyValue's length. */
const KEY_HEAD = Object.fromEntries(OWN_KEYS.map((k) => [k, encodeFragment((w) => w.tag(1, LD).string(k).tag(2, LD))])) as Record<OwnKey, Uint8Array>;

/** Per own key, indexed by AnyValue length x 8 + value field: the attribute field's bytes before the value's payload. */
const VALUE_PREFIXES = Object.fromEntries(OWN_KEYS.map((k) => [k, [] as Array<Uint8Array | undefined>])) as Record<OwnKey, Array<Uint8Array | undefined>>;

/**
 * A whole KeyValue attribute field up to its value's payload: attributes
 * tag, KeyValue length, key, value tag, AnyValue length, the AnyValue's
 * field tag. It depends only on the key, the value's field and the
 * AnyValue's length, so a span writes one splice and the payload. Bounded:
 * own keys x 2 value fields x AnyValue lengths up to 11 (numbers only).
 */
function valuePrefix(key: OwnKey, valueField: number, wireType: WireType, anyLen: number): Uint8Array {
  const slot = anyLen * 8 + valueField;
  let prefix = VALUE_PREFIXES[key][slot];
  if (prefix === undefined) {
    const head = KEY_HEAD[key];
    prefix = encodeFragment((w) =>
      w
        .tag(F.attributes, LD)
        .uint32(head.length + int64VarintLength(anyLen) + anyLen)
        .raw(head)
        .uint32(anyLen)
        .tag(valueField, wireType),
    );
    VALUE_PREFIXES[key][slot] = prefix;
  }
  return prefix;
}

/** Field 6 (kind) per span kind. */
const KIND_FIELD = {
  CLIENT: encodeFragment((w) => w.tag(F.kind, WireType.Varint).int32(PROTO_KIND.CLIENT)),
  SERVER: encodeFragment((w) => w.tag(F.kind, WireType.Varint).int32(PROTO_KIND.SERVER)),
};

/**
 * Everything after the attributes, which the model fixes per span kind and
 * failure: dropped attribute/event/link counts (0: a connection span has no
 * events or links and no attribute limit), status (ERROR with the errno
 * name for a failed connect, else UNSET), flags.
 */
function encodeTail(kind: 'CLIENT' | 'SERVER', failure: FailureReason | undefined): Uint8Array {
  return encodeFragment((w) => {
    w.tag(F.droppedAttributes, WireType.Varint).uint32(0);
    w.tag(F.droppedEvents, WireType.Varint).uint32(0);
    w.tag(F.droppedLinks, WireType.Varint).uint32(0);
    w.tag(F.status, LD).fork();
    // The SDK writes a message only when non-empty (an unknown reason has none).
    const message = failure === undefined ? undefined : ERROR_TYPE[failure];
    if (typeof message === 'string' && message !== '') w.tag(2, LD).string(message);
    w.tag(3, WireType.Varint).int32(failure === undefined ? STATUS_UNSET : STATUS_ERROR);
    w.ldelim();
    w.tag(F.flags, WireType.Fixed32);
    (w as unknown as { fixed32(v: number): void }).fixed32(FLAGS[kind]);
  });
}

const TAILS = new Map<string, Uint8Array>();
function tail(kind: 'CLIENT' | 'SERVER', failure: FailureReason | undefined): Uint8Array {
  const key = failure === undefined ? kind : `${kind}/${failure}`;
  let t = TAILS.get(key);
  if (t === undefined) {
    // Keyed by the reason's text: bounded by the reasons the model names (an unknown one is encoded, not kept).
    t = encodeTail(kind, failure);
    if (failure === undefined || Object.hasOwn(ERROR_TYPE, failure)) TAILS.set(key, t);
  }
  return t;
}

/** The processors' identities of a span, encoded, and whether the fast path may splice them. */
interface IdentityBlock {
  bytes: Uint8Array;
  /**
   * False when the set holds a key whose place in the SDK path's attribute
   * object is not "after the own keys, in order": an own key (it replaces
   * that key's value in place), or an array-index key like `7` (JavaScript
   * orders those first); also any non-string value. Such spans take the
   * generic path (connectionSpanAttributes, then every attribute).
   */
  spliceable: boolean;
}

/** Kmesh access-log keys, which connectionAttributes leaves out of spans. */
function isAccessLogKey(k: string): boolean {
  return k.startsWith('src.') || k.startsWith('dst.');
}

/** Keys that JavaScript objects order before all others (array indices, ECMA-262 "array index"). */
function isArrayIndex(k: string): boolean {
  const c = k.charCodeAt(0);
  if (!(c >= 48 && c <= 57)) return false;
  const n = Number(k);
  return String(n) === k && n < 4_294_967_295;
}

function identityBlock(attributes: Readonly<Record<string, unknown>>): IdentityBlock {
  let spliceable = true;
  const bytes = encodeFragment((w) => {
    for (const k in attributes) {
      if (isAccessLogKey(k)) continue;
      const v = attributes[k];
      if (typeof v !== 'string' || OWN_KEY_SET.has(k) || isArrayIndex(k)) spliceable = false;
      writeKeyValue(w, F.attributes, k, v);
    }
  });
  return { bytes, spliceable };
}

/** Distinct values kept per low-cardinality attribute (addresses, types...). */
const VALUE_CACHE_SIZE = 4_096;

export class ConnectionSpanEncoder {
  private readonly scope: { scope: Uint8Array; schemaUrl: Uint8Array };
  /** Learnt from each request; in-flight requests' memory is reused (as in the logs encoder). */
  private readonly buffers = new RequestBuffers(768, REQUEST_BUFFERS_POOLED);
  private readonly identities = new AttributeSetCache<IdentityBlock>(identityBlock);
  /** Encoded KeyValue field per low-cardinality own string attribute and value. */
  private readonly values = new Map<OwnKey, FragmentCache<Uint8Array>>();
  private readonly startTime = new UnixNanoBits();
  private readonly endTime = new UnixNanoBits();

  constructor(
    private readonly resource: Resource,
    scope: Scope = SPAN_SCOPE,
  ) {
    this.scope = encodeScope(scope);
  }

  /** Distinct identity attribute sets currently cached (tests). */
  get cachedIdentitySets(): number {
    return this.identities.size;
  }

  /** One ExportTraceServiceRequest with every span, in order, under the resource and scope. */
  encode(spans: readonly ConnectionSpan[]): EncodedRequest {
    const bytes = encodeSingleScopeRequest(this.resource, this.scope, spans, (w, span) => this.writeSpan(w, span), this.buffers);
    return { bytes, items: spans.length, release: () => this.buffers.give(bytes) };
  }

  /** The fields of one Span message, in the SDK serializer's order. */
  private writeSpan(w: ProtoWriter, span: ConnectionSpan): void {
    const c = span.context;
    w.tag(F.traceId, LD).hexBytes(c.traceId);
    w.tag(F.spanId, LD).hexBytes(c.spanId);
    // The SDK writes a parent only when its span id is non-empty.
    if (c.parentSpanId) w.tag(F.parentSpanId, LD).hexBytes(c.parentSpanId);
    w.tag(F.name, LD).string(spanName(span));
    w.raw(KIND_FIELD[span.kind]);
    w.tag(F.start, WireType.Fixed64).fixed64Bits(this.startTime.of(span.startUnixNano));
    w.tag(F.end, WireType.Fixed64).fixed64Bits(this.endTime.of(span.endUnixNano));
    const identity = this.identities.get(span.attributes);
    if (identity.spliceable) {
      this.writeOwnAttributes(w, span);
      w.raw(identity.bytes);
    } else {
      writeAttributes(w, connectionSpanAttributes(span), F.attributes);
    }
    w.raw(tail(span.kind, span.event.failure));
  }

  /** connectionAttributes' own part, same keys, order and value types. */
  private writeOwnAttributes(w: ProtoWriter, span: ConnectionSpan): void {
    const e = span.event;
    const client = span.kind === 'CLIENT';
    this.cached(w, A.networkTransport, 'tcp');
    this.cached(w, A.networkType, e.family === 4 ? 'ipv4' : 'ipv6');
    this.cached(w, A.networkLocalAddress, client ? e.srcAddr : e.dstAddr);
    this.attr(w, A.networkLocalPort, client ? e.srcPort : e.dstPort);
    this.cached(w, A.networkPeerAddress, client ? e.dstAddr : e.srcAddr);
    this.attr(w, A.networkPeerPort, client ? e.dstPort : e.srcPort);
    this.cached(w, A.serverAddress, e.origDstAddr ?? e.dstAddr);
    this.attr(w, A.serverPort, e.origDstPort ?? e.dstPort);
    this.cached(w, A.clientAddress, e.srcAddr);
    this.attr(w, A.clientPort, e.srcPort);
    this.attr(w, K.sentBytes, e.sentBytes);
    this.attr(w, K.receivedBytes, e.receivedBytes);
    this.attr(w, K.retransmissions, e.retransmits);
    this.attr(w, K.srtt, e.srttUs / 1e6);
    this.attr(w, K.minRtt, e.minRttUs / 1e6);
    this.cached(w, K.responseFlags, e.failure !== undefined ? 'UF' : '-');
    if (e.failure !== undefined) this.cached(w, A.errorType, ERROR_TYPE[e.failure]);
  }

  /** A string attribute with few distinct values, as a cached KeyValue field. */
  private cached(w: ProtoWriter, key: OwnKey, value: string): void {
    if (typeof value !== 'string') {
      // Bad input (the model's types say string): the SDK's value dispatch, uncached.
      writeKeyValue(w, F.attributes, key, value);
      return;
    }
    let cache = this.values.get(key);
    if (cache === undefined) {
      cache = new FragmentCache<Uint8Array>(VALUE_CACHE_SIZE);
      this.values.set(key, cache);
    }
    let bytes = cache.get(value);
    if (bytes === undefined) {
      bytes = encodeFragment((f) => writeKeyValue(f, F.attributes, key, value));
      cache.set(value, bytes);
    }
    w.raw(bytes);
  }

  /**
   * A numeric attribute: the SDK's choice (int_value for an integer in
   * int64 range, else double_value) behind a cached prefix; anything else
   * (a huge or non-finite number, bad input) through the generic writer.
   */
  private attr(w: ProtoWriter, key: OwnKey, value: number): void {
    if (typeof value === 'number' && Number.isFinite(value)) {
      if (!Number.isInteger(value)) {
        // AnyValue = double_value tag + 8 bytes.
        w.raw(valuePrefix(key, 4, WireType.Fixed64, 9)).double(value);
        return;
      }
      if (Math.abs(value) <= Number.MAX_SAFE_INTEGER) {
        // AnyValue = int_value tag + varint: 2..11 bytes.
        w.raw(valuePrefix(key, 3, WireType.Varint, 1 + int64VarintLength(value))).int64(value);
        return;
      }
    }
    writeKeyValue(w, F.attributes, key, value);
  }
}
