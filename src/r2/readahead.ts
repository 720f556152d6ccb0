/**
 * Sequential-stream detection for readahead, in source offsets. The SquashFS reader asks for compressed
 * blocks; a file read front to back in a well-packed image is a run of adjacent source ranges, so a
 * stream here is "reads that keep starting where the previous one ended".
 *
 * Several streams are tracked at once (several files copied in parallel). A read continues a stream
 * when it starts between the start of that stream's previous read and a short distance past its end,
 * or anywhere inside the bytes already prefetched for it (like mountpoint-s3's forward seek inside the
 * window; for a stream that already has a window, up to one window either side). Any other read starts
 * a new stream with no readahead, so a random reader never triggers more
 * than what it asked for. A stream's window starts at `initialWindowBytes` once it has been continued
 * `minSequentialReads - 1` times (two adjacent reads can be chance; three rarely are) and grows by
 * `growthFactor` every time the reader has consumed half a window since it last grew, up to `maxWindowBytes`. A plan tops
 * the prefetched bytes ahead of the reader up to one window as soon as a `1/topUpsPerWindow` of it is
 * free: a reader faster than the network then always has most of a window in flight, where topping
 * up only at half a window left it waiting on each half in turn (W1's big files: one wave of GETs
 * after another, about half the bandwidth).
 *
 * A stream also needs `minStreamBytes` read before its first window: the reader's few tiny adjacent
 * reads at open (superblock, compression options) are not a data stream, and a readahead they start is
 * a wave of GETs the mount waits behind for nothing.
 *
 * Streams share one budget: `observe` is told how many readahead bytes may still be requested right
 * now (the cache's readahead budget minus what is fetched or in flight and not yet read), and a window
 * never takes more than its fair share of the whole budget, so four parallel copies cannot together
 * prefetch more than the cache can hold until they read it.
 */

/** A stream that has read this much on its own is another reader, not stray reads of this one. */
const ESTABLISHED_STREAM_BYTES = 4 * 1024 * 1024;
/**
 * A stream not read for this long no longer takes a share of the budget (it may still resume):
 * a finished walk's streams otherwise cut the next big file's window to a third.
 */
export const IDLE_STREAM_MS = 500;

export interface ReadaheadOptions {
  initialWindowBytes: number;
  maxWindowBytes: number;
  /** Each growth multiplies the window by this. Default 2. */
  growthFactor?: number;
  /** A read starting up to this far past a stream's end still continues it (out-of-order blocks). */
  forwardSlackBytes: number;
  maxStreams: number;
  /** Reads in a row (the first included) before the first window is fetched. */
  minSequentialReads: number;
  /** Bytes a stream must have read before its first window. Default 0. */
  minStreamBytes?: number;
  /** Whole readahead budget shared by all streams (the fair share is this over the active streams). Default Infinity. */
  budgetBytes?: number;
  /** Plans are rounded down to this unit (a chunk); a plan smaller than one unit is not made. Default 1. */
  unitBytes?: number;
  /** A window is topped up once this fraction of it (1/n) is free. Default 2 (at half a window). */
  topUpsPerWindow?: number;
  /** ... and at least this much of it. Default 0. */
  minTopUpBytes?: number;
  /** Milliseconds now (tests pass a fake clock). Default performance.now. */
  now?: () => number;
}

export interface ReadaheadPlan {
  streamId: number;
  start: number;
  end: number;
  windowBytes: number;
  /** How much of the window is topped up at a time (the unit a policy fetches it in). */
  stepBytes: number;
}

interface Stream {
  id: number;
  firstOffset: number;
  lastStart: number;
  nextOffset: number;
  /** End of the bytes requested ahead for this stream (== nextOffset before any readahead). */
  aheadUntil: number;
  windowBytes: number;
  /** The reader's position when the window last grew. */
  grownAt: number;
  sequentialReads: number;
  /** When it was last read (options.now). */
  readAt: number;
}

export class SequentialDetector {
  private streams: Stream[] = []; // most recently used last
  private nextId = 1;

  constructor(
    private readonly options: ReadaheadOptions,
    private readonly objectSize: number,
  ) {}

  /** Is this stream still tracked (its queued readahead still worth fetching)? */
  isAlive(streamId: number): boolean {
    return this.streams.some((s) => s.id === streamId);
  }

  /** Where the reader of a live stream has got to (undefined once the stream is forgotten). */
  positionOf(streamId: number): number | undefined {
    return this.streams.find((s) => s.id === streamId)?.nextOffset;
  }

