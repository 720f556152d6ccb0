/** Where chunk `c` of one object lies: chunks are `chunkBytes`-aligned; the last may be short. */
export class ChunkLayout {
  constructor(
    readonly chunkBytes: number,
    readonly objectSize: number,
  ) {}

  /** Number of chunks in the object. */
  get count(): number {
    return Math.ceil(this.objectSize / this.chunkBytes);
  }

  start(c: number): number {
    return c * this.chunkBytes;
  }

  end(c: number): number {
    return Math.min((c + 1) * this.chunkBytes, this.objectSize);
  }

  bytesOf(c: number): number {
    return this.end(c) - this.start(c);
  }

  /** The chunk holding byte `offset`. */
  indexOf(offset: number): number {
    return Math.floor(offset / this.chunkBytes);
  }

  /** Copies the part of chunk `c` (its bytes `bytes`) inside [start, end) into `out`, where `out[0]` is object byte `base`. */
  copyOut(c: number, bytes: Uint8Array, start: number, end: number, out: Uint8Array, base: number): void {
    const cs = this.start(c);
    const from = Math.max(start, cs);
    const to = Math.min(end, cs + bytes.length);
    out.set(bytes.subarray(from - cs, to - cs), from - base);
  }
}
