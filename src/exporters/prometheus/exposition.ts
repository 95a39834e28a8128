/**
 * The Prometheus text exposition format (version 0.0.4) of a SeriesStore
 * snapshot, written in chunks with backpressure.
 *
 * Why not the SDK's PrometheusSerializer for the TCP families: it renders
 * every `name{23 labels}` line from the attributes on every scrape (~800
 * bytes of string building per series, one ~40 MB string at 50,000 series).
 * Here a label set's pairs are escaped and joined once, at the first scrape
 * that shows the set, and kept in the set's wire slot (the exporter's store
 * is a `SeriesStore<string>`; see src/metrics/labelText.ts; one string shared
 * by all families of its group); a scrape only formats numbers and copies
 * cached strings into reused chunk buffers.
 *
 * Format: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format
 */
import type { Writable } from 'node:stream';
import { labelPairs } from '../../metrics/labelText.js';
import type { FamilySnapshot, LabelSet, StoreSnapshot } from '../../metrics/SeriesStore.js';

/** Content type of the text format, as Prometheus servers negotiate it. */
export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** HELP text escaping of the text format: backslash and line feed. */
export function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample value as the text format spells it (Go's ParseFloat syntax: `+Inf`, `-Inf`, `NaN`). */
export function formatValue(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** What every series of an exposition gets besides its own labels. */
export interface ExpositionOptions {
  /** Prepended to every family name (the exporter's `namespace` plus `_`). Default none. */
  prefix?: string;
  /**
   * Label pairs appended to every series (`const_labels`, converted resource
   * attributes), already escaped and joined: `cluster="prod",k8s_node_name="n1"`.
   * Default none.
   */
  extraPairs?: string;
}

/** The `# HELP` / `# UNIT` / `# TYPE` lines of a family (UNIT as the SDK's serializer writes it, for continuity). */
function familyHeader(f: FamilySnapshot<string>, name: string): string {
  const d = f.def;
  return `# HELP ${name} ${escapeHelp(d.help)}\n` + (d.unit !== '' ? `# UNIT ${name} ${escapeHelp(d.unit)}\n` : '') + `# TYPE ${name} ${d.type}\n`;
}

/** The set's label pairs, escaped and joined on first use and then kept in its wire slot. */
export function labelTextOf(ls: LabelSet<string>): string {
  let t = ls.wire;
  if (t === undefined) {
    t = labelPairs(ls.names, ls.values);
    ls.wire = t;
  }
  return t;
}

/** A series' label pairs followed by the extra pairs, comma-joined ('' when both are empty). */
function joinPairs(pairs: string, extra: string): string {
  if (extra === '') return pairs;
  return pairs === '' ? extra : pairs + ',' + extra;
}

/** Chunk size: large enough that per-write overhead vanishes, small enough to stay out of the agent's RSS. */
const CHUNK_BYTES = 128 * 1024;
/** A chunk is handed on once this full (room left for one series' lines). */
const CHUNK_FLUSH_AT = CHUNK_BYTES - 32 * 1024;
/** Chunk buffers whose write completed, reused by the next chunk (bounded: concurrent scrapes may hold more). */
const freeChunks: Buffer[] = [];
const MAX_FREE_CHUNKS = 4;

/**
 * Writes `head`, then every family of `snap`, then `tail` to `out`, in
 * chunks of up to 128 KiB, waiting for 'drain' when `out` is full. Resolves
 * when everything was handed to `out` (the caller ends it); rejects when
 * `out` is destroyed first (client went away).
 *
 * `reuseChunks`: recycle a chunk's buffer once its write callback ran. Only
 * for streams that are done with the bytes by then (net sockets, HTTP
 * responses, zlib streams); a PassThrough, for one, hands the very buffer on
 * to its reader. Default false.
 */
export async function writeExposition(
  out: Writable,
  snap: StoreSnapshot<string>,
  head: string,
  tail: string,
  reuseChunks = false,
  opts: ExpositionOptions = {},
): Promise<void> {
  const w = new ChunkWriter(out, reuseChunks);
  const prefix = opts.prefix ?? '';
  const extra = opts.extraPairs ?? '';
  w.put(head);
  for (const f of snap.families) {
    const name = prefix + f.def.name;
    w.put(familyHeader(f, name));
    if (f.def.type === 'counter') {
      const open = name + '{';
      const bare = name + ' ';
      const extraTail = extra === '' ? '} ' : ',' + extra + '} ';
      for (let i = 0; i < f.length; i++) {
        const pairs = labelTextOf(f.labels[i]!);
        if (pairs === '') {
          if (extra === '') w.put(bare);
          else {
            w.put(open);
            w.put(extra);
            w.put('} ');
          }
        } else {
          w.put(open);
          w.put(pairs);
          w.put(extraTail);
        }
        w.putNumber(f.values[i]!);
        w.put('\n');
        if (w.full) await w.flush();
      }
    } else {
      const h = histogramStrings(f, name);
      for (let i = 0; i < f.length; i++) {
        writeHistogramPoint(w, f, i, h, extra);
        if (w.full) await w.flush();
      }
    }
  }
  w.put(tail);
  await w.flush();
}

/** A histogram family's constant line pieces, built once per scrape rather than once per line. */
interface HistogramStrings {
  readonly bucketOpen: string;
  /** `le="<bound>"} ` per bucket, `le="+Inf"} ` last. */
  readonly les: readonly string[];
  /** `_sum` and `_count`: with an opening brace, and bare (for an empty label set). */
  readonly open: readonly [string, string];
  readonly bare: readonly [string, string];
}

function histogramStrings(f: FamilySnapshot<string>, name: string): HistogramStrings {
  return {
    bucketOpen: name + '_bucket{',
    les: [...(f.def.buckets ?? []).map((b) => 'le="' + formatValue(b) + '"} '), 'le="+Inf"} '],
    open: [name + '_sum{', name + '_count{'],
    bare: [name + '_sum ', name + '_count '],
  };
}

/** Point `i` of a histogram family: cumulative `_bucket{le}` lines, then `_sum` and `_count` (the order client_golang writes). */
function writeHistogramPoint(w: ChunkWriter, f: FamilySnapshot<string>, i: number, h: HistogramStrings, extra: string): void {
  const nCounts = f.stride - 4;
  const pairs = joinPairs(labelTextOf(f.labels[i]!), extra);
  const o = i * f.stride;
  let cumulative = 0;
  for (let b = 0; b < nCounts; b++) {
    cumulative += f.values[o + b]!;
    w.put(h.bucketOpen);
    if (pairs !== '') {
      w.put(pairs);
      w.put(',');
    }
    w.put(h.les[b]!);
    w.putNumber(cumulative);
    w.put('\n');
  }
  for (let k = 0; k < 2; k++) {
    if (pairs === '') w.put(h.bare[k]!);
    else {
      w.put(h.open[k]!);
      w.put(pairs);
      w.put('} ');
    }
    w.putNumber(f.values[o + nCounts + k]!);
    w.put('\n');
  }
}

/** Copies strings as UTF-8 into a chunk buffer and hands full chunks to the stream. */
class ChunkWriter {
  private buf: Buffer;
  private off = 0;

  constructor(
    private readonly out: Writable,
    private readonly reuse: boolean,
  ) {
    this.buf = this.takeChunk();
  }

  /** True when the current chunk should go out before more is added. */
  get full(): boolean {
    return this.off >= CHUNK_FLUSH_AT;
  }

  put(s: string): void {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    if (this.off + s.length * 3 > this.buf.length) {
      if (s.length * 3 > CHUNK_BYTES) {
        // Larger than any chunk (a huge HELP or label value): its own buffer.
        this.emit();
        this.out.write(Buffer.from(s, 'utf8'));
        return;
      }
      this.emit();
    }
    this.off += this.buf.write(s, this.off, 'utf8');
  }

  /**
   * A sample value: non-negative integers (counters, bucket counts) as ASCII
   * digits straight into the buffer, so a scrape allocates no string per
   * sample; anything else through {@link formatValue}.
   */
  putNumber(v: number): void {
    if (!(v >= 0 && v <= Number.MAX_SAFE_INTEGER && Number.isInteger(v))) {
      this.put(formatValue(v));
      return;
    }
    if (this.off + 16 > this.buf.length) this.emit();
    let digits = 1;
    for (let x = v; x >= 10; x = Math.floor(x / 10)) digits++;
    let at = this.off + digits;
    this.off = at;
    let x = v;
    do {
      const q = Math.floor(x / 10);
      this.buf[--at] = 0x30 + (x - q * 10);
      x = q;
    } while (x > 0);
  }

  /** Hands the current chunk to the stream and waits until the stream can take more. */
  async flush(): Promise<void> {
    if (this.emit()) return;
    await drained(this.out);
  }

  /** Writes the current chunk; returns what `write` returned (false: wait for drain). */
  private emit(): boolean {
    if (this.off === 0) return !this.out.writableNeedDrain;
    if (this.out.destroyed) throw new Error('exposition: response closed by the client');
    const chunk = this.buf;
    const ok = this.reuse
      ? this.out.write(chunk.subarray(0, this.off), (err) => {
          // The stream is done with the bytes: the buffer can serve another chunk.
          if (err == null && freeChunks.length < MAX_FREE_CHUNKS) freeChunks.push(chunk);
        })
      : this.out.write(chunk.subarray(0, this.off));
    this.buf = this.takeChunk();
    this.off = 0;
    return ok;
  }

  private takeChunk(): Buffer {
    return (this.reuse ? freeChunks.pop() : undefined) ?? Buffer.allocUnsafe(CHUNK_BYTES);
  }
}

/** Resolves on 'drain'; rejects when the stream closes or fails first. */
function drained(out: Writable): Promise<void> {
  if (out.destroyed) return Promise.reject(new Error('exposition: response closed by the client'));
  return new Promise((resolve, reject) => {
    const done = (err?: unknown): void => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      out.off('error', onClose);
      if (err === undefined) resolve();
      else reject(err instanceof Error ? err : new Error('exposition: response closed by the client'));
    };
    const onDrain = (): void => done();
    const onClose = (err?: unknown): void => done(err ?? new Error('exposition: response closed by the client'));
    out.on('drain', onDrain);
    out.on('close', onClose);
    out.on('error', onClose);
  });
}
