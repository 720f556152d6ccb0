import { Arena, Lease } from '../util/arena.js';
import type { ChunkLayout } from './chunk-layout.js';
import { ChunkLru } from './chunk-lru.js';
import type { DiskCacheStats, DiskChunkStore } from './disk-cache.js';

/**
 * Where the chunks of one object are kept, and the memory bound over them: the byte-bounded memory
 * tier (chunk-lru.ts, with unused readahead apart from the LRU) and, with `--cache-dir`, the disk tier
 * behind it (disk-cache.ts). It knows nothing of fetching: the fetcher reserves room here before a
 * GET (`admit`), fills chunk buffers taken here, and stores what arrived.
 *
 * Memory: held chunks + bytes reserved by fetches in flight stay within `capacityBytes`; only a fetch
 * a reader waits on may exceed it, by its own size, when reservations fill the budget.
 *
 * Buffers: without a disk tier, chunk buffers are arena slots reused after eviction (util/arena.ts);
 * a reader holding a `Lease` checks `valid` before copying. With a disk tier every chunk has a buffer
 * of its own, because the disk writes queued behind a fetch still read it.
 */
export class ChunkStore {
  private readonly lru: ChunkLru;
  private readonly arena: Arena | undefined;
  private reserved = 0;
  private peak = 0;

  constructor(
    private readonly layout: ChunkLayout,
    readonly capacityBytes: number,
    private readonly disk: DiskChunkStore | undefined,
  ) {
    if (!disk) this.arena = new Arena(layout.chunkBytes, Math.ceil(capacityBytes / layout.chunkBytes));
    this.lru = new ChunkLru(capacityBytes, (chunk) => this.arena?.give(chunk));
  }

  /** Chunks are also kept on disk: fetched chunks get buffers of their own (see the class comment). */
  get persistent(): boolean {
    return this.disk !== undefined;
  }

  /** A chunk in memory, marked most recently used (a readahead chunk becomes "used"). */
  get(c: number): Lease | undefined {
    return this.lru.get(c);
  }

  /** In memory, without touching recency (planning must not keep chunks alive). */
  has(c: number): boolean {
    return this.lru.has(c);
  }

  /** Present and marked intact on disk (reading it may still find a bad checksum: then a miss). */
  onDisk(c: number): boolean {
    return this.disk?.has(c) ?? false;
  }

  /**
   * Keeps a chunk in memory. `prefetched` = no reader asked for it yet; `aheadOf` = the readahead stream
   * that fetched it (it then waits apart from the LRU until read or demoted).
   */
  set(c: number, chunk: Lease, prefetched: boolean, aheadOf?: number): void {
    this.lru.set(c, chunk, prefetched, aheadOf);
  }

  /** An arena slot for a chunk about to be fetched (memory-only stores). */
  take(length: number): Lease {
    if (!this.arena) throw new Error('chunk store: buffers are taken from the arena only without a disk tier');
    return this.arena.take(length);
  }

  /** Gives a chunk buffer not kept (fetch failed, closed, hydration into disk) back for reuse. */
  release(chunk: Lease): void {
    this.arena?.give(chunk);
  }

  /**
   * Reserves room for `bytes` about to arrive, evicting least recently used chunks. `mustRun` (a reader
   * waits) may also evict unused readahead and overshoots rather than refuse; otherwise false = no room.
   */
  admit(bytes: number, mustRun: boolean): boolean {
    const room = this.lru.makeRoom(bytes, this.reserved, mustRun);
    if (!room && !mustRun) return false;
    this.reserved += bytes;
    this.notePeak();
    return true;
  }

  /** A fetch admitted for `bytes` has arrived or failed: its reservation ends. */
  unreserve(bytes: number): void {
    this.reserved -= bytes;
  }

  /** Unused readahead chunks `unwanted(c, streamId)` says no stream will read soon go to the LRU. */
  demote(unwanted: (c: number, streamId: number) => boolean): number {
    return this.lru.demote(unwanted);
  }

  /** Bytes of unused stream readahead held now. */
  get aheadBytes(): number {
    return this.lru.aheadBytes;
  }

  get heldBytes(): number {
    return this.lru.heldBytes;
  }

  get reservedBytes(): number {
    return this.reserved;
  }

