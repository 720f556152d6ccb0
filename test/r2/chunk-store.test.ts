import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Lease } from '../../src/util/arena.js';
import { ChunkLayout } from '../../src/r2/chunk-layout.js';
import { ChunkStore } from '../../src/r2/chunk-store.js';
import { DiskChunkStore } from '../../src/r2/disk-cache.js';
import { CHUNK, expectBytes, KiB, MiB } from './layer-helpers.js';

/** The chunk store alone: memory tier, arena reuse, reservations, readahead tier, disk tier. */

const SIZE = 4 * MiB + 100;
const layout = new ChunkLayout(CHUNK, SIZE);

/** A chunk whose every byte is its index (mod 256), in an arena slot of the store. */
function filled(store: ChunkStore, c: number): Lease {
  const lease = store.take(layout.bytesOf(c));
  lease.bytes.fill(c & 0xff);
  return lease;
}

describe('memory tier', () => {
  it('keeps chunks within its capacity, evicting the least recently used, and reuses their buffers', () => {
    const store = new ChunkStore(layout, 4 * CHUNK, undefined);
    for (let c = 0; c < 4; c++) {
      expect(store.admit(CHUNK, false)).toBe(true);
      store.unreserve(CHUNK);
      store.set(c, filled(store, c), false);
    }
    store.get(0); // 0 is now the most recently used: 1 goes first
    expect(store.admit(CHUNK, false)).toBe(true);
    store.unreserve(CHUNK);
    store.set(4, filled(store, 4), false);
    expect([0, 1, 2, 3, 4].map((c) => store.has(c))).toEqual([true, false, true, true, true]);
    expect(store.get(4)!.bytes[0]).toBe(4);
    const s = store.stats();
    expect(s.heldBytes).toBe(4 * CHUNK);
    expect(s.evictions).toBe(1);
    expect(s.chunkBuffers).toMatchObject({ allocated: 4, reused: 1 }); // chunk 4 went into chunk 1's buffer
  });

  it("an evicted chunk's lease turns invalid before its buffer is written again", () => {
    const store = new ChunkStore(layout, 2 * CHUNK, undefined);
    store.set(0, filled(store, 0), false);
    store.set(1, filled(store, 1), false);
    const old = store.get(0)!;
    store.get(1); // 0 is the least recently used again
    store.admit(CHUNK, false); // evicts 0: its slot goes back to the arena
    expect(old.valid).toBe(false);
    const next = store.take(CHUNK);
    expect(next.valid).toBe(true);
    expect(old.valid).toBe(false);
  });

  it('reservations count against the budget: readahead is refused, a waiting reader overshoots', () => {
    const store = new ChunkStore(layout, 4 * CHUNK, undefined);
    expect(store.admit(3 * CHUNK, false)).toBe(true);
    expect(store.admit(2 * CHUNK, false)).toBe(false); // nothing held to evict: no room
    expect(store.reservedBytes).toBe(3 * CHUNK);
    expect(store.admit(2 * CHUNK, true)).toBe(true); // a reader waits: it runs anyway
    expect(store.reservedBytes).toBe(5 * CHUNK);
    expect(store.stats().peakDataBytes).toBe(5 * CHUNK);
    store.unreserve(5 * CHUNK);
    expect(store.reservedBytes).toBe(0);
  });

  it('unused readahead waits apart from the LRU: chunks just read do not push it out, demote releases it', () => {
    const store = new ChunkStore(layout, 4 * CHUNK, undefined);
    store.set(10, filled(store, 10), true, 7); // readahead of stream 7
    store.set(11, filled(store, 11), true, 7);
    expect(store.aheadBytes).toBe(2 * CHUNK);
    for (let c = 0; c < 6; c++) {
      store.admit(CHUNK, false);
      store.unreserve(CHUNK);
      store.set(c, filled(store, c), false);
    }
    expect(store.has(10) && store.has(11)).toBe(true);
    expect(store.get(10)!.bytes[0]).toBe(10); // read: now in the LRU, counted as used
    expect(store.stats().prefetchedBytesUsed).toBe(CHUNK);
    expect(store.demote((c, stream) => stream === 7 && c === 11)).toBe(CHUNK);
    expect(store.aheadBytes).toBe(0);
  });

  it('storeWholeChunks keeps only whole chunks not held or skipped, outside the arena', () => {
    const store = new ChunkStore(layout, 16 * CHUNK, undefined);
    const bytes = Buffer.alloc(3 * CHUNK + 10, 5);
    store.storeWholeChunks(CHUNK - 10, bytes, (c) => c === 2); // covers chunks 1..3 wholly, 0 and 4 partly
    expect([0, 1, 2, 3, 4].map((c) => store.has(c))).toEqual([false, true, false, true, false]);
    expect(store.get(1)!.bytes[0]).toBe(5);
    expect(store.stats().chunkBuffers.allocated).toBe(0);
  });

  it('without a disk tier nothing is on disk and readFromDisk has nothing', async () => {
    const store = new ChunkStore(layout, 4 * CHUNK, undefined);
    expect(store.persistent).toBe(false);
    expect(store.onDisk(0)).toBe(false);
    expect(await store.readFromDisk(0, 100)).toBeUndefined();
  });
});

describe('disk tier', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'chunk-store-disk-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('whole chunks persist; a range is served from disk only when every chunk of it is there', async () => {
    const disk = await DiskChunkStore.open({ dir }, { name: 'test://object', etag: '"e1"', size: SIZE }, CHUNK);
    const store = new ChunkStore(layout, 4 * CHUNK, disk);
    expect(store.persistent).toBe(true);
    expect(() => store.take(CHUNK)).toThrow(/arena/);
    const bytes = Buffer.alloc(2 * CHUNK + 500);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) & 0xff;
    store.persistWholeChunks(2 * CHUNK, bytes); // chunks 2 and 3; the 500 bytes of chunk 4 are not whole
    await store.flush();
    expect([2, 3, 4].map((c) => store.onDisk(c))).toEqual([true, true, false]);
    expectBytes((await store.readFromDisk(2 * CHUNK + 3, 4 * CHUNK - 1))!, bytes.subarray(3, 2 * CHUNK - 1));
    expect(await store.readFromDisk(3 * CHUNK, 4 * CHUNK + 1)).toBeUndefined();
    const loaded = await store.loadFromDisk([1, 2, 3]);
    expect([...loaded.keys()].sort()).toEqual([2, 3]);
    expectBytes(loaded.get(3)!.bytes, bytes.subarray(CHUNK, 2 * CHUNK));
    store.persist(5, Buffer.alloc(CHUNK, 1));
    await store.flush();
    expect(store.onDisk(5)).toBe(true);
    expect(store.stats().disk).toMatchObject({ presentChunks: 3, writes: 3 });
    store.clear();
    await store.close();
  });

  it('a second store of the same object version finds the chunks again', async () => {
    const disk = await DiskChunkStore.open({ dir }, { name: 'test://object', etag: '"e1"', size: SIZE }, CHUNK);
    const store = new ChunkStore(layout, 4 * CHUNK, disk);
    expect([2, 3, 5].map((c) => store.onDisk(c))).toEqual([true, true, true]);
    expect((await store.readFromDisk(5 * CHUNK, 5 * CHUNK + 4 * KiB))!.every((b) => b === 1)).toBe(true);
    await store.close();
  });
});
