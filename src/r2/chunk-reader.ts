import type { Lease } from '../util/arena.js';
import type { ChunkFetcher } from './chunk-fetcher.js';
import type { ChunkLayout } from './chunk-layout.js';
import type { ChunkStore } from './chunk-store.js';
import type { PinnedMetadata } from './pinned-metadata.js';

/**
 * The foreground read path: fills a reader's buffer from pinned metadata, chunks held in the store,
 * chunks already in flight (joined) and, for the rest, chunks fetched now. A small read that misses
 * brings its whole `missUnitBytes` unit (neighbouring small files are read next); a large one only the
 * chunks it covers (random block reads of big files). A read larger than half the cache is not kept.
 */

export interface ChunkReaderOptions {
  cacheBytes: number;
  missUnitBytes: number;
}

export class ChunkReader {
  readonly counters = { hits: 0, misses: 0 };

  constructor(
    private readonly layout: ChunkLayout,
    private readonly store: ChunkStore,
    private readonly fetcher: ChunkFetcher,
    private readonly pinned: PinnedMetadata,
    private readonly options: ChunkReaderOptions,
    /** Told of every read that touched data (metadata walks are not data streams): readahead. */
    private readonly afterDataRead: (offset: number, length: number) => void,
  ) {}

  /** Object bytes [offset, offset + out.length) into `out`; `exact`: no miss unit (ReadOptions.exact). */
  async readInto(offset: number, out: Uint8Array, exact: boolean): Promise<void> {
    const length = out.length;
    if (length === 0) return;
    const end = offset + length;
    const pending: Array<Promise<void>> = [];
    let pos = offset;
    let touchedData = false;
    while (pos < end) {
      const extent = this.pinned.find(pos);
      if (extent) {
        const segEnd = Math.min(end, extent.start + extent.bytes.length);
        this.pinned.copy(pos, segEnd, out, pos - offset);
        pos = segEnd;
        continue;
      }
      const segEnd = Math.min(end, this.pinned.nextStartAfter(pos));
      pending.push(this.readChunks(pos, segEnd, out, offset, exact));
      touchedData = true;
      pos = segEnd;
    }
    if (touchedData) this.afterDataRead(offset, length);
    await Promise.all(pending);
  }

  /** Fills out[start-base, end-base) from chunks: held, joined in flight, or fetched now. */
  private async readChunks(start: number, end: number, out: Uint8Array, base: number, exact: boolean): Promise<void> {
    const { layout } = this;
    if (end - start > this.options.cacheBytes / 2) {
      // Larger than the cache could sensibly hold: not kept in memory (from the disk cache if it has it all).
      this.counters.misses++;
      out.set(await this.fetcher.fetchRange(start, end), start - base);
      return;
    }
    const first = layout.indexOf(start);
    const last = layout.indexOf(end - 1);
    const waits: Array<[number, Promise<Lease>]> = [];
    const missing: number[] = [];
    for (let c = first; c <= last; c++) {
      const chunk = this.store.get(c);
      if (chunk) {
        this.counters.hits++;
        layout.copyOut(c, chunk.bytes, start, end, out, base);
        continue;
      }
      const joined = this.fetcher.join(c, first, last);
      if (joined) {
        waits.push([c, joined]);
        continue;
      }
      this.counters.misses++;
      missing.push(c);
    }
    if (missing.length > 0 && !exact && end - start < this.options.missUnitBytes / 2) this.widenToUnits(missing);
    for (const [c, arrival] of this.fetcher.request(missing, 'foreground')) {
      if (c >= first && c <= last) waits.push([c, arrival]); // not the widened neighbours
    }
    // Each chunk is copied out as soon as it arrives, while its buffer surely still holds it; one
    // evicted and reused before that (possible only under extreme cache pressure) is read again.
    await Promise.all(
      waits.map(([c, promise]) =>
        promise.then((chunk) => {
          if (chunk.valid) return layout.copyOut(c, chunk.bytes, start, end, out, base);
          const from = Math.max(start, layout.start(c));
          return this.readChunks(from, Math.min(end, layout.end(c)), out, base, exact);
        }),
      ),
    );
  }

  /**
   * Adds to a small read's `missing` chunks (sorted) the other chunks of their aligned miss units that
   * are neither held, in flight, pinned nor on disk: the neighbours come in the same GET.
   */
  private widenToUnits(missing: number[]): void {
    const { layout } = this;
    const per = this.options.missUnitBytes / layout.chunkBytes;
    if (per <= 1) return;
    const lastChunk = layout.indexOf(layout.objectSize - 1);
    const first = Math.floor(missing[0]! / per) * per;
    const last = Math.min(lastChunk, Math.floor(missing[missing.length - 1]! / per) * per + per - 1);
    const wanted = new Set(missing);
    for (let c = first; c <= last; c++) {
      if (wanted.has(c) || this.store.has(c) || this.fetcher.isInFlight(c)) continue;
      if (this.pinned.coversChunk(c)) continue;
      if (this.store.onDisk(c)) continue;
      wanted.add(c);
    }
    missing.splice(0, missing.length, ...[...wanted].sort((a, b) => a - b));
  }
}
