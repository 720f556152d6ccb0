import type { ByteSource, ReadOptions } from '../squashfs/source.js';
import { logger } from '../util/log.js';
import { rangeInside } from '../util/range.js';
import { type CacheOptions, type ResolvedCacheOptions, readaheadBudgetBytes, resolveOptions } from './cache-options.js';
import { ChunkFetcher } from './chunk-fetcher.js';
import { ChunkLayout } from './chunk-layout.js';
import { ChunkReader } from './chunk-reader.js';
import { ChunkStore } from './chunk-store.js';
import type { DiskCacheStats, DiskChunkStore } from './disk-cache.js';
import { Hydration, type HydrationStats, prefetchRange } from './hydration.js';
import { PinnedMetadata } from './pinned-metadata.js';
import { type ReadaheadPolicy, SequentialReadahead } from './readahead-policy.js';
import { ReadaheadRunner } from './readahead-runner.js';
import type { CacheStats, ObjectInfo, RemoteObject, SourceStats } from './types.js';

export { CACHE_DEFAULTS, type CacheOptions } from './cache-options.js';
export type { HydrationStats } from './hydration.js';

/** A prefetched span is split into this many GETs at most. */
const PREFETCH_PIECES = 8;
/**
 * The chunk cache that makes a remote object fast enough to mount: a `ByteSource` over a
 * `RemoteObject`. This file only composes it; each job is a layer of its own, readable alone:
 *
 *   ChunkReader (chunk-reader.ts)      the read path: pinned bytes, held chunks, joins, miss units
 *     ├─ PinnedMetadata (pinned-metadata.ts)  the metadata run, never evicted, never re-fetched
 *     ├─ ReadaheadRunner (readahead-runner.ts) budget of unused readahead; asks a ReadaheadPolicy
 *     │    (readahead-policy.ts, default: sequential streams of readahead.ts) what to fetch next
 *     └─ ChunkFetcher (chunk-fetcher.ts)   in-flight sharing, coalescing, promotion, scheduling
 *          (fetch-scheduler.ts), memory admission; retries are below it, in the RemoteObject
 *            └─ ChunkStore (chunk-store.ts)  memory LRU + readahead tier + arena, optional disk tier
 *   Hydration, prefetchRange (hydration.ts)  background clients of the fetcher
 *
 * - Open is one round trip: `remote.open` fetches the head (superblock) and a suffix of the tail in
 *   parallel. The head goes to the store; the tail is pinned until `retain` says what metadata to keep.
 * - Memory held (chunks + bytes reserved by fetches in flight) stays within `cacheBytes`; only a
 *   foreground fetch may exceed it, by at most its own size. Unused readahead of all streams is kept
 *   within half of it. With a disk cache, chunks queued for writing add at most 64 MiB (disk-cache.ts).
 * - A failed fetch rejects every reader waiting on it with that error and caches nothing.
 * - Optional (issue 8): `cacheDir` keeps chunks on local disk per object version; `hydrate` fetches the
 *   rest of the object in the background, below readahead in priority.
 */

export interface ChunkCacheStats extends CacheStats {
  chunkBytes: number;
  /** Chunks waited on that another reader's fetch was already bringing. */
  joins: number;
  /** Fetches (GETs) issued by the cache, by class, and their bytes. */
  foregroundFetches: number;
  readaheadFetches: number;
  fetchedBytes: number;
  /** Readahead bytes a reader later used. */
  readaheadUsedBytes: number;
  /** Bytes fetched ahead of readers that were evicted before any reader used them (fetched for nothing). */
  readaheadEvictedUnusedBytes: number;
  /** Unused readahead of live streams held now (protected from eviction, within the readahead budget). */
  readaheadHeldBytes: number;
  inFlightFetches: number;
  inFlightBytes: number;
  queuedFetches: number;
  /** Largest LRU + in-flight reservation seen (pinned excluded). */
  peakDataBytes: number;
  failedFetches: number;
  backgroundFetches: number;
  /** Chunk buffers allocated and reused (none with a disk cache, see util/arena.ts). */
  chunkBuffers: { allocated: number; reused: number; free: number };
  disk?: DiskCacheStats;
  hydration?: HydrationStats;
}

export interface CachedSource extends ByteSource {
  readonly etag: string | undefined;
  read(offset: number, length: number): Promise<Uint8Array>;
  readInto(offset: number, target: Uint8Array, options?: ReadOptions): Promise<void>;
  retain(offset: number, length: number): Promise<void>;
  /**
   * Starts (once) fetching every chunk not yet held, at background priority, and resolves when done
   * (state 'done', or 'incomplete' after failed requests; reads still work and fetch what they need).
   */
  hydrate(): Promise<HydrationStats>;
  /**
   * Fetches [offset, offset+length) ahead of need (a recorded prefetch list, issue 8) at readahead
   * priority, in parallel GETs of up to `maxReadaheadRequestBytes`; resolves when they settle (true =
   * all arrived). Never delays foreground reads. Mind `cacheBytes` when no cache directory is set.
   */
  prefetch(offset: number, length: number): Promise<boolean>;
  /**
   * Calls `listener` with every read() asked of this source (offset, length), before it is served;
   * undefined stops. One listener at a time (issue 8: a restore records what it reads first).
   */
  observeReads(listener: ((offset: number, length: number) => void) | undefined): void;
  close(): Promise<void>;
  stats(): SourceStats & { cache: ChunkCacheStats };
}

