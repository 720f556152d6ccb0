import { LRUCache } from 'lru-cache';

/**
 * Aligned chunks of one remote object, bounded by bytes. Each chunk owns its buffer (never a view into
 * a larger response), so the byte count here is the memory actually held.
 *
 * Two tiers share the bound:
 * - `ahead`: chunks a sequential stream's readahead brought that no reader has used yet. They are not
 *   in the LRU: a plain LRU ranks them below chunks just read (which a sequential reader never reads
 *   again), so with several streams the readahead was evicted before use and fetched twice. They leave
 *   this tier when read (into the LRU), when their stream no longer wants them (`demote`, into the
 *   LRU), or, last resort, when a foreground fetch finds the LRU empty.
 * - the LRU: everything else (read chunks, head/tail data, recorded prefetch, hydration).
 * The cache bounds the ahead tier by its readahead budget, so it never starves the LRU.
 */

interface ChunkEntry {
  bytes: Uint8Array;
  /** Fetched ahead of any reader and not yet read: counts toward readahead waste until read. */
  prefetched: boolean;
}

interface AheadEntry {
  bytes: Uint8Array;
  streamId: number;
}

export class ChunkLru {
  private readonly lru: LRUCache<number, ChunkEntry>;
  /** Unused readahead, in arrival order. */
  private readonly ahead = new Map<number, AheadEntry>();
  private aheadHeld = 0;
  evictions = 0;
  /** Bytes that readahead fetched and a reader later used. */
  prefetchedBytesUsed = 0;
  /** Bytes fetched ahead (readahead, prefetch, hydration) that were evicted before any reader used them. */
  prefetchedBytesEvictedUnused = 0;

  constructor(readonly capacityBytes: number) {
    this.lru = new LRUCache<number, ChunkEntry>({
      maxSize: capacityBytes,
      sizeCalculation: (entry) => Math.max(1, entry.bytes.length),
      dispose: (entry, _key, reason) => {
        if (reason !== 'evict') return;
        this.evictions++;
        if (entry.prefetched) this.prefetchedBytesEvictedUnused += entry.bytes.length;
      },
    });
  }

  get heldBytes(): number {
    return this.lru.calculatedSize + this.aheadHeld;
  }

  /** Bytes of unused readahead held for live streams. */
  get aheadBytes(): number {
    return this.aheadHeld;
  }

  get count(): number {
    return this.lru.size + this.ahead.size;
  }

  /** Chunk bytes, marking the chunk most recently used. */
  get(index: number): Uint8Array | undefined {
    const early = this.ahead.get(index);
    if (early) {
      this.removeAhead(index, early);
      this.prefetchedBytesUsed += early.bytes.length;
      this.lru.set(index, { bytes: early.bytes, prefetched: false });
      return early.bytes;
    }
    const entry = this.lru.get(index);
    if (!entry) return undefined;
    if (entry.prefetched) {
      entry.prefetched = false;
      this.prefetchedBytesUsed += entry.bytes.length;
    }
    return entry.bytes;
  }

  /** Presence without touching recency (readahead planning must not keep chunks alive). */
  has(index: number): boolean {
    return this.ahead.has(index) || this.lru.has(index);
  }

  /** Stores a chunk; `aheadOf` = the readahead stream that fetched it (it then waits in the ahead tier). */
  set(index: number, bytes: Uint8Array, prefetched: boolean, aheadOf?: number): void {
    if (bytes.length > this.capacityBytes) return;
    const early = this.ahead.get(index);
    if (early) this.removeAhead(index, early);
    if (prefetched && aheadOf !== undefined && !this.lru.has(index)) {
      this.ahead.set(index, { bytes, streamId: aheadOf });
      this.aheadHeld += bytes.length;
      return;
    }
    this.lru.set(index, { bytes, prefetched });
  }

  /**
   * Moves unused readahead chunks that `unwanted(chunk, streamId)` says no stream will read soon into
   * the LRU (still usable, now evictable). Returns the bytes moved.
   */
  demote(unwanted: (index: number, streamId: number) => boolean): number {
    let moved = 0;
    for (const [index, entry] of this.ahead) {
      if (!unwanted(index, entry.streamId)) continue;
      this.removeAhead(index, entry);
      this.lru.set(index, { bytes: entry.bytes, prefetched: true });
      moved += entry.bytes.length;
    }
    return moved;
  }

  /**
   * Evicts least recently used chunks until `incoming` more bytes fit beside `reserved` bytes already
   * promised to fetches in flight. Unused readahead goes only when the LRU is empty and `mayEvictAhead`
   * (a reader waits; readahead never evicts readahead). Returns false when the room cannot be made.
   */
  makeRoom(incoming: number, reserved: number, mayEvictAhead = true): boolean {
    const fits = () => this.heldBytes + reserved + incoming <= this.capacityBytes;
    while (!fits() && this.lru.size > 0) this.lru.pop(); // counted by dispose('evict')
    if (mayEvictAhead) {
      for (const [index, entry] of this.ahead) {
        if (fits()) break;
        this.removeAhead(index, entry);
        this.evictions++;
        this.prefetchedBytesEvictedUnused += entry.bytes.length;
      }
    }
    return fits();
  }

  clear(): void {
    this.lru.clear();
    this.ahead.clear();
    this.aheadHeld = 0;
  }

  private removeAhead(index: number, entry: AheadEntry): void {
    this.ahead.delete(index);
    this.aheadHeld -= entry.bytes.length;
  }
}
