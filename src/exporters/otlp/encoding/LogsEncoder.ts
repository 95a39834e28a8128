import type { Resource } from '@opentelemetry/resources';
import { SeverityNumber } from '@opentelemetry/api';
import type { AccessLogEntry } from '../../../model/logs.js';
import type { MetricSchema } from '../../../metrics/schema.js';
import { RawAttr } from '../../../model/metrics.js';
import { AttributeSetCache } from './AttributeSetCache.js';
import { accessLogSeverity, formatAddr, formatKmeshLine, kmeshLineAndAttributes } from '../../common/accessLogLine.js';
import { encodeScope, encodeSingleScopeRequest, FragmentCache, writeKeyValue, type Scope } from './common.js';
import type { EncodedRequest } from '../transport.js';
import { encodeFragment, int64VarintLength, ProtoWriter, REQUEST_BUFFERS_POOLED, RequestBuffers, UnixNanoBits, WireType } from './ProtoWriter.js';

/**
 * Direct OTLP encoding of access logs: one ExportLogsServiceRequest
 * (opentelemetry.proto.collector.logs.v1) from the pipeline's
 * AccessLogEntries, with the same content as the SDK path (toLogRecord, the
 * sdk-logs LoggerProvider, @opentelemetry/otlp-transformer's
 * ProtobufLogsSerializer) — test/exporters/otlp/encodingEquivalence.test.ts
 * decodes both and compares them field by field.
 *
 * What repeats is encoded once and spliced: the resource and scope; the
 * processors' identity attributes (`src.workload`, `k8s.*`: a batch carries a
 * few distinct sets), cached per set as the bytes of their KeyValue fields;
 * attributes with few values (`direction`, `event`, `state`, addresses...);
 * the attribute keys. Per record, only the body line, the times and the
 * numbers are encoded.
 */

const LD = WireType.LengthDelimited;

/** LogRecord field numbers (opentelemetry/proto/logs/v1/logs.proto). */
const F = { time: 1, severityNumber: 2, severityText: 3, body: 5, attributes: 6, dropped: 7, observedTime: 11 } as const;
const F_ATTRIBUTES = F.attributes;

/** The SDK's default LogRecord attribute count limit (sdk-logs LogRecordLimits, OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT unset). */
export const LOG_RECORD_ATTRIBUTE_COUNT_LIMIT = 128;

/** The attribute keys the exporter itself sets (accessLogAttributes), in their order. */
const OWN_KEYS = [
  'src.addr',
  'dst.addr',
  'direction',
  'event',
  'sent_bytes',
  'received_bytes',
  'duration',
  'state',
  'retransmissions',
  'lost_packets',
  'srtt',
  'min_rtt',
  RawAttr.failureReason,
  'source.address',
  'source.port',
  'destination.address',
  'destination.port',
  'original_destination.address',
  'original_destination.port',
  'network.transport',
  'network.type',
] as const;
type OwnKey = (typeof OWN_KEYS)[number];
const OWN_KEY_SET: ReadonlySet<string> = new Set(OWN_KEYS);

/**
 * Per own key, the encoded start of its KeyValue after the KeyValue's own
 * length: the key field, then the tag of the value field (2). Written once
 * per process; a record adds the lengths and the value.
 */
const KEY_PREFIX = Object.fromEntries(OWN_KEYS.map((k) => [k, encodeFragment((w) => w.tag(1, LD).string(k).tag(2, LD))])) as Record<
  OwnKey,
  Uint8Array
>;

/**
 * Per own key, a whole double-valued KeyValue field up to the 8 value bytes:
 * attributes tag, KeyValue length, key, value tag, AnyValue length (9),
 * double_value tag. Its length is fixed, so a record adds only the double.
 */