/** Opens `remote` in one round trip and wraps it in the chunk cache. The source owns `remote` (close closes it). */
export async function openCachedSource(remote: RemoteObject, options: CacheOptions = {}): Promise<CachedSource> {
  const opts = resolveOptions(options);
  const { info, head, tail, fullTail } = await remote.open(opts.headBytes, opts.tailBytes, opts.quickTailBytes);
  if (!Number.isSafeInteger(info.size) || info.size < 0)
    throw new Error(`${remote.name}: invalid object size ${info.size}`);
  const headExpected = Math.min(opts.headBytes, info.size);
  const fullTailExpected = Math.min(opts.tailBytes, info.size);
  const tailExpected = fullTail ? Math.min(opts.quickTailBytes, info.size) : fullTailExpected;
  if (head.length !== headExpected || tail.length !== tailExpected) {
    throw new Error(
      `${remote.name}: open returned ${head.length}+${tail.length} bytes, expected ${headExpected}+${tailExpected}`,
    );
  }
  if (options.hydrate && !options.cacheDir && info.size > opts.cacheBytes) {
    throw new RangeError(
      `${remote.name}: hydrate needs a cache directory, or an object (${info.size} bytes) no larger than cacheBytes (${opts.cacheBytes})`,
    );
  }
  // Imported only for a --cache-dir mount: it loads node:zlib (~3 ms at start-up).
  const disk = options.cacheDir
    ? await (await import('./disk-cache.js')).DiskChunkStore.open(
        { dir: options.cacheDir, maxBytes: options.cacheDirMaxBytes },
        { name: remote.name, etag: info.etag, size: info.size },
        opts.chunkBytes,
      )
    : undefined;
  const source = new ChunkCachedSource(remote, info, opts, disk);
  source.seed(head, tail);
  if (fullTail) source.seedLater(fullTail, fullTailExpected);
  if (options.hydrate) {
    source.hydrate().catch((e: unknown) => logger('cache').warn(`${remote.name}: hydration stopped: ${String(e)}`));
  }
  return source;
}

/** The layers, wired in one place; every method delegates to the layer whose job it is. */
class ChunkCachedSource implements CachedSource {
  readonly name: string;
  readonly size: number;
  readonly etag: string | undefined;
  private readonly layout: ChunkLayout;
  private readonly store: ChunkStore;
  private readonly fetcher: ChunkFetcher;
  private readonly pinned: PinnedMetadata;
  private readonly readahead: ReadaheadRunner;
  private readonly reader: ChunkReader;
  private hydration: Hydration | undefined;
  private readObserver: ((offset: number, length: number) => void) | undefined;
  private closed = false;

  constructor(
    private readonly remote: RemoteObject,
    info: ObjectInfo,
    private readonly opts: ResolvedCacheOptions,
    disk: DiskChunkStore | undefined,
  ) {
    this.name = remote.name;
    this.size = info.size;
    this.etag = info.etag;
    this.layout = new ChunkLayout(opts.chunkBytes, info.size);
    this.store = new ChunkStore(this.layout, opts.cacheBytes, disk);
    const budget = readaheadBudgetBytes(opts);
    const policy: ReadaheadPolicy = new SequentialReadahead(opts, info.size, budget);
    this.fetcher = new ChunkFetcher(remote, this.layout, this.store, opts, (id) => policy.isAlive(id));
    this.pinned = new PinnedMetadata(
      this.layout,
      { name: this.name, maxPinnedBytes: opts.maxPinnedBytes, wholeChunks: this.store.persistent },
      {
        has: (c) => this.store.has(c),
        get: (c) => this.store.get(c),
        fetchRange: (from, to) => this.fetcher.fetchRange(from, to),
        storeWholeChunks: (offset, bytes) => this.storeWholeChunks(offset, bytes),
        closed: () => this.closed,
      },
    );
    this.readahead = new ReadaheadRunner(this.layout, this.store, this.fetcher, this.pinned, policy, budget);
    this.reader = new ChunkReader(this.layout, this.store, this.fetcher, this.pinned, opts, (offset, length) =>
      this.readahead.afterRead(offset, length),
    );
  }

