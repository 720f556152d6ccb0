import type { ByteSource, ReadOptions } from '../squashfs/source.js';
import { logger } from '../util/log.js';
import { rangeInside } from '../util/range.js';
import { Lease, Arena } from '../util/arena.js';
import { ChunkLru } from './chunk-lru.js';
import { DiskChunkStore, type DiskCacheStats } from './disk-cache.js';
import { FetchScheduler, type FetchPriority, type SchedulerTask } from './fetch-scheduler.js';
import { PinnedExtents, type Extent } from './pinned-extents.js';
import { SequentialDetector } from './readahead.js';
import type { CacheStats, ObjectInfo, RemoteObject, SourceStats } from './types.js';

/**
 * The chunk cache that makes a remote object fast enough to mount: a `ByteSource` over a
 * `RemoteObject`.
 *
 * - Open is one round trip: `remote.open` fetches the head (superblock) and a suffix of the tail in
 *   parallel. The tail is pinned; `retain(inode_table_start, len)` then fetches whatever of the
 *   metadata run is missing in one request and keeps exactly that run pinned. Pinned bytes are never
 *   evicted and reads of them never go remote. They are bounded by the image's metadata size
 *   (inode, directory, fragment, export, id and xattr tables; typically 1-3% of an image), which is
 *   why they are not counted against `cacheBytes`; `maxPinnedBytes` caps them for hostile images.
 * - Data is fetched in `chunkBytes`-aligned chunks into a byte-bounded LRU. Concurrent readers of a
 *   chunk share one fetch; the missing chunks of one read coalesce into one GET, bridging a gap of
 *   already-cached chunks up to `coalesceGapBytes` (a second request costs a round trip and a
 *   connection slot; re-fetching a few hundred KiB costs a few ms of bandwidth).
 * - Sequential readers get a growing readahead window (see readahead.ts) fetched as several parallel
 *   GETs at low priority (see fetch-scheduler.ts). All streams share one budget of unused readahead
 *   (half of `cacheBytes`, held or in flight), and readahead no reader has used yet is kept apart from
 *   the LRU (chunk-lru.ts) so neither other readahead nor chunks just read push it out: every byte of a
 *   parallel copy is fetched once, whatever the cache size.
 * - A small read that misses brings its whole `missUnitBytes` unit (neighbouring small files); a large
 *   one only the `chunkBytes` chunks it covers (random block reads of big files).
 * - Memory held (LRU + bytes reserved by fetches in flight) stays within `cacheBytes`; only a
 *   foreground fetch may exceed it, by at most its own size, when in-flight reservations fill the budget.
 *   With a disk cache, chunks queued for writing add at most 64 MiB (see disk-cache.ts).
 * - A failed fetch rejects every reader waiting on it with that error and caches nothing.
 * - Optional (issue 8): `cacheDir` keeps chunks on local disk per object version (disk-cache.ts); a
 *   chunk missing from memory is looked up there before it is fetched. `hydrate` fetches the rest of
 *   the object in the background, below readahead in priority, into the disk cache.
 */

export interface CacheOptions {
  /** Bytes of data chunks kept in memory (pinned metadata comes on top). Default 256 MiB. */
  cacheBytes?: number;
  /** Alignment and unit of caching. Default 64 KiB (see DEFAULTS for why). */
  chunkBytes?: number;
  /**
   * A small read that misses (under half of this) fetches every missing chunk of its aligned unit of
   * this size; a larger miss fetches just its own chunks. Default 256 KiB; `chunkBytes` disables it.
   */
  missUnitBytes?: number;
  /** Largest readahead window. Default 64 MiB; never more than a quarter of `cacheBytes`. */
  maxReadaheadBytes?: number;
  /** First readahead window of a sequential stream. Default 1 MiB. */
  initialReadaheadBytes?: number;
  /** Largest single readahead GET; a window is split into parallel GETs of at most this size. Default 8 MiB. */
  maxReadaheadRequestBytes?: number;
  /** Concurrent GETs issued by this cache (foreground + readahead). Default 16. */
  maxConcurrentFetches?: number;
  /** Of those, at most this many for readahead. Default 8. */
  maxReadaheadFetches?: number;
  /** Bytes fetched at open from the start of the object (superblock). Default `missUnitBytes`. */
  headBytes?: number;
  /** Bytes fetched at open from the end of the object (metadata). Default 1 MiB. */
  tailBytes?: number;
  /** A gap of cached chunks up to this size inside one read's misses is re-fetched rather than split. */
  coalesceGapBytes?: number;
  /** Upper bound of pinned metadata. Default 1 GiB. */
  maxPinnedBytes?: number;
  /** Persistent chunk cache directory: chunks are also kept on disk per object version (bucket/key/ETag). */
  cacheDir?: string;
  /** Size limit of `cacheDir` across objects (whole objects evicted, least recently used). Default 10 GiB. */
  cacheDirMaxBytes?: number;
  /**
   * Fetch the whole object in the background after open, at the lowest priority. Needs `cacheDir`,
   * or an object no larger than `cacheBytes` (it is then held in memory).
   */
  hydrate?: boolean;
  /** Concurrent hydration GETs. Default 4. */
  maxBackgroundFetches?: number;
  /** Size of one hydration GET. Default 8 MiB. */
  hydrateRequestBytes?: number;
}

export interface HydrationStats {
  state: 'running' | 'done' | 'incomplete' | 'closed';
  totalBytes: number;
  /** Bytes known present (on disk or in memory), whether fetched by hydration or before. */
  doneBytes: number;
  /** Bytes hydration itself fetched. */
  fetchedBytes: number;
  failedRequests: number;
}

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

const KiB = 1024;
const MiB = 1024 * KiB;
/** How much of a queued readahead GET a reader who needs it takes along at foreground priority. */
const PROMOTE_BYTES = 1 * MiB;

