/**
 * mulberry32: a tiny seeded PRNG (uniform in [0, 1)), for workloads that must
 * repeat: a fuzz test replayed from its printed seed, a benchmark that gives
 * every run the same input. Not for anything that needs real randomness.
 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random test values from one seed: strings with unicode, empty and huge ones, numbers at their edges, addresses, hex ids. */
export class Gen {
  readonly rnd: () => number;
  constructor(seed: number) {
    this.rnd = prng(seed);
  }
  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.rnd() < p;
  }
  /** Text: ASCII, accents, CJK, emoji (surrogate pairs), a lone surrogate, NUL; sometimes empty or 100k characters. */
  text(): string {
    const r = this.rnd();
    if (r < 0.05) return '';
    const pieces = ['a', 'Z', '-', '.', '9', ' ', 'é', 'ß', '中', '文', '🚀', '👩‍👩‍👧', '\u0000', '\ud800', '"', '\\', '\n'];
    let len = r > 0.998 ? 100_000 : 1 + this.int(r > 0.9 ? 300 : 24);
    let s = '';
    while (len-- > 0) s += this.pick(pieces);
    return s;
  }
  /** A non-negative count: 0, small, large, or 2^53 - 1. */
  count(): number {
    const r = this.rnd();
    if (r < 0.1) return 0;
    if (r < 0.2) return Number.MAX_SAFE_INTEGER;
    if (r < 0.4) return this.int(2 ** 40);
    return this.int(100_000);
  }
  addr(v6: boolean): string {
    return v6 ? `fd00:10:244::${this.int(65536).toString(16)}` : `10.244.${this.int(256)}.${this.int(256)}`;
  }
  hex(bytes: number): string {
    let s = '';
    for (let i = 0; i < bytes; i++) s += this.int(256).toString(16).padStart(2, '0');
    return s;
  }
}