  /** Head chunks go to the store (and disk); the tail is pinned until the reader says what to retain. */
  seed(head: Uint8Array, tail: Uint8Array): void {
    this.storeWholeChunks(0, head);
    this.store.persistWholeChunks(0, head);
    this.pinned.seedTail(tail);
    this.store.persistWholeChunks(this.size - tail.length, tail);
  }

  /** The whole tail (`length` bytes), when the open completed with its quick part (see PinnedMetadata.expectTail). */
  seedLater(fullTail: Promise<Uint8Array>, length: number): void {
    const checked = fullTail.then((tail) => {
      if (tail.length !== length) throw new Error(`${this.name}: open's tail has ${tail.length} bytes, expected ${length}`);
      this.store.persistWholeChunks(this.size - length, tail);
      return tail;
    });
    this.pinned.expectTail(checked, length);
  }

  /** Whole chunks of bytes already fetched, kept as data unless their own fetch is on its way. */
  private storeWholeChunks(offset: number, bytes: Uint8Array): void {
    this.store.storeWholeChunks(offset, bytes, (c) => this.fetcher.isInFlight(c));
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = Buffer.allocUnsafe(length);
    await this.readInto(offset, out);
    return out;
  }

  async readInto(offset: number, out: Uint8Array, options?: ReadOptions): Promise<void> {
    this.checkRange(offset, out.length, 'read');
    this.readObserver?.(offset, out.length);
    await this.reader.readInto(offset, out, options?.exact ?? false);
  }

  async retain(offset: number, length: number): Promise<void> {
    this.checkRange(offset, length, 'retain');
    await this.pinned.retain(offset, length);
  }

  async prefetch(offset: number, length: number): Promise<boolean> {
    this.checkRange(offset, length, 'prefetch');
    const { layout, store, fetcher, pinned } = this;
    // In up to eight parallel GETs (none under two miss units): a span arrives in about one round trip.
    const { missUnitBytes, maxReadaheadRequestBytes } = this.opts;
    const piece = Math.min(maxReadaheadRequestBytes, Math.max(2 * missUnitBytes, Math.ceil(length / PREFETCH_PIECES)));
    return prefetchRange(layout, store, fetcher, pinned, offset, length, piece);
  }

  observeReads(listener: ((offset: number, length: number) => void) | undefined): void {
    this.readObserver = listener;
  }

  hydrate(): Promise<HydrationStats> {
    if (this.closed) return Promise.reject(new Error(`${this.name}: source is closed`));
    if (!this.hydration) {
      if (!this.store.persistent && this.size > this.opts.cacheBytes) {
        return Promise.reject(
          new RangeError(`${this.name}: hydrate needs a cache directory or an object no larger than cacheBytes`),
        );
      }
      this.hydration = new Hydration(this.layout, this.store, this.fetcher, this.pinned, {
        requestBytes: this.opts.hydrateRequestBytes,
        workers: this.opts.maxBackgroundFetches,
      });
    }
    return this.hydration.done;
  }

  private checkRange(offset: number, length: number, what: string): void {
    if (this.closed) throw new Error(`${this.name}: source is closed`);
    if (!rangeInside(offset, length, this.size)) {
      throw new RangeError(`${this.name}: ${what} [${offset}, +${length}) outside the object (${this.size} bytes)`);
    }
  }

  stats(): SourceStats & { cache: ChunkCacheStats } {
    const pinnedBytes = this.pinned.totalBytes;
    const store = this.store.stats();
    const fetched = this.fetcher.counters;
    return {
      transport: this.remote.stats(),
      cache: {
        hits: this.reader.counters.hits,
        misses: this.reader.counters.misses,
        cachedBytes: store.heldBytes + pinnedBytes,
        pinnedBytes,
        capacityBytes: this.opts.cacheBytes,
        evictions: store.evictions,
        readaheadBytes: fetched.readaheadBytes,
        chunkBytes: this.opts.chunkBytes,
        joins: fetched.joins,
        foregroundFetches: fetched.foregroundFetches,
        readaheadFetches: fetched.readaheadFetches,
        fetchedBytes: fetched.fetchedBytes,
        readaheadUsedBytes: store.prefetchedBytesUsed + fetched.readaheadJoinedBytes,
        readaheadEvictedUnusedBytes: store.prefetchedBytesEvictedUnused,
        readaheadHeldBytes: store.aheadBytes,
        inFlightFetches: this.fetcher.runningFetches,
        inFlightBytes: store.reservedBytes,
        queuedFetches: this.fetcher.queuedFetches,
        peakDataBytes: store.peakDataBytes,
        failedFetches: fetched.failedFetches,
        backgroundFetches: fetched.backgroundFetches,
        chunkBuffers: store.chunkBuffers,
        disk: store.disk,
        hydration: this.hydration?.stats(),
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fetcher.close(new Error(`${this.name}: source is closed`));
    this.hydration?.close();
    this.store.clear();
    this.pinned.clear();
    try {
      await this.store.close();
    } finally {
      await this.remote.close();
    }
  }
}