/**
 * Why these defaults:
 * - missUnitBytes 256 KiB: a round trip to R2 costs tens of ms while 256 KiB transfers in a few ms, so
 *   a small read (a packed small file, a fragment block) that misses fetches its whole 256 KiB unit
 *   and catches its neighbours, which are read next. Measured with test/r2/cache-chunksize.test.ts
 *   (CACHE_BENCH=1): at 20 ms RTT, plain 64 KiB chunks took 1.6x the time of 256 KiB for random small
 *   files and 1.3x for whole-tree reads (the neighbours cost round trips of their own); 1 MiB chunks
 *   saved round trips only where the whole file fit in a few chunks, at 1.4x the bytes.
 * - chunkBytes 64 KiB: a large random read (a 128 KiB block of a big file) fetches just the chunks it
 *   covers: 192 KiB at worst, where 256 KiB chunks cost 256 or 512 KiB (a block straddling two
 *   chunks), 3.3x the bytes needed for random 4 KiB reads of a big file. Sequential throughput comes
 *   from readahead, whose GETs span many chunks.
 * - tailBytes 1 MiB: holds the whole metadata run of images of tens of thousands of files (a gzip
 *   image of 4,251 npm files has 86 KiB of metadata, ~21 bytes per inode), so open + retain is one
 *   round trip for them; bigger images pay exactly one more GET.
 * - readahead 1 MiB growing to 64 MiB, GETs of at most 8 MiB, 8 at once: one stream saturates a link
 *   after a few round trips, while the window never exceeds a quarter of the cache.
 */
export const CACHE_DEFAULTS = {
  cacheBytes: 256 * MiB,
  chunkBytes: 64 * KiB,
  missUnitBytes: 256 * KiB,
  maxReadaheadBytes: 64 * MiB,
  initialReadaheadBytes: 1 * MiB,
  maxReadaheadRequestBytes: 8 * MiB,
  maxConcurrentFetches: 16,
  maxReadaheadFetches: 8,
  tailBytes: 1 * MiB,
  maxPinnedBytes: 1024 * MiB,
  readaheadStreams: 8,
  /** A stream must have read this much before readahead: the superblock + compression options reads at open are not one. */
  minStreamBytes: 64 * KiB,
  maxBackgroundFetches: 4,
  hydrateRequestBytes: 8 * MiB,
} as const;

type Resolved = Required<Omit<CacheOptions, 'cacheDir' | 'cacheDirMaxBytes' | 'hydrate'>>;

function resolveOptions(options: CacheOptions): Resolved {
  const chunkBytes = options.chunkBytes ?? CACHE_DEFAULTS.chunkBytes;
  // A chunk size asked for alone keeps its old meaning (the unit of every fetch).
  const missUnitBytes =
    options.missUnitBytes ?? (options.chunkBytes === undefined ? CACHE_DEFAULTS.missUnitBytes : chunkBytes);
  const r: Resolved = {
    cacheBytes: options.cacheBytes ?? CACHE_DEFAULTS.cacheBytes,
    chunkBytes,
    missUnitBytes,
    maxReadaheadBytes: options.maxReadaheadBytes ?? CACHE_DEFAULTS.maxReadaheadBytes,
    initialReadaheadBytes: options.initialReadaheadBytes ?? CACHE_DEFAULTS.initialReadaheadBytes,
    maxReadaheadRequestBytes: options.maxReadaheadRequestBytes ?? CACHE_DEFAULTS.maxReadaheadRequestBytes,
    maxConcurrentFetches: options.maxConcurrentFetches ?? CACHE_DEFAULTS.maxConcurrentFetches,
    maxReadaheadFetches: options.maxReadaheadFetches ?? CACHE_DEFAULTS.maxReadaheadFetches,
    headBytes: options.headBytes ?? Math.max(chunkBytes, missUnitBytes),
    tailBytes: options.tailBytes ?? CACHE_DEFAULTS.tailBytes,
    coalesceGapBytes: options.coalesceGapBytes ?? 2 * Math.max(chunkBytes, missUnitBytes),
    maxPinnedBytes: options.maxPinnedBytes ?? CACHE_DEFAULTS.maxPinnedBytes,
    maxBackgroundFetches: options.maxBackgroundFetches ?? CACHE_DEFAULTS.maxBackgroundFetches,
    hydrateRequestBytes: options.hydrateRequestBytes ?? CACHE_DEFAULTS.hydrateRequestBytes,
  };
  const positive = (name: keyof Resolved, min: number) => {
    const v = r[name];
    if (!Number.isSafeInteger(v) || v < min)
      throw new RangeError(`cache option ${name} must be an integer >= ${min}, got ${v}`);
  };
  positive('chunkBytes', 512);
  if ((chunkBytes & (chunkBytes - 1)) !== 0)
    throw new RangeError(`cache option chunkBytes must be a power of two, got ${chunkBytes}`);
  positive('cacheBytes', 2 * chunkBytes);
  positive('missUnitBytes', chunkBytes);
  if (missUnitBytes % chunkBytes !== 0)
    throw new RangeError(`cache option missUnitBytes must be a multiple of chunkBytes, got ${missUnitBytes}`);
  positive('maxReadaheadBytes', 0);
  positive('initialReadaheadBytes', chunkBytes);
  positive('maxReadaheadRequestBytes', chunkBytes);
  positive('maxConcurrentFetches', 1);
  positive('maxReadaheadFetches', 0);
  positive('headBytes', 0);
  positive('tailBytes', 0);
  positive('coalesceGapBytes', 0);
  positive('maxPinnedBytes', 0);
  positive('maxBackgroundFetches', 1);
  positive('hydrateRequestBytes', chunkBytes);
  // Readahead must leave room for foreground reads and never evict what it is about to need.
  r.maxReadaheadFetches = Math.min(r.maxReadaheadFetches, Math.max(0, r.maxConcurrentFetches - 1));
  r.maxBackgroundFetches = Math.max(1, Math.min(r.maxBackgroundFetches, r.maxConcurrentFetches - 1));
  // A background or prefetch GET is admitted only when its bytes fit the memory budget: one larger
  // than the cache would wait forever (hydration of a small cache hung so).
  const whole = Math.floor(r.cacheBytes / chunkBytes) * chunkBytes;
  const quarter = Math.max(chunkBytes, Math.floor(r.cacheBytes / 4 / chunkBytes) * chunkBytes);
  r.hydrateRequestBytes = Math.min(r.hydrateRequestBytes, whole);
  r.maxReadaheadRequestBytes = Math.min(r.maxReadaheadRequestBytes, quarter);
  return r;
}