const DOUBLE_PREFIX = Object.fromEntries(
  OWN_KEYS.map((k) => [
    k,
    encodeFragment((w) =>
      w
        .tag(F_ATTRIBUTES, LD)
        .uint32(KEY_PREFIX[k].length + 1 + 9)
        .raw(KEY_PREFIX[k])
        .uint32(9)
        .tag(4, WireType.Fixed64),
    ),
  ]),
) as Record<OwnKey, Uint8Array>;


/** Severity number + text fields, per severity the access log uses. */
const SEVERITY: Record<'INFO' | 'WARN', Uint8Array> = {
  INFO: encodeFragment((w) => w.tag(F.severityNumber, WireType.Varint).int32(SeverityNumber.INFO).tag(F.severityText, LD).string('INFO')),
  WARN: encodeFragment((w) => w.tag(F.severityNumber, WireType.Varint).int32(SeverityNumber.WARN).tag(F.severityText, LD).string('WARN')),
};

/** The identity attributes of one label set: their KeyValue fields, and whether the fast path may splice them. */
interface IdentityBlock {
  bytes: Uint8Array;
  /** Attributes in the block. */
  count: number;
  /**
   * False when the set holds a key the exporter sets itself (its value and
   * place follow the merge rules of accessLogAttributes), an empty key (the
   * SDK drops it) or a non-string value: such records take the generic path.
   */
  spliceable: boolean;
}

/** Longest AnyValue with a cached {@link valuePrefix} (addresses, `ip:port` fit). */
const MAX_PREFIXED_LENGTH = 64;

/** Per own key, indexed by AnyValue length x 8 + value field: the KeyValue field's bytes before the value. */
const VALUE_PREFIXES = Object.fromEntries(OWN_KEYS.map((k) => [k, [] as Array<Uint8Array | undefined>])) as Record<
  OwnKey,
  Array<Uint8Array | undefined>
>;

/**
 * A whole KeyValue attribute field up to its value's payload: attributes
 * tag, KeyValue length, key, value tag, AnyValue length, the AnyValue's
 * field tag (`valueField`). Depends only on the key, the value type and
 * the AnyValue's length, so a record writes one splice and the payload.
 * Bounded: own keys x 2 types x lengths up to {@link MAX_PREFIXED_LENGTH}.
 */
function valuePrefix(key: OwnKey, valueField: number, wireType: WireType, anyLen: number): Uint8Array {
  const slot = anyLen * 8 + valueField;
  let prefix = VALUE_PREFIXES[key][slot];
  if (prefix === undefined) {
    const head = KEY_PREFIX[key];
    prefix = encodeFragment((w) =>
      w
        .tag(F_ATTRIBUTES, LD)
        .uint32(head.length + int64VarintLength(anyLen) + anyLen)
        .raw(head)
        .uint32(anyLen)
        .tag(valueField, wireType),
    );
    VALUE_PREFIXES[key][slot] = prefix;
  }
  return prefix;
}

/** The encoded identity attributes of a set, and whether the fast path may splice them. */
function identityBlock(attributes: Readonly<Record<string, unknown>>): IdentityBlock {
  let spliceable = true;
  let count = 0;
  const bytes = encodeFragment((w) => {
    for (const k in attributes) {
      const v = attributes[k];
      // accessLogAttributes leaves empty values out ("unknown").
      if (v === '') continue;
      if (k === '' || typeof v !== 'string' || OWN_KEY_SET.has(k)) spliceable = false;
      writeKeyValue(w, F.attributes, k, v);
      count++;
    }
  });
  return { bytes, count, spliceable };
}

/** Encoded size of an AnyValue holding string `s` (string_value tag, length, UTF-8 bytes). */
function stringAnyValueLength(s: string): number {
  const n = Buffer.byteLength(s);
  return 1 + int64VarintLength(n) + n;
}
/** Distinct values kept per low-cardinality attribute (addresses, states...). */
const VALUE_CACHE_SIZE = 4_096;

