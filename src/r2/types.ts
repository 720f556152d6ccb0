/**
 * Interfaces inside `src/r2`. The flow is:
 *   RemoteObject (one object over HTTP/S3/R2: validated, retried ranged GETs)
 *     -> CachedSource (cache.ts wires its layers: chunk store, fetcher, read path, pinned metadata,
 *        readahead policy and runner, hydration)  -> implements the reader's ByteSource
 * A local file is a ByteSource directly (the OS page cache is its cache).
 */

export interface ObjectInfo {
  /** Object size from Content-Range / Content-Length. */
  size: number;
  /** ETag of the first response, pinned for every later request (If-Match + comparison). */
  etag?: string;
  lastModified?: string;
}

export interface OpenResult {
  info: ObjectInfo;
  /** Bytes [0, head.length) of the object. */
  head: Uint8Array;
  /** Bytes [info.size - tail.length, info.size) of the object (may overlap head on small objects). */
  tail: Uint8Array;
  /**
   * When `tail` is the quick tail (open's `quickTailBytes`): the whole `tailBytes` suffix, which arrives
   * later; rejects if its GET fails (the open itself does not).
   */
  fullTail?: Promise<Uint8Array>;
}

export interface TransportStats {
  requests: number;
  bytes: number;
  retries: number;
  failures: number;
  inFlight: number;
  /** Request latency histogram: upper bound in ms -> count (last bucket is Infinity). */
  latencyMs: Record<string, number>;
}

/** One remote object reached by ranged GETs. */
export interface RemoteObject {
  /** For messages and logs; never contains credentials, signatures or presigned query strings. */
  readonly name: string;
  /**
   * Learns the size and ETag and returns the first `headBytes` and last `tailBytes` of the object,
   * in one round trip where the server allows (two GETs in parallel: a range and a suffix range).
   * With `quickTailBytes` (less than `tailBytes`), a third GET asks that shorter suffix: the open
   * completes once it and the head are in, and the whole tail follows as `fullTail`. An object may
   * ignore it and return the whole tail.
   */
  open(headBytes: number, tailBytes: number, quickTailBytes?: number): Promise<OpenResult>;
  /** Exactly `length` bytes at `offset` (validated: status, Content-Range, length, ETag). Retries inside. */
  fetch(offset: number, length: number, signal?: AbortSignal): Promise<Uint8Array>;
  /**
   * Optional: the bytes from `offset` written straight into `targets`, one after another (the range is
   * their total length), so no buffer of the whole response is made. Same checks and retries as
   * `fetch`; after a failure the targets hold undefined bytes.
   */
  fetchInto?(offset: number, targets: readonly Uint8Array[], signal?: AbortSignal): Promise<void>;
  stats(): TransportStats;
  close(): Promise<void>;
}

export interface CacheStats {
  hits: number;
  misses: number;
  /** Bytes currently held (data LRU + pinned metadata). */
  cachedBytes: number;
  pinnedBytes: number;
  capacityBytes: number;
  evictions: number;
  readaheadBytes: number;
}

export interface SourceStats {
  transport?: TransportStats;
  cache?: CacheStats;
}
