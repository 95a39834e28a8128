import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs/minimal.js';
import { encodeFragment, ProtoWriter, RequestBuffers, WireType } from '../../../src/exporters/otlp/encoding/ProtoWriter.js';

/**
 * ProtoWriter is the OpenTelemetry JS transformer's writer plus splicing and
 * nesting; protobufjs's Writer (a different implementation of the same wire
 * format) is the oracle for every byte.
 */

const LD = WireType.LengthDelimited;

/** The same operations on both writers. */
function both(ops: (w: ProtoWriter | protobuf.Writer) => void, initialSize?: number): { ours: Buffer; theirs: Buffer } {
  const ours = new ProtoWriter(initialSize);
  ops(ours);
  const theirs = protobuf.Writer.create();
  ops(theirs);
  return { ours: ours.finish(), theirs: Buffer.from(theirs.finish()) };
}

const fill = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff);

describe('ProtoWriter', () => {
  it('writes the protobuf encoding guide examples exactly', () => {
    // https://protobuf.dev/programming-guides/encoding/: field 1 = 150; field 2 = "testing".
    const w = new ProtoWriter(16);
    w.tag(1, WireType.Varint).uint32(150).tag(2, LD).string('testing');
    assert.deepEqual([...w.finish()], [0x08, 0x96, 0x01, 0x12, 0x07, 0x74, 0x65, 0x73, 0x74, 0x69, 0x6e, 0x67]);
  });

  it('nests messages whose lengths take 1 to 4 bytes, as protobufjs does (the writer moves the body when the length needs more than its one reserved byte)', () => {
    for (const size of [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_151, 2_097_152]) {
      const body = fill(size);
      const { ours, theirs } = both((w) => {
        w.uint32(((1 << 3) | LD) >>> 0).fork();
        w.uint32(((2 << 3) | LD) >>> 0).fork();
        w.bytes(body);
        w.ldelim();
        w.uint32(((3 << 3) | WireType.Varint) >>> 0).uint32(size);
        w.ldelim();
      });
      assert.ok(ours.equals(theirs), `nested body of ${size} bytes`);
    }
  });

  it('grows from a tiny start to the same bytes', () => {
    const big = fill(70_000);
    const { ours, theirs } = both((w) => {
      w.uint32(10).fork().bytes(big).ldelim();
      w.string('é'.repeat(5_000));
    }, 16);
    assert.ok(ours.equals(theirs));
  });

  it('writes every scalar the encoders use as protobufjs does', () => {
    const { ours, theirs } = both((w) => {
      for (const v of [0, 1, 127, 128, 2 ** 31 - 1, 2 ** 32 - 1]) w.uint32(v);
      for (const v of [0, -1, -(2 ** 31), 2 ** 31 - 1]) w.int32(v);
      for (const v of [0, 1, -1, 2 ** 53 - 1, -(2 ** 53 - 1), 2 ** 40 + 3]) w.int64(v);
      w.bool(true).bool(false);
      for (const v of [0, -0, 1.5, -2.25e300, Number.MIN_VALUE, Infinity, NaN]) w.double(v);
      for (const v of [0, 1, 2 ** 32, 2 ** 53 - 1]) w.fixed64(v);
      for (const v of [0, -1, 2 ** 53 - 1, -(2 ** 40)]) w.sfixed64(v);
      w.fixed32(0xdeadbeef);
      w.bytes(new Uint8Array(0)).bytes(fill(200));
    });
    assert.ok(ours.equals(theirs), `\n${ours.toString('hex')}\n${theirs.toString('hex')}`);
  });

  it('writes strings as UTF-8 through both of its paths (short: the transformer\'s writer; 64+ UTF-16 units: Node\'s), a lone surrogate as U+FFFD', () => {
    const strings = ['', 'a', 'ascii-only', 'zß水🚀', 'x'.repeat(63), 'x'.repeat(64), 'ä'.repeat(200), `${'y'.repeat(70)}\ud800z`, '\udfff', `${'q'.repeat(100)}🚀`];
    for (const s of strings) {
      const w = new ProtoWriter(8);
      w.string(s);
      const utf8 = Buffer.from(s, 'utf8');
      const expected = Buffer.concat([Buffer.from(protobuf.Writer.create().uint32(utf8.length).finish()), utf8]);
      assert.ok(w.finish().equals(expected), JSON.stringify(s).slice(0, 40));
    }
  });

  it('splices raw bytes of every size as they are', () => {
    const w = new ProtoWriter(4);
    const pieces = [0, 1, 31, 32, 33, 1_000].map(fill);
    for (const p of pieces) w.raw(p);
    assert.ok(w.finish().equals(Buffer.concat(pieces)));
  });

  it('writes a hex id as its bytes, and zeros from the first character that is not hex', () => {
    const w = new ProtoWriter(4);
    w.hexBytes('0af7651916cd43dd8448eb211c80319c').hexBytes('00f0zz11').hexBytes('');
    assert.equal(w.finish().toString('hex'), '10' + '0af7651916cd43dd8448eb211c80319c' + '04' + '00f00000' + '00');
  });

  it('refuses unbalanced nesting instead of writing a corrupt message', () => {
    assert.throws(() => new ProtoWriter().ldelim(), /ldelim\(\) without fork\(\)/);
    const w = new ProtoWriter();
    w.tag(1, LD).fork();
    assert.throws(() => w.finish(), /1 message\(s\) not closed/);
  });

  it('gives fragments their own memory, trimmed to size', () => {
    const f = encodeFragment((w) => w.tag(1, LD).string('k'));
    assert.deepEqual([...f], [0x0a, 0x01, 0x6b]);
    assert.equal(f.buffer.byteLength, 3);
  });
});