/** Where the access-log records were made: the SDK's `getLogger('kmesh-otel')`. */
export const ACCESS_LOG_SCOPE: Scope = { name: 'kmesh-otel' };

export class AccessLogEncoder {
  private readonly scope: { scope: Uint8Array; schemaUrl: Uint8Array };
  /** The processors' identity sets, each as its encoded KeyValue fields. */
  private readonly identities = new AttributeSetCache<IdentityBlock>(identityBlock);
  /** Encoded KeyValue field per own string attribute and value. */
  private readonly values = new Map<OwnKey, FragmentCache<Uint8Array>>();
  private readonly eventTime = new UnixNanoBits();
  private readonly observedTime = new UnixNanoBits();
  /**
   * ~1.2 KB per Kmesh record (bench/logs.ts), learnt from each request; up
   * to the sending queue's default 10 in flight plus one being encoded reuse
   * their memory.
   */
  private readonly buffers = new RequestBuffers(1_280, REQUEST_BUFFERS_POOLED);

  constructor(
    private readonly resource: Resource,
    scope: Scope = ACCESS_LOG_SCOPE,
    /**
     * The metric schema's record form (semconv: short body, attributes
     * once), as toLogRecord takes it; undefined: the Kmesh line and the
     * spliced access-log attributes. The schema form is built per record
     * and written through the generic (limited) attribute path.
     */
    private readonly accessLog?: MetricSchema['accessLog'],
  ) {
    this.scope = encodeScope(scope);
  }

  /** Distinct identity attribute sets currently cached (tests). */
  get cachedIdentitySets(): number {
    return this.identities.size;
  }

  /** One ExportLogsServiceRequest with every entry, in order, under the resource and scope. */
  encode(entries: readonly AccessLogEntry[]): EncodedRequest {
    const bytes = encodeSingleScopeRequest(this.resource, this.scope, entries, (w, entry) => this.writeLogRecord(w, entry), this.buffers);
    return { bytes, items: entries.length, release: () => this.buffers.give(bytes) };
  }

  /** The fields of one LogRecord message (what toLogRecord and sdk-logs would make of the entry). */
  private writeLogRecord(w: ProtoWriter, entry: AccessLogEntry): void {
    const e = entry.event;
    w.tag(F.time, WireType.Fixed64).fixed64Bits(this.eventTime.of(e.timeUnixNano));
    w.raw(SEVERITY[accessLogSeverity(entry)]);
    if (this.accessLog !== undefined) {
      const { body, attributes } = this.accessLog(entry);
      w.tag(F.body, LD).uint32(stringAnyValueLength(body)).tag(1, LD).string(body);
      const dropped = writeLimitedAttributes(w, attributes);
      w.tag(F.dropped, WireType.Varint).uint32(dropped);
      w.tag(F.observedTime, WireType.Fixed64).fixed64Bits(this.observedTime.of(entry.observedUnixNano));
      return;
    }
    const line = formatKmeshLine(entry);
    w.tag(F.body, LD).uint32(stringAnyValueLength(line)).tag(1, LD).string(line);
    const identity = this.identities.get(entry.attributes);
    let dropped = 0;
    if (identity.spliceable && identity.count + OWN_KEYS.length <= LOG_RECORD_ATTRIBUTE_COUNT_LIMIT) {
      w.raw(identity.bytes);
      this.writeOwnAttributes(w, entry);
    } else {
      dropped = writeLimitedAttributes(w, kmeshLineAndAttributes(entry).attributes);
    }
    w.tag(F.dropped, WireType.Varint).uint32(dropped);
    w.tag(F.observedTime, WireType.Fixed64).fixed64Bits(this.observedTime.of(entry.observedUnixNano));
  }

