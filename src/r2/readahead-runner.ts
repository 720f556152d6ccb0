import type { ChunkFetcher } from './chunk-fetcher.js';
import type { ChunkLayout } from './chunk-layout.js';
import type { ChunkStore } from './chunk-store.js';
import type { PinnedMetadata } from './pinned-metadata.js';
import type { ReadaheadPolicy } from './readahead-policy.js';

/**
 * Carries out a readahead policy's decisions within one budget of unused readahead (held in the
 * store's ahead tier or in flight): after each data read it tells the policy how much room is left,
 * and fetches what the policy asks for that is neither held, in flight nor pinned, at readahead
 * priority. Readahead no reader has used stays apart from the LRU (chunk-lru.ts) until read, so
 * neither other readahead nor chunks just read push it out: every byte of a parallel copy is
 * fetched once, whatever the cache size.
 */
export class ReadaheadRunner {
  constructor(
    private readonly layout: ChunkLayout,
    private readonly store: ChunkStore,
    private readonly fetcher: ChunkFetcher,
    private readonly pinned: PinnedMetadata,
    private readonly policy: ReadaheadPolicy,
    readonly budgetBytes: number,
  ) {}

  /** A data read of [offset, offset+length) happened. */
  afterRead(offset: number, length: number): void {
    if (this.fetcher.closed) return;
    const { layout } = this;
    for (const request of this.policy.observe(offset, length, this.room())) {
      const missing: number[] = [];
      for (let c = layout.indexOf(request.start); layout.start(c) < request.end; c++) {
        if (this.store.has(c) || this.fetcher.isInFlight(c)) continue;
        const from = Math.max(request.start, layout.start(c));
        const to = Math.min(request.end, layout.end(c));
        if (this.pinned.covers(from, to)) continue;
        missing.push(c);
      }
      this.fetcher.request(missing, 'readahead', { streamId: request.streamId, maxBytes: request.pieceBytes });
    }
  }

  /**
   * Readahead bytes that may be requested now: the budget minus unused readahead held or on its way.
   * When the budget is spent, readahead of streams that are gone, or that their reader skipped past,
   * stops counting (it moves to the LRU, still readable).
   */
  room(): number {
    let room = this.budgetBytes - this.store.aheadBytes - this.fetcher.aheadInFlightBytes;
    if (room < this.layout.chunkBytes && this.store.aheadBytes > 0) {
      this.store.demote((c, streamId) => {
        const position = this.policy.positionOf(streamId);
        return position === undefined || this.layout.end(c) <= position;
      });
      room = this.budgetBytes - this.store.aheadBytes - this.fetcher.aheadInFlightBytes;
    }
    return Math.max(0, room);
  }
}