  /**
   * Stores every chunk wholly inside `bytes` (object bytes from `offset`) that is neither held nor
   * `skip`ped (in flight: its own bytes are on their way). Not arena slots: `slice` of a Buffer is a
   * view of it (the head or tail fetched at open), of a plain Uint8Array a copy.
   */
  storeWholeChunks(offset: number, bytes: Uint8Array, skip: (c: number) => boolean = () => false): void {
    const end = offset + bytes.length;
    const { layout } = this;
    for (let c = layout.indexOf(offset + layout.chunkBytes - 1); layout.start(c) < end; c++) {
      const cs = layout.start(c);
      const ce = layout.end(c);
      if (cs < offset || ce > end) break;
      if (this.lru.has(c) || skip(c)) continue;
      this.lru.makeRoom(ce - cs, this.reserved);
      this.lru.set(c, new Lease(bytes.slice(cs - offset, ce - offset)), false);
    }
    this.notePeak();
  }

  /** Hands every whole chunk inside `bytes` (at `offset`) to the disk tier, if any. */
  persistWholeChunks(offset: number, bytes: Uint8Array): void {
    if (!this.disk) return;
    const end = offset + bytes.length;
    const { layout } = this;
    for (let c = layout.indexOf(offset + layout.chunkBytes - 1); layout.start(c) < end; c++) {
      const cs = layout.start(c);
      const ce = layout.end(c);
      if (ce > end) break;
      this.disk.write(c, bytes.slice(cs - offset, ce - offset));
    }
  }

  /** Writes one whole chunk to the disk tier in the background (a buffer nobody mutates later). */
  persist(c: number, bytes: Uint8Array): void {
    this.disk?.write(c, bytes);
  }

  /** The chunks the disk tier holds intact, read in parallel (a bad checksum is simply absent). */
  async loadFromDisk(chunks: readonly number[]): Promise<Map<number, Lease>> {
    const found = new Map<number, Lease>();
    const disk = this.disk;
    if (!disk) return found;
    await Promise.all(
      chunks
        .filter((c) => disk.has(c))
        .map(async (c) => {
          const bytes = await disk.read(c, this.layout.bytesOf(c));
          if (bytes) found.set(c, new Lease(bytes));
        }),
    );
    return found;
  }

  /** Object bytes [from, to) when the disk tier holds every chunk of it intact, else undefined. */
  async readFromDisk(from: number, to: number): Promise<Uint8Array | undefined> {
    if (!this.disk) return undefined;
    const first = this.layout.indexOf(from);
    const last = this.layout.indexOf(to - 1);
    const wanted = Array.from({ length: last - first + 1 }, (_, i) => first + i);
    if (!wanted.every((c) => this.onDisk(c))) return undefined;
    const chunks = await this.loadFromDisk(wanted);
    if (chunks.size !== wanted.length) return undefined;
    const out = Buffer.allocUnsafe(to - from);
    for (const [c, chunk] of chunks) this.layout.copyOut(c, chunk.bytes, from, to, out, from);
    return out;
  }

  /** Resolves when the disk tier's write queue has room (hydration paces itself to the disk). */
  drained(): Promise<void> {
    return this.disk?.drained() ?? Promise.resolve();
  }

  /** Waits for queued disk writes. */
  flush(): Promise<void> {
    return this.disk?.flush() ?? Promise.resolve();
  }

  stats() {
    return {
      heldBytes: this.lru.heldBytes,
      aheadBytes: this.lru.aheadBytes,
      behindBytes: this.lru.behindBytes,
      evictions: this.lru.evictions,
      droppedBehind: this.lru.droppedBehind,
      prefetchedBytesUsed: this.lru.prefetchedBytesUsed,
      prefetchedBytesEvictedUnused: this.lru.prefetchedBytesEvictedUnused,
      reservedBytes: this.reserved,
      peakDataBytes: this.peak,
      chunkBuffers: {
        allocated: this.arena?.allocated ?? 0,
        reused: this.arena?.reused ?? 0,
        free: this.arena?.freeSlots ?? 0,
      },
      disk: this.disk?.stats() as DiskCacheStats | undefined,
    };
  }

  /** Drops every chunk in memory (the source is closing). */
  clear(): void {
    this.lru.clear();
    this.arena?.clear();
  }

  /** Finishes the disk tier's writes and closes it. */
  async close(): Promise<void> {
    await this.disk?.close();
  }

  /** Records held + reserved bytes if they are the most seen (after storing a fetch's chunks). */
  notePeak(): void {
    this.peak = Math.max(this.peak, this.lru.heldBytes + this.reserved);
  }
}
