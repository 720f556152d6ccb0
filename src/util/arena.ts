/**
 * Cache buffers that are reused instead of freed (the chunk cache's chunks, the reader's decoded
 * blocks).
 *
 * Why: a cache that turns over (a large file read through a smaller cache) frees one buffer for every
 * one it fills. Freed buffers are garbage that V8 collects only when external memory has grown about
 * 64 MiB past what it was after the last full GC, and glibc keeps much of what it gets back. In the
 * 4 GiB-through-64 MiB test that garbage was 50-70 MiB on top of the cache. Here an evicted entry's
 * buffer goes back to a free list and the next entry is written into it, so a cache holds the same
 * buffers all the time.
 *
 * A buffer may still be referenced after its entry is evicted: a reader woken by a fetch copies it out
 * a little later. So every handout has a generation number. A `Lease` is usable only while its slot's
 * generation is the one it was handed out with (`valid`). Taking a slot and giving one back both bump
 * the generation, before the buffer is written again. A reader checks `valid` and copies in the same
 * synchronous step, so it either copies the right bytes or sees that the lease is stale and reads the
 * data again. It can never copy the bytes of another entry.
 */

interface Slot {
  readonly buffer: Buffer;
  gen: number;
}

/** Bytes of one cache entry: owned outright, or a view of an arena slot that is valid until given back. */
export class Lease {
  constructor(
    readonly bytes: Uint8Array,
    private readonly slot?: Slot,
    private readonly gen = 0,
  ) {}

  /** False once the slot went back to the arena: the bytes may then belong to another entry. */
  get valid(): boolean {
    return this.slot === undefined || this.slot.gen === this.gen;
  }

  /** Memory it holds: the whole slot, or its own bytes. */
  get footprint(): number {
    return this.slot?.buffer.length ?? this.bytes.length;
  }

  /** @internal arena bookkeeping */
  slotOf(): Slot | undefined {
    return this.slot;
  }
}

export class Arena {
  private readonly free: Slot[] = [];
  /** Slots allocated so far (not freed by the arena; some may have been dropped for the GC). */
  allocated = 0;
  reused = 0;

  /**
   * @param slotBytes size of every slot
   * @param maxFreeSlots free slots kept for reuse (the cache's capacity in slots); more go to the GC
   */
  constructor(
    readonly slotBytes: number,
    private readonly maxFreeSlots: number,
  ) {}

  /** A slot for `length` bytes (at most slotBytes). Its content is undefined: fill it. */
  take(length: number): Lease {
    if (length > this.slotBytes || length < 0)
      throw new RangeError(`arena lease of ${length} bytes (slots hold ${this.slotBytes})`);
    let slot = this.free.pop();
    if (slot) this.reused++;
    else {
      slot = { buffer: Buffer.allocUnsafeSlow(this.slotBytes), gen: 0 };
      this.allocated++;
    }
    slot.gen++;
    return new Lease(slot.buffer.subarray(0, length), slot, slot.gen);
  }

  /** Returns a lease's slot for reuse. Every older lease of it turns invalid. Owned and stale leases are ignored. */
  give(lease: Lease): void {
    const slot = lease.slotOf();
    if (!slot || !lease.valid) return;
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
