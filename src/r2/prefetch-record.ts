/**
 * Recorded prefetch (issue 8): which chunks of an object a mount read first, as a small list of byte
 * ranges in first-access order, so the next mount of the same object version can fetch them before
 * anyone asks. The wire format lives here, in one place:
 *
 *   { "version": 1, "etag": "\"…\"", "objectSize": N, "chunkBytes": C,
 *     "ranges": [[offset, length], ...], "recordedAt": "ISO time" }
 *
 * Ranges are chunk-aligned (the last may end at objectSize), never overlap, and list each chunk once.
 */

export const PREFETCH_LIST_VERSION = 1;
/** At most this many chunks are recorded (256 KiB chunks: 4 GiB); the file stays well under 1 MiB. */
export const MAX_RECORDED_CHUNKS = 16_384;
/** A prefetch.json larger than this is not one of ours. */
export const PREFETCH_LIST_MAX_BYTES = 4 << 20;

export interface PrefetchList {
  version: typeof PREFETCH_LIST_VERSION;
  etag: string;
  objectSize: number;
  chunkBytes: number;
  ranges: Array<[number, number]>;
  recordedAt: string;
}

export class PrefetchListError extends Error {}

/** Collects the chunks touched by reads, in first-access order, each once, up to `maxChunks`. */
export class PrefetchRecorder {
  private readonly seen = new Set<number>();
  /** Runs of consecutive chunks, in the order their first chunk was first read: [firstChunk, count]. */
  private readonly runs: Array<[number, number]> = [];

  constructor(
    private readonly objectSize: number,
    private readonly chunkBytes: number,
    private readonly maxChunks = MAX_RECORDED_CHUNKS,
  ) {
    if (!Number.isSafeInteger(chunkBytes) || chunkBytes <= 0) throw new RangeError(`invalid chunk size ${chunkBytes}`);
  }

  get chunkCount(): number {
    return this.seen.size;
  }

  /** Notes a read of [offset, offset+length). */
  note(offset: number, length: number): void {
    if (length <= 0 || offset < 0 || offset >= this.objectSize) return;
    const first = Math.floor(offset / this.chunkBytes);
    const last = Math.floor((Math.min(offset + length, this.objectSize) - 1) / this.chunkBytes);
    for (let c = first; c <= last && this.seen.size < this.maxChunks; c++) {
      if (this.seen.has(c)) continue;
      this.seen.add(c);
      const run = this.runs[this.runs.length - 1];
      if (run && run[0] + run[1] === c) run[1]++;
      else this.runs.push([c, 1]);
    }
  }

  /** The list to store for an object version. */
  toList(etag: string, now = new Date()): PrefetchList {
    return {
      version: PREFETCH_LIST_VERSION,
      etag,
      objectSize: this.objectSize,
      chunkBytes: this.chunkBytes,
      ranges: this.runs.map(([c, n]) => {
        const start = c * this.chunkBytes;
        return [start, Math.min(this.objectSize, (c + n) * this.chunkBytes) - start];
      }),
      recordedAt: now.toISOString(),
    };
  }
}

/** Parses and checks a prefetch.json; anything else is a PrefetchListError saying what is wrong. */
export function parsePrefetchList(text: string): PrefetchList {
  if (text.length > PREFETCH_LIST_MAX_BYTES)
    throw new PrefetchListError(`${text.length} bytes is too large for a prefetch list`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new PrefetchListError(`not JSON: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new PrefetchListError('not a JSON object');
  const o = raw as Record<string, unknown>;
  if (o.version !== PREFETCH_LIST_VERSION)
    throw new PrefetchListError(`unsupported version ${JSON.stringify(o.version)}`);
  if (typeof o.etag !== 'string' || o.etag === '') throw new PrefetchListError('etag missing');
  const count = (v: unknown, name: string, min: number): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
      throw new PrefetchListError(`${name} must be an integer >= ${min}`);
    return v;
  };
  const objectSize = count(o.objectSize, 'objectSize', 0);
  const chunkBytes = count(o.chunkBytes, 'chunkBytes', 1);
  if (!Array.isArray(o.ranges)) throw new PrefetchListError('ranges must be an array');
  if (o.ranges.length > MAX_RECORDED_CHUNKS) throw new PrefetchListError(`more than ${MAX_RECORDED_CHUNKS} ranges`);
  const ranges = o.ranges.map((r, i): [number, number] => {
    if (!Array.isArray(r) || r.length !== 2) throw new PrefetchListError(`range ${i} is not [offset, length]`);
    const offset = count(r[0], `range ${i} offset`, 0);
    const length = count(r[1], `range ${i} length`, 1);
    if (offset + length > objectSize)
      throw new PrefetchListError(`range ${i} ends past the object (${objectSize} bytes)`);
    return [offset, length];
  });
  const recordedAt = typeof o.recordedAt === 'string' ? o.recordedAt : '';
  return { version: PREFETCH_LIST_VERSION, etag: o.etag, objectSize, chunkBytes, ranges, recordedAt };
}

/** Why a list does not apply to this object version, or undefined when it does. */
export function prefetchListMismatch(
  list: PrefetchList,
  object: { etag: string | undefined; size: number },
): string | undefined {
  if (object.etag === undefined) return 'the object has no ETag to compare';
  if (list.etag !== object.etag) return `recorded for ETag ${list.etag}, the object is now ${object.etag}`;
  if (list.objectSize !== object.size) return `recorded for ${list.objectSize} bytes, the object has ${object.size}`;
  return undefined;
}

/** The first ranges of `list` adding up to at most `maxBytes` (a memory-only cache must not evict them as they arrive). */
export function rangesWithin(ranges: Array<[number, number]>, maxBytes: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let total = 0;
  for (const [offset, length] of ranges) {
    if (total + length > maxBytes) break;
    out.push([offset, length]);
    total += length;
  }
  return out;
}
