import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkReader } from '../../src/r2/chunk-reader.js';
import { CHUNK, expectBytes, fetchedChunks, KiB, layers, MiB, type ObjectFile, objectFile } from './layer-helpers.js';

/** The read path alone over real layers: pinned bytes, hits, joins, miss units, the large-read bypass. */

let file: ObjectFile;

beforeAll(async () => {
  file = await objectFile();
});

afterAll(async () => {
  await file.remove();
});

async function reader(cacheBytes = 4 * MiB, latencyMs = 0) {
  const l = await layers(file, { cacheBytes, object: { latencyMs } });
  const dataReads: Array<[number, number]> = [];
  const r = new ChunkReader(l.layout, l.store, l.fetcher, l.pinned, { cacheBytes, missUnitBytes: 4 * CHUNK }, (o, n) =>
    dataReads.push([o, n]),
  );
  const read = async (offset: number, length: number, exact = false) => {
    const out = Buffer.alloc(length);
    await r.readInto(offset, out, exact);
    expectBytes(out, file.data.subarray(offset, offset + length));
  };
  return { ...l, r, read, dataReads };
}

describe('ChunkReader', () => {
  it('a small miss brings its whole unit, an exact one its chunk only; hits cost nothing', async () => {
    const l = await reader();
    await l.read(8 * CHUNK + 100, 50);
    expect(fetchedChunks(l.remote)).toEqual([[8, 4]]);
    await l.read(10 * CHUNK, 2 * CHUNK); // inside the unit: hits
    expect(l.r.counters).toEqual({ hits: 2, misses: 1 });
    l.remote.resetRequests();
    await l.read(21 * CHUNK + 5, 10, true);
    expect(fetchedChunks(l.remote)).toEqual([[21, 1]]);
    await l.close();
  });

  it('concurrent readers of one chunk share one GET; a read of pinned bytes is no data read', async () => {
    const l = await reader(4 * MiB, 20);
    l.pinned.seedTail(file.data.subarray(file.data.length - 2 * CHUNK));
    await Promise.all([l.read(30 * CHUNK, 10), l.read(30 * CHUNK + 4 * KiB, 10), l.read(30 * CHUNK + 8 * KiB, 10)]);
    expect(fetchedChunks(l.remote)).toHaveLength(1);
    expect(l.fetcher.counters.joins).toBe(2);
    l.dataReads.length = 0;
    await l.read(file.data.length - CHUNK, CHUNK);
    expect(l.dataReads).toEqual([]);
    // A read spanning data and pinned bytes fetches only the data part (the object is not chunk-aligned:
    // that part straddles two chunks).
    l.remote.resetRequests();
    const from = file.data.length - 3 * CHUNK;
    await l.read(from, 3 * CHUNK, true);
    expect(fetchedChunks(l.remote)).toEqual([[Math.floor(from / CHUNK), 2]]);
    expect(l.dataReads).toEqual([[from, 3 * CHUNK]]);
    await l.close();
  });

  it('a read larger than half the cache is fetched in one GET and not kept', async () => {
    const l = await reader(2 * MiB);
    await l.read(MiB + 3, MiB + 10);
    expect(l.remote.requests.map((r) => [r.offset, r.length])).toEqual([[MiB + 3, MiB + 10]]);
    expect(l.store.heldBytes).toBe(0);
    await l.close();
  });
});
