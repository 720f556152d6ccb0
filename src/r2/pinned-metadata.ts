import type { Lease } from '../util/arena.js';
import { describeError, logger } from '../util/log.js';
import type { ChunkLayout } from './chunk-layout.js';
import { type Extent, PinnedExtents } from './pinned-extents.js';

/**
 * The object's bytes that stay resident for the life of a source: the image's metadata run. At open the
 * whole tail fetched with the superblock is pinned; the reader then `retain`s the metadata span
 * (`[inode_table_start, bytes_used)`), whatever of it is missing is fetched in one request, and exactly
 * the retained spans stay pinned. Tail bytes outside them go back to the chunk store as ordinary data.
 *
 * Pinned bytes are never evicted and reads of them never go remote. They are bounded by the image's
 * metadata size (typically 1-3% of an image), which is why they are not counted against the cache's
 * budget; `maxPinnedBytes` caps them for hostile images.
 */

/** What retain needs from the layers below: the chunk store and the fetcher. */
export interface RetainSources {
  /** A chunk held in memory (no recency change), and its bytes (marked used). */
  has(c: number): boolean;
  get(c: number): Lease | undefined;
  /** Object bytes [from, to) outside the chunk LRU: disk tier or one GET. */
  fetchRange(from: number, to: number): Promise<Uint8Array>;
  /** Stores the whole chunks inside `bytes` (at `offset`) as ordinary data. */
  storeWholeChunks(offset: number, bytes: Uint8Array): void;
  /** The source closed meanwhile: pin nothing more. */
  closed(): boolean;
}

export interface PinnedMetadataOptions {
  name: string;
  maxPinnedBytes: number;
  /** Gaps are fetched in whole chunks (a disk tier keeps only whole chunks). */
  wholeChunks: boolean;
}

export class PinnedMetadata {
  private readonly log = logger('cache');
  private readonly pinned = new PinnedExtents();
  /** Spans the reader asked to retain; undefined until the first retain (the tail is pinned until then). */
  private retainedSpans: Array<[number, number]> | undefined;
  /** The whole tail, still on its way when the open completed with its quick part (expectTail). */
  private fullTail: Promise<void> | undefined;

  constructor(
    private readonly layout: ChunkLayout,
    private readonly options: PinnedMetadataOptions,
    private readonly sources: RetainSources,
  ) {}

  /** Pins the tail fetched at open until the reader says what to retain. */
  seedTail(tail: Uint8Array): void {
    if (tail.length > 0) this.pinned.replace([{ start: this.layout.objectSize - tail.length, bytes: tail }]);
  }

  /**
   * The whole tail (`length` bytes) is on its way: the open completed with its quick part. A retain
   * that needs more than is pinned waits for it rather than fetching what it brings (it was asked at
   * the same time as the quick part, so that wait is never longer than a fetch of its own). Once in,
   * it is pinned as the tail (before the first retain) or its bytes outside the retained spans become
   * ordinary data (after). If its GET fails, retain fetches what it needs, as without it.
   */
  expectTail(fullTail: Promise<Uint8Array>, length: number): void {
    const start = this.layout.objectSize - length;
    const arrived: Promise<void> = fullTail
      .then((tail) => this.takeFullTail(start, tail))
      .catch((e: unknown) => this.log.debug(`${this.options.name}: the rest of the tail did not arrive: ${describeError(e)}`))
      .then(() => {
        if (this.fullTail === arrived) this.fullTail = undefined;
      });
    this.fullTail = arrived;
  }

  private takeFullTail(start: number, tail: Uint8Array): void {
    if (this.sources.closed()) return;
    const extent = { start, bytes: tail };
    if (this.retainedSpans === undefined) this.pinned.replace([extent]); // holds the quick part too
    else this.storeOutsideSpans(extent, this.retainedSpans);
  }

  /**
   * Hands the chunks of `extent` that hold bytes outside `spans` to the store as ordinary data, whole:
   * the chunk where the metadata begins holds the last data blocks too (the image's last fragment
   * block, read by its small files), and pinning keeps only its metadata part.
   */
  private storeOutsideSpans(extent: Extent, spans: Array<[number, number]>): void {
    const { layout } = this;
    const extentEnd = extent.start + extent.bytes.length;
    for (const part of outsideSpans(extent, spans)) {
      const from = Math.max(extent.start, layout.start(layout.indexOf(part.start)));
      const to = Math.min(extentEnd, layout.end(layout.indexOf(part.start + part.bytes.length - 1)));
      this.sources.storeWholeChunks(from, extent.bytes.subarray(from - extent.start, to - extent.start));
    }
  }

  get totalBytes(): number {
    return this.pinned.totalBytes;
  }

  /** The pinned extent containing `offset`, if any. */
  find(offset: number): Extent | undefined {
    return this.pinned.find(offset);
  }

