import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Hydration, prefetchRange } from '../../src/r2/hydration.js';
import { CHUNK, expectBytes, fetchedChunks, layers, MiB, type ObjectFile, objectFile } from './layer-helpers.js';

/** Hydration and prefetch as clients of a real fetcher and store over a real file. */

let file: ObjectFile;

beforeAll(async () => {
  file = await objectFile(2 * MiB + 777);
});

afterAll(async () => {
  await file.remove();
});

describe('Hydration', () => {
  it('fetches every chunk not yet held in pieces of requestBytes, into memory', async () => {
    const l = await layers(file, { cacheBytes: 4 * MiB });
    await l.fetcher.request([0, 1], 'foreground')[0]![1];
    l.pinned.seedTail(file.data.subarray(file.data.length - CHUNK));
    l.remote.resetRequests();
    const stats = await new Hydration(l.layout, l.store, l.fetcher, l.pinned, { requestBytes: 512 * 1024, workers: 2 })
      .done;
    expect(stats).toMatchObject({
      state: 'done',
      totalBytes: file.data.length,
      doneBytes: file.data.length,
      failedRequests: 0,
    });
    const last = l.layout.count - 1;
    expect(stats.fetchedBytes).toBe(file.data.length - 2 * CHUNK - l.layout.bytesOf(last)); // pinned last chunk skipped
    expect(fetchedChunks(l.remote).every(([, n]) => n <= 8)).toBe(true);
    for (let c = 2; c < last; c++) expectBytes(l.store.get(c)!.bytes, file.data.subarray(c * CHUNK, (c + 1) * CHUNK));
    await l.close();
  });

  it('retries a failed piece once; a persistent failure ends incomplete', async () => {
    const l = await layers(file, { cacheBytes: 4 * MiB });
    l.remote.failNext(1, new Error('injected'));
    const once = await new Hydration(l.layout, l.store, l.fetcher, l.pinned, { requestBytes: MiB, workers: 1 }).done;
    expect(once).toMatchObject({ state: 'done', failedRequests: 1, doneBytes: file.data.length });
    await l.close();
    const m = await layers(file, { cacheBytes: 4 * MiB });
    m.remote.setFailureRule((r) => (r.offset === 0 ? new Error('injected') : undefined));
    const never = await new Hydration(m.layout, m.store, m.fetcher, m.pinned, { requestBytes: MiB, workers: 1 }).done;
    expect(never).toMatchObject({ state: 'incomplete', failedRequests: 2 });
    expect(never.doneBytes).toBe(file.data.length - MiB);
    await m.close();
  });
});

describe('prefetchRange', () => {
  it('brings a listed range in GETs of at most maxBytes, skipping what is held; true when all arrived', async () => {
    const l = await layers(file, { cacheBytes: 4 * MiB });
    await l.fetcher.request([3], 'foreground')[0]![1];
    l.remote.resetRequests();
    const ok = await prefetchRange(l.layout, l.store, l.fetcher, l.pinned, 2 * CHUNK + 5, 8 * CHUNK, 2 * CHUNK);
    expect(ok).toBe(true);
    expect(fetchedChunks(l.remote)).toEqual([
      [2, 1],
      [4, 2],
      [6, 2],
      [8, 2],
      [10, 1], // the range ends 5 bytes into chunk 10
    ]);
    l.remote.failNext(1, new Error('injected'));
    expect(await prefetchRange(l.layout, l.store, l.fetcher, l.pinned, 20 * CHUNK, CHUNK, MiB)).toBe(false);
    await l.close();
  });
});