describe('RequestBuffers', () => {
  it('sizes a request from the bytes per item it learnt, so it is written without growing', () => {
    const buffers = new RequestBuffers(100);
    assert.equal(buffers.forItems(10), Math.ceil(10 * 100 * 1.125) + 1_024);
    buffers.learn(50_000, 100);
    assert.equal(buffers.forItems(100), Math.ceil(100 * 500 * 1.125) + 1_024);
    buffers.learn(0, 0);
    assert.equal(buffers.forItems(100), Math.ceil(100 * 500 * 1.125) + 1_024, 'an empty request teaches nothing');
  });

  it('reuses a returned buffer for the next request, which then holds only its own bytes', () => {
    const buffers = new RequestBuffers(64, 2);
    const w1 = buffers.writer(10);
    w1.bytes(fill(500));
    const first = w1.finish();
    const firstCopy = Buffer.from(first);
    buffers.give(first);
    const w2 = buffers.writer(10);
    w2.string('second');
    const second = w2.finish();
    assert.equal(second.buffer, first.buffer, 'the same memory');
    assert.deepEqual([...second], [6, ...Buffer.from('second')]);
    assert.ok(!Buffer.from(first).equals(firstCopy), 'the first request\'s bytes are gone: give() only after the last read');
  });

  it('ignores a buffer given back twice (it would otherwise go to two requests at once)', () => {
    const buffers = new RequestBuffers(64, 4);
    const a = buffers.writer(1).finish();
    buffers.give(a);
    buffers.give(a);
    assert.equal(buffers.writer(1).finish().buffer, a.buffer);
    assert.notEqual(buffers.writer(1).finish().buffer, a.buffer, 'pooled once');
  });

  it('keeps at most its pool size, never an oversized buffer, and never for a pool of 0', () => {
    const buffers = new RequestBuffers(64, 1);
    const a = buffers.writer(1).finish();
    const b = buffers.writer(1).finish();
    buffers.give(a);
    buffers.give(b);
    assert.equal(buffers.writer(1).finish().buffer, a.buffer);
    assert.notEqual(buffers.writer(1).finish().buffer, b.buffer, 'the pool held one');
    const huge = new ProtoWriter(16);
    huge.raw(new Uint8Array(9 * 1024 * 1024));
    const big = huge.finish();
    buffers.give(big);
    assert.notEqual(buffers.writer(1).finish().buffer, big.buffer, 'over 8 MiB is not kept');
    const none = new RequestBuffers(64);
    const c = none.writer(1).finish();
    none.give(c);
    assert.notEqual(none.writer(1).finish().buffer, c.buffer);
  });
});