/** Opens `remote` in one round trip and wraps it in the chunk cache. The source owns `remote` (close closes it). */
export async function openCachedSource(remote: RemoteObject, options: CacheOptions = {}): Promise<CachedSource> {
  const opts = resolveOptions(options);
  const { info, head, tail } = await remote.open(opts.headBytes, opts.tailBytes);
  if (!Number.isSafeInteger(info.size) || info.size < 0)
    throw new Error(`${remote.name}: invalid object size ${info.size}`);
  const headExpected = Math.min(opts.headBytes, info.size);
  const tailExpected = Math.min(opts.tailBytes, info.size);
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
  const disk = options.cacheDir
    ? await DiskChunkStore.open(
        { dir: options.cacheDir, maxBytes: options.cacheDirMaxBytes },
        { name: remote.name, etag: info.etag, size: info.size },
        opts.chunkBytes,
      )
    : undefined;
  const source = new ChunkCachedSource(remote, info, opts, disk);
  source.seed(head, tail);
  if (options.hydrate) {
    source.hydrate().catch((e: unknown) => logger('cache').warn(`${remote.name}: hydration stopped: ${String(e)}`));
  }
  return source;
}

interface Deferred {
  promise: Promise<Lease>;
  resolve(chunk: Lease): void;
  reject(error: unknown): void;
}

function deferred(): Deferred {
  let resolve!: (c: Lease) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<Lease>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {}); // a readahead chunk nobody awaited must not be an unhandled rejection
  return { promise, resolve, reject };
}

/** One ranged GET covering chunks [first, last], with a waiter per chunk it brings in. */
class RangeFetch implements SchedulerTask {
  readonly controller = new AbortController();
  readonly waiters = new Map<number, Deferred>();
  readonly offset: number;
  readonly bytes: number;
  started = false;
  /** A reader waits on it (readahead chunks it brings are not counted as prefetched). */
  awaited: boolean;

  constructor(
    private readonly owner: ChunkCachedSource,
    readonly first: number,
    readonly last: number,
    public priority: FetchPriority,
    readonly streamId: number | undefined,
  ) {
    this.offset = owner.chunkStart(first);
    this.bytes = owner.chunkEnd(last) - this.offset;
    this.awaited = priority === 'foreground';
  }

  run(): Promise<void> {
    this.started = true;
    return this.owner.runFetch(this);
  }

  skip(reason: Error): void {
    this.owner.dropFetch(this, reason);
  }

  wanted(): boolean {
    return this.awaited || this.streamId === undefined || this.owner.streamAlive(this.streamId);
  }
}

class ChunkCachedSource implements CachedSource {
  readonly name: string;
  readonly size: number;
  readonly etag: string | undefined;
  private readonly log = logger('cache');
  private readonly lru: ChunkLru;
  /** Reused chunk buffers (see util/arena.ts); without a disk cache only, whose writes keep chunk buffers. */
  private readonly arena: Arena | undefined;
  /** Where bridged chunks (re-fetched while cached) are received: written, never read. */
  private bridgeScratch: Buffer | undefined;
  private readonly pinned = new PinnedExtents();
  /** Spans the reader asked to retain; undefined until the first retain (the tail is pinned until then). */
  private retainedSpans: Array<[number, number]> | undefined;
  /** Chunks being fetched; `joined` = a reader waits on it (a readahead chunk that was then used). */
  private readonly inFlight = new Map<
    number,
    { fetch: RangeFetch; waiter: Deferred; joined: boolean; ahead: boolean }
  >();
  /** Bytes of stream readahead requested (queued or in flight) and not yet arrived: part of the readahead budget. */
  private aheadInFlightBytes = 0;
  /** Unused stream readahead (held + on its way) is kept within this; see aheadBudget in the constructor. */
  private readonly aheadBudgetBytes: number;
  private readonly scheduler: FetchScheduler;
  private readonly detector: SequentialDetector;
  private hydration: { stats: HydrationStats; done: Promise<HydrationStats> } | undefined;
  private readObserver: ((offset: number, length: number) => void) | undefined;
  private reservedBytes = 0;
  private runningFetches = 0;
  private closed = false;
  private readonly counters = {
    hits: 0,
    misses: 0,
    joins: 0,
    foregroundFetches: 0,
    readaheadFetches: 0,
    fetchedBytes: 0,
    readaheadBytes: 0,
    peakDataBytes: 0,
    failedFetches: 0,
    readaheadJoinedBytes: 0,
    backgroundFetches: 0,
  };

  constructor(
    private readonly remote: RemoteObject,
    info: ObjectInfo,
    private readonly opts: Resolved,
    private readonly disk: DiskChunkStore | undefined,
  ) {
    this.name = remote.name;
    this.size = info.size;
    this.etag = info.etag;
    if (!disk) this.arena = new Arena(opts.chunkBytes, Math.ceil(opts.cacheBytes / opts.chunkBytes));
    this.lru = new ChunkLru(opts.cacheBytes, (chunk) => this.arena?.give(chunk));
    this.scheduler = new FetchScheduler({
      maxConcurrent: opts.maxConcurrentFetches,
      maxReadahead: opts.maxReadaheadFetches,
      maxBackground: opts.maxBackgroundFetches,
      admit: (task) => this.admit(task),
    });
    // One window may not exceed a quarter of the cache (it is topped up when half is read).
    const windowCap =
      Math.floor(Math.min(opts.maxReadaheadBytes, opts.cacheBytes / 4) / opts.chunkBytes) * opts.chunkBytes;
    // All streams together keep at most half the cache in unused readahead (held or in flight), so
    // readahead never pushes out what another stream is about to read, and the other half holds
    // what readers use now.
    this.aheadBudgetBytes = Math.floor(opts.cacheBytes / 2 / opts.chunkBytes) * opts.chunkBytes;
    this.detector = new SequentialDetector(
      {
        initialWindowBytes: Math.min(opts.initialReadaheadBytes, windowCap),
        maxWindowBytes: windowCap,
        forwardSlackBytes: Math.min(32 * KiB, opts.chunkBytes),
        maxStreams: CACHE_DEFAULTS.readaheadStreams,
        minSequentialReads: 3,
        minStreamBytes: CACHE_DEFAULTS.minStreamBytes,
        budgetBytes: this.aheadBudgetBytes,
        unitBytes: opts.chunkBytes,
      },
      this.size,
    );
  }

