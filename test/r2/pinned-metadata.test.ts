import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNK, expectBytes, fetchedChunks, KiB, layers, type ObjectFile, objectFile } from './layer-helpers.js';

/** Pinned metadata alone, over a real store, fetcher and file: the tail pinned at open, then retain. */

let file: ObjectFile;

beforeAll(async () => {
  file = await objectFile();
});

afterAll(async () => {
  await file.remove();
});

const pinnedBytes = async (l: Awaited<ReturnType<typeof layers>>, from: number, to: number) => {
  const out = Buffer.alloc(to - from);
  l.pinned.copy(from, to, out, 0);
  return out;
};

describe('PinnedMetadata', () => {
  it('pins the tail; a retain inside it costs no request and hands the rest of the tail to the store', async () => {
    const l = await layers(file);
    const size = file.data.length;
    const tailStart = size - 10 * CHUNK;
    l.pinned.seedTail(file.data.subarray(tailStart));
    expect(l.pinned.covers(tailStart, size)).toBe(true);
    const metaStart = size - 3 * CHUNK - 500;
    await l.pinned.retain(metaStart, size - metaStart);
    expect(fetchedChunks(l.remote)).toEqual([]);
    expect(l.pinned.totalBytes).toBe(size - metaStart);
    expect(l.pinned.covers(tailStart, metaStart)).toBe(false);
    expectBytes(await pinnedBytes(l, metaStart, size), file.data.subarray(metaStart));
    // Chunks between the tail start and the metadata are ordinary data now, the one where the metadata
    // begins too (its data part is the image's last fragment block), whole and right.
    const c = l.layout.indexOf(tailStart) + 1;
    expect(l.store.has(c)).toBe(true);
    const straddling = l.layout.indexOf(metaStart);
    expect(l.store.has(straddling)).toBe(true);
    expectBytes(l.store.get(straddling)!.bytes, file.data.subarray(l.layout.start(straddling), l.layout.end(straddling)));
    expect(l.store.has(straddling + 1)).toBe(false); // wholly metadata: pinned only
    await l.close();
  });

  it('fetches exactly the missing part of a span in one request, using chunks already held', async () => {
    const l = await layers(file);
    const size = file.data.length;
    l.pinned.seedTail(file.data.subarray(size - 64 * KiB));
    const start = size - 20 * CHUNK - 1000;
    await l.pinned.retain(start, size - start);
    expect(l.remote.requests.map((r) => [r.offset, r.length])).toEqual([[start, size - 64 * KiB - start]]);
    expectBytes(await pinnedBytes(l, start, size), file.data.subarray(start));
    // A second span elsewhere: a held chunk inside it is used, the gap before it fetched.
    await l.fetcher.request([5], 'foreground')[0]![1];
    l.remote.resetRequests();
    await l.pinned.retain(4 * CHUNK, 2 * CHUNK);
    expect(fetchedChunks(l.remote)).toEqual([[4, 1]]);
    expectBytes(await pinnedBytes(l, 4 * CHUNK, 6 * CHUNK), file.data.subarray(4 * CHUNK, 6 * CHUNK));
    expect(l.pinned.coversChunk(5)).toBe(true);
    await l.close();
  });

  it('pins nothing beyond maxPinnedBytes', async () => {
    const l = await layers(file, { maxPinnedBytes: 100 * KiB });
    await l.pinned.retain(0, 200 * KiB);
    expect(l.pinned.totalBytes).toBe(0);
    expect(l.remote.requests).toEqual([]);
    await l.close();
  });
});