  /** Where the next pinned bytes at or after `offset` begin (Infinity if none). */
  nextStartAfter(offset: number): number {
    return this.pinned.nextStartAfter(offset);
  }

  /** Copies pinned [start, end) into `out` at `outOffset`. */
  copy(start: number, end: number, out: Uint8Array, outOffset: number): void {
    this.pinned.copy(start, end, out, outOffset);
  }

  /** Is all of [from, to) pinned? */
  covers(from: number, to: number): boolean {
    return this.pinned.missing(from, to).length === 0;
  }

  /** Is all of chunk `c` pinned (never worth fetching)? */
  coversChunk(c: number): boolean {
    return this.covers(this.layout.start(c), this.layout.end(c));
  }

  /**
   * Keeps [offset, offset+length) resident: whatever of it is neither pinned nor cached is fetched in
   * one request (from the first missing byte to the last), then the union of retained spans becomes
   * the pinned set. Tail bytes pinned at open outside every retained span return to the chunk store.
   */
  async retain(offset: number, length: number): Promise<void> {
    const end = offset + length;
    if (length === 0) return;
    const spans = [...(this.retainedSpans ?? []), [offset, end] as [number, number]];
    const spanBytes = spans.reduce((sum, [s, e]) => sum + (e - s), 0);
    if (spanBytes > this.options.maxPinnedBytes) {
      this.log.warn(
        `${this.options.name}: metadata of ${spanBytes} bytes exceeds maxPinnedBytes ${this.options.maxPinnedBytes}; not pinned`,
      );
      return;
    }
    const { layout, sources } = this;
    const missing = () => this.pinned.missing(offset, end).flatMap(([s, e]) => this.uncachedParts(s, e));
    let gaps = missing();
    if (gaps.length > 0 && this.fullTail) {
      await this.fullTail;
      gaps = missing();
    }
    let fetched: Extent | undefined;
    if (gaps.length > 0) {
      let from = gaps[0]![0];
      let to = gaps[gaps.length - 1]![1];
      if (this.options.wholeChunks) {
        // Whole chunks only reach the disk cache: a chunk half in the tail and half in this gap
        // would otherwise never be kept, and a remount would fetch it again.
        from = layout.start(layout.indexOf(from));
        to = layout.end(layout.indexOf(to - 1));
      }
      fetched = { start: from, bytes: await sources.fetchRange(from, to) };
    }
    if (sources.closed()) return;
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
      const c = layout.indexOf(pos);
      // Evicted while the gap fetch was in flight (rare: heavy data reads during open): fetch it again.
      const chunk = sources.get(c)?.bytes ?? (await sources.fetchRange(layout.start(c), layout.end(c)));
      const to = Math.min(end, layout.end(c));
      layout.copyOut(c, chunk, pos, to, bytes, offset);
      pos = to;
    }
    const previous = this.pinned.list().slice();
    const keep: Extent[] = previous.flatMap((e) => clipToSpans(e, spans));
    keep.push({ start: offset, bytes });
    if (this.retainedSpans === undefined) {
      // Tail bytes outside the metadata are ordinary data now: hand whole chunks to the store.
      for (const e of previous) this.storeOutsideSpans(e, spans);
    }
    this.retainedSpans = spans;
    this.pinned.replace(keep);
  }

  clear(): void {
    this.pinned.clear();
  }

  /** Parts of [start, end) not held in memory, as ranges. */
  private uncachedParts(start: number, end: number): Array<[number, number]> {
    const { layout } = this;
    const parts: Array<[number, number]> = [];
    for (let c = layout.indexOf(start); layout.start(c) < end; c++) {
      if (this.sources.has(c)) continue;
      const s = Math.max(start, layout.start(c));
      const e = Math.min(end, layout.end(c));
      const last = parts[parts.length - 1];
      if (last && last[1] === s) last[1] = e;
      else parts.push([s, e]);
    }
    return parts;
  }
}

function clipToSpans(extent: Extent, spans: Array<[number, number]>): Extent[] {
  const eEnd = extent.start + extent.bytes.length;
  return spans
    .map(([s, e]) => [Math.max(s, extent.start), Math.min(e, eEnd)] as const)
    .filter(([s, e]) => s < e)
    .map(([s, e]) => ({ start: s, bytes: extent.bytes.subarray(s - extent.start, e - extent.start) }));
}

function outsideSpans(extent: Extent, spans: Array<[number, number]>): Extent[] {
  const scratch = new PinnedExtents();
  scratch.replace(spans.map(([s, e]) => ({ start: s, bytes: new Uint8Array(e - s) })));
  const eEnd = extent.start + extent.bytes.length;
  return scratch
    .missing(extent.start, eEnd)
    .map(([s, e]) => ({ start: s, bytes: extent.bytes.subarray(s - extent.start, e - extent.start) }));
}