  chunkStart(index: number): number {
    return index * this.opts.chunkBytes;
  }

  chunkEnd(index: number): number {
    return Math.min((index + 1) * this.opts.chunkBytes, this.size);
  }

  private chunkOf(offset: number): number {
    return Math.floor(offset / this.opts.chunkBytes);
  }

  streamAlive(streamId: number): boolean {
    return this.detector.isAlive(streamId);
  }

  /** Head chunks go to the LRU; the tail is pinned until the reader says what to retain. */
  seed(head: Uint8Array, tail: Uint8Array): void {
    this.storeWholeChunks(0, head);
    this.persistWholeChunks(0, head);
    if (tail.length > 0) this.pinned.replace([{ start: this.size - tail.length, bytes: tail }]);
    this.persistWholeChunks(this.size - tail.length, tail);
  }

  /** Hands every whole chunk inside `bytes` (at `offset`) to the disk cache. */
  private persistWholeChunks(offset: number, bytes: Uint8Array): void {
    if (!this.disk) return;
    const end = offset + bytes.length;
    for (let c = this.chunkOf(offset + this.opts.chunkBytes - 1); this.chunkStart(c) < end; c++) {
      const cs = this.chunkStart(c);
      const ce = this.chunkEnd(c);
      if (ce > end) break;
      this.disk.write(c, bytes.slice(cs - offset, ce - offset));
    }
  }

  /** Inserts every chunk fully contained in `bytes` (which starts at `offset`) that is not cached yet. */
  private storeWholeChunks(offset: number, bytes: Uint8Array): void {
    const end = offset + bytes.length;
    for (let c = this.chunkOf(offset + this.opts.chunkBytes - 1); this.chunkStart(c) < end; c++) {
      const cs = this.chunkStart(c);
      const ce = this.chunkEnd(c);
      if (cs < offset || ce > end) break;
      if (this.lru.has(c) || this.inFlight.has(c)) continue;
      this.lru.makeRoom(ce - cs, this.reservedBytes);
      this.lru.set(c, new Lease(bytes.slice(cs - offset, ce - offset)), false);
    }
    this.notePeak();
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = Buffer.allocUnsafe(length);
    await this.readInto(offset, out);
    return out;
  }