  /** A string attribute with few distinct values, as a cached KeyValue field. */
  private stringAttr(w: ProtoWriter, key: OwnKey, value: string): void {
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
   * A KeyValue field whose key bytes are cached and whose value is encoded
   * now. The lengths are computed (AnyValue: tag + value), so no nested
   * writer state is forked per attribute; strings and non-finite or
   * out-of-range numbers take the generic KeyValue writer.
   */
  private attr(w: ProtoWriter, key: OwnKey, value: string | number): void {
    if (typeof value === 'number' && Number.isFinite(value)) {
      // The SDK's choice: int_value for integers in int64 range, else double_value.
      if (!Number.isInteger(value)) {
        w.raw(DOUBLE_PREFIX[key]).double(value);
        return;
      }
      if (Math.abs(value) <= Number.MAX_SAFE_INTEGER) {
        // AnyValue = int_value tag + varint: 2..11 bytes.
        w.raw(valuePrefix(key, 3, WireType.Varint, 1 + int64VarintLength(value))).int64(value);
        return;
      }
    }
    if (typeof value === 'string') {
      const n = Buffer.byteLength(value);
      const anyLen = 1 + int64VarintLength(n) + n;
      if (anyLen <= MAX_PREFIXED_LENGTH) {
        w.raw(valuePrefix(key, 1, LD, anyLen)).string(value);
        return;
      }
    }
    writeKeyValue(w, F_ATTRIBUTES, key, value);
  }

  /** accessLogAttributes' own part (after the identity attributes), same keys, order and value types. */
  private writeOwnAttributes(w: ProtoWriter, entry: AccessLogEntry): void {
    const e = entry.event;
    this.attr(w, 'src.addr', formatAddr(e.srcAddr, e.srcPort));
    this.attr(w, 'dst.addr', formatAddr(e.dstAddr, e.dstPort));
    this.stringAttr(w, 'direction', e.direction);
    this.stringAttr(w, 'event', e.kind);
    this.attr(w, 'sent_bytes', e.sentBytes);
    this.attr(w, 'received_bytes', e.receivedBytes);
    this.attr(w, 'duration', e.durationNs / 1e6);
    if (e.state !== '') this.stringAttr(w, 'state', e.state);
    this.attr(w, 'retransmissions', e.retransmits);
    this.attr(w, 'lost_packets', e.lostPackets);
    if (e.srttUs > 0) this.attr(w, 'srtt', e.srttUs / 1000);
    if (e.minRttUs > 0) this.attr(w, 'min_rtt', e.minRttUs / 1000);
    if (e.kind === 'fail') this.stringAttr(w, RawAttr.failureReason, e.failure ?? 'other');
    this.stringAttr(w, 'source.address', e.srcAddr);
    this.attr(w, 'source.port', e.srcPort);
    this.stringAttr(w, 'destination.address', e.dstAddr);
    this.attr(w, 'destination.port', e.dstPort);
    if (e.origDstAddr !== undefined) this.stringAttr(w, 'original_destination.address', e.origDstAddr);
    if (e.origDstPort !== undefined) this.attr(w, 'original_destination.port', e.origDstPort);
    this.stringAttr(w, 'network.transport', 'tcp');
    this.stringAttr(w, 'network.type', e.family === 6 ? 'ipv6' : 'ipv4');
  }
}

/**
 * Attributes under the SDK's LogRecord rules (core's maybeAddAttribute):
 * undefined values and empty keys are skipped; beyond
 * {@link LOG_RECORD_ATTRIBUTE_COUNT_LIMIT} attributes the rest are dropped
 * and counted. Returns the dropped count.
 */
function writeLimitedAttributes(w: ProtoWriter, attributes: Readonly<Record<string, unknown>>): number {
  let count = 0;
  let dropped = 0;
  for (const [k, v] of Object.entries(attributes)) {
    if (v === undefined || k === '') continue;
    if (count >= LOG_RECORD_ATTRIBUTE_COUNT_LIMIT) {
      dropped++;
      continue;
    }
    writeKeyValue(w, F.attributes, k, v);
    count++;
  }
  return dropped;
}
