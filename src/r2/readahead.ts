/**
 * Sequential-stream detection for readahead, in source offsets. The SquashFS reader asks for compressed
 * blocks; a file read front to back in a well-packed image is a run of adjacent source ranges, so a
 * stream here is "reads that keep starting where the previous one ended".
 *
 * Several streams are tracked at once (several files copied in parallel). A read continues a stream
 * when it starts between the start of that stream's previous read and a short distance past its end,
 * or anywhere inside the bytes already prefetched for it (like mountpoint-s3's forward seek inside the
 * window). Any other read starts a new stream with no readahead, so a random reader never triggers more
 * than what it asked for. A stream's window starts at `initialWindowBytes` once it has been continued
 * `minSequentialReads - 1` times (two adjacent reads can be chance; three rarely are) and doubles every time the reader has consumed half of what was prefetched, up to `maxWindowBytes`;
 * the prefetched bytes ahead of a reader stay below 1.5 windows.
 */

export interface ReadaheadOptions {
  initialWindowBytes: number;
  maxWindowBytes: number;
  /** A read starting up to this far past a stream's end still continues it (out-of-order blocks). */
  forwardSlackBytes: number;
  maxStreams: number;
  /** Reads in a row (the first included) before the first window is fetched. */
  minSequentialReads: number;
}

export interface ReadaheadPlan {
  streamId: number;
  start: number;
  end: number;
  windowBytes: number;
}

interface Stream {
  id: number;
  lastStart: number;
  nextOffset: number;
  /** End of the bytes requested ahead for this stream (== nextOffset before any readahead). */
  aheadUntil: number;
  windowBytes: number;
  sequentialReads: number;
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

  /** Records a read and returns the byte range to prefetch for it, if any. */
  observe(offset: number, length: number): ReadaheadPlan | undefined {
    const end = offset + length;
    const stream = this.match(offset);
    if (!stream) {
      this.streams.push({ id: this.nextId++, lastStart: offset, nextOffset: end, aheadUntil: end, windowBytes: 0, sequentialReads: 1 });
      if (this.streams.length > this.options.maxStreams) this.streams.shift();
      return undefined;
    }
    this.touch(stream);
    const advanced = end > stream.nextOffset;
    stream.lastStart = offset;
    stream.nextOffset = Math.max(stream.nextOffset, end);
    if (!advanced || this.options.maxWindowBytes <= 0) return undefined;
    stream.sequentialReads++;
    if (stream.sequentialReads < this.options.minSequentialReads) return undefined;

    const ahead = stream.aheadUntil - stream.nextOffset;
    if (stream.windowBytes > 0 && ahead > stream.windowBytes / 2) return undefined;
    stream.windowBytes =
      stream.windowBytes === 0
        ? Math.min(this.options.initialWindowBytes, this.options.maxWindowBytes)
        : Math.min(stream.windowBytes * 2, this.options.maxWindowBytes);
    const start = Math.max(stream.aheadUntil, stream.nextOffset);
    const planEnd = Math.min(start + stream.windowBytes, this.objectSize);
    if (planEnd <= start) return undefined;
    stream.aheadUntil = planEnd;
    return { streamId: stream.id, start, end: planEnd, windowBytes: stream.windowBytes };
  }

  private match(offset: number): Stream | undefined {
    for (let i = this.streams.length - 1; i >= 0; i--) {
      const s = this.streams[i]!;
      const reach = Math.max(s.nextOffset + this.options.forwardSlackBytes, s.aheadUntil);
      if (offset >= s.lastStart && offset <= reach) return s;
    }
    return undefined;
  }

  private touch(stream: Stream): void {
    const i = this.streams.indexOf(stream);
    this.streams.splice(i, 1);
    this.streams.push(stream);
  }
}