  /**
   * Records a read and returns the byte range to prefetch for it, if any. `availableBytes` is how much
   * readahead may be requested now across all streams (Infinity = no limit).
   */
  observe(offset: number, length: number, availableBytes = Infinity): ReadaheadPlan | undefined {
    const end = offset + length;
    const now = this.options.now ? this.options.now() : performance.now();
    const stream = this.match(offset);
    if (!stream) {
      this.streams.push({
        id: this.nextId++,
        firstOffset: offset,
        lastStart: offset,
        nextOffset: end,
        aheadUntil: end,
        windowBytes: 0,
        grownAt: offset,
        sequentialReads: 1,
        readAt: now,
      });
      if (this.streams.length > this.options.maxStreams) this.streams.shift();
      return undefined;
    }
    this.touch(stream);
    stream.readAt = now;
    const advanced = end > stream.nextOffset;
    stream.lastStart = offset;
    stream.nextOffset = Math.max(stream.nextOffset, end);
    if (!advanced || this.options.maxWindowBytes <= 0) return undefined;
    stream.sequentialReads++;
    if (stream.sequentialReads < this.options.minSequentialReads) return undefined;
    if (stream.nextOffset - stream.firstOffset < (this.options.minStreamBytes ?? 0)) return undefined;

    const ahead = Math.max(0, stream.aheadUntil - stream.nextOffset);
    const unit = this.options.unitBytes ?? 1;
    const first = stream.windowBytes === 0;
    const grow = first || stream.nextOffset - stream.grownAt >= stream.windowBytes / 2;
    const grown = first
      ? Math.min(this.options.initialWindowBytes, this.options.maxWindowBytes)
      : grow
        ? Math.min(stream.windowBytes * (this.options.growthFactor ?? 2), this.options.maxWindowBytes)
        : stream.windowBytes;
    // Fair share: the budget over the streams that hold readahead now and are still being read
    // (this one included). An idle stream's unread readahead still counts against availableBytes
    // until the runner demotes it; it only stops cutting the others' windows.
    const budget = this.options.budgetBytes ?? Infinity;
    const holders =
      1 +
      this.streams.filter((s) => s !== stream && s.aheadUntil > s.nextOffset && now - s.readAt < IDLE_STREAM_MS).length;
    const share = Math.max(Math.min(this.options.initialWindowBytes, budget), Math.floor(budget / holders));
    const window = Math.min(grown, share);
    const start = Math.max(stream.aheadUntil, stream.nextOffset);
    const limit = this.nextStreamStart(stream, start);
    // Top the stream up to one window ahead of its reader (so the streams' windows, each within its
    // share, fit the budget together). Top up only when a whole step is free (of the window or of
    // the budget other streams hold), so GETs stay large rather than one chunk per read.
    const wanted = Math.min(window - ahead, availableBytes, limit - start);
    const bytes = wanted >= limit - start ? wanted : Math.floor(wanted / unit) * unit;
    // A step is whole units: a policy splits the window into GETs of `stepBytes`, and a step that is
    // not a multiple of the chunk leaves a one-chunk GET after every full one (twice the GETs).
    const rawStep = Math.max(this.options.minTopUpBytes ?? 0, Math.floor(window / (this.options.topUpsPerWindow ?? 2)));
    const step = Math.max(unit, Math.floor(rawStep / unit) * unit);
    const enough = Math.max(unit, Math.min(step, window));
    if (bytes <= 0 || (bytes < enough && start + bytes < limit)) return undefined;
    if (grow) stream.grownAt = stream.nextOffset;
    stream.windowBytes = window;
    stream.aheadUntil = start + bytes;
    return { streamId: stream.id, start, end: start + bytes, windowBytes: stream.windowBytes, stepBytes: enough };
  }

  /**
   * Where this stream's readahead stops: the end of the object, or where another live stream began
   * reading, at or past `start`. Files in an image lie back to back, so a window running past the end of one
   * file lands on the next one, which another reader (W1: four files copied at once) has usually
   * read already; the bytes were then fetched twice.
   */
  private nextStreamStart(stream: Stream, start: number): number {
    let limit = this.objectSize;
    for (const s of this.streams) {
      // A young stream may be this reader's own out-of-order reads (several FUSE reads in flight).
      const established = s.nextOffset - s.firstOffset >= ESTABLISHED_STREAM_BYTES;
      if (s !== stream && established && s.firstOffset >= start && s.firstOffset < limit) limit = s.firstOffset;
    }
    return limit;
  }

  private match(offset: number): Stream | undefined {
    for (let i = this.streams.length - 1; i >= 0; i--) {
      const s = this.streams[i]!;
      // A stream with a window has proved sequential: several reads of it in flight at once may arrive
      // out of order or outrun its readahead by up to a window; they continue it rather than starting
      // streams of their own (which would restart readahead from nothing).
      const give = s.windowBytes;
      const reach = Math.max(s.nextOffset + this.options.forwardSlackBytes, s.aheadUntil) + give;
      if (offset >= Math.min(s.lastStart, s.nextOffset - give) && offset <= reach) return s;
    }
    return undefined;
  }

  private touch(stream: Stream): void {
    const i = this.streams.indexOf(stream);
    this.streams.splice(i, 1);
    this.streams.push(stream);
  }
}
