/**
 * Byte ranges of one object that stay resident for the life of a source (the image's metadata run,
 * `[inode_table_start, bytes_used)`). Kept as sorted, non-overlapping, non-adjacent extents so a read
 * inside a retained span is served from one buffer.
 */

export interface Extent {
  start: number;
  bytes: Uint8Array;
}

export class PinnedExtents {
  private extents: Extent[] = [];

  get totalBytes(): number {
    return this.extents.reduce((sum, e) => sum + e.bytes.length, 0);
  }

  list(): readonly Extent[] {
    return this.extents;
  }

  /** The extent containing `offset`, if any. */
  find(offset: number): Extent | undefined {
    for (const e of this.extents) {
      if (offset >= e.start && offset < e.start + e.bytes.length) return e;
      if (e.start > offset) return undefined;
    }
    return undefined;
  }

  /** First extent start at or after `offset` (Infinity if none): where a gap before pinned bytes ends. */
  nextStartAfter(offset: number): number {
    for (const e of this.extents) if (e.start >= offset) return e.start;
    return Infinity;
  }

  /** Sub-ranges of [start, end) not covered, as [from, to) pairs in order. */
  missing(start: number, end: number): Array<[number, number]> {
    const gaps: Array<[number, number]> = [];
    let pos = start;
    for (const e of this.extents) {
      const eEnd = e.start + e.bytes.length;
      if (eEnd <= pos) continue;
      if (e.start >= end) break;
      if (e.start > pos) gaps.push([pos, e.start]);
      pos = Math.max(pos, eEnd);
      if (pos >= end) break;
    }
    if (pos < end) gaps.push([pos, end]);
    return gaps;
  }

  /** Copies [start, end) from pinned bytes into `out` at `outOffset`; the range must be covered. */
  copy(start: number, end: number, out: Uint8Array, outOffset: number): void {
    let pos = start;
    while (pos < end) {
      const e = this.find(pos);
      if (!e) throw new Error(`pinned bytes do not cover offset ${pos}`);
      const take = Math.min(end, e.start + e.bytes.length) - pos;
      out.set(e.bytes.subarray(pos - e.start, pos - e.start + take), outOffset + (pos - start));
      pos += take;
    }
  }

  /** Replaces the whole set with exactly these extents (merged and copied into own buffers). */
  replace(extents: Extent[]): void {
    const sorted = [...extents].filter((e) => e.bytes.length > 0).sort((a, b) => a.start - b.start);
    const merged: Extent[] = [];
    for (const e of sorted) {
      const last = merged[merged.length - 1];
      const lastEnd = last ? last.start + last.bytes.length : -1;
      if (last && e.start <= lastEnd) {
        const end = Math.max(lastEnd, e.start + e.bytes.length);
        const joined = new Uint8Array(end - last.start);
        joined.set(last.bytes, 0);
        joined.set(e.bytes, e.start - last.start);
        merged[merged.length - 1] = { start: last.start, bytes: joined };
      } else {
        merged.push({ start: e.start, bytes: e.bytes.slice() });
      }
    }
    this.extents = merged;
  }

  clear(): void {
    this.extents = [];
  }
}
