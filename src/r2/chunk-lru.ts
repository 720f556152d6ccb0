import { LRUCache } from 'lru-cache';
import type { Lease } from '../util/arena.js';

/**
 * Aligned chunks of one remote object, bounded by bytes. Each chunk has its own buffer (never a view into
 * a larger response), so the byte count here is the memory actually held.
 *
 * Three tiers share the bound:
 * - `ahead`: chunks a sequential stream's readahead brought that no reader has used yet. They are not
 *   in the LRU: a plain LRU ranks them below chunks just read (which a sequential reader never reads
 *   again), so with several streams the readahead was evicted before use and fetched twice. They leave
 *   this tier when read (into `behind`), when their stream no longer wants them (`demote`, into the
 *   LRU), or, last resort, when a foreground fetch finds the LRU empty.
 * - `behind`: readahead chunks a reader has used, oldest first, at most `behindCapBytes` (drop-behind,
 *   as the kernel does for streaming reads). A stream reads on and seldom comes back, and keeping what
 *   it passed would fill the whole budget with it: every chunk buffer first written is new memory, and
 *   on a VM each 4 KiB page of it costs a fault (0.5 ms per 128 KiB measured here, 4 ms per MiB). With
 *   drop-behind a stream of any length turns over the same few buffers, and the LRU keeps its room for
 *   data that is read again. Beyond the cap the oldest is dropped at once; when room is needed, this
 *   tier goes first.
 * - the LRU: everything else (chunks read without readahead, head/tail data, recorded prefetch,
 *   hydration, demoted readahead).
 * The cache bounds the ahead tier by its readahead budget, so it never starves the LRU.
 *
 * A chunk that leaves the cache (evicted, dropped behind, replaced, cleared) is handed to `release`, which gives an
 * arena slot back for reuse (util/arena.ts).
 */

interface ChunkEntry {
  chunk: Lease;
  /** Fetched ahead of any reader and not yet read: counts toward readahead waste until read. */
  prefetched: boolean;
}

interface AheadEntry {
  chunk: Lease;
  streamId: number;
}

export class ChunkLru {
  private readonly lru: LRUCache<number, ChunkEntry>;
  /** Unused readahead, in arrival order. */
  private readonly ahead = new Map<number, AheadEntry>();
  private aheadHeld = 0;
  /** Readahead a reader has used, oldest first. */
  private readonly behind = new Map<number, Lease>();
  private behindHeld = 0;
  evictions = 0;
  /** Chunks dropped from the behind tier (counted in `evictions` too). */
  droppedBehind = 0;
  /** Bytes that readahead fetched and a reader later used. */
  prefetchedBytesUsed = 0;
  /** Bytes fetched ahead (readahead, prefetch, hydration) that were evicted before any reader used them. */
  prefetchedBytesEvictedUnused = 0;

  constructor(
    readonly capacityBytes: number,
    private readonly release: (chunk: Lease) => void = () => {},
    /** Most bytes of used readahead kept (see the class comment); default 1/8 of the capacity. */
    readonly behindCapBytes = Math.floor(capacityBytes / 8),
  ) {
    this.lru = new LRUCache<number, ChunkEntry>({
      maxSize: capacityBytes,
      sizeCalculation: (entry) => Math.max(1, entry.chunk.bytes.length),
      dispose: (entry, _key, reason) => {
        if (reason === 'evict') {
          this.evictions++;
          if (entry.prefetched) this.prefetchedBytesEvictedUnused += entry.chunk.bytes.length;
        }
        // The tiers are disjoint and set() never replaces a chunk by itself: the chunk is gone.
        this.release(entry.chunk);
      },
    });
  }

  get heldBytes(): number {
    return this.lru.calculatedSize + this.aheadHeld + this.behindHeld;
  }

  /** Bytes of used readahead still held. */
  get behindBytes(): number {
    return this.behindHeld;
  }

  /** Bytes of unused readahead held for live streams. */
  get aheadBytes(): number {
    return this.aheadHeld;
  }

  get count(): number {
    return this.lru.size + this.ahead.size + this.behind.size;
  }