  async readInto(offset: number, out: Uint8Array, options?: ReadOptions): Promise<void> {
    const length = out.length;
    this.checkRange(offset, length, 'read');
    this.readObserver?.(offset, length);
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
      pending.push(this.readChunks(pos, segEnd, out, offset, options?.exact ?? false));
      touchedData = true;
      pos = segEnd;
    }
    if (touchedData) this.maybeReadahead(offset, length); // metadata walks are not data streams
    await Promise.all(pending);
  }

  /** Fills out[start-base, end-base) from chunks: cached, joined in flight, or fetched now. */
  /** `exact`: fetch only the chunks [start, end) covers, even for a small read (ReadOptions.exact). */
  private async readChunks(start: number, end: number, out: Uint8Array, base: number, exact = false): Promise<void> {
    if (end - start > this.opts.cacheBytes / 2) {
      // Larger than the cache could sensibly hold: not kept in memory (from the disk cache if it has it all).
      this.counters.misses++;
      out.set(await this.readRange(start, end), start - base);
      return;
    }
    const first = this.chunkOf(start);
    const last = this.chunkOf(end - 1);
    const waits: Array<[number, Promise<Lease>]> = [];
    const missing: number[] = [];
    for (let c = first; c <= last; c++) {
      const chunk = this.lru.get(c);
      if (chunk) {
        this.counters.hits++;
        this.copyChunk(c, chunk.bytes, start, end, out, base);
        continue;
      }
      let flight = this.inFlight.get(c);
      if (flight) {
        this.counters.joins++;
        if (!flight.fetch.started && flight.fetch.priority !== 'foreground') {
          this.promoteQueued(flight.fetch, first, last);
          flight = this.inFlight.get(c)!;
        }
        flight.fetch.awaited = true;
        flight.joined = true;
        waits.push([c, flight.waiter.promise]);
        continue;
      }
      this.counters.misses++;
      missing.push(c);
    }
    if (missing.length > 0 && !exact && end - start < this.opts.missUnitBytes / 2) this.widenToUnits(missing);
    for (const fetch of this.planFetches(missing, 'foreground', undefined)) {
      for (const [c, w] of fetch.waiters) if (c >= first && c <= last) waits.push([c, w.promise]); // not the widened neighbours
      this.scheduler.submit(fetch);
    }
    // Each chunk is copied out as soon as it arrives, while its buffer surely still holds it; one
    // evicted and reused before that (possible only under extreme cache pressure) is read again.
    await Promise.all(
      waits.map(([c, promise]) =>
        promise.then((chunk) => {
          if (chunk.valid) return this.copyChunk(c, chunk.bytes, start, end, out, base);
          const from = Math.max(start, this.chunkStart(c));
          return this.readChunks(from, Math.min(end, this.chunkEnd(c)), out, base, exact);
        }),
      ),
    );
  }

  /**
   * Adds to a small read's `missing` chunks (sorted) the other chunks of their aligned miss units that
   * are neither held, in flight nor pinned: the neighbours come in the same GET.
   */
  private widenToUnits(missing: number[]): void {
    const per = this.opts.missUnitBytes / this.opts.chunkBytes;
    if (per <= 1) return;
    const lastChunk = this.chunkOf(this.size - 1);
    const first = Math.floor(missing[0]! / per) * per;
    const last = Math.min(lastChunk, Math.floor(missing[missing.length - 1]! / per) * per + per - 1);
    const wanted = new Set(missing);
    for (let c = first; c <= last; c++) {
      if (wanted.has(c) || this.lru.has(c) || this.inFlight.has(c)) continue;
      if (this.pinned.missing(this.chunkStart(c), this.chunkEnd(c)).length === 0) continue;
      if (this.disk?.has(c)) continue;
      wanted.add(c);
    }
    missing.splice(0, missing.length, ...[...wanted].sort((a, b) => a - b));
  }

  /**
   * A reader needs chunks [firstNeeded, lastNeeded] of a readahead or hydration fetch that has not
   * started: fetch that part now as a foreground request and leave the rest queued in its class, so
   * the reader does not wait for a whole multi-MiB GET.
   */
  private promoteQueued(fetch: RangeFetch, firstNeeded: number, lastNeeded: number): void {
    if (!this.scheduler.withdraw(fetch)) return;
    const from = Math.max(firstNeeded, fetch.first);
    // A reader caught up with its stream's queued readahead reads on from here: bring the next
    // PROMOTE_BYTES with it, or every following read pays a round trip (and a one-block GET) of its own.
    const follow = fetch.streamId === undefined ? 0 : Math.max(0, Math.floor(PROMOTE_BYTES / this.opts.chunkBytes) - 1);
    const to = Math.min(fetch.last, Math.max(lastNeeded, from + follow));
    const parts: Array<[number, number, FetchPriority]> = [[from, to, 'foreground']];
    if (fetch.first < from) parts.push([fetch.first, from - 1, fetch.priority]);
    if (to < fetch.last) parts.push([to + 1, fetch.last, fetch.priority]);
    for (const [first, last, priority] of parts) {
      const part = new RangeFetch(this, first, last, priority, fetch.streamId);
      for (const [c, waiter] of fetch.waiters) {
        if (c < first || c > last) continue;
        part.waiters.set(c, waiter);
        const entry = this.inFlight.get(c);
        if (entry) entry.fetch = part;
      }
      if (part.waiters.size > 0) this.scheduler.submit(part);
    }
  }

  private copyChunk(c: number, bytes: Uint8Array, start: number, end: number, out: Uint8Array, base: number): void {
    const cs = this.chunkStart(c);
    const from = Math.max(start, cs);
    const to = Math.min(end, cs + bytes.length);
    out.set(bytes.subarray(from - cs, to - cs), from - base);
  }

  /**
   * Groups missing chunks into ranged fetches: adjacent ones join, and a gap of cached chunks up to
   * `coalesceGapBytes` is bridged (re-fetched) rather than paying a second request. Chunks in flight
   * are never bridged (the bytes are already on their way), nor are pinned ones.
   */
  private planFetches(
    missing: number[],
    priority: FetchPriority,
    streamId: number | undefined,
    maxBytes = Infinity,
  ): RangeFetch[] {
    const fetches: RangeFetch[] = [];
    const maxGapChunks = Math.floor(this.opts.coalesceGapBytes / this.opts.chunkBytes);
    const maxChunks = Math.max(1, Math.floor(maxBytes / this.opts.chunkBytes));
    let i = 0;
    while (i < missing.length) {
      const runFirst = missing[i]!;
      let runLast = runFirst;
      const chunks = [runFirst];
      i++;
      while (i < missing.length) {
        const next = missing[i]!;
        const gap = next - runLast - 1;
        if (next - runFirst + 1 > maxChunks) break;
        if (gap > 0 && (gap > maxGapChunks || !this.bridgeable(runLast + 1, next - 1))) break;
        chunks.push(next);
        runLast = next;
        i++;
      }
      const fetch = new RangeFetch(this, runFirst, runLast, priority, streamId);
      const ahead = priority === 'readahead' && streamId !== undefined;
      for (const c of chunks) {
        const waiter = deferred();
        fetch.waiters.set(c, waiter);
        this.inFlight.set(c, { fetch, waiter, joined: false, ahead });
        if (ahead) this.aheadInFlightBytes += this.chunkEnd(c) - this.chunkStart(c);
      }
      fetches.push(fetch);
    }
    return fetches;
  }

  private bridgeable(first: number, last: number): boolean {
    for (let c = first; c <= last; c++) if (this.inFlight.has(c)) return false;
    return true;
  }

  private maybeReadahead(offset: number, length: number): void {
    if (this.closed) return;
    const plan = this.detector.observe(offset, length, this.readaheadRoom());
    if (!plan) return;
    const missing: number[] = [];
    for (let c = this.chunkOf(plan.start); this.chunkStart(c) < plan.end; c++) {
      if (this.lru.has(c) || this.inFlight.has(c)) continue;
      const from = Math.max(plan.start, this.chunkStart(c));
      const to = Math.min(plan.end, this.chunkEnd(c));
      if (this.pinned.missing(from, to).length === 0) continue;
      missing.push(c);
    }
    // Split the window so it arrives over several connections at once.
    const pieceBytes = Math.min(
      this.opts.maxReadaheadRequestBytes,
      Math.max(
        this.opts.chunkBytes,
        Math.ceil(plan.windowBytes / Math.max(1, Math.min(4, this.opts.maxReadaheadFetches))),
      ),
    );
    for (const fetch of this.planFetches(missing, 'readahead', plan.streamId, pieceBytes)) this.scheduler.submit(fetch);
  }

  /**
   * Readahead bytes that may be requested now: the budget minus unused readahead held or on its way.
   * When the budget is spent, readahead of streams that are gone, or that their reader skipped past,
   * stops counting (it moves to the LRU, still readable).
   */
  private readaheadRoom(): number {
    let room = this.aheadBudgetBytes - this.lru.aheadBytes - this.aheadInFlightBytes;
    if (room < this.opts.chunkBytes && this.lru.aheadBytes > 0) {
      this.lru.demote((c, streamId) => {
        const position = this.detector.positionOf(streamId);
        return position === undefined || this.chunkEnd(c) <= position;
      });
      room = this.aheadBudgetBytes - this.lru.aheadBytes - this.aheadInFlightBytes;
    }
    return Math.max(0, room);
  }

  /** Reserves memory for a fetch about to start; readahead is refused when it would not fit. */
  private admit(task: SchedulerTask): boolean {
    const room = this.lru.makeRoom(task.bytes, this.reservedBytes, task.priority === 'foreground');
    if (!room && task.priority !== 'foreground') return false;
    this.reservedBytes += task.bytes;
    this.notePeak();
    return true;
  }

  async runFetch(fetch: RangeFetch): Promise<void> {
    const kind = fetch.priority;
    this.runningFetches++;
    try {
      const chunks = await this.loadFromDisk([...fetch.waiters.keys()]);
      const needed = [...fetch.waiters.keys()].filter((c) => !chunks.has(c)).sort((a, b) => a - b);
      if (needed.length > 0) {
        if (kind === 'foreground') this.counters.foregroundFetches++;
        else if (kind === 'readahead') this.counters.readaheadFetches++;
        else this.counters.backgroundFetches++;
        const first = needed[0]!;
        const last = needed[needed.length - 1]!;
        const from = this.chunkStart(first);
        const length = this.chunkEnd(last) - from;
        if (this.arena) await this.fetchIntoArena(fetch, first, last, chunks);
        else await this.fetchToDisk(fetch, first, last, chunks);
        this.counters.fetchedBytes += length;
        if (kind === 'readahead') this.counters.readaheadBytes += length;
        if (kind === 'background' && this.hydration) this.hydration.stats.fetchedBytes += length;
      }
      this.reservedBytes -= fetch.bytes;
      for (const [c, waiter] of fetch.waiters) {
        const chunk = chunks.get(c)!;
        const entry = this.inFlight.get(c);
        const joined = entry?.joined ?? false;
        this.forgetInFlight(c);
        if (kind === 'readahead' && joined) this.counters.readaheadJoinedBytes += chunk.bytes.length;
        // Hydration into a disk cache leaves the memory working set alone.
        const keep = !(kind === 'background' && this.disk) || joined;
        const early = kind !== 'foreground' && !joined;
        if (!this.closed && keep) this.lru.set(c, chunk, early, early && entry?.ahead ? fetch.streamId : undefined);
        else this.arena?.give(chunk);
        waiter.resolve(chunk);
      }
      this.notePeak();
    } catch (error) {
      this.reservedBytes -= fetch.bytes;
      this.counters.failedFetches++;
      if (kind === 'foreground' || fetch.awaited)
        this.log.debug(`fetch [${fetch.offset}, +${fetch.bytes}) failed: ${String(error)}`);
      this.settleFailed(fetch, error);
    } finally {
      this.runningFetches--;
    }
  }

  /**
   * Chunks [first, last] fetched in one GET straight into arena slots: one slot per chunk a waiter
   * wants (the rest, bridged gaps, land in a scratch buffer nobody reads). The slots go back to the
   * arena when the fetch fails.
   */
  private async fetchIntoArena(
    fetch: RangeFetch,
    first: number,
    last: number,
    into: Map<number, Lease>,
  ): Promise<void> {
    const arena = this.arena!;
    const taken = new Map<number, Lease>();
    const targets: Uint8Array[] = [];
    for (let c = first; c <= last; c++) {
      const length = this.chunkEnd(c) - this.chunkStart(c);
      if (fetch.waiters.has(c)) {
        const chunk = arena.take(length);
        taken.set(c, chunk);
        targets.push(chunk.bytes);
      } else {
        this.bridgeScratch ??= Buffer.allocUnsafeSlow(this.opts.chunkBytes);
        targets.push(this.bridgeScratch.subarray(0, length));
      }
    }
    try {
      await this.receive(this.chunkStart(first), targets, fetch.controller.signal);
    } catch (e) {
      for (const chunk of taken.values()) arena.give(chunk);
      throw e;
    }
    for (const [c, chunk] of taken) into.set(c, chunk);
  }

  /** Chunks [first, last] fetched in one GET into buffers of their own, each also written to the disk cache. */
  private async fetchToDisk(fetch: RangeFetch, first: number, last: number, into: Map<number, Lease>): Promise<void> {
    const from = this.chunkStart(first);
    const targets: Uint8Array[] = [];
    for (let c = first; c <= last; c++) targets.push(Buffer.allocUnsafe(this.chunkEnd(c) - this.chunkStart(c)));
    await this.receive(from, targets, fetch.controller.signal);
    for (let c = first; c <= last; c++) {
      const bytes = targets[c - first]!;
      if (fetch.waiters.has(c) && !into.has(c)) into.set(c, new Lease(bytes));
      this.disk?.write(c, bytes);
    }
  }

  /** The object's bytes from `offset` into `targets`, one after another (fetchInto, or fetch and copy). */
  private async receive(offset: number, targets: Uint8Array[], signal: AbortSignal): Promise<void> {
    const length = targets.reduce((sum, t) => sum + t.length, 0);
    if (this.remote.fetchInto) return this.remote.fetchInto(offset, targets, signal);
    const data = await this.remote.fetch(offset, length, signal);
    if (data.length !== length)
      throw new Error(`${this.name}: fetch [${offset}, +${length}) returned ${data.length} bytes`);
    let at = 0;
    for (const t of targets) {
      t.set(data.subarray(at, at + t.length));
      at += t.length;
    }
  }

  /** Chunks the disk cache holds intact, read in parallel (a bad checksum is simply absent). */
  private async loadFromDisk(chunks: number[]): Promise<Map<number, Lease>> {
    const found = new Map<number, Lease>();
    const disk = this.disk;
    if (!disk) return found;
    await Promise.all(
      chunks
        .filter((c) => disk.has(c))
        .map(async (c) => {
          const bytes = await disk.read(c, this.chunkEnd(c) - this.chunkStart(c));
          if (bytes) found.set(c, new Lease(bytes));
        }),
    );
    return found;
  }

  /** [from, to) from the disk cache when it holds all of it, else in one GET (then kept on disk). */
  private async readRange(from: number, to: number): Promise<Uint8Array> {
    if (this.disk) {
      const first = this.chunkOf(from);
      const last = this.chunkOf(to - 1);
      const wanted = Array.from({ length: last - first + 1 }, (_, i) => first + i);
      if (wanted.every((c) => this.disk!.has(c))) {
        const chunks = await this.loadFromDisk(wanted);
        if (chunks.size === wanted.length) {
          const out = Buffer.allocUnsafe(to - from);
          for (const [c, chunk] of chunks) this.copyChunk(c, chunk.bytes, from, to, out, from);
          return out;
        }
      }
    }
    const data = await this.fetchDirect(from, to - from);
    this.persistWholeChunks(from, data);
    return data;
  }

  dropFetch(fetch: RangeFetch, reason: Error): void {
    this.settleFailed(fetch, reason);
  }

  private settleFailed(fetch: RangeFetch, error: unknown): void {
    for (const [c, waiter] of fetch.waiters) {
      if (this.inFlight.get(c)?.fetch === fetch) this.forgetInFlight(c);
      waiter.reject(error);
    }
  }

  private forgetInFlight(c: number): void {
    const entry = this.inFlight.get(c);
    if (!entry) return;
    if (entry.ahead) this.aheadInFlightBytes -= this.chunkEnd(c) - this.chunkStart(c);
    this.inFlight.delete(c);
  }

  private async fetchDirect(offset: number, length: number): Promise<Uint8Array> {
    this.counters.foregroundFetches++;
    const data = await this.remote.fetch(offset, length);
    if (data.length !== length)
      throw new Error(`${this.name}: fetch [${offset}, +${length}) returned ${data.length} bytes`);
    this.counters.fetchedBytes += length;
    return data;
  }

  /**
   * Keeps [offset, offset+length) resident: whatever of it is neither pinned nor cached is fetched in
   * one request (from the first missing byte to the last), then the union of retained spans becomes
   * the pinned set. Tail bytes pinned at open outside every retained span return to the LRU.
   */
  async retain(offset: number, length: number): Promise<void> {
    this.checkRange(offset, length, 'retain');
    const end = offset + length;
    if (length === 0) return;
    const spans = [...(this.retainedSpans ?? []), [offset, end] as [number, number]];
    const spanBytes = spans.reduce((sum, [s, e]) => sum + (e - s), 0);
    if (spanBytes > this.opts.maxPinnedBytes) {
      this.log.warn(
        `${this.name}: metadata of ${spanBytes} bytes exceeds maxPinnedBytes ${this.opts.maxPinnedBytes}; not pinned`,
      );
      return;
    }
    const gaps = this.pinned.missing(offset, end).flatMap(([s, e]) => this.uncachedParts(s, e));
    let fetched: Extent | undefined;
    if (gaps.length > 0) {
      let from = gaps[0]![0];
      let to = gaps[gaps.length - 1]![1];
      if (this.disk) {
        // Whole chunks only reach the disk cache: a chunk half in the tail and half in this gap
        // would otherwise never be kept, and a remount would fetch it again.
        from = this.chunkStart(this.chunkOf(from));
        to = this.chunkEnd(this.chunkOf(to - 1));
      }
      fetched = { start: from, bytes: await this.readRange(from, to) };
    }
    if (this.closed) return;
    const bytes = Buffer.allocUnsafe(length);
    let pos = offset;
    while (pos < end) {
      if (fetched && pos >= fetched.start && pos < fetched.start + fetched.bytes.length) {
        const to = Math.min(end, fetched.start + fetched.bytes.length);
        bytes.set(fetched.bytes.subarray(pos - fetched.start, to - fetched.start), pos - offset);
        pos = to;
        continue;
      }
      const extent = this.pinned.find(pos);
      if (extent) {
        const to = Math.min(
          end,
          extent.start + extent.bytes.length,
          fetched && fetched.start > pos ? fetched.start : Infinity,
        );
        this.pinned.copy(pos, to, bytes, pos - offset);
        pos = to;
        continue;
      }
      const c = this.chunkOf(pos);
      // Evicted while the gap fetch was in flight (rare: heavy data reads during open): fetch it again.
      const chunk = this.lru.get(c)?.bytes ?? (await this.readRange(this.chunkStart(c), this.chunkEnd(c)));
      const to = Math.min(end, this.chunkEnd(c));
      this.copyChunk(c, chunk, pos, to, bytes, offset);
      pos = to;
    }
    const previous = this.pinned.list().slice();
    const keep: Extent[] = previous.flatMap((e) => this.clipToSpans(e, spans));
    keep.push({ start: offset, bytes });
    if (this.retainedSpans === undefined) {
      // Tail bytes outside the metadata are ordinary data now: hand whole chunks to the LRU.
      for (const e of previous)
        for (const part of this.outsideSpans(e, spans)) this.storeWholeChunks(part.start, part.bytes);
    }
    this.retainedSpans = spans;
    this.pinned.replace(keep);
  }

  /** Parts of [start, end) not held in the LRU, as ranges. */
  private uncachedParts(start: number, end: number): Array<[number, number]> {
    const parts: Array<[number, number]> = [];
    for (let c = this.chunkOf(start); this.chunkStart(c) < end; c++) {
      if (this.lru.has(c)) continue;
      const s = Math.max(start, this.chunkStart(c));
      const e = Math.min(end, this.chunkEnd(c));
      const last = parts[parts.length - 1];
      if (last && last[1] === s) last[1] = e;
      else parts.push([s, e]);
    }
    return parts;
  }

  private clipToSpans(extent: Extent, spans: Array<[number, number]>): Extent[] {
    const eEnd = extent.start + extent.bytes.length;
    return spans
      .map(([s, e]) => [Math.max(s, extent.start), Math.min(e, eEnd)] as const)
      .filter(([s, e]) => s < e)
      .map(([s, e]) => ({ start: s, bytes: extent.bytes.subarray(s - extent.start, e - extent.start) }));
  }

  private outsideSpans(extent: Extent, spans: Array<[number, number]>): Extent[] {
    const scratch = new PinnedExtents();
    scratch.replace(spans.map(([s, e]) => ({ start: s, bytes: new Uint8Array(e - s) })));
    const eEnd = extent.start + extent.bytes.length;
    return scratch
      .missing(extent.start, eEnd)
      .map(([s, e]) => ({ start: s, bytes: extent.bytes.subarray(s - extent.start, e - extent.start) }));
  }

  private checkRange(offset: number, length: number, what: string): void {
    if (this.closed) throw new Error(`${this.name}: source is closed`);
    if (!rangeInside(offset, length, this.size)) {
      throw new RangeError(`${this.name}: ${what} [${offset}, +${length}) outside the object (${this.size} bytes)`);
    }
  }

  private notePeak(): void {
    this.counters.peakDataBytes = Math.max(this.counters.peakDataBytes, this.lru.heldBytes + this.reservedBytes);
  }

  async prefetch(offset: number, length: number): Promise<boolean> {
    this.checkRange(offset, length, 'prefetch');
    const waits: Array<Promise<Lease>> = [];
    const missing: number[] = [];
    for (let c = this.chunkOf(offset); length > 0 && this.chunkStart(c) < offset + length; c++) {
      const flight = this.inFlight.get(c);
      if (flight) waits.push(flight.waiter.promise);
      else if (
        !this.lru.has(c) &&
        !(this.disk?.has(c) ?? false) &&
        this.pinned.missing(this.chunkStart(c), this.chunkEnd(c)).length > 0
      ) {
        missing.push(c);
      }
    }
    for (const fetch of this.planFetches(missing, 'readahead', undefined, this.opts.maxReadaheadRequestBytes)) {
      for (const w of fetch.waiters.values()) waits.push(w.promise);
      this.scheduler.submit(fetch);
    }
    const results = await Promise.allSettled(waits);
    return results.every((r) => r.status === 'fulfilled');
  }

  observeReads(listener: ((offset: number, length: number) => void) | undefined): void {
    this.readObserver = listener;
  }

  hydrate(): Promise<HydrationStats> {
    if (this.closed) return Promise.reject(new Error(`${this.name}: source is closed`));
    if (!this.hydration) {
      if (!this.disk && this.size > this.opts.cacheBytes) {
        return Promise.reject(
          new RangeError(`${this.name}: hydrate needs a cache directory or an object no larger than cacheBytes`),
        );
      }
      const stats: HydrationStats = {
        state: 'running',
        totalBytes: this.size,
        doneBytes: 0,
        fetchedBytes: 0,
        failedRequests: 0,
      };
      this.hydration = { stats, done: this.runHydration(stats) };
    }
    return this.hydration.done;
  }

  /**
   * Walks the object in `hydrateRequestBytes` pieces with `maxBackgroundFetches` workers, fetching the
   * chunks not yet held as background fetches (they start only when no reader or readahead waits).
   * A piece that fails is retried once in a second pass.
   */
  private async runHydration(stats: HydrationStats): Promise<HydrationStats> {
    const chunkCount = Math.ceil(this.size / this.opts.chunkBytes);
    const pieceChunks = Math.max(1, Math.floor(this.opts.hydrateRequestBytes / this.opts.chunkBytes));
    const held = (c: number) =>
      (this.disk ? this.disk.has(c) : this.lru.has(c)) ||
      this.pinned.missing(this.chunkStart(c), this.chunkEnd(c)).length === 0;
    const pieces: Array<[number, number]> = [];
    for (let first = 0; first < chunkCount; first += pieceChunks)
      pieces.push([first, Math.min(chunkCount, first + pieceChunks) - 1]);
    const runPiece = async ([first, last]: [number, number]): Promise<boolean> => {
      const waits: Array<Promise<Lease>> = [];
      const missing: number[] = [];
      for (let c = first; c <= last; c++) {
        const flight = this.inFlight.get(c);
        if (flight) waits.push(flight.waiter.promise);
        else if (!held(c)) missing.push(c);
      }
      for (const fetch of this.planFetches(missing, 'background', undefined, this.opts.hydrateRequestBytes)) {
        for (const w of fetch.waiters.values()) waits.push(w.promise);
        this.scheduler.submit(fetch);
      }
      const results = await Promise.allSettled(waits);
      for (const r of results) if (r.status === 'fulfilled') stats.doneBytes += r.value.bytes.length;
      const ok = results.every((r) => r.status === 'fulfilled');
      if (!ok) stats.failedRequests++;
      return ok;
    };
    stats.doneBytes = this.heldBytesOf(chunkCount, held);
    let failed = pieces;
    for (let pass = 0; pass < 2 && failed.length > 0 && !this.closed; pass++) {
      const queue = [...failed];
      failed = [];
      const worker = async () => {
        for (let piece = queue.shift(); piece && !this.closed; piece = queue.shift()) {
          await this.disk?.drained();
          if (!(await runPiece(piece))) failed.push(piece);
        }
      };
      await Promise.all(Array.from({ length: this.opts.maxBackgroundFetches }, worker));
    }
    await this.disk?.flush();
    stats.doneBytes = this.heldBytesOf(chunkCount, held);
    if (stats.state === 'running') stats.state = failed.length === 0 && !this.closed ? 'done' : 'incomplete';
    return { ...stats };
  }

  private heldBytesOf(chunkCount: number, held: (c: number) => boolean): number {
    let bytes = 0;
    for (let c = 0; c < chunkCount; c++) if (held(c)) bytes += this.chunkEnd(c) - this.chunkStart(c);
    return bytes;
  }

  stats(): SourceStats & { cache: ChunkCacheStats } {
    const pinnedBytes = this.pinned.totalBytes;
    return {
      transport: this.remote.stats(),
      cache: {
        hits: this.counters.hits,
        misses: this.counters.misses,
        cachedBytes: this.lru.heldBytes + pinnedBytes,
        pinnedBytes,
        capacityBytes: this.opts.cacheBytes,
        evictions: this.lru.evictions,
        readaheadBytes: this.counters.readaheadBytes,
        chunkBytes: this.opts.chunkBytes,
        joins: this.counters.joins,
        foregroundFetches: this.counters.foregroundFetches,
        readaheadFetches: this.counters.readaheadFetches,
        fetchedBytes: this.counters.fetchedBytes,
        readaheadUsedBytes: this.lru.prefetchedBytesUsed + this.counters.readaheadJoinedBytes,
        readaheadEvictedUnusedBytes: this.lru.prefetchedBytesEvictedUnused,
        readaheadHeldBytes: this.lru.aheadBytes,
        inFlightFetches: this.runningFetches,
        inFlightBytes: this.reservedBytes,
        queuedFetches: this.scheduler.queued,
        peakDataBytes: this.counters.peakDataBytes,
        failedFetches: this.counters.failedFetches,
        backgroundFetches: this.counters.backgroundFetches,
        chunkBuffers: {
          allocated: this.arena?.allocated ?? 0,
          reused: this.arena?.reused ?? 0,
          free: this.arena?.freeSlots ?? 0,
        },
        disk: this.disk?.stats(),
        hydration: this.hydration ? { ...this.hydration.stats } : undefined,
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const reason = new Error(`${this.name}: source is closed`);
    this.scheduler.close(reason);
    for (const { fetch } of this.inFlight.values()) fetch.controller.abort(reason);
    if (this.hydration?.stats.state === 'running') this.hydration.stats.state = 'closed';
    this.lru.clear();
    this.arena?.clear();
    this.pinned.clear();
    try {
      await this.disk?.close();
    } finally {
      await this.remote.close();
    }
  }
}
