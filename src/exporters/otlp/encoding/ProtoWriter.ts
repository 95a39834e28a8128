import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * The OpenTelemetry JS transformer's own protobuf writer (what
 * ProtobufLogsSerializer & co. write with in the pinned otlp-transformer:
 * one growing byte buffer, no object per field), plus the operations the OTLP
 * encoders need on top of it: {@link raw} splices bytes that are already
 * encoded protobuf (a cached attribute list, resource or scope), and
 * `fork`/`ldelim` nest a message whose length is known only once it is
 * written (the writer's own reserve-then-patch pair underneath).
 *
 * The package does not export the class, so it is loaded from its file
 * next to the package entry point (node's `exports` map governs package
 * specifiers, not file paths). That ties this module to the locked version:
 * a layout change fails at start-up, naming the file; protoWriter.test.ts
 * checks every operation against protobufjs, and the equivalence tests
 * (test/exporters/otlp/*EncodingEquivalence*) decode everything it
 * writes against the SDK serializer's output. The varints, fixed-width
 * numbers and short strings are that writer's; long strings and hex ids go
 * through Node's own UTF-8 and hex encoders; this file only manages the
 * buffer and copies bytes.
 *
 * Before it: protobufjs's BufferWriter, which queues one object per field
 * and copies at finish(); on the access-log path that cost as much as the
 * encoding itself (issue 18, BENCHMARKS.md logs.direct_encode_records_per_sec).
 */

interface OtelProtobufWriter {
  pos: number;
  _buffer: Uint8Array;
  _dataView: DataView;
  _ensureCapacity(size: number): void;
  startLengthDelimited(): number;
  finishLengthDelimited(pos: number, length: number): void;
  writeVarint(value: number): void;
  writeSfixed64(value: number): void;
  writeFixed32(value: number): void;
  writeFixed64(low: number, high: number): void;
  writeBytes(bytes: Uint8Array): void;
  writeTag(fieldNumber: number, wireType: number): void;
  writeDouble(value: number): void;
  writeString(value: string): void;
  finish(): Uint8Array;
}
type OtelProtobufWriterClass = new (estimatedSize?: number) => OtelProtobufWriter;
type VarintSize = (value: number) => number;

const TRANSFORMER = '@opentelemetry/otlp-transformer';
const WRITER_FILE = 'common/protobuf/protobuf-writer.cjs';
const UTILS_FILE = 'common/protobuf/utils.cjs';

function loadTransformerInternals(): { ProtobufWriter: OtelProtobufWriterClass; estimateVarintSize: VarintSize } {
  const req = createRequire(import.meta.url);
  // The package's CommonJS entry is dist/index.cjs; its internal modules sit beside it.
  const dist = dirname(req.resolve(TRANSFORMER));
  try {
    const writer = req(join(dist, WRITER_FILE)) as { ProtobufWriter?: OtelProtobufWriterClass };
    const utils = req(join(dist, UTILS_FILE)) as { estimateVarintSize?: VarintSize };
    if (typeof writer.ProtobufWriter !== 'function' || typeof utils.estimateVarintSize !== 'function') throw new Error('exports changed');
    return { ProtobufWriter: writer.ProtobufWriter, estimateVarintSize: utils.estimateVarintSize };
  } catch (err) {
    throw new Error(
      `${TRANSFORMER}: its protobuf writer is not at ${join(dist, WRITER_FILE)} with the expected exports ` +
        `(${(err as Error).message}); the OTLP encoders need the version package-lock.json pins`,
    );
  }
}

const { ProtobufWriter: OtelWriter, estimateVarintSize } = loadTransformerInternals();

/** Bytes a fragment writer starts with; fragments are short (a key, a label set) and are trimmed to size. */
const FRAGMENT_SIZE = 256;
/** Strings at least this long are written by Node's UTF-8 writer. */
const LONG_STRING = 64;
/** Below this, a byte loop beats TypedArray#set's set-up. */
const SMALL_COPY = 32;

export class ProtoWriter extends OtelWriter {
  /** Where each open (forked) message's reserved length sits, innermost last. */
  private readonly open: number[] = [];

  /** `estimatedSize`: the bytes to start with (the buffer doubles when short); `buffer`: memory to write into instead (its content is ignored). */
  constructor(estimatedSize = 65_536, buffer?: Buffer) {
    // The parent's own buffer would be zero-filled; the writer's is a Buffer, uninitialised
    // (only bytes already written are ever read or returned), so strings take Node's UTF-8 writer.
    super(0);
    this.useBuffer(buffer ?? Buffer.allocUnsafeSlow(Math.max(16, estimatedSize)));
  }

  private useBuffer(buf: Buffer): void {
    this._buffer = buf;
    this._dataView = new DataView(buf.buffer, buf.byteOffset, buf.length);
  }

  /** Room for `size` more bytes: as the parent's (doubling), with an uninitialised Buffer. */
  override _ensureCapacity(size: number): void {
    const needed = this.pos + size;
    if (needed <= this._buffer.length) return;
    let next = this._buffer.length * 2;
    while (next < needed) next *= 2;
    const grown = Buffer.allocUnsafeSlow(next);
    grown.set(this._buffer.subarray(0, this.pos));
    this.useBuffer(grown);
  }

  /** Appends `bytes` (already-encoded fields) as they are. */
  raw(bytes: Uint8Array): this {
    const n = bytes.length;
    this._ensureCapacity(n);
    const buf = this._buffer;
    const pos = this.pos;
    if (n > SMALL_COPY) buf.set(bytes, pos);
    else for (let i = 0; i < n; i++) buf[pos + i] = bytes[i]!;
    this.pos = pos + n;
    return this;
  }

  /** The tag of field `field` with wire type `wireType` (protobuf encoding spec, "Message Structure"). */
  tag(field: number, wireType: WireType): this {
    this.writeTag(field, wireType);
    return this;
  }

  uint32(value: number): this {
    this.writeVarint(value >>> 0);
    return this;
  }

  /** int32 and int64 share the varint form: a negative value is its 64-bit two's complement (10 bytes). */
  int32(value: number): this {
    this.writeVarint(value | 0);
    return this;
  }

  int64(value: number): this {
    this.writeVarint(value);
    return this;
  }

  bool(value: boolean): this {
    this.writeVarint(value ? 1 : 0);
    return this;
  }

  double(value: number): this {
    this.writeDouble(value);
    return this;
  }

  fixed32(value: number): this {
    this.writeFixed32(value);
    return this;
  }

  /** A non-negative integer as fixed64. */
  fixed64(value: number): this {
    this.writeFixed64(value >>> 0, (value / TWO_32) >>> 0);
    return this;
  }

  /** A fixed64 from its halves. */
  fixed64Bits(bits: Bits64): this {
    this.writeFixed64(bits.low, bits.high);
    return this;
  }

  sfixed64(value: number): this {
    this.writeSfixed64(value);
    return this;
  }

  /** A bytes field's payload, length prefix included. */
  bytes(value: Uint8Array): this {
    this.writeBytes(value);
    return this;
  }

  /**
   * A string field's payload. Short strings take the parent's writer (an
   * ASCII loop); longer ones (the access-log line) Node's native UTF-8
   * writer, which the parent's TextEncoder path would reach only through a
   * subarray per string. Both write a lone surrogate as U+FFFD.
   */
  string(value: string): this {
    if (value.length < LONG_STRING) {
      this.writeString(value);
      return this;
    }
    const n = Buffer.byteLength(value);
    this.writeVarint(n);
    this._ensureCapacity(n);
    (this._buffer as Buffer).write(value, this.pos, n, 'utf8');
    this.pos += n;
    return this;
  }

  /**
   * A bytes field's payload (length prefix included) from its hex text: a
   * trace or span id as the span model keeps it, decoded by Node's hex
   * decoder straight into the output. `hex.length / 2` bytes are written
   * whatever the text holds: Node stops at the first character that is not
   * a hex pair and the rest stays zero (as `Buffer.from(hex, 'hex')` would
   * give them), never uninitialised memory.
   */
  hexBytes(hex: string): this {
    const len = hex.length >>> 1;
    this.writeVarint(len);
    this._ensureCapacity(len);
    const buf = this._buffer as Buffer;
    const written = buf.write(hex, this.pos, len, 'hex');
    if (written < len) buf.fill(0, this.pos + written, this.pos + len);
    this.pos += len;
    return this;
  }

  /** Opens a nested message: its length is written by the matching {@link ldelim}. */
  fork(): this {
    this.open.push(this.startLengthDelimited());
    return this;
  }

  /** Closes the innermost open message, writing its length before it. */
  ldelim(): this {
    const at = this.open.pop();
    if (at === undefined) throw new Error('ProtoWriter: ldelim() without fork()');
    // startLengthDelimited reserved one byte; the writer moves the message when the length needs more.
    this.finishLengthDelimited(at, this.pos - at - 1);
    return this;
  }

  /** The bytes written, as a Buffer over the writer's memory (what grpc-js and node:http send as is). */
  override finish(): Buffer {
    if (this.open.length > 0) throw new Error(`ProtoWriter: ${this.open.length} message(s) not closed`);
    const buf = this._buffer;
    return Buffer.from(buf.buffer, buf.byteOffset, this.pos);
  }
}

/** Protobuf wire types (https://protobuf.dev/programming-guides/encoding/#structure). */
export const WireType = { Varint: 0, Fixed64: 1, LengthDelimited: 2, Fixed32: 5 } as const;
export type WireType = (typeof WireType)[keyof typeof WireType];

const TWO_32 = 4_294_967_296;

/**
 * The encoding of a fragment written by `write` into a fresh writer: the
 * bytes later spliced with {@link ProtoWriter.raw}, copied out to their own
 * size (caches keep them; the writer's buffer would keep its spare room).
 */
export function encodeFragment(write: (w: ProtoWriter) => void): Uint8Array {
  const w = new ProtoWriter(FRAGMENT_SIZE);
  write(w);
  return Uint8Array.prototype.slice.call(w.finish());
}

/**
 * Where a request's writer gets its buffer: sized from the bytes per item of
 * the requests before it (plus an eighth), so a request is written without
 * the buffer doubling (and copying) on the way; and, when the caller hands
 * buffers back once their request is done ({@link give}), one of those.
 *
 * Why a pool: each request is ~0.6-1 MB outside V8's heap, and V8 answers
 * that much fresh external memory with full collections (--trace-gc on
 * bench/logs.ts: 3-4 a second, "GC in old space requested"). A handful of
 * buffers cycling through the in-flight requests allocates none. Bounded:
 * at most `maxPooled` buffers, none above {@link MAX_POOLED_BYTES}.
 */
export class RequestBuffers {
  private perItem: number;
  private readonly pool: Buffer[] = [];

  constructor(
    initialPerItem: number,
    private readonly maxPooled = 0,
  ) {
    this.perItem = initialPerItem;
  }

  /** Bytes to reserve for a request of `items` items. */
  forItems(items: number): number {
    return Math.max(FRAGMENT_SIZE, Math.ceil(items * this.perItem * 1.125) + 1_024);
  }

  /** A writer for a request of `items` items. */
  writer(items: number): ProtoWriter {
    const size = this.forItems(items);
    const pooled = this.pool.pop();
    // A pooled buffer too small for this request is dropped: the writer would replace it anyway.
    return new ProtoWriter(size, pooled !== undefined && pooled.length >= size ? pooled : undefined);
  }

  /** Learns from a finished request. */
  learn(bytes: number, items: number): void {
    if (items > 0) this.perItem = bytes / items;
  }

  /**
   * Takes back the memory of a request no one reads any more (its export and
   * every retry are over): `bytes` as {@link ProtoWriter.finish} returned it.
   */
  give(bytes: Uint8Array): void {
    const memory = bytes.buffer;
    if (this.pool.length >= this.maxPooled || memory.byteLength > MAX_POOLED_BYTES || bytes.byteOffset !== 0) return;
    // Given twice, one buffer would be handed to two requests at once: the second give is ignored.
    if (this.pool.some((b) => b.buffer === memory)) return;
    this.pool.push(Buffer.from(memory, 0, memory.byteLength));
  }
}

/** Buffers a logs or traces encoder keeps: the sending queue's default 10 requests in flight, and one being encoded. */
export const REQUEST_BUFFERS_POOLED = 11;

/** Largest buffer kept for reuse (a request of 512 access-log records is ~0.6 MB). */
const MAX_POOLED_BYTES = 8 * 1024 * 1024;

/** Bytes of `n` (an integer) as an int64 varint: the writer's own sizing. */
export function int64VarintLength(n: number): number {
  return estimateVarintSize(n);
}

/** A 64-bit unsigned value as two 32-bit halves. */
export interface Bits64 {
  low: number;
  high: number;
}

/**
 * Nanoseconds since the epoch (bigint) as fixed64 halves, for a stream of
 * times in (mostly) increasing order: the halves of the last second seen are
 * kept, so a time within it costs one BigInt subtraction and no division.
 * One per stream (event times, observed times), so they do not evict each
 * other's second.
 */
export class UnixNanoBits {
  // One second before the epoch: no time >= 0 falls within it, so the first call computes.
  private secNs = -1_000_000_000n;
  private secLow = 0;
  private secHigh = 0;

  of(ns: bigint): Bits64 {
    let sub = Number(ns - this.secNs);
    if (!(sub >= 0 && sub < 1_000_000_000)) {
      if (ns < 0n || ns >= 1n << 64n) {
        // Outside uint64: what a uint64 field would carry (two's complement, as the SDK's HrTime path wraps).
        const u = BigInt.asUintN(64, ns);
        return { low: Number(u & 0xffff_ffffn), high: Number(u >> 32n) };
      }
      this.secNs = ns - (ns % 1_000_000_000n);
      this.secLow = Number(this.secNs & 0xffff_ffffn);
      this.secHigh = Number(this.secNs >> 32n);
      sub = Number(ns - this.secNs);
    }
    const low = this.secLow + sub;
    return low >= TWO_32 ? { low: low - TWO_32, high: this.secHigh + 1 } : { low, high: this.secHigh };
  }
}
