import type { ChunkFetcher } from './chunk-fetcher.js';
import type { ChunkLayout } from './chunk-layout.js';
import type { ChunkStore } from './chunk-store.js';
import type { PinnedMetadata } from './pinned-metadata.js';

/**
 * Background work ahead of any reader, as clients of the fetcher: hydration (the whole object, at the
 * lowest priority, into the disk tier or memory) and prefetch of listed ranges (a recorded prefetch
 * list, issue 8, at readahead priority). Neither ever delays a foreground read: the scheduler starts
 * them only when no higher class waits.
 */

export interface HydrationStats {
  state: 'running' | 'done' | 'incomplete' | 'closed';
  totalBytes: number;
  /** Bytes known present (on disk or in memory), whether fetched by hydration or before. */
  doneBytes: number;
  /** Bytes hydration itself fetched. */
  fetchedBytes: number;
  failedRequests: number;
}

export interface HydrationOptions {
  /** Size of one hydration GET. */
  requestBytes: number;
  /** Concurrent hydration GETs. */
  workers: number;
}

/** Fetches every chunk of the object not yet held, once; see `CachedSource.hydrate`. */
export class Hydration {
  private readonly progress: HydrationStats;
  readonly done: Promise<HydrationStats>;

  constructor(
    private readonly layout: ChunkLayout,
    private readonly store: ChunkStore,
    private readonly fetcher: ChunkFetcher,
    private readonly pinned: PinnedMetadata,
    private readonly options: HydrationOptions,
  ) {
    this.progress = {
      state: 'running',
      totalBytes: layout.objectSize,
      doneBytes: 0,
      fetchedBytes: 0,
      failedRequests: 0,
    };
    this.done = this.run();
  }

  stats(): HydrationStats {
    // Background GETs are hydration's alone.
    return { ...this.progress, fetchedBytes: this.fetcher.counters.backgroundBytes };
  }

  /** The source closed: a run still going ends as 'closed'. */
  close(): void {
    if (this.progress.state === 'running') this.progress.state = 'closed';
  }

  /** Held where hydration puts it: on disk with a disk tier, else in memory (or pinned). */
  private held(c: number): boolean {
    return (this.store.persistent ? this.store.onDisk(c) : this.store.has(c)) || this.pinned.coversChunk(c);
  }

  /**
   * Walks the object in `requestBytes` pieces with `workers` workers, fetching the chunks not yet held
   * as background fetches. A piece that fails is retried once in a second pass.
   */
  private async run(): Promise<HydrationStats> {
    const stats = this.progress;
    const chunkCount = this.layout.count;
    const pieceChunks = Math.max(1, Math.floor(this.options.requestBytes / this.layout.chunkBytes));
    const held = (c: number) => this.held(c);
    const pieces: Array<[number, number]> = [];
    for (let first = 0; first < chunkCount; first += pieceChunks)
      pieces.push([first, Math.min(chunkCount, first + pieceChunks) - 1]);
    const runPiece = async ([first, last]: [number, number]): Promise<boolean> => {
      const results = await this.fetcher.bring(first, last, 'background', this.options.requestBytes, held);
      for (const r of results) if (r.status === 'fulfilled') stats.doneBytes += r.value.bytes.length;
      const ok = results.every((r) => r.status === 'fulfilled');
      if (!ok) stats.failedRequests++;
      return ok;
    };
    stats.doneBytes = this.heldBytes();
    let failed = pieces;
    for (let pass = 0; pass < 2 && failed.length > 0 && !this.fetcher.closed; pass++) {
      const queue = [...failed];
      failed = [];
      const worker = async () => {
        for (let piece = queue.shift(); piece && !this.fetcher.closed; piece = queue.shift()) {
          await this.store.drained();
          if (!(await runPiece(piece))) failed.push(piece);
        }
      };
      await Promise.all(Array.from({ length: this.options.workers }, worker));
    }
    await this.store.flush();
    stats.doneBytes = this.heldBytes();
    if (stats.state === 'running') stats.state = failed.length === 0 && !this.fetcher.closed ? 'done' : 'incomplete';
    return this.stats();
  }

  private heldBytes(): number {
    let bytes = 0;
    for (let c = 0; c < this.layout.count; c++) if (this.held(c)) bytes += this.layout.bytesOf(c);
    return bytes;
  }
}

/**
 * Fetches [offset, offset+length) ahead of need at readahead priority, in GETs of up to `maxBytes`;
 * true when every chunk arrived (or was already held).
 */
export async function prefetchRange(
  layout: ChunkLayout,
  store: ChunkStore,
  fetcher: ChunkFetcher,
  pinned: PinnedMetadata,
  offset: number,
  length: number,
  maxBytes: number,
): Promise<boolean> {
  if (length === 0) return true;
  const held = (c: number) => store.has(c) || store.onDisk(c) || pinned.coversChunk(c);
  const results = await fetcher.bring(
    layout.indexOf(offset),
    layout.indexOf(offset + length - 1),
    'readahead',
    maxBytes,
    held,
  );
  return results.every((r) => r.status === 'fulfilled');
}
