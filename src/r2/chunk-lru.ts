import { LRUCache } from 'lru-cache';

/**
 * Aligned chunks of one remote object in an LRU bounded by bytes. Each chunk owns its buffer (never a
 * view into a larger response), so the byte count here is the memory actually held.
 */

interface ChunkEntry {
  bytes: Uint8Array;
  /** Fetched ahead of any reader and not yet read: counts toward readahead waste until read. */
  prefetched: boolean;
}

export class ChunkLru {
  private readonly lru: LRUCache<number, ChunkEntry>;
  evictions = 0;
  /** Bytes that readahead fetched and a reader later used. */
  prefetchedBytesUsed = 0;

  constructor(readonly capacityBytes: number) {
    this.lru = new LRUCache<number, ChunkEntry>({
      maxSize: capacityBytes,
      sizeCalculation: (entry) => Math.max(1, entry.bytes.length),
      dispose: (_entry, _key, reason) => {
        if (reason === 'evict') this.evictions++;
      },
    });
  }

  get heldBytes(): number {
    return this.lru.calculatedSize;
  }

  get count(): number {
    return this.lru.size;
  }

  /** Chunk bytes, marking the chunk most recently used. */
  get(index: number): Uint8Array | undefined {
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
    return this.lru.has(index);
  }

  set(index: number, bytes: Uint8Array, prefetched: boolean): void {
    if (bytes.length > this.capacityBytes) return;
    this.lru.set(index, { bytes, prefetched });
  }

  /**
   * Evicts least recently used chunks until `incoming` more bytes fit beside `reserved` bytes already
   * promised to fetches in flight. Returns false when even an empty cache cannot make the room.
   */
  makeRoom(incoming: number, reserved: number): boolean {
    while (this.lru.calculatedSize + reserved + incoming > this.capacityBytes && this.lru.size > 0) {
      this.lru.pop(); // counted by dispose('evict')
    }
    return this.lru.calculatedSize + reserved + incoming <= this.capacityBytes;
  }

  clear(): void {
    this.lru.clear();
  }
}
