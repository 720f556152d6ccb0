import type { ResolvedCacheOptions } from './cache-options.js';
import { CACHE_DEFAULTS } from './cache-options.js';
import { SequentialDetector } from './readahead.js';

/**
 * The plug-in point for readahead: a policy only decides what to fetch ahead of readers. The cache
 * tells it of every data read and how much readahead may be requested now; it answers with ranges,
 * each for a stream of its own naming. The readahead runner (readahead-runner.ts) keeps the budget,
 * skips what is held or in flight and hands the rest to the fetcher; the policy fetches nothing.
 */

export interface ReadaheadRequest {
  /** The policy's name for the reader this is for; queued GETs of a stream no longer alive are dropped. */
  streamId: number;
  /** Object bytes [start, end) wanted ahead. */
  start: number;
  end: number;
  /** Largest single GET to split the range into (parallel GETs arrive sooner than one). */
  pieceBytes: number;
}

export interface ReadaheadPolicy {
  /**
   * A read of [offset, offset+length) of data (not pinned metadata) happened; `roomBytes` of
   * readahead may be requested now across all streams. Returns what to fetch ahead (often nothing).
   */
  observe(offset: number, length: number, roomBytes: number): readonly ReadaheadRequest[];
  /** Is the stream still being read (its queued readahead still worth fetching)? */
  isAlive(streamId: number): boolean;
  /** Where the stream's reader has got to; undefined once forgotten (its unused readahead may be evicted). */
  positionOf(streamId: number): number | undefined;
}

/** Concurrent readers tracked at once (several files copied in parallel). */
const READAHEAD_STREAMS = CACHE_DEFAULTS.readaheadStreams;
/** Two adjacent reads can be chance; three rarely are. */
const MIN_SEQUENTIAL_READS = 3;
/**
 * A window is fetched as up to this many parallel GETs, and topped up one GET's worth at a time: a
 * connection through a busy server or proxy moves far less than the link (W1 at 20 ms: ~30 MB/s per
 * connection, ~200 MB/s over eight), so bandwidth comes from GETs in flight at once.
 */
const PIECES_PER_WINDOW = 8;
/** ... but no readahead GET below this: a round trip costs tens of ms, and each GET is billed. */
const MIN_PIECE_BYTES = 512 * 1024;
/**
 * A window grows 4x a step, not 2x: a step takes a round trip plus a piece's transfer (~140 ms at 80 ms
 * RTT), and from 1 MiB doubling took six of them (~0.9 s) to reach a window that keeps the link full.
 * W1's big files at 80 ms, five runs each: 256 MiB asked for 1.13-1.26 s after the first read, against
 * 1.51-1.94 s (docs/benchmarks.md, twelfth session). A reader that stops wastes at most 4x what it read.
 */
const WINDOW_GROWTH = 4;

/**
 * The default policy: sequential streams detected in source offsets (readahead.ts), each with a window
 * growing 4x a step from `initialReadaheadBytes` to `maxReadaheadBytes` (never over a quarter of the cache), all
 * within `budgetBytes`; a window is fetched as up to eight parallel GETs, topped up one GET at a time.
 */
export class SequentialReadahead implements ReadaheadPolicy {
  private readonly detector: SequentialDetector;

  constructor(
    private readonly opts: ResolvedCacheOptions,
    objectSize: number,
    budgetBytes: number,
  ) {
    // One window may not exceed a quarter of the cache.
    const windowCap =
      Math.floor(Math.min(opts.maxReadaheadBytes, opts.cacheBytes / 4) / opts.chunkBytes) * opts.chunkBytes;
    this.detector = new SequentialDetector(
      {
        initialWindowBytes: Math.min(opts.initialReadaheadBytes, windowCap),
        maxWindowBytes: windowCap,
        growthFactor: WINDOW_GROWTH,
        forwardSlackBytes: Math.min(32 * 1024, opts.chunkBytes),
        maxStreams: READAHEAD_STREAMS,
        minSequentialReads: MIN_SEQUENTIAL_READS,
        minStreamBytes: CACHE_DEFAULTS.minStreamBytes,
        budgetBytes,
        unitBytes: opts.chunkBytes,
        // One top-up is one GET: split a window so it arrives over several connections at once.
        topUpsPerWindow: Math.max(1, Math.min(PIECES_PER_WINDOW, opts.maxReadaheadFetches)),
        minTopUpBytes: MIN_PIECE_BYTES,
      },
      objectSize,
    );
  }

  observe(offset: number, length: number, roomBytes: number): readonly ReadaheadRequest[] {
    const plan = this.detector.observe(offset, length, roomBytes);
    if (!plan) return [];
    const { opts } = this;
    const pieceBytes = Math.min(opts.maxReadaheadRequestBytes, Math.max(opts.chunkBytes, plan.stepBytes));
    return [{ streamId: plan.streamId, start: plan.start, end: plan.end, pieceBytes }];
  }

  isAlive(streamId: number): boolean {
    return this.detector.isAlive(streamId);
  }

  positionOf(streamId: number): number | undefined {
    return this.detector.positionOf(streamId);
  }
}
