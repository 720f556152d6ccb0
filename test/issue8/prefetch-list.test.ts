/** The prefetch list format and recorder (src/r2/prefetch-record.ts) and the cache budget split. */
import { describe, expect, it } from 'vitest';
import { splitCacheBudget } from '../../src/fs/open-image.js';
import {
  PrefetchListError,
  PrefetchRecorder,
  parsePrefetchList,
  prefetchListMismatch,
  rangesWithin,
} from '../../src/r2/prefetch-record.js';

const K = 1024;
const MiB = K * K;

describe('PrefetchRecorder', () => {
  it('keeps chunks in first-access order, each once, merging runs of consecutive chunks', () => {
    const r = new PrefetchRecorder(10 * K + 100, K);
    r.note(5 * K + 10, 2 * K); // chunks 5, 6, 7
    r.note(0, 10); // chunk 0
    r.note(6 * K, 10); // 6 again: nothing
    r.note(8 * K, 3 * K); // 8, 9, 10 (the last 100 bytes): a new run, chunk 0 was read in between
    r.note(1 * K, 1); // 1 follows 0, but runs only grow at the end of the order: a run of its own
    const list = r.toList('"e"', new Date(0));
    expect(list.ranges).toEqual([
      [5 * K, 3 * K],
      [0, K],
      [8 * K, 2 * K + 100],
      [K, K],
    ]);
    expect(list).toMatchObject({
      version: 1,
      etag: '"e"',
      objectSize: 10 * K + 100,
      chunkBytes: K,
      recordedAt: '1970-01-01T00:00:00.000Z',
    });
    expect(r.chunkCount).toBe(8);
  });

  it('stops at its chunk cap and ignores reads outside the object', () => {
    const r = new PrefetchRecorder(100 * K, K, 3);
    r.note(-5, 10);
    r.note(200 * K, 10);
    r.note(0, 10 * K);
    expect(r.toList('"e"').ranges).toEqual([[0, 3 * K]]);
  });

  it('round-trips through parsePrefetchList', () => {
    const r = new PrefetchRecorder(50 * K, 4 * K);
    r.note(9 * K, 20 * K);
    const list = r.toList('"x"');
    expect(parsePrefetchList(JSON.stringify(list))).toEqual(list);
  });
});

describe('parsePrefetchList', () => {
  const good = { version: 1, etag: '"e"', objectSize: 1000, chunkBytes: 256, ranges: [[0, 256]], recordedAt: 'now' };
  it.each([
    ['not JSON', '{', /not JSON/],
    ['an array', '[]', /not a JSON object/],
    ['another version', JSON.stringify({ ...good, version: 2 }), /version/],
    ['no etag', JSON.stringify({ ...good, etag: undefined }), /etag/],
    ['a range past the end', JSON.stringify({ ...good, ranges: [[900, 256]] }), /past the object/],
    ['a negative offset', JSON.stringify({ ...good, ranges: [[-1, 2]] }), /offset/],
    ['an empty range', JSON.stringify({ ...good, ranges: [[0, 0]] }), /length/],
    ['a bad range shape', JSON.stringify({ ...good, ranges: [[0]] }), /not \[offset, length\]/],
    ['ranges not an array', JSON.stringify({ ...good, ranges: 5 }), /ranges/],
  ])('refuses %s', (_, text, message) => {
    expect(() => parsePrefetchList(text)).toThrow(PrefetchListError);
    expect(() => parsePrefetchList(text)).toThrow(message);
  });

  it('tells why a list does not apply', () => {
    const list = parsePrefetchList(JSON.stringify(good));
    expect(prefetchListMismatch(list, { etag: '"e"', size: 1000 })).toBeUndefined();
    expect(prefetchListMismatch(list, { etag: '"f"', size: 1000 })).toMatch(/ETag/);
    expect(prefetchListMismatch(list, { etag: '"e"', size: 999 })).toMatch(/bytes/);
    expect(prefetchListMismatch(list, { etag: undefined, size: 1000 })).toMatch(/no ETag/);
  });

  it('rangesWithin keeps the first ranges up to a byte budget', () => {
    expect(
      rangesWithin(
        [
          [0, 10],
          [20, 10],
          [40, 10],
        ],
        25,
      ),
    ).toEqual([
      [0, 10],
      [20, 10],
    ]);
  });
});

describe('splitCacheBudget', () => {
  it('remote: 1/8 (4 to 64 MiB, at most half) for decoded blocks, the rest for chunks; the sum is the budget', () => {
    expect(splitCacheBudget(64 * MiB, true)).toEqual({ readerBytes: 8 * MiB, sourceBytes: 56 * MiB });
    expect(splitCacheBudget(16 * MiB, true)).toEqual({ readerBytes: 4 * MiB, sourceBytes: 12 * MiB });
    expect(splitCacheBudget(2 * MiB, true)).toEqual({ readerBytes: 1 * MiB, sourceBytes: 1 * MiB });
    expect(splitCacheBudget(4096 * MiB, true)).toEqual({ readerBytes: 64 * MiB, sourceBytes: 4032 * MiB });
  });
  it('local: all to the reader', () => {
    expect(splitCacheBudget(64 * MiB, false)).toEqual({ readerBytes: 64 * MiB, sourceBytes: 0 });
  });
});
