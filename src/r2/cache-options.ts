/**
 * The chunk cache's options: what each means, the defaults and why, and the checks that turn what a
 * caller gave into the one resolved set every layer reads (cache.ts wires the layers).
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
  /** First readahead window of a sequential stream. Default 4 MiB. */
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
  /**
   * A shorter suffix fetched at open alongside the tail: the open completes with it, and the mount is
   * ready once it holds the metadata; the rest of the tail comes later. Default 256 KiB; 0 (or not less
   * than `tailBytes`) waits for the whole tail.
   */
  quickTailBytes?: number;
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

const KiB = 1024;
const MiB = 1024 * KiB;

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
 * - quickTailBytes 256 KiB, asked in parallel with the tail (its last 256 KiB twice): at 100 MB/s a
 *   connection moves 1 MiB in ~10 ms, which the whole open waited for, where an image of up to ~10,000
 *   files has its metadata in the last 256 KiB (2.6 ms). The rest of the tail still arrives without a
 *   round trip of its own: metadata that does not fit waits for it, and its data bytes are cached.
 * - readahead 4 MiB growing 4x a step to 64 MiB, GETs of at most 8 MiB, 8 at once: one stream saturates
 *   a link after two or three round trips, while the window never exceeds a quarter of the cache. The
 *   first window is eight 512 KiB GETs, one per connection; R2 bills requests, not bytes, so a reader
 *   that stops after a few hundred KiB costs a few MiB of bandwidth, not money.
 */
export const CACHE_DEFAULTS = {
  cacheBytes: 256 * MiB,
  chunkBytes: 64 * KiB,
  missUnitBytes: 256 * KiB,
  maxReadaheadBytes: 64 * MiB,
  initialReadaheadBytes: 4 * MiB,
  maxReadaheadRequestBytes: 8 * MiB,
  maxConcurrentFetches: 16,
  maxReadaheadFetches: 8,
  tailBytes: 1 * MiB,
  quickTailBytes: 256 * KiB,
  maxPinnedBytes: 1024 * MiB,
  readaheadStreams: 8,
  /** A stream must have read this much before readahead: the superblock + compression options reads at open are not one. */
  minStreamBytes: 64 * KiB,
  maxBackgroundFetches: 4,
  hydrateRequestBytes: 8 * MiB,
} as const;

export type ResolvedCacheOptions = Required<Omit<CacheOptions, 'cacheDir' | 'cacheDirMaxBytes' | 'hydrate'>>;

export function resolveOptions(options: CacheOptions): ResolvedCacheOptions {
  const chunkBytes = options.chunkBytes ?? CACHE_DEFAULTS.chunkBytes;
  // A chunk size asked for alone keeps its old meaning (the unit of every fetch).
  const missUnitBytes =
    options.missUnitBytes ?? (options.chunkBytes === undefined ? CACHE_DEFAULTS.missUnitBytes : chunkBytes);
  const r: ResolvedCacheOptions = {
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
    quickTailBytes: options.quickTailBytes ?? CACHE_DEFAULTS.quickTailBytes,
    coalesceGapBytes: options.coalesceGapBytes ?? 2 * Math.max(chunkBytes, missUnitBytes),
    maxPinnedBytes: options.maxPinnedBytes ?? CACHE_DEFAULTS.maxPinnedBytes,
    maxBackgroundFetches: options.maxBackgroundFetches ?? CACHE_DEFAULTS.maxBackgroundFetches,
    hydrateRequestBytes: options.hydrateRequestBytes ?? CACHE_DEFAULTS.hydrateRequestBytes,
  };
  const positive = (name: keyof ResolvedCacheOptions, min: number) => {
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
  positive('quickTailBytes', 0);
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

/**
 * Unused stream readahead (held or in flight) all streams together may keep: half the cache, so
 * readahead never pushes out what another stream is about to read, and the other half holds what
 * readers use now. The readahead runner enforces it; the default policy splits it among streams.
 */
export function readaheadBudgetBytes(opts: ResolvedCacheOptions): number {
  return Math.floor(opts.cacheBytes / 2 / opts.chunkBytes) * opts.chunkBytes;
}
