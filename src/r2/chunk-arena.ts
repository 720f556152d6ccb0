/**
 * Chunk buffers that are reused instead of freed.
 *
 * Why: a cache that turns over (a large file read through a smaller cache) frees one chunk for every
 * chunk it fetches. Freed chunks are garbage that V8 collects only when external memory has grown
 * about 64 MiB past what it was after the last full GC, and glibc keeps much of what it gets back. In
 * the 4 GiB-through-64 MiB test that garbage was 50-70 MiB on top of the cache. Here an evicted chunk's
 * buffer goes back to a free list and the next fetched chunk is written into it, so the cache holds
 * the same buffers all the time.
 *
 * A buffer may still be referenced after its chunk is evicted: a reader woken by a fetch copies the
 * chunk out a little later. So every handout has a generation number. A `Chunk` is usable only while
 * its slot's generation is the one it was handed out with (`valid`). Taking a slot and giving one back
 * both bump the generation, before the buffer is written again. A reader checks `valid` and copies in
 * the same synchronous step, so it either copies the right bytes or sees that the chunk is stale and
 * reads it again. It can never copy the bytes of another chunk.
 */

interface Slot {
  readonly buffer: Buffer;
  gen: number;
}

/** Bytes of one chunk: owned by the cache, or a view of an arena slot that is valid while the chunk is cached. */
export class Chunk {
  constructor(
    readonly bytes: Uint8Array,
    private readonly slot?: Slot,
    private readonly gen = 0,
  ) {}

  /** False once the slot went back to the arena: the bytes may then belong to another chunk. */
  get valid(): boolean {
    return this.slot === undefined || this.slot.gen === this.gen;
  }

  /** @internal arena bookkeeping */
  slotOf(): Slot | undefined {
    return this.slot;
  }
}

export class ChunkArena {
  private readonly free: Slot[] = [];
  /** Slots allocated so far (not freed by the arena; some may have been dropped for the GC). */
  allocated = 0;
  reused = 0;

  /**
   * @param chunkBytes size of every slot
   * @param maxFreeSlots free slots kept for reuse (the cache's capacity in chunks); more go to the GC
   */
  constructor(
    readonly chunkBytes: number,
    private readonly maxFreeSlots: number,
  ) {}

  /** A slot for a chunk of `length` bytes (at most chunkBytes). Its content is undefined: fill it. */
  take(length: number): Chunk {
    if (length > this.chunkBytes || length < 0)
      throw new RangeError(`arena chunk of ${length} bytes (slots hold ${this.chunkBytes})`);
    let slot = this.free.pop();
    if (slot) this.reused++;
    else {
      slot = { buffer: Buffer.allocUnsafeSlow(this.chunkBytes), gen: 0 };
      this.allocated++;
    }
    slot.gen++;
    return new Chunk(slot.buffer.subarray(0, length), slot, slot.gen);
  }

  /** Returns a chunk's slot for reuse. Every older handle of it turns invalid. Owned chunks and stale handles are ignored. */
  give(chunk: Chunk): void {
    const slot = chunk.slotOf();
    if (!slot || !chunk.valid) return;
    slot.gen++;
    if (this.free.length < this.maxFreeSlots) this.free.push(slot);
  }

  get freeSlots(): number {
    return this.free.length;
  }

  /** Drops the free slots (the cache is closing). */
  clear(): void {
    this.free.length = 0;
  }
}