  /**
   * The chunk, marking it used: unused readahead moves behind, an LRU chunk becomes the most recently
   * used; a chunk behind stays where it is. Valid until the next call that may evict.
   */
  get(index: number): Lease | undefined {
    const early = this.ahead.get(index);
    if (early) {
      this.removeAhead(index, early);
      this.prefetchedBytesUsed += early.chunk.bytes.length;
      this.addBehind(index, early.chunk);
      return early.chunk;
    }
    const used = this.behind.get(index);
    if (used) return used; // a stream's later reads of the same chunk: no promotion
    const entry = this.lru.get(index);
    if (!entry) return undefined;
    if (entry.prefetched) {
      entry.prefetched = false;
      this.prefetchedBytesUsed += entry.chunk.bytes.length;
    }
    return entry.chunk;
  }

  /** Presence without touching recency (readahead planning must not keep chunks alive). */
  has(index: number): boolean {
    return this.ahead.has(index) || this.behind.has(index) || this.lru.has(index);
  }

  /** Stores a chunk; `aheadOf` = the readahead stream that fetched it (it then waits in the ahead tier). */
  set(index: number, chunk: Lease, prefetched: boolean, aheadOf?: number): void {
    if (chunk.bytes.length > this.capacityBytes) {
      this.release(chunk);
      return;
    }
    const early = this.ahead.get(index);
    if (early) {
      this.removeAhead(index, early);
      if (early.chunk !== chunk) this.release(early.chunk);
    }
    const used = this.behind.get(index);
    if (used) {
      this.removeBehind(index, used);
      if (used !== chunk) this.release(used);
    }
    if (prefetched && aheadOf !== undefined && !this.lru.has(index)) {
      this.ahead.set(index, { chunk, streamId: aheadOf });
      this.aheadHeld += chunk.bytes.length;
      return;
    }
    const held = this.lru.get(index);
    if (held?.chunk === chunk) {
      held.prefetched = prefetched;
      return;
    }
    this.lru.set(index, { chunk, prefetched });
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
      this.lru.set(index, { chunk: entry.chunk, prefetched: true });
      moved += entry.chunk.bytes.length;
    }
    return moved;
  }

  /**
   * Drops used readahead (oldest first), then evicts least recently used chunks, until `incoming`
   * more bytes fit beside `reserved` bytes already promised to fetches in flight. Unused readahead goes only when the LRU is empty and `mayEvictAhead`
   * (a reader waits; readahead never evicts readahead). Returns false when the room cannot be made.
   */
  makeRoom(incoming: number, reserved: number, mayEvictAhead = true): boolean {
    const fits = () => this.heldBytes + reserved + incoming <= this.capacityBytes;
    while (!fits() && this.behind.size > 0) this.dropOldestBehind();
    while (!fits() && this.lru.size > 0) this.lru.pop(); // counted by dispose('evict')
    if (mayEvictAhead) {
      for (const [index, entry] of this.ahead) {
        if (fits()) break;
        this.removeAhead(index, entry);
        this.evictions++;
        this.prefetchedBytesEvictedUnused += entry.chunk.bytes.length;
        this.release(entry.chunk);
      }
    }
    return fits();
  }

  clear(): void {
    this.lru.clear();
    for (const chunk of this.behind.values()) this.release(chunk);
    this.behind.clear();
    this.behindHeld = 0;
    for (const entry of this.ahead.values()) this.release(entry.chunk);
    this.ahead.clear();
    this.aheadHeld = 0;
  }

  /** Keeps a chunk a reader just used, dropping the oldest beyond the cap (never the one just added). */
  private addBehind(index: number, chunk: Lease): void {
    this.behind.set(index, chunk);
    this.behindHeld += chunk.bytes.length;
    while (this.behindHeld > this.behindCapBytes && this.behind.size > 1) this.dropOldestBehind();
  }

  private dropOldestBehind(): void {
    const [index, chunk] = this.behind.entries().next().value as [number, Lease];
    this.removeBehind(index, chunk);
    this.evictions++;
    this.droppedBehind++;
    this.release(chunk);
  }

  private removeBehind(index: number, chunk: Lease): void {
    this.behind.delete(index);
    this.behindHeld -= chunk.bytes.length;
  }

  private removeAhead(index: number, entry: AheadEntry): void {
    this.ahead.delete(index);
    this.aheadHeld -= entry.chunk.bytes.length;
  }
}
