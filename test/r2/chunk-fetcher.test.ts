import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNK, expectBytes, fetchedChunks, layers, MiB, type ObjectFile, objectFile } from './layer-helpers.js';

/** The fetcher alone over a real chunk store and a real file: sharing, coalescing, promotion, failures. */

let file: ObjectFile;

beforeAll(async () => {
  file = await objectFile();
});

afterAll(async () => {
  await file.remove();
});

const chunkBytes = (c: number) => file.data.subarray(c * CHUNK, Math.min((c + 1) * CHUNK, file.data.length));

describe('ChunkFetcher', () => {
  it('fetches requested chunks into the store; a second reader joins the GET in flight', async () => {
    const l = await layers(file, { object: { latencyMs: 20 } });
    const arrivals = l.fetcher.request([3, 4], 'foreground');
    expect(l.fetcher.isInFlight(3)).toBe(true);
    const joined = l.fetcher.join(4, 4, 4)!;
    expect(l.fetcher.join(9, 9, 9)).toBeUndefined(); // not in flight: the caller fetches it
    const [three, four] = await Promise.all([arrivals[0]![1], joined]);
    expectBytes(three!.bytes, chunkBytes(3));
    expectBytes(four!.bytes, chunkBytes(4));
    expect(fetchedChunks(l.remote)).toEqual([[3, 2]]);
    expect(l.store.has(3) && l.store.has(4)).toBe(true);
    expect(l.fetcher.counters).toMatchObject({ joins: 1, foregroundFetches: 1, fetchedBytes: 2 * CHUNK });
    expect(l.store.reservedBytes).toBe(0);
    await l.close();
  });

  it('coalesces chunks into one GET, bridging a small held gap but never a chunk in flight', async () => {
    const l = await layers(file);
    await l.fetcher.request([6], 'foreground')[0]![1]; // chunk 6 held
    l.remote.resetRequests();
    await Promise.all(l.fetcher.request([5, 7], 'foreground').map(([, p]) => p));
    expect(fetchedChunks(l.remote)).toEqual([[5, 3]]); // 6 re-fetched, not a second request
    l.remote.resetRequests();
    const inFlight = l.fetcher.request([21], 'background'); // queued behind nothing, but in flight
    await Promise.all(l.fetcher.request([20, 22], 'foreground').map(([, p]) => p));
    await inFlight[0]![1];
    expect(fetchedChunks(l.remote).sort((a, b) => a[0] - b[0])).toEqual([
      [20, 1],
      [21, 1],
      [22, 1],
    ]);
    await l.close();
  });

  it('splits a request into GETs of at most maxBytes', async () => {
    const l = await layers(file);
    const chunks = Array.from({ length: 10 }, (_, i) => 40 + i);
    await Promise.all(l.fetcher.request(chunks, 'readahead', { maxBytes: 4 * CHUNK }).map(([, p]) => p));
    expect(fetchedChunks(l.remote)).toEqual([
      [40, 4],
      [44, 4],
      [48, 2],
    ]);
    expect(l.fetcher.counters.readaheadFetches).toBe(3);
    await l.close();
  });

  it('a reader joining a queued readahead GET gets its part at foreground priority at once', async () => {
    // One readahead slot: the first readahead GET runs, the second waits in the queue.
    const l = await layers(file, { object: { latencyMs: 30 }, fetcher: { maxReadaheadFetches: 1 } });
    l.alive.add(1);
    const ahead = l.fetcher.request(
      Array.from({ length: 8 }, (_, i) => 60 + i),
      'readahead',
      { streamId: 1, maxBytes: 4 * CHUNK },
    );
    expect(l.fetcher.queuedFetches).toBe(1);
    const needed = l.fetcher.join(65, 65, 65)!;
    expectBytes((await needed).bytes, chunkBytes(65));
    const requests = fetchedChunks(l.remote);
    // [65, 67] (with what follows, up to the queued GET's end) started beside the running [60, 63].
    expect(requests.slice(0, 2)).toEqual([
      [60, 4],
      [65, 3],
    ]);
    await Promise.all(ahead.map(([, p]) => p));
    expect(fetchedChunks(l.remote)).toContainEqual([64, 1]); // the part before it stayed readahead
    await l.close();
  });

  it('queued readahead of a stream no longer alive is dropped; a fetch without room is refused', async () => {
    const l = await layers(file, {
      cacheBytes: 4 * CHUNK,
      fetcher: { maxReadaheadFetches: 1 },
      object: { latencyMs: 10 },
    });
    l.alive.add(2);
    const first = l.fetcher.request([80, 81], 'readahead', { streamId: 2 });
    const dropped = l.fetcher.request([90, 91], 'readahead', { streamId: 2 });
    l.alive.delete(2);
    await expect(dropped[0]![1]).rejects.toThrow(/no longer wanted/);
    await first[0]![1]; // already running: it completes
    // Budget 4 chunks, 2 held as unused readahead (not evictable by readahead), 3 more do not fit.
    const noRoom = l.fetcher.request([100, 101, 102], 'background');
    await expect(noRoom[0]![1]).rejects.toThrow(/no room/);
    expect(l.fetcher.isInFlight(100)).toBe(false);
    await l.close();
  });

  it('a failed GET rejects every waiter with its error, stores nothing, and the next request retries', async () => {
    const l = await layers(file, { object: { latencyMs: 10 } });
    const boom = new Error('503 SlowDown (injected)');
    l.remote.failNext(1, boom);
    const arrivals = l.fetcher.request([30, 31, 32], 'foreground');
    const joined = l.fetcher.join(31, 31, 31)!;
    const results = await Promise.allSettled([...arrivals.map(([, p]) => p), joined]);
    expect(results.every((r) => r.status === 'rejected' && r.reason === boom)).toBe(true);
    expect([30, 31, 32].some((c) => l.store.has(c) || l.fetcher.isInFlight(c))).toBe(false);
    expect(l.store.reservedBytes).toBe(0);
    expect(l.store.stats().chunkBuffers.free).toBe(3); // the slots taken for it went back
    expect(l.fetcher.counters.failedFetches).toBe(1);
    expectBytes((await l.fetcher.request([31], 'foreground')[0]![1]).bytes, chunkBytes(31));
    await l.close();
  });

  it('fetchRange reads outside the LRU in one GET; close rejects what is still queued', async () => {
    const l = await layers(file, { fetcher: { maxConcurrentFetches: 1 }, object: { latencyMs: 20 } });
    const from = 3 * MiB + 17;
    expectBytes(await l.fetcher.fetchRange(from, from + MiB), file.data.subarray(from, from + MiB));
    expect(l.store.has(l.layout.indexOf(from) + 1)).toBe(false);
    const running = l.fetcher.request([10], 'foreground');
    const queued = l.fetcher.request([50], 'foreground');
    l.fetcher.close(new Error('source is closed'));
    await expect(queued[0]![1]).rejects.toThrow(/closed/);
    await expect(running[0]![1]).rejects.toThrow(/closed/); // aborted
    await l.close();
  });
});
