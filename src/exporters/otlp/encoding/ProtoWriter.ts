import protobuf from 'protobufjs/minimal.js';

/**
 * protobufjs's `BufferWriter` (varints, fixed64, UTF-8 strings, nested
 * messages through fork/ldelim; `finish()` returns a Buffer, what grpc-js
 * and node:http send as is) plus the one operation the OTLP encoders need
 * that it lacks: {@link raw}, splicing bytes that are already encoded
 * protobuf (a cached attribute list, resource or scope) without a length
 * prefix. `raw` queues the bytes through the writer's own operation list
 * (`_push`, how protobufjs's `bytes()` itself queues its payload), so every
 * wire primitive still comes from protobufjs; this file only copies.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class ProtoWriter extends protobuf.BufferWriter {
  /** Appends `bytes` (already-encoded fields) as they are. */
  raw(bytes: Uint8Array): this {
    if (bytes.length > 0) (this as unknown as PushingWriter<Uint8Array>)._push(copyInto, bytes.length, bytes);
    return this;
  }

  /**
   * UTF-8 always through Node's encoder (as TextEncoder, what the SDK's
   * serializer uses): protobufjs's own short-string path writes a lone
   * surrogate as its raw 3-byte form where Node writes U+FFFD, and the two
   * encoders must produce the same bytes for the same text.
   */
  override string(value: string): this {
    const len = Buffer.byteLength(value);
    this.uint32(len);
    if (len > 0) (this as unknown as PushingWriter<string>)._push(writeUtf8, len, value);
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
    this.uint32(len);
    if (len > 0) (this as unknown as PushingWriter<string>)._push(writeHex, len, hex);
    return this;
  }

  /** A fixed64 from its halves (protobufjs's LongBits.from takes any `{ low, high }`). */
  fixed64Bits(bits: Bits64): this {
    return this.fixed64(bits as unknown as number);
  }

  /** The tag of field `field` with wire type `wireType` (protobuf encoding spec, "Message Structure"). */
  tag(field: number, wireType: WireType): this {
    return this.uint32(((field << 3) | wireType) >>> 0);
  }
}

/** protobufjs's chaining methods return `Writer`; these keep the chain typed as ProtoWriter. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface ProtoWriter {
  uint32(value: number): this;
  int32(value: number): this;
  int64(value: number): this;
  bool(value: boolean): this;
  double(value: number): this;
  fixed64(value: number): this;
  sfixed64(value: number): this;
  bytes(value: Uint8Array): this;
  fork(): this;
  ldelim(): this;
}

/** Protobuf wire types (https://protobuf.dev/programming-guides/encoding/#structure). */
export const WireType = { Varint: 0, Fixed64: 1, LengthDelimited: 2, Fixed32: 5 } as const;
export type WireType = (typeof WireType)[keyof typeof WireType];

/** protobufjs's internal queueing method, not in its type declarations. */
interface PushingWriter<T> {
  _push(fn: (val: T, buf: Uint8Array, pos: number) => void, len: number, val: T): void;
}

function writeUtf8(val: string, buf: Uint8Array, pos: number): void {
  // finish() allocates with Buffer.allocUnsafe (BufferWriter.alloc).
  (buf as Buffer).write(val, pos);
}

function writeHex(val: string, buf: Uint8Array, pos: number): void {
  const len = val.length >>> 1;
  const written = (buf as Buffer).write(val, pos, len, 'hex');
  if (written < len) buf.fill(0, pos + written, pos + len);
}

function copyInto(val: Uint8Array, buf: Uint8Array, pos: number): void {
  // Most splices are a few dozen bytes, where TypedArray#set's setup costs more than the copy.
  const n = val.length;
  if (n > 32) {
    buf.set(val, pos);
    return;
  }
  for (let i = 0; i < n; i++) buf[pos + i] = val[i]!;
}

/**
 * The encoding of a fragment written by `write` into a fresh writer: the
 * bytes later spliced with {@link ProtoWriter.raw}.
 */
export function encodeFragment(write: (w: ProtoWriter) => void): Uint8Array {
  const w = new ProtoWriter();
  write(w);
  return w.finish();
}

/** Bytes of `n` (an integer) as an int64 varint: protobufjs's own LongBits sizing, as its writer uses. */
export function int64VarintLength(n: number): number {
  return protobuf.util.LongBits.fromNumber(n).length();
}

/** A 64-bit unsigned value as protobufjs takes it for fixed64 (its `Long`-like shape). */
export interface Bits64 {
  low: number;
  high: number;
}

const TWO_32 = 4_294_967_296;

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
