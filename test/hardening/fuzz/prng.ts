/**
 * A small seeded PRNG (splitmix64 folded to 32 bits): the fuzzer's only source of randomness,
 * so `(seed, case)` names one mutated image on every machine.
 */
export class Prng {
  private state: bigint;

  constructor(seed: number | bigint) {
    this.state = BigInt.asUintN(64, BigInt(seed));
  }

  /** The generator for case `index` of a run with `seed` (independent streams per case). */
  static forCase(seed: number, index: number): Prng {
    const p = new Prng(BigInt(seed) * 0x9e3779b97f4a7c15n + BigInt(index) * 0xbf58476d1ce4e5b9n + 1n);
    p.next32();
    return p;
  }

  next32(): number {
    this.state = BigInt.asUintN(64, this.state + 0x9e3779b97f4a7c15n);
    let z = this.state;
    z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
    z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
    z ^= z >> 31n;
    return Number(z & 0xffffffffn);
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (n <= 0) return 0;
    if (n <= 0x1_0000_0000) return Math.floor((this.next32() / 0x1_0000_0000) * n);
    return Math.floor(((this.next32() * 0x1_0000_0000 + this.next32()) / 2 ** 64) * n);
  }

  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.next32() / 0x1_0000_0000 < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** One of `items` with probability proportional to its weight. */
  weighted<T>(items: readonly (readonly [T, number])[]): T {
    const total = items.reduce((s, [, w]) => s + w, 0);
    let r = this.int(total);
    for (const [item, w] of items) {
      if (r < w) return item;
      r -= w;
    }
    return items[items.length - 1]![0];
  }
}
